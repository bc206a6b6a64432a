"""Every build failure a user can meet ends in one clear line, the right exit code and no traceback.
Run through the CLI in a fresh process, against the real engine where the failure comes from the engine."""

from __future__ import annotations

import pytest
from buildhelp import DATA, TINY, assert_one_line_error, run_cli

REQS = f"requirements=[{','.join(TINY)}]"


def test_no_engine_reachable(tmp_path):
    dead = f"unix://{tmp_path}/no-docker.sock"
    proc = run_cli("build", "-p", "external-model", env={"DOCKER_HOST": dead})
    line = assert_one_line_error(proc, 3)
    assert f"no Docker engine answers at {dead}" in line
    assert "DOCKER_HOST" in line and "start dockerd" in line


def test_unknown_platform():
    line = assert_one_line_error(run_cli("build", "-p", "external-model", "--platform", "linux/amd64,linux/sparc"), 2)
    assert "unknown or unsupported platform 'linux/sparc'" in line and "linux/arm64" in line


def test_no_qemu_for_a_foreign_platform(tmp_path):
    # An empty directory stands for a host where binfmt_misc has no qemu handler registered.
    proc = run_cli("build", "-p", "external-model", "--platform", "linux/arm64",
                   env={"BGEIMG_BINFMT_DIR": str(tmp_path)})
    line = assert_one_line_error(proc, 2)
    assert "cannot build linux/arm64" in line and "no qemu emulation" in line
    assert "apt-get install qemu-user-static binfmt-support" in line and "tonistiigi/binfmt" in line


def test_unknown_engine_name():
    line = assert_one_line_error(run_cli("build", "--engine", "podman"), 2)
    assert "--engine 'podman'" in line and "auto, engine, buildkit, buildx" in line


@pytest.mark.engine
def test_buildx_asked_for_but_missing(docker_api):
    # The test bed's clients have no buildx plugin: this is the real answer of `docker buildx version`.
    line = assert_one_line_error(run_cli("build", "-p", "external-model", "--engine", "buildx"), 3)
    assert "--engine buildx asked for" in line and "buildx version" in line and "docker-buildx" in line


BACKENDS = ["engine", "buildkit"]


@pytest.mark.engine
@pytest.mark.parametrize("backend", BACKENDS)
def test_base_image_not_found(backend, registry, tiny_wheels, image_name):
    proc = run_cli("build", "-p", "external-model", "--set", REQS, "--set", "base_image=python:3.99-slim",
                   "--registry-mirror", registry, "--wheelhouse", str(tiny_wheels()), "--engine", backend,
                   "-t", f"{image_name}:x")
    line = assert_one_line_error(proc, 2)
    assert f"base image {registry}/library/python:3.99-slim not found" in line
    assert f"through the mirror {registry}" in line


@pytest.mark.engine
@pytest.mark.parametrize("backend", BACKENDS)
def test_base_image_not_found_through_the_daemon_mirror(backend, registry, tiny_wheels, image_name):
    proc = run_cli("build", "-p", "external-model", "--set", REQS, "--set", "base_image=python:3.99-slim",
                   "--wheelhouse", str(tiny_wheels()), "--engine", backend, "-t", f"{image_name}:x")
    line = assert_one_line_error(proc, 2)
    assert "base image python:3.99-slim not found" in line
    assert registry in line  # the daemon's own --registry-mirror, read from `docker info`


@pytest.mark.engine
@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_run_step(backend, tiny_wheels, image_name):
    proc = run_cli("build", "-p", "external-model", "--set", REQS, "--set", f"template={DATA / 'failing.Dockerfile.j2'}",
                   "--wheelhouse", str(tiny_wheels()), "--engine", backend, "-t", f"{image_name}:x")
    line = assert_one_line_error(proc, 3)
    assert 'build failed at `' in line and 'RUN echo "preparing the app"' in line
    assert "exit code: 7" in line or "non-zero code: 7" in line
    assert line.endswith("last output: preparing the app | bgeimg-test: the last words")


@pytest.mark.engine
@pytest.mark.parametrize("backend", BACKENDS)
def test_wheelhouse_missing_a_package(backend, tiny_wheels, image_name):
    proc = run_cli("build", "-p", "external-model", "--set", f"requirements=[{','.join(TINY)},requests]",
                   "--wheelhouse", str(tiny_wheels()), "--engine", backend, "-t", f"{image_name}:x")
    line = assert_one_line_error(proc, 2)
    assert "the wheelhouse has no wheel for requests (linux/amd64)" in line
    assert "pip download --only-binary=:all: requests -d WHEELHOUSE" in line


@pytest.mark.engine
@pytest.mark.parametrize("backend", BACKENDS)
def test_platform_the_base_image_does_not_offer(backend, tmp_path, tiny_wheels, image_name):
    # Pretend s390x emulation is registered, so the check that remains is the base image's own index.
    (tmp_path / "qemu-s390x").write_text("enabled\ninterpreter /usr/bin/qemu-s390x-static\n")
    proc = run_cli("build", "-p", "external-model", "--set", REQS, "--platform", "linux/s390x",
                   "--wheelhouse", str(tiny_wheels()), "--engine", backend, "-t", f"{image_name}:x",
                   env={"BGEIMG_BINFMT_DIR": str(tmp_path)})
    line = assert_one_line_error(proc, 2)
    assert "base image python:3.11-slim has no linux/s390x variant" in line


def test_missing_wheelhouse_and_ca_bundle_are_bad_input(tmp_path):
    line = assert_one_line_error(run_cli("build", "--wheelhouse", str(tmp_path / "none")), 2)
    assert f"wheelhouse {tmp_path / 'none'} is not a directory" in line
    line = assert_one_line_error(run_cli("build", "--ca-bundle", str(tmp_path / "ca.pem")), 2)
    assert f"CA bundle {tmp_path / 'ca.pem'} is not a file" in line


@pytest.mark.engine
def test_push_without_buildx_points_to_bgeimg_push(docker_api):
    line = assert_one_line_error(run_cli("build", "-p", "external-model", "--engine", "engine", "--push"), 2)
    assert "--push needs the buildx backend (this build uses engine)" in line and "bgeimg push" in line
