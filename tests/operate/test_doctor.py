"""doctor: each check passing on the real test bed and failing when its part is missing."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.operate import doctor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "context"))
from fake_hub import FakeHub, FakeRepo  # noqa: E402

pytestmark = pytest.mark.engine


def run(*args: str, **env: str) -> tuple[int, list[dict]]:
    result = subprocess.run([sys.executable, "-m", "bgeimg", "doctor", "--json", *args], capture_output=True,
                            text=True, env={**os.environ, **env})
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in checks}


def disk_ok(checks: list[dict]) -> bool:
    """Free disk is this machine's, not the tests': each disk check must report it truly and judge it by its need."""
    disks = [c for c in checks if c["name"].startswith("disk ")]
    assert disks
    for c in disks:
        m = re.fullmatch(r"([0-9.]+) GB free at (.+) \(need ([0-9]+) GB\)", c["detail"])
        assert m, c
        free, path, need = float(m[1]), m[2], float(m[3])
        assert abs(free - shutil.disk_usage(path).free / 1e9) < 1.0 and (c["ok"] == (free >= need) or abs(free - need) < 0.1), c
    return all(c["ok"] for c in disks)


def test_everything_needed_passes_on_the_test_bed(docker_api, registry) -> None:
    code, checks = run("-p", "external-model", "--platform", "linux/amd64,linux/arm64", "--registry", registry)
    found = by_name(checks)
    assert all(c["ok"] for c in checks if c["required"] and not c["name"].startswith("disk ")), checks
    assert code == (0 if disk_ok(checks) else 1), checks
    assert found["engine"]["ok"] and found["engine"]["detail"].startswith("Docker 20.10")
    assert found["api version"]["ok"] and found["emulation linux/arm64"]["ok"]
    assert found[f"registry {registry}"]["ok"] and "disk engine data" in found
    assert found["buildkit"]["ok"]
    assert not found["hf endpoint"]["required"]  # external-model downloads at run time, not at build time


def test_engine_stopped(tmp_path) -> None:
    code, checks = run("-p", "external-model", DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    engine = by_name(checks)["engine"]
    assert code == 1 and not engine["ok"] and "DOCKER_HOST" in engine["fix"]


def test_registry_down(docker_api) -> None:
    code, checks = run("-p", "external-model", "--registry", "127.0.0.1:9")
    reg = by_name(checks)["registry 127.0.0.1:9"]
    assert code == 1 and not reg["ok"] and "127.0.0.1:9" in reg["detail"]


def test_no_binfmt_entry(docker_api, tmp_path) -> None:
    code, checks = run("-p", "external-model", "--platform", "linux/amd64,linux/arm64",
                       BGEIMG_BINFMT_DIR=str(tmp_path))
    emu = by_name(checks)["emulation linux/arm64"]
    assert code == 1 and not emu["ok"] and "qemu-user-static" in emu["fix"]


def test_hf_endpoint_needed_for_hf_models(docker_api, minilm_dir, tmp_path) -> None:
    code, checks = run("-p", "cpu-slim", HF_ENDPOINT="http://127.0.0.1:9")
    assert code == 1 and not by_name(checks)["hf endpoint"]["ok"] and by_name(checks)["hf endpoint"]["required"]
    hub = FakeHub(repos={"BAAI/x": FakeRepo(minilm_dir, "0" * 40)}).start()  # the local hub test double
    try:
        code, checks = run("-p", "cpu-slim", HF_ENDPOINT=hub.url)
    finally:
        hub.stop()
    hf = by_name(checks)["hf endpoint"]
    assert hf["ok"] and hf["detail"].startswith(hub.url) and code == (0 if disk_ok(checks) else 1)


def test_login_state_names_the_user_never_the_secret(docker_api, registry, tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry: {"auth": base64.b64encode(
        b"ci-bot:hunter2-secret").decode()}}}))
    result = subprocess.run([sys.executable, "-m", "bgeimg", "doctor", "-p", "external-model", "--registry", registry],
                            capture_output=True, text=True, env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    assert f"login {registry}: logged in as ci-bot" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def test_gpu_runtime_check_reads_the_engine_runtimes() -> None:
    gpu = profiles.resolve("gpu").profile
    assert doctor.gpu_check(gpu, {"Runtimes": {"runc": {}, "nvidia": {}}})[0].ok
    missing = doctor.gpu_check(gpu, {"Runtimes": {"runc": {}}})[0]
    assert not missing.ok and "nvidia-container-toolkit" in missing.fix
    assert doctor.gpu_check(profiles.resolve("cpu-slim").profile, {}) == []
