"""No silent CPU fallback: BGE_DEVICE=cuda without a usable GPU keeps the server unhealthy with one line saying
why; BGE_DEVICE=auto serves from the CPU and /info says so. The driver is a test double (a file written like
/proc/driver/nvidia/version), so the cases run on a machine without a GPU, against the real app and model."""

from __future__ import annotations

import pytest
from bge_server import device

NO_GPU = ("BGE_DEVICE=cuda: no GPU visible: start the container with --gpus all (the NVIDIA Container Toolkit "
          "must be installed on the host: bgeimg doctor -p gpu checks it)")
OLD_DRIVER = ("BGE_DEVICE=cuda: the NVIDIA driver 550.54.14 is older than 580.65.06, which this image's CUDA 13.0 "
              "needs: upgrade the host driver to >= 580.65.06, or build with an older cuda: flavour")


@pytest.fixture
def image_env(monkeypatch, tmp_path):
    """What the gpu image's Dockerfile sets, and a driver test double that is absent until a test writes it."""
    monkeypatch.setenv("BGE_CUDA_VERSION", "13.0")
    monkeypatch.setenv("BGE_MIN_DRIVER", "580.65.06")
    double = tmp_path / "nvidia-version"
    monkeypatch.setenv(device.DRIVER_FILE_DOUBLE, str(double))
    return double


def _driver(path, version: str) -> None:
    path.write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Thu Feb 22 01:44:30 UTC 2024\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


def _unhealthy(client, capfd, line: str) -> None:
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "error", "error": f"DeviceUnavailable: {line}"}
    logged = [entry for entry in capfd.readouterr().out.splitlines() if "DeviceUnavailable" in entry]
    assert len(logged) == 1 and logged[0].endswith(line)
    embed = client.post("/embed", json={"inputs": "hello"})
    assert embed.status_code == 503 and embed.json()["error"] == f"DeviceUnavailable: {line}"


def test_cuda_without_a_gpu_stays_unhealthy_and_says_start_with_gpus(make_client, minilm_dir, image_env, capfd):
    client = make_client(minilm_dir, device="cuda")
    _unhealthy(client, capfd, NO_GPU)


def test_cuda_with_an_old_driver_names_the_driver_seen_and_needed(make_client, minilm_dir, image_env, capfd):
    _driver(image_env, "550.54.14")
    client = make_client(minilm_dir, device="cuda")
    _unhealthy(client, capfd, OLD_DRIVER)


def test_auto_serves_from_the_cpu_and_says_why(make_client, minilm_dir, image_env, capfd):
    client = make_client(minilm_dir, device="auto")
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["device_reason"] == NO_GPU.removeprefix("BGE_DEVICE=cuda: ")
    assert f"bge-server: BGE_DEVICE=auto: serving from the CPU: {info['device_reason']}" in capfd.readouterr().out
    assert len(client.post("/embed", json={"inputs": "hello"}).json()[0]) == 384


def test_driver_new_enough_reaches_the_torch_check(image_env):
    # the open kernel module's wording; a driver at the floor passes the driver check, then torch decides
    image_env.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n")
    assert device.driver_version() == "580.65.06"
    assert device.why_not_cuda(probe=lambda: None) is None
    assert device.resolve("cuda", probe=lambda: None) == device.Choice("cuda")
    assert device.why_not_cuda(probe=lambda: "torch says no") == "torch says no"


def test_cpu_is_cpu_and_bad_values_are_refused(image_env):
    assert device.resolve("cpu") == device.Choice("cpu")
    with pytest.raises(ValueError, match="BGE_DEVICE='tpu' is not one of cuda, cpu, auto"):
        device.resolve("tpu")
