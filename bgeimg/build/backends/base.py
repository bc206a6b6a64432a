"""The one `Backend` interface every build backend implements, and the plain values it exchanges.

Words: the *engine* is the Docker daemon that runs builds and holds images; a *backend* is how bgeimg asks it
to build (the Engine API, `docker build` with BuildKit, `docker buildx build`), chosen with `--engine`.

Shaped like repo2docker's ContainerEngine: a backend has a `name`, says whether it is `available()`,
`build()`s a context for one platform (or several, when it can) yielding `BuildEvent`s and raising a
`BuildError` on failure, and can `inspect_image()`. Every backend here talks to the same Docker daemon,
so inspection goes through docker-py for all of them.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bgeimg.errors import BgeimgError, OutsideError
from bgeimg.oci.docker import api_client, one_line
from bgeimg.oci.reference import split_tag

# ----------------------------------------------------------------------------------------------------------
# Errors: one class per kind, each carrying the one line the user sees.


class BuildError(OutsideError):
    """The build ran and failed: a step exited non-zero, or the engine refused the build.

    `raw` is the builder's own error text and `steps` what ran so far, so the orchestration can turn it into
    a more precise error (`classify_failure`) once it knows the base images, mirror and wheelhouse."""

    def __init__(self, message: str, hint: str | None = None, *, raw: str = "", steps: list | None = None):
        super().__init__(message, hint)
        self.raw = raw or message
        self.steps = steps or []


class BaseImageNotFound(BgeimgError):
    """A FROM image could not be resolved (wrong name or tag, or the mirror does not hold it)."""


class MissingWheel(BgeimgError):
    """pip found no distribution for a requirement (in the wheelhouse, or on the index)."""


class RegistryRefused(OutsideError):
    """The registry a build pushes to refused it, or could not be reached."""


class PlatformError(BgeimgError):
    """A platform that is unknown, unsupported by the base image, or cannot run on this host."""


# ----------------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class BuildRequest:
    """Everything a backend needs to build one context. `platforms` has one entry unless the backend is
    multi-platform (buildx pushing); secrets map a BuildKit secret id to a file on the host."""

    context_dir: Path
    tags: tuple[str, ...]
    platforms: tuple[str, ...]
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    push: bool = False
    dockerfile: str = "Dockerfile"
    # buildx only (flags with buildx's meaning; None: buildx's default)
    builder: str | None = None
    provenance: str | None = None
    sbom: str | None = None
    source_date_epoch: int | None = None  # BuildKit rewrites layer timestamps to it (reproducible images)
    raw_progress: bool = False  # buildx's own `--progress=rawjson` lines, passed on as `raw` events


@dataclass
class Step:
    """One Dockerfile instruction as the builder reported it, and whether it came from the cache."""

    name: str
    cached: bool = False
    output: list[str] = field(default_factory=list)
    failed: bool = False  # the builder said this step failed (BuildKit's `#N ERROR:`)

    @property
    def instruction(self) -> str:
        """The instruction without BuildKit's `[stage i/n] ` prefix, so backends compare equal."""
        return re.sub(r"^\[[^\]]*\] ", "", self.name)


@dataclass
class BuildEvent:
    """One thing that happened during a build: a new `step`, a line of `output`, or `done` with the image id."""

    # note: one line about how the build runs; raw: a line of the builder's own rawjson stream, as it came
    kind: Literal["step", "output", "cached", "done", "note", "raw"]
    text: str = ""
    image_id: str | None = None


@dataclass
class ImageInfo:
    """What `docker image inspect` says about a built image, as plain values."""

    id: str
    size: int
    layers: int
    architecture: str
    os: str
    variant: str | None
    user: str
    env: dict[str, str]
    labels: dict[str, str]
    healthcheck: list[str] | None


# ----------------------------------------------------------------------------------------------------------
# The step log shared by the backends: the current step, its last output lines, which steps were cached.

_KEEP_LINES = 12


