"""`docker buildx build`: BuildKit with several platforms in one call, `--push`, cache export and secrets.

Used where the plugin answers `docker buildx version`. The builder (`--builder NAME`, else the current one) is
asked what it is (`docker buildx inspect`): several platforms go into one call when it can build them together
(any driver but `docker`, or the docker driver on a containerd image store), with `--push` (an index) or `--load`
(a multi-platform local image). Otherwise each platform is built and `--load`ed in turn, and the build assembles
the index the way `bgeimg push` does. The digest comes from `--metadata-file`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bgeimg.build import builders
from bgeimg.build.backends import progress as plain
from bgeimg.build.backends.base import Backend, BuildError, BuildEvent, BuildRequest, Capabilities, StepLog
from bgeimg.errors import BgeimgError
from bgeimg.oci.docker import DOCKER_CLI, api_client


class BuildxEngine(Backend):
    name = "buildx"
    syntax = "buildkit"
    capabilities = Capabilities(multi_platform=True, push=True, cache_export=True, secrets=True)
    missing = ("`docker buildx version` does not answer",
               "install the docker-buildx plugin (apt-get install docker-buildx), or use --engine buildkit or "
               "--engine engine")

    def __init__(self, docker: str = DOCKER_CLI, builder: str | None = None):
        self.docker = docker
        self.builder_name = builder
        self._builder: builders.Builder | None = None
        self.metadata: list[dict] = []  # buildx's --metadata-file of each call, in order

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

    # -------------------------------------------------------------- what the builder can do

    def builder(self) -> builders.Builder:
        """The builder this build uses (BuilderNotFound for an unknown `--builder`)."""
        if self._builder is None:
            self._builder = builders.inspect(self.docker, self.builder_name)
        return self._builder

    def image_store(self) -> str:
        try:
            return builders.image_store(api_client().info())
        except Exception:
            return "classic"

    def rewrites_timestamps(self) -> bool:
        builder = self.builder()
        if builder.driver == "docker":  # the engine's own BuildKit: Docker 26 vendors BuildKit 0.13
            try:
                return int(str(api_client().version().get("Version", "0")).split(".")[0]) >= 26
            except Exception:
                return False
        match = re.match(r"v?(\d+)\.(\d+)", builder.buildkit)
        return match is not None and (int(match.group(1)), int(match.group(2))) >= (0, 13)

    def served_platforms(self) -> tuple[str, ...] | None:
        return self.builder().platforms or None

    def plan(self, platforms: list[str], push: bool) -> tuple[list[list[str]], str | None]:
        if len(platforms) < 2:
            return [platforms], None
        builder = self.builder()
        store = self.image_store()
        if builders.builds_many_at_once(builder, store):
            return [platforms], None
        how = "and assembling the index as bgeimg push does" if push else "each loaded as NAME:TAG-ARCH"
        return [[p] for p in platforms], (
            f"buildx builder {builder.name} (docker driver) on a {store} image store builds one platform per call: "
            f"building {', '.join(platforms)} in turn, {how}")

    def unsupported(self, request: BuildRequest) -> str | None:
        """Beyond the backend's capabilities: the docker driver on a classic image store exports no cache."""
        if request.cache_to:
            try:
                builder, store = self.builder(), self.image_store()
            except BgeimgError:
                return super().unsupported(request)  # no builder to ask: the build itself will say
            if not builders.builds_many_at_once(builder, store):
                return f"--cache-to with buildx builder {builder.name} (docker driver) on a classic image store"
        return super().unsupported(request)

    def loads_index(self, platforms: list[str]) -> bool:
        """Whether `--load` of these platforms in one call gives a multi-platform local image."""
        return len(platforms) > 1

    def _is_context(self, request: BuildRequest) -> bool:
        """A docker-driver builder named by `--builder` is a docker context: buildx wants `docker --context`."""
        return bool(request.builder) and self._driver() == "docker"

    def _cli(self, request: BuildRequest) -> list[str]:
        return [self.docker, "--context", request.builder] if self._is_context(request) and request.builder \
            else [self.docker]

    def _driver(self) -> str:
        try:
            return self.builder().driver
        except Exception:
            return "docker"

    # -------------------------------------------------------------- the build

    def command(self, request: BuildRequest, metadata_file: Path, oci_archive: Path | None = None) -> list[str]:
        """The exact command line (unit-tested)."""
        mode = "rawjson" if request.raw_progress else "plain"
        cmd = [*self._cli(request), "buildx", "build", f"--progress={mode}", "--platform", ",".join(request.platforms),
               "--file", str(request.context_dir / request.dockerfile), "--metadata-file", str(metadata_file)]
        if request.builder and not self._is_context(request):
            cmd += ["--builder", request.builder]
        cmd += plain.cli_args(request)
        for ref in request.cache_to:
            cmd += ["--cache-to", ref]
        if request.provenance is not None:
            cmd.append(f"--provenance={request.provenance}")
        if request.sbom is not None:
            cmd.append(f"--sbom={request.sbom}")
        if request.no_cache:
            cmd.append("--no-cache")
        if request.source_date_epoch is not None:
            # BuildKit >= 0.13 sets every file's and the config's time to the epoch (rewrite-timestamp). The
            # docker driver's own exporters always unpack, which that option refuses: there the image goes to an
            # OCI archive that `build` then loads (and pushes) as it is, digests unchanged.
            cmd += ["--build-arg", f"SOURCE_DATE_EPOCH={request.source_date_epoch}"]
            if self._driver() == "docker":
                cmd += ["--output", f"type=oci,rewrite-timestamp=true,dest={oci_archive}"]
            else:
                kind = "image,push=true" if request.push else "docker"
                cmd += ["--output", f"type={kind},rewrite-timestamp=true"]
        else:
            cmd.append("--push" if request.push else "--load")
        cmd.append(str(request.context_dir))
        return cmd

    def build(self, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        with tempfile.TemporaryDirectory(prefix="bgeimg-meta-") as tmp:
            meta_file, archive = Path(tmp) / "metadata.json", Path(tmp) / "image.oci.tar"
            parser = plain.RawJsonProgress if request.raw_progress else plain.PlainProgress
            yield from plain.run(self.command(request, meta_file, archive), log, parser=parser)
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
            if archive.is_file():
                yield from self._load_and_push(archive, request, log)
        self.metadata.append(meta)
        digest = meta.get("containerimage.digest")
        image_id = digest if request.push else meta.get("containerimage.config.digest", digest)
        if not request.push and request.tags:  # what the engine calls it (a containerd store: the index digest)
            try:
                image_id = api_client().inspect_image(request.tags[0])["Id"]
            except Exception:
                pass
        if not image_id:
            raise BuildError("buildx finished without a digest in its metadata file", steps=log.steps)
        yield BuildEvent("done", image_id=image_id)

    def _load_and_push(self, archive: Path, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        """The OCI archive of a reproducible build into the engine (a containerd store keeps its digests), tagged
        with every tag, then pushed when asked: `docker push` of an index pushes every platform."""
        cli = self._cli(request)
        steps = [("load", [*cli, "load", "-i", str(archive)])]
        steps += [("tag", [*cli, "tag", request.tags[0], tag]) for tag in request.tags[1:]]
        if request.push:
            steps += [("push", [*cli, "push", "--quiet", tag]) for tag in request.tags]
        for what, cmd in steps:
            yield log.step(f"{what} {cmd[-1] if what != 'load' else request.tags[0]}")
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                text = " ".join((out.stderr or out.stdout).split())
                raw = f"failed to push {cmd[-1]}: {text}" if what == "push" else text
                raise BuildError(f"docker {what} failed: {text[:300]}", raw=raw, steps=log.steps)

    def write_metadata(self, path: Path) -> None:
        """`--metadata-file`: buildx's own format (one call's object; a per-platform plan keys them by platform)."""
        data = self.metadata[0] if len(self.metadata) == 1 else {str(i): m for i, m in enumerate(self.metadata)}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

