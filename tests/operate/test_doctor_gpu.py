"""doctor -p gpu on the host: the NVIDIA runtime registered with the engine, and nvidia-smi's driver against the
image's CUDA. This machine has no GPU: nvidia-smi is a test double (a script on PATH printing what the real one
prints for --query-gpu=driver_version --format=csv,noheader)."""

from __future__ import annotations

import pytest

from bgeimg import profile as profiles
from bgeimg.operate import doctor


@pytest.fixture
def nvidia_smi_double(tmp_path, monkeypatch):
    def install(stdout: str, code: int = 0) -> None:
        (tmp_path / "nvidia-smi.out").write_text(stdout)
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\ncat '{tmp_path}/nvidia-smi.out'\nexit {code}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")  # no nvidia-smi until a test installs one
    return install


def test_no_driver_says_what_to_install(nvidia_smi_double) -> None:
    check = doctor.driver_check(profiles.resolve("gpu").profile)
    assert not check.ok and not check.required
    assert check.detail == "nvidia-smi not found: no NVIDIA driver on this host (the image needs >= 580.65.06 for " \
                           "CUDA 13.0)"
    assert check.fix == "install the NVIDIA driver 580.65.06 or newer (on a GPU host)"


def test_old_driver_names_both_versions_and_the_older_flavour(nvidia_smi_double) -> None:
    nvidia_smi_double("550.54.14\n")
    check = doctor.driver_check(profiles.resolve("gpu").profile)
    assert not check.ok
    assert check.detail == "driver 550.54.14 is older than the image needs (>= 580.65.06 for CUDA 13.0)"
    assert check.fix == "upgrade the NVIDIA driver to 580.65.06 or newer, or build for it with --set cuda=12.8"
    # the same driver runs the 12.8 flavour
    assert doctor.driver_check(profiles.resolve("gpu", sets=["cuda=12.8"]).profile).ok


def test_new_enough_driver_and_a_failing_nvidia_smi(nvidia_smi_double) -> None:
    nvidia_smi_double("580.95.05\n580.95.05\n")  # one line per GPU
    ok = doctor.driver_check(profiles.resolve("gpu").profile)
    assert ok.ok and ok.detail == "driver 580.95.05 (>= 580.65.06 for CUDA 13.0)"
    nvidia_smi_double("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9)
    failed = doctor.driver_check(profiles.resolve("gpu").profile)
    assert not failed.ok and failed.detail.startswith("nvidia-smi failed: NVIDIA-SMI has failed because")


def test_gpu_checks_are_two_lines_and_none_for_cpu(nvidia_smi_double) -> None:
    checks = doctor.gpu_check(profiles.resolve("gpu").profile, {"Runtimes": {"runc": {}}})
    assert [c.name for c in checks] == ["nvidia runtime", "nvidia driver"]
    assert doctor.gpu_check(profiles.resolve("cpu-slim").profile, {}) == []