class StepLog:
    """Folds build events into steps so a failure can name its instruction and show the last lines."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.started = time.monotonic()
        self.tail: list[str] = []  # the last lines of the whole build (errors outside any step)

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def step(self, name: str) -> BuildEvent:
        self.steps.append(Step(name=name))
        return BuildEvent("step", name)

    def cached(self, step: Step | None = None) -> BuildEvent:
        target = step or self.current
        if target is not None:
            target.cached = True
        return BuildEvent("cached", target.name if target else "")

    def output(self, line: str, step: Step | None = None) -> BuildEvent:
        target = step or self.current
        if target is not None:
            target.output = (target.output + [line])[-_KEEP_LINES:]
        self.tail = (self.tail + [line])[-_KEEP_LINES:]
        return BuildEvent("output", line)


# ----------------------------------------------------------------------------------------------------------
# Turning a builder's failure text into the right one-line error

_NO_DIST_RE = re.compile(r"No matching distribution found for ([A-Za-z0-9._\-\[\],<>=!~ ]+)")
_NOT_FOUND_RE = re.compile(
    r"manifest unknown|not found|pull access denied|repository does not exist|no such host|"
    r"failed to resolve source metadata",
    re.I,
)
_PUSH_RE = re.compile(r"failed to push ([^\s:]+(?::[0-9]+)?/[^\s]+?):? (.*)$")
_STEP_PLATFORM_RE = re.compile(r"^\[(linux/[a-z0-9]+(?:/v[0-9])?) ")
_NO_MATCHING_PLATFORM_RE = re.compile(r"no match(ing manifest)? for platform|no matching manifest for ([\w/]+)", re.I)


def classify_failure(
    message: str,
    steps: list[Step],
    *,
    base_images: list[str],
    mirror: str | None,
    wheelhouse: bool,
    platform: str,
) -> BgeimgError:
    """The error a failed build should raise, from the builder's error text and the steps seen so far."""
    failing = next((s for s in reversed(steps) if s.failed), None) or \
        next((s for s in reversed(steps) if not s.cached), steps[-1] if steps else None)
    pushed = _PUSH_RE.search(message)
    if pushed:
        ref, reason = pushed.groups()
        return RegistryRefused(f"registry {ref.split('/', 1)[0]} refused the push of {ref}: "
                               f"{one_line(reason.rsplit(': ', 1)[-1])}",
                               f"check that it runs and accepts pushes (docker login {ref.split('/', 1)[0]} "
                               "when it needs credentials)")
    # A build of several platforms in one call: BuildKit names the failing one in the step (`[linux/arm64 ...]`).
    on = _STEP_PLATFORM_RE.match(failing.name) if failing is not None and "," in platform else None
    if on:
        platform = on.group(1)
    lines = [ln for ln in (failing.output if failing else []) if ln.strip()]
    text = "\n".join([message, *lines])

    missing = _NO_DIST_RE.search(text)
    if missing:
        package = missing.group(1).strip()
        if wheelhouse:
            return MissingWheel(
                f"the wheelhouse has no wheel for {package} ({platform})",
                f"add it: pip download --only-binary=:all: {package} -d WHEELHOUSE, or drop it from requirements",
            )
        return MissingWheel(f"pip found no distribution for {package} on the index ({platform})",
                            "check the requirement's name and version, or the pip index mirror")

    if _NO_MATCHING_PLATFORM_RE.search(message):
        image = _which_image(message, base_images)
        return PlatformError(f"base image {image} has no {platform} variant: {one_line(message)}",
                             "choose a platform the base image provides, or another base image")

    # A missing base shows up before any step ran, on a FROM step, or as an error naming the image.
    at_from = failing is None or failing.instruction.upper().startswith("FROM ")
    if _NOT_FOUND_RE.search(message) and (at_from or _named_image(message, base_images)):
        image = _which_image(message, base_images)
        via = f"through the mirror {mirror}" if mirror else "through the engine's default registry and mirrors"
        return BaseImageNotFound(
            f"base image {image} not found ({via}): {one_line(message)}",
            "check base_image in the profile, or push the image to the mirror",
        )

    if failing is not None:
        last = " | ".join(lines[-3:]) or "no output"
        return BuildError(f"build failed at `{failing.name}` ({platform}): {one_line(message)}; last output: {last}")
    return BuildError(f"build failed ({platform}): {one_line(message)}")


