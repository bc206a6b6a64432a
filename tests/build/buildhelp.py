"""Plain helpers for the build tests (fixtures live in conftest.py): the tiny requirement set, running the CLI
as a user would, waiting for a container's HEALTHCHECK."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
PREFIX = "bgeimg-test-build"
TINY = ["fastapi", "uvicorn"]  # all the placeholder server needs
UNAME_TEMPLATE = DATA / "uname.Dockerfile.j2"
PLACEHOLDER_APP = DATA / "placeholder_server"  # answers /health with fastapi + uvicorn only (no torch)


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


def build_with_report(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """`bgeimg build ARGS --report R` must succeed; returns the report it wrote."""
    import json

    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    if "--context" not in args:  # keep contexts in the test's tmp dir, not the user's cache
        args = (*args, "--context", str(tmp_path / "context"))
    proc = run_cli("build", *args, "--report", str(report), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads(report.read_text())


def run_and_probe(docker_api, image: str, platform: str, commands: list[list[str]],
                  mounts: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Start the image as it ships (with read-only `mounts` host dir -> container dir), wait for its HEALTHCHECK,
    run `commands` inside; returns (health, outputs). The container is always removed."""
    binds = {src: {"bind": dst, "mode": "ro"} for src, dst in (mounts or {}).items()}
    host_config = docker_api.create_host_config(binds=binds) if binds else None
    container = docker_api.create_container(image, platform=platform, host_config=host_config,
                                            volumes=list((mounts or {}).values()) or None)["Id"]
    try:
        docker_api.start(container)
        health = wait_healthy(docker_api, container)
        if health != "healthy":
            return f"{health}; logs: {docker_api.logs(container).decode()[-1500:]}", []
        outputs = []
        for cmd in commands:
            exec_id = docker_api.exec_create(container, cmd)["Id"]
            outputs.append(docker_api.exec_start(exec_id).decode().strip())
        return health, outputs
    finally:
        docker_api.remove_container(container, force=True)
