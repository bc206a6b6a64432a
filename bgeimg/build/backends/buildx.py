"""`docker buildx build`: BuildKit with several platforms in one call, `--push`, cache export and secrets.

Used where the plugin answers `docker buildx version`. Several platforms are built in one call only when the
result is pushed (a multi-platform image cannot be loaded into the classic image store); otherwise each
platform is built and `--load`ed in turn like the other backends. The digest comes from `--metadata-file`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bgeimg.build.backends import progress as plain
from bgeimg.build.backends.base import BuildError, BuildEvent, BuildRequest, Capabilities, Engine, StepLog
from bgeimg.oci.docker import DOCKER_CLI


class BuildxEngine(Engine):
    name = "buildx"
    syntax = "buildkit"
    capabilities = Capabilities(multi_platform=True, push=True, cache_export=True, secrets=True)
    missing = ("`docker buildx version` does not answer",
               "install the docker-buildx plugin (apt-get install docker-buildx), or use --engine buildkit or "
               "--engine engine")

    def __init__(self, docker: str = DOCKER_CLI):
        self.docker = docker

    def version(self) -> str | None:
        """`docker buildx version`'s answer, or None when the plugin is missing."""
        try:
            out = subprocess.run([self.docker, "buildx", "version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None

    def auto_reason(self) -> str:
        return "`docker buildx version` answers"

    def available(self) -> bool:
        return self.version() is not None

    def command(self, request: BuildRequest, metadata_file: Path) -> list[str]:
        """The exact command line (unit-tested)."""
        cmd = [self.docker, "buildx", "build", "--progress=plain", "--platform", ",".join(request.platforms),
               "--file", str(request.context_dir / request.dockerfile), "--metadata-file", str(metadata_file)]
        cmd += plain.cli_args(request)
        for ref in request.cache_to:
            cmd += ["--cache-to", ref]
        if request.no_cache:
            cmd.append("--no-cache")
        cmd.append("--push" if request.push else "--load")
        cmd.append(str(request.context_dir))
        return cmd

    def build(self, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        with tempfile.TemporaryDirectory(prefix="bgeimg-meta-") as tmp:
            meta_file = Path(tmp) / "metadata.json"
            yield from plain.run(self.command(request, meta_file), log)
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        digest = meta.get("containerimage.digest")
        image_id = digest if request.push else meta.get("containerimage.config.digest", digest)
        if not image_id:
            raise BuildError("buildx finished without a digest in its metadata file", steps=log.steps)
        yield BuildEvent("done", image_id=image_id)