def _named_image(message: str, base_images: list[str]) -> str | None:
    """The base image the builder's message is about, if it names one."""
    for image in base_images:
        name = image.split("@")[0]
        bare = split_tag(name)[0]
        if name in message or bare in message:
            return image
    return None


def _which_image(message: str, base_images: list[str]) -> str:
    return _named_image(message, base_images) or " or ".join(dict.fromkeys(base_images)) or "(unknown)"


# ----------------------------------------------------------------------------------------------------------
# The interface


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the build checks a request against this once (`unsupported`), before any work."""

    multi_platform: bool = False  # several platforms in one build call
    push: bool = False  # push while building
    cache_export: bool = False  # --cache-to
    secrets: bool = False  # BuildKit secrets (--mount=type=secret)


class Backend(ABC):
    """A build backend. Subclasses fill `name`, `syntax` (which Dockerfile dialect it builds), `capabilities`,
    and `missing` (the one line and hint when `--engine NAME` is asked for but `available()` is false)."""

    name: str = ""
    syntax: Literal["classic", "buildkit"] = "classic"
    capabilities: Capabilities = Capabilities()
    missing: tuple[str, str] = ("", "")

    @property
    def multi_platform(self) -> bool:
        return self.capabilities.multi_platform

    @abstractmethod
    def available(self) -> bool:
        """True when this backend can build here (its client exists and the engine answers)."""

    @abstractmethod
    def build(self, request: BuildRequest, log: StepLog) -> Iterator[BuildEvent]:
        """Build `request`, yielding events as they come; the last one is `done` with the image id.
        Raises `BuildError` (or a more precise subclass' sibling via `classify_failure`) on failure."""

    def inspect_image(self, ref: str) -> ImageInfo:
        return inspect_image(api_client(), ref)

    def plan(self, platforms: list[str], push: bool) -> tuple[list[list[str]], str | None]:
        """The platforms of each build call, and a one-line note when the plan is not what was asked for.
        One call carries several platforms only when the backend can build (and push) them together."""
        if len(platforms) > 1 and self.capabilities.multi_platform and push:
            return [platforms], None
        return [[p] for p in platforms], None

    def rewrites_timestamps(self) -> bool:
        """Whether the builder can set every timestamp to SOURCE_DATE_EPOCH (BuildKit >= 0.13's rewrite-timestamp)."""
        return False

    def served_platforms(self) -> tuple[str, ...] | None:
        """The platforms the builder says it serves; None when the local engine's qemu (binfmt) decides."""
        return None

    def auto_reason(self) -> str:
        """Why `--engine auto` stopped at this backend (the ones before it in the order were unavailable)."""
        return f"{self.name} is available"

    def unsupported(self, request: BuildRequest) -> str | None:
        """What of `request` this backend cannot do, in the words of the flag that asked for it; None if all."""
        caps = self.capabilities
        if request.push and not caps.push:
            return "--push"
        if request.cache_to and not caps.cache_export:
            return "--cache-to"
        if request.secrets and not caps.secrets:
            return "build secrets"
        return None


def inspect_image(client, ref: str) -> ImageInfo:
    data = client.inspect_image(ref)
    config = data.get("Config") or {}
    env = dict(item.split("=", 1) for item in (config.get("Env") or []) if "=" in item)
    health = (config.get("Healthcheck") or {}).get("Test")
    return ImageInfo(
        id=data["Id"],
        size=int(data.get("Size") or 0),
        layers=len((data.get("RootFS") or {}).get("Layers") or []),
        architecture=data.get("Architecture", ""),
        os=data.get("Os", ""),
        variant=data.get("Variant"),
        user=config.get("User") or "",
        env=env,
        labels=dict(config.get("Labels") or {}),
        healthcheck=list(health) if health else None,
    )
