"""The exact command line (or API call) each backend runs, backend template differences, labels and platform
checks. No engine needed: these are the parts a real build cannot show precisely."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bgeimg.build import run as builds
from bgeimg.build.backends.base import BuildRequest, PlatformError, StepLog
from bgeimg.build.backends.buildkit import BuildKitEngine
from bgeimg.build.backends.buildx import BuildxEngine
from bgeimg.build.backends.dockerapi import DockerApiEngine, from_images
from bgeimg.build.backends.progress import PlainProgress
from bgeimg.context import render as rendering
from bgeimg.profile import resolve


def _request(ctx: Path, **extra) -> BuildRequest:
    values = dict(context_dir=ctx, tags=("bge:1-amd64", "bge:1"), platforms=("linux/amd64",),
                  build_args={"PIP_INDEX_URL": "https://mirror.example/simple"},
                  labels={"org.opencontainers.image.version": "1"})
    values.update(extra)
    return BuildRequest(**values)


def test_engine_api_call(tmp_path):
    kwargs = DockerApiEngine(client=object()).build_kwargs(_request(tmp_path, cache_from=("bge:0",)))
    assert kwargs == {
        "path": str(tmp_path), "dockerfile": "Dockerfile", "tag": "bge:1-amd64", "platform": "linux/amd64",
        "buildargs": {"PIP_INDEX_URL": "https://mirror.example/simple"},
        "labels": {"org.opencontainers.image.version": "1"}, "cache_from": ["bge:0"], "nocache": False,
        "rm": True, "forcerm": True, "pull": False, "decode": True,
    }


def test_backends_declare_what_they_cannot_do(tmp_path):
    engine = DockerApiEngine(client=object())
    assert not engine.multi_platform
    assert engine.unsupported(_request(tmp_path, secrets={"ca_bundle": tmp_path / "ca.pem"})) == "build secrets"
    assert engine.unsupported(_request(tmp_path, push=True)) == "--push"
    buildkit = BuildKitEngine()
    assert buildkit.unsupported(_request(tmp_path, cache_to=("type=local,dest=/c",))) == "--cache-to"
    assert buildkit.unsupported(_request(tmp_path, secrets={"ca_bundle": tmp_path / "ca.pem"})) is None
    assert BuildxEngine().unsupported(_request(tmp_path, push=True, cache_to=("type=local,dest=/c",))) is None


def test_buildkit_command(tmp_path):
    cmd = BuildKitEngine("/usr/bin/docker").command(
        _request(tmp_path, secrets={"ca_bundle": Path("/etc/ca.pem")}, no_cache=True), tmp_path / "iid")
    assert cmd == [
        "/usr/bin/docker", "build", "--progress=plain", "--platform", "linux/amd64",
        "--file", f"{tmp_path}/Dockerfile", "--iidfile", f"{tmp_path}/iid",
        "--tag", "bge:1-amd64", "--tag", "bge:1",
        "--build-arg", "PIP_INDEX_URL=https://mirror.example/simple",
        "--label", "org.opencontainers.image.version=1",
        "--secret", "id=ca_bundle,src=/etc/ca.pem", "--no-cache", str(tmp_path),
    ]


def test_buildx_command_multi_platform_push(tmp_path):
    request = _request(tmp_path, tags=("reg.example/bge:1",), platforms=("linux/amd64", "linux/arm64"), push=True,
                       secrets={"ca_bundle": Path("/etc/ca.pem")}, cache_from=("type=registry,ref=reg.example/c",),
                       cache_to=("type=registry,ref=reg.example/c,mode=max",))
    cmd = BuildxEngine("/usr/bin/docker").command(request, tmp_path / "meta.json")
    assert cmd == [
        "/usr/bin/docker", "buildx", "build", "--progress=plain", "--platform", "linux/amd64,linux/arm64",
        "--file", f"{tmp_path}/Dockerfile", "--metadata-file", f"{tmp_path}/meta.json",
        "--tag", "reg.example/bge:1",
        "--build-arg", "PIP_INDEX_URL=https://mirror.example/simple",
        "--label", "org.opencontainers.image.version=1",
        "--secret", "id=ca_bundle,src=/etc/ca.pem",
        "--cache-from", "type=registry,ref=reg.example/c",
        "--cache-to", "type=registry,ref=reg.example/c,mode=max",
        "--push", str(tmp_path),
    ]


def test_buildx_loads_single_platform_and_refuses_loading_several(tmp_path):
    cmd = BuildxEngine("docker").command(_request(tmp_path), tmp_path / "m.json")
    assert cmd[-2:] == ["--load", str(tmp_path)] and "--push" not in cmd


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its instructions (comments dropped)."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in dockerfile.splitlines():
        if line.startswith("FROM "):
            current = line.split()[-1]
            stages[current] = []
        if current and not line.startswith("#"):
            stages[current].append(line)
    return {k: "\n".join(v) for k, v in stages.items()}


@pytest.mark.parametrize("wheelhouse,ca", [(True, True), (False, False)])
def test_template_differs_only_where_the_builder_does(wheelhouse, ca):
    profile = resolve("cpu-slim").profile
    classic = rendering.render_dockerfile(profile, rendering.RenderOptions("classic", wheelhouse, ca))
    buildkit = rendering.render_dockerfile(profile, rendering.RenderOptions("buildkit", wheelhouse, ca))
    assert "--mount=" not in classic
    assert "--mount=type=cache,target=/root/.cache/pip" in buildkit
    assert ("--mount=type=bind,source=wheels" in buildkit) == wheelhouse
    assert ("--mount=type=secret,id=ca_bundle" in buildkit) == ca
    assert ("COPY wheels/" in _stages(classic)["builder"]) == wheelhouse
    assert ("COPY ca-bundle.crt" in _stages(classic)["builder"]) == ca
    for text in (classic, buildkit):
        runtime = _stages(text)["runtime"]  # wheels and the CA never reach the final stage
        assert "wheels" not in runtime and "ca-bundle" not in runtime and "PIP_INDEX_URL" not in runtime
    # Apart from the builder-only lines, both files are the same: the same layers in the same order.
    def common(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if not ln.startswith(("#", "COPY wheels", "COPY ca-bundle", "RUN "))]
    assert common(classic) == common(buildkit)
    pip_classic = next(ln for ln in classic.splitlines() if "pip install" in ln)
    pip_buildkit = next(ln for ln in buildkit.splitlines() if "pip install" in ln)
    assert pip_buildkit.split("pip install", 1)[1].strip() == \
        pip_classic.split("pip install", 1)[1].replace("--no-cache-dir ", "").strip()


def test_mirror_rewrites_from_and_index_is_a_builder_arg():
    profile = resolve("cpu-slim", sets=["mirrors.registry=mirror.example:5000",
                                        "mirrors.pip_index_url=https://pypi.mirror.example/simple"]).profile
    text = rendering.render_dockerfile(profile, rendering.RenderOptions("classic"))
    assert from_images(text) == ["mirror.example:5000/library/python:3.11-slim"]
    stages = _stages(text)
    assert "ARG PIP_INDEX_URL=https://pypi.mirror.example/simple" in stages["builder"]
    assert "PIP_INDEX_URL" not in stages["runtime"]


def test_from_images_skips_stages_and_scratch():
    text = "FROM a:1 AS one\nFROM --platform=$BUILDPLATFORM b AS two\nFROM one\nFROM scratch\nFROM a:1\n"
    assert from_images(text) == ["a:1", "b"]


def test_plain_progress_folds_steps_cache_and_errors():
    log = StepLog()
    progress = PlainProgress(log)
    transcript = [
        "#1 [internal] load build definition from Dockerfile", "#1 DONE 0.0s",
        "#5 [builder 2/5] RUN python3 -m venv /opt/venv", "#5 CACHED",
        "#6 [builder 3/5] RUN pip install x", "#6 0.512 Collecting x", "#6 1.02 ERROR: No matching distribution",
        "#6 ERROR: executor failed running [/bin/sh -c pip install x]: exit code: 1",
        "------", " > [builder 3/5] RUN pip install x:", "------",
        "failed to solve with frontend dockerfile.v0: executor failed running: exit code: 1",
    ]
    for line in transcript:
        list(progress.feed(line))
    assert [(s.name, s.cached) for s in log.steps] == [
        ("[builder 2/5] RUN python3 -m venv /opt/venv", True), ("[builder 3/5] RUN pip install x", False)]
    assert log.steps[1].instruction == "RUN pip install x"
    assert log.steps[1].output == ["Collecting x", "ERROR: No matching distribution"]
    assert progress.errors[-1].startswith("failed to solve")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_build_labels_from_git_without_credentials(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x")
    _git(tmp_path, "remote", "add", "origin", "https://bot:s3cr3t@git.example/team/models.git")
    labels = builds.build_labels(tmp_path, "1.2.0")
    assert labels["org.opencontainers.image.revision"] == _git(tmp_path, "rev-parse", "HEAD")
    assert labels["org.opencontainers.image.source"] == "https://git.example/team/models.git"
    assert "s3cr3t" not in str(labels)
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    created = datetime.fromisoformat(labels["org.opencontainers.image.created"].replace("Z", "+00:00"))
    assert created.tzinfo is not None and abs((datetime.now(timezone.utc) - created).total_seconds()) < 60


def test_build_labels_outside_git(tmp_path):
    labels = builds.build_labels(tmp_path, "dev")
    assert "org.opencontainers.image.revision" not in labels and "org.opencontainers.image.source" not in labels


def test_platforms_parse_and_emulation_check(tmp_path):
    profile = resolve("cpu-slim").profile
    assert builds.parse_platforms("linux/amd64, linux/arm64", profile) == ["linux/amd64", "linux/arm64"]
    assert builds.parse_platforms(None, profile) == ["linux/amd64"]
    with pytest.raises(PlatformError, match="unknown or unsupported platform 'windows/amd64'"):
        builds.parse_platforms("windows/amd64", profile)
    builds.check_emulation(builds.host_platform(), tmp_path)  # the host's own platform needs no qemu
    foreign = "linux/arm64" if builds.host_platform() != "linux/arm64" else "linux/amd64"
    with pytest.raises(PlatformError, match="apt-get install qemu-user-static binfmt-support"):
        builds.check_emulation(foreign, tmp_path)
    entry = tmp_path / f"qemu-{builds.MACHINES[foreign]}"
    entry.write_text("disabled\ninterpreter /usr/bin/qemu\n")
    with pytest.raises(PlatformError):
        builds.check_emulation(foreign, tmp_path)
    entry.write_text("enabled\ninterpreter /usr/bin/qemu\n")
    builds.check_emulation(foreign, tmp_path)


def test_platform_tags():
    assert builds.platform_tag("reg:5000/bge/m3:1.0", "linux/arm64") == "reg:5000/bge/m3:1.0-arm64"
    assert builds.platform_tag("bge", "linux/arm/v7") == "bge:latest-armv7"
