"""Helpers for the build tests: the tiny requirement set, running the CLI as a user would, building through
the Python API, and removing only the images these tests created (others share the engine)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
PREFIX = "bgeimg-test-build"
TINY = ["fastapi", "uvicorn"]  # all the placeholder server needs
UNAME_TEMPLATE = DATA / "uname.Dockerfile.j2"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`bgeimg ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess, exit_code: int) -> str:
    """A user-facing failure: the given exit code, no traceback, exactly one `error:` line on stderr."""
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="session")
def tiny_wheels(wheelhouse_factory):
    """platform -> a wheelhouse of fastapi + uvicorn for that platform (real pip download, cached)."""
    return lambda platform="linux/amd64": wheelhouse_factory(TINY, platform)


@pytest.fixture
def image_name(docker_api):
    """A unique image name under the tests' prefix; every tag made under it is removed afterwards."""
    name = f"{PREFIX}/t{uuid.uuid4().hex[:8]}"
    yield name
    for image in docker_api.images(name=name):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(name + ":"):
                try:
                    docker_api.remove_image(tag, noprune=False)
                except Exception:
                    pass  # still used by a container of this test run being removed; harmless


def wait_healthy(docker_api, container_id: str, timeout: float = 180) -> str:
    """Poll the container's HEALTHCHECK state until healthy (or unhealthy/exited); returns the last status."""
    deadline = time.monotonic() + timeout
    status = "none"
    while time.monotonic() < deadline:
        state = docker_api.inspect_container(container_id)["State"]
        status = (state.get("Health") or {}).get("Status", "none")
        if status in ("healthy", "unhealthy") or not state.get("Running"):
            return status if state.get("Running") else f"exited({state.get('ExitCode')}): {status}"
        time.sleep(1)
    return status
