"""The Engine API backend: docker-py's `APIClient.build`, the daemon's classic builder, one platform per call.

The classic builder cannot read BuildKit-only syntax, so it builds the `classic` rendering of the template.
docker-py does not raise when a step fails: the failure arrives inside the JSON stream as
`{"error": ..., "errorDetail": ...}`, so the stream is read to the end and checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bgeimg.build.backends.base import Backend, BuildError, BuildEvent, BuildRequest, Capabilities, StepLog
from bgeimg.oci.docker import api_client
from bgeimg.oci.reference import split_tag

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ID_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


class DockerApiEngine(Backend):
    name = "engine"
    syntax = "classic"
    capabilities = Capabilities()
    missing = ("no Docker engine answers", "start dockerd, or point DOCKER_HOST at a running engine")

    def __init__(self, client=None):
        self._client = client

    @property
    def client(self):
        if self._client is None:
            # A long step under qemu (installing torch for arm64) can be silent for many minutes.
            self._client = api_client(timeout=3600)
        return self._client

    def auto_reason(self) -> str:
        return "neither buildx nor a BuildKit docker client; using the Engine API"

    def available(self) -> bool:
        try:
            _ = self.client
        except Exception:
            return False
        return True

    def build_kwargs(self, request: BuildRequest) -> dict:
        """The exact arguments handed to `APIClient.build` (unit-tested)."""
        return {
            "path": str(request.context_dir),
            "dockerfile": request.dockerfile,
            "tag": request.tags[0],
            "platform": request.platforms[0],
            "buildargs": dict(request.build_args),
            "labels": dict(request.labels),
            "cache_from": list(request.cache_from) or None,
            "nocache": request.no_cache,
            "rm": True,
            "forcerm": True,  # no half-built containers left behind on failure
            "pull": False,  # the daemon pulls a FROM image only when the platform's variant is missing
            "decode": True,
        }

    def build(self, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        kwargs = self.build_kwargs(request)
        yield from self._ensure_bases(request, log)
        image_id: str | None = None
        partial = ""
        try:
            stream = self.client.build(**kwargs)
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    message = (detail.get("message") or chunk.get("error") or "unknown error").strip()
                    raise BuildError(_failure_line(message, log), raw=message, steps=log.steps)
                if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                    image_id = chunk["aux"]["ID"]
                if "status" in chunk:  # pulling a base image
                    status = f"{chunk['status']} {chunk.get('id', '')}".strip()
                    if "Downloading" not in status and "Extracting" not in status:
                        yield log.output(status)
                text = chunk.get("stream")
                if not text:
                    continue
                partial += text
                *lines, partial = partial.split("\n")
                for line in lines:
                    yield from self._line(line.rstrip("\r"), log)
            if partial:
                yield from self._line(partial, log)
        except BuildError:
            raise
        except Exception as exc:  # docker.errors.APIError for a refused request (bad platform, bad context)
            message = getattr(exc, "explanation", None) or str(exc)
            raise BuildError(_failure_line(str(message), log), raw=str(message), steps=log.steps) from None
        if image_id is None:
            raise BuildError("the engine finished without reporting an image id", steps=log.steps)
        for extra in request.tags[1:]:
            repo, tag = split_tag(extra)
            self.client.tag(image_id, repo, tag or "latest")
        yield BuildEvent("done", image_id=image_id)

    def _ensure_bases(self, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        """Make each FROM image's local tag point at the wanted platform's variant before building.

        The 20.10 classic builder uses whatever image a tag points at locally, even of another architecture,
        and then matches cached steps against it (an arm64 build "reusing" amd64 layers). Pulling the right
        variant first, only when the local one differs, keeps both the platform and the cache honest."""
        platform = request.platforms[0]
        arch = platform.split("/")[1]
        for ref in from_images((request.context_dir / request.dockerfile).read_text()):
            try:
                local = self.client.inspect_image(ref)
                if local.get("Architecture") == arch and local.get("Os", "linux") == "linux":
                    continue
            except Exception:  # not present locally: pull it
                pass
            yield log.step(f"FROM {ref} (pulling the {platform} variant)")
            message = None
            try:
                for chunk in self.client.pull(ref, platform=platform, stream=True, decode=True):
                    if "error" in chunk:
                        message = str(chunk["error"])
                        break
            except Exception as exc:  # docker.errors.NotFound / APIError
                message = str(getattr(exc, "explanation", None) or exc)
            if message is None:
                continue
            offered = self._platforms_of(ref)
            if offered and arch not in offered:
                # The daemon falls back from the mirror to Docker Hub and reports that failure instead.
                message = f"no matching manifest for {platform} (the image offers {', '.join(offered)})"
            raise BuildError(f"pulling {ref}: {message}", raw=f"{ref}: {message}", steps=log.steps)

    def _platforms_of(self, ref: str) -> list[str]:
        """The architectures the registry's index for `ref` offers; empty when it cannot be asked."""
        try:
            return [p.get("architecture", "") for p in self.client.inspect_distribution(ref).get("Platforms", [])]
        except Exception:
            return []

    @staticmethod
    def _line(line: str, log: StepLog) -> Iterator[BuildEvent]:
        match = _STEP_RE.match(line)
        if match:
            yield log.step(match.group(3))
        elif line.strip() == "---> Using cache":
            yield log.cached()
        elif line.startswith((" ---> ", "Removing intermediate container", "Successfully ")) or not line.strip():
            return  # layer ids and "Running in" are bookkeeping, not output
        else:
            yield log.output(line)


def from_images(dockerfile: str) -> list[str]:
    """The external images a Dockerfile starts from (not earlier stages, not `scratch`)."""
    stages: set[str] = set()
    images: list[str] = []
    for line in dockerfile.splitlines():
        words = line.split()
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        ref = args[0]
        if ref not in stages and ref != "scratch" and ref not in images:
            images.append(ref)
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2])
    return images


def _failure_line(message: str, log: StepLog) -> str:
    step = log.current.name if log.current else "before the first step"
    last = " | ".join(line for line in (log.current.output if log.current else log.tail)[-3:] if line.strip())
    return f"build failed at `{step}`: {' '.join(message.split())}" + (f"; last output: {last}" if last else "")
