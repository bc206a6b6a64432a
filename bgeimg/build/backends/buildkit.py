"""BuildKit through the plain `docker build` client (`DOCKER_BUILDKIT=1`), for hosts without buildx.

Debian's docker.io 20.10 client is one: it speaks BuildKit (cache mounts, secrets) but has no buildx plugin,
so it builds one platform per call and loads the result into the daemon; `--iidfile` gives the image id.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bgeimg.build.backends import progress as plain
from bgeimg.build.backends.base import Backend, BuildEvent, BuildRequest, Capabilities, StepLog
from bgeimg.oci.docker import DOCKER_CLI, api_client


class BuildKitEngine(Backend):
    name = "buildkit"
    syntax = "buildkit"
    capabilities = Capabilities(secrets=True)
    missing = ("`docker build` of this client does not support BuildKit",
               "install a Docker client >= 18.09 (Debian: docker.io), or use --engine engine")

    def __init__(self, docker: str = DOCKER_CLI):
        self.docker = docker

    def auto_reason(self) -> str:
        return f"no buildx plugin; `{self.docker} build` speaks BuildKit"

    def available(self) -> bool:
        """The client exists and its `build` knows `--secret` (only BuildKit-capable clients do)."""
        try:
            out = subprocess.run([self.docker, "build", "--help"], capture_output=True, text=True, timeout=20,
                                 env={**os.environ, "DOCKER_BUILDKIT": "1"})  # DOCKER_CONFIG: where plugins are
        except (OSError, subprocess.TimeoutExpired):
            return False
        if out.returncode != 0 or "--secret" not in out.stdout:
            return False
        try:
            api_client()
        except Exception:
            return False
        return True

    def command(self, request: BuildRequest, iidfile: Path) -> list[str]:
        """The exact command line (unit-tested)."""
        cmd = [self.docker, "build", "--progress=plain", "--platform", request.platforms[0],
               "--file", str(request.context_dir / request.dockerfile), "--iidfile", str(iidfile)]
        cmd += plain.cli_args(request)
        if request.no_cache:
            cmd.append("--no-cache")
        cmd.append(str(request.context_dir))
        return cmd

    def build(self, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        with tempfile.TemporaryDirectory(prefix="bgeimg-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            yield from plain.run(self.command(request, iidfile), log, env={"DOCKER_BUILDKIT": "1"})
            image_id = iidfile.read_text().strip()
        yield BuildEvent("done", image_id=image_id)
