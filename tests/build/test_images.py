"""Real builds of the shipped profiles on both local backends, amd64 and arm64 (under qemu): each image has
the asked architecture (its config, and a RUN step's `uname -m`), runs as uid 10001 and answers its HEALTHCHECK.
The tiny requirement set (fastapi + uvicorn) comes from a wheelhouse and serves a placeholder app with the
real entrypoint and HEALTHCHECK; the real server is built and served by the slow wheelhouse test."""

from __future__ import annotations

import pytest
from buildhelp import PLACEHOLDER_APP, TINY, UNAME_TEMPLATE, build_with_report, run_and_probe

MACHINE = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
PROFILES = ["cpu-slim", "external-model", "gpu"]


def _case(profile: str, backend: str, platform: str):
    slow = platform != "linux/amd64" or profile == "gpu"  # qemu and apt-get in both stages take minutes
    marks = [pytest.mark.engine] + ([pytest.mark.slow] if slow else [])
    return pytest.param(profile, backend, platform, marks=marks, id=f"{profile}-{backend}-{platform.split('/')[1]}")


CASES = [_case(p, b, pl) for p in PROFILES for b in ("engine", "buildkit") for pl in ("linux/amd64", "linux/arm64")]


@pytest.mark.parametrize("profile,backend,platform", CASES)
def test_profile_builds_runs_non_root_and_is_healthy(profile, backend, platform, tmp_path, docker_api, tiny_wheels,
                                                     minilm_dir, image_name):
    sets = [f"requirements=[{','.join(TINY)}]", f"template={UNAME_TEMPLATE}", "server.healthcheck_interval=1",
            f"app_dir={PLACEHOLDER_APP}"]
    if profile != "external-model":
        sets.append(f"model={minilm_dir}")
    args = ["-p", profile, "--engine", backend, "--platform", platform, "--wheelhouse", str(tiny_wheels(platform)),
            "-t", f"{image_name}:1.0"]
    for item in sets:
        args += ["--set", item]
    report = build_with_report(tmp_path, *args)

    assert report["engine"] == backend
    (result,) = report["platforms"]
    arch = platform.split("/")[1]
    assert result["tags"][0] == f"{image_name}:1.0-{arch}"
    inspected = docker_api.inspect_image(result["tags"][0])
    assert inspected["Id"] == result["image_id"]
    assert inspected["Architecture"] == arch == result["architecture"]
    assert result["size"] == inspected["Size"] and result["layers"] == len(inspected["RootFS"]["Layers"])
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"] == ["CMD", "/opt/venv/bin/python", "/opt/app/healthcheck.py"]
    assert config["Labels"]["org.opencontainers.image.version"] == "1.0"
    assert config["Labels"]["org.opencontainers.image.created"] == report["labels"]["org.opencontainers.image.created"]
    assert config["Labels"]["io.bgeimg.profile"] == ("cuda-runtime" if profile == "gpu" else profile)

    # external-model carries no weights: they are mounted at run time, as its users do.
    mounts = {str(minilm_dir): "/models"} if profile == "external-model" else None
    health, outputs = run_and_probe(
        docker_api, result["tags"][0], platform,
        [["id", "-u"], ["cat", "/etc/bgeimg-build-arch"], ["sh", "-c", "ls $BGE_MODEL_DIR | sort | tr '\\n' ' '"]],
        mounts)
    assert health == "healthy"
    uid, machine, model_files = outputs
    assert uid == "10001"
    assert machine == MACHINE[platform]  # printed by a RUN step of this very build
    assert "config.json" in model_files and "model.safetensors" in model_files
    if profile == "external-model":
        assert config["Env"].count("BGE_MODEL_BAKED=0") == 1


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["engine", "buildkit"])
def test_two_platforms_in_one_build(backend, tmp_path, docker_api, wheelhouse_factory, image_name):
    # One wheelhouse serving both platforms: pure-Python wheels plus each platform's binary ones.
    amd, arm = wheelhouse_factory(TINY, "linux/amd64"), wheelhouse_factory(TINY, "linux/arm64")
    both = tmp_path / "wheels"
    both.mkdir()
    for whl in [*amd.glob("*.whl"), *arm.glob("*.whl")]:
        if not (both / whl.name).exists():
            (both / whl.name).hardlink_to(whl)
    report = build_with_report(
        tmp_path, "-p", "external-model", "--engine", backend, "--platform", "linux/amd64,linux/arm64",
        "--wheelhouse", str(both), "-t", f"{image_name}:2", "--set", f"requirements=[{','.join(TINY)}]")
    assert [r["platform"] for r in report["platforms"]] == ["linux/amd64", "linux/arm64"]
    amd64, arm64 = report["platforms"]
    assert amd64["tags"] == [f"{image_name}:2-amd64", f"{image_name}:2"]  # the host platform gets the plain tag
    assert arm64["tags"] == [f"{image_name}:2-arm64"]
    assert docker_api.inspect_image(f"{image_name}:2")["Id"] == amd64["image_id"]
    assert docker_api.inspect_image(f"{image_name}:2-arm64")["Architecture"] == "arm64"
    assert amd64["image_id"] != arm64["image_id"]
    assert all(r["seconds"] > 0 for r in report["platforms"])
