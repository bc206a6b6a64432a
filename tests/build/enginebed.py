"""The test bed's two Docker engines as plain values, for tests that run bgeimg against each.

`docker20` is the shared Debian Docker 20.10 (classic image store, no buildx for the default client);
`docker26` is the second daemon `scripts/testbed.sh up --modern` starts (Docker 26, containerd image store,
buildx 0.13). The buildx plugin lives in one DOCKER_CONFIG (`BGEIMG_TEST_BUILDX_CONFIG`): a test gets buildx
on an engine only by asking for it, so `--engine auto` on the default 20.10 client stays what users of
Debian 12 see.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TESTBED_CACHE = Path(os.environ.get("BGEIMG_TESTBED_CACHE", "/var/cache/bgeimg-testbed"))
DOCKER26_HOST = os.environ.get("BGEIMG_TEST_DOCKER26_HOST", "unix:///var/run/bgeimg-docker26.sock")
DOCKER26_CLI = os.environ.get("BGEIMG_TEST_DOCKER26_CLI", str(TESTBED_CACHE / "docker26/root/usr/bin/docker"))
BUILDX_CONFIG = os.environ.get("BGEIMG_TEST_BUILDX_CONFIG", str(TESTBED_CACHE / "docker26/config"))
NO_PLUGINS = TESTBED_CACHE / "docker-config-no-plugins"  # a DOCKER_CONFIG without cli-plugins/


@dataclass(frozen=True)
class BedEngine:
    """One engine of the test bed: its socket, the client made for it, and whether it stores images in
    containerd (multi-platform images load locally only there)."""

    name: str  # docker20 | docker26
    host: str  # DOCKER_HOST
    cli: str  # the docker client binary (BGEIMG_DOCKER_CLI)
    containerd_store: bool

    def env(self, *, buildx: bool) -> dict[str, str]:
        """The environment bgeimg runs under on this engine, with or without the buildx plugin."""
        NO_PLUGINS.mkdir(parents=True, exist_ok=True)
        return {"DOCKER_HOST": self.host, "BGEIMG_DOCKER_CLI": self.cli,
                "DOCKER_CONFIG": BUILDX_CONFIG if buildx else str(NO_PLUGINS)}

    def docker(self, *args: str, buildx: bool = True, check: bool = True, timeout: int = 600,
               input: str | None = None) -> subprocess.CompletedProcess:
        """Run this engine's client (`docker ARGS`), text output captured."""
        env = {**os.environ, **self.env(buildx=buildx)}
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout, env=env,
                              input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.cli} {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def answers(self) -> bool:
        try:
            return self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


DOCKER20 = BedEngine("docker20", os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), "/usr/bin/docker",
                      containerd_store=False)
DOCKER26 = BedEngine("docker26", DOCKER26_HOST, DOCKER26_CLI, containerd_store=True)
ENGINES = {e.name: e for e in (DOCKER20, DOCKER26)}


def _engine(name: str) -> BedEngine:
    engine = ENGINES[name]
    if not engine.answers():
        message = f"{name} does not answer at {engine.host}: run `scripts/testbed.sh up --modern` first"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing test bed is a failure, not a skip)")
        pytest.skip(message)
    return engine


def bed_engine(name: str) -> BedEngine:
    """The engine `name` (docker20 | docker26), skipped or failed like the fixtures when it does not answer."""
    return _engine(name)
