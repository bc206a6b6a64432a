"""Orchestrate a build: check platforms -> prepare the context for the backend -> build each platform ->
inspect each image -> a `BuildReport`.

Without buildx every platform is built in turn and kept as its own local image, tagged `<name>:<tag>-<arch>`;
the host's platform also gets the plain `<name>:<tag>` (the push step assembles the per-arch images into one
index). Per-build values (created time, git revision, version) are passed as labels at build time, never
rendered, so the rendered Dockerfile stays reproducible and the label change only touches the last layer.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bgeimg.build import select as engines
from bgeimg.build.backends.base import (
    BuildError,
    BuildEvent,
    BuildRequest,
    PlatformError,
    Step,
    StepLog,
    classify_failure,
)
from bgeimg.context import assemble as contexts
from bgeimg.context import model as models
from bgeimg.context import render as rendering
from bgeimg.errors import BgeimgError
from bgeimg.oci.docker import docker_host
from bgeimg.oci.platform import ARCH_SUFFIX, MACHINES, PLATFORM_RE, host_platform
from bgeimg.oci.reference import split_tag
from bgeimg.profile import Profile
from bgeimg.release import gitinfo, tags

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass
class BuildOptions:
    """What the user asked for beyond the profile."""

    image: str  # name[:tag]; each platform gets <name>:<tag>-<arch>, the host's platform also <name>:<tag>
    engine: str = "auto"
    platforms: list[str] | None = None  # None: the profile's
    wheelhouse: Path | None = None
    ca_bundle: Path | None = None
    context_dir: Path | None = None  # None: a per-image directory under the user's cache (see context_home)
    no_cache: bool = False
    push: bool = False
    cache_from: list[str] = field(default_factory=list)
    cache_to: list[str] = field(default_factory=list)
    project_dir: Path = field(default_factory=Path.cwd)
    binfmt_dir: Path | None = None  # None: $BGEIMG_BINFMT_DIR or /proc/sys/fs/binfmt_misc
    lock_file: Path | None = None  # bgeimg.lock: pins hf:// models to a commit and file digests
    update_lock: bool = False


@dataclass
class PlatformResult:
    """One platform's image: id, tags, size, layers, how long it took and which steps came from the cache."""

    platform: str
    image_id: str
    tags: list[str]
    size: int
    layers: int
    architecture: str
    seconds: float
    steps: list[Step]

    @property
    def cached_steps(self) -> int:
        return sum(1 for s in self.steps if s.cached)


@dataclass
class BuildReport:
    """The whole build, written by `--report build.json` and printed as a table."""

    profile: str
    engine: str
    engine_reason: str
    image: str
    labels: dict[str, str]
    platforms: list[PlatformResult]

    def to_json(self) -> dict:
        data = asdict(self)
        for result, row in zip(self.platforms, data["platforms"]):
            row["cached_steps"] = result.cached_steps
            row["steps"] = [{"name": s.name, "cached": s.cached} for s in result.steps]
        return data

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------------
# Platforms


def parse_platforms(value: str | None, profile: Profile) -> list[str]:
    """`--platform a,b` (or the profile's list), validated; an unknown one is bad input."""
    items = [p.strip() for p in value.split(",") if p.strip()] if value else list(profile.platforms)
    if not items:
        raise PlatformError("--platform is empty", "for example --platform linux/amd64,linux/arm64")
    for item in items:
        if not PLATFORM_RE.match(item):
            raise PlatformError(f"unknown or unsupported platform {item!r}",
                                f"choose from: {', '.join(MACHINES)}")
    return list(dict.fromkeys(items))


def check_emulation(platform: str, binfmt_dir: Path | None = None) -> None:
    """A foreign platform needs qemu registered with binfmt_misc, or its RUN steps cannot execute."""
    if platform == host_platform() or not docker_host().startswith("unix://"):
        return  # a remote engine's emulation cannot be checked from here; its build will say
    directory = binfmt_dir or Path(os.environ.get("BGEIMG_BINFMT_DIR", BINFMT_DIR))
    entry = directory / f"qemu-{MACHINES[platform]}"
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise PlatformError(
            f"cannot build {platform} on this {host_platform()} host: no qemu emulation registered ({entry} missing)",
            "install it: apt-get install qemu-user-static binfmt-support, "
            "or docker run --privileged --rm tonistiigi/binfmt --install arm64",
        )


def platform_tag(image: str, platform: str) -> str:
    name, tag = split_tag(image)
    return f"{name}:{tag or 'latest'}-{ARCH_SUFFIX[platform]}"


# ----------------------------------------------------------------------------------------------------------
# Per-build labels, decided by bgeimg.release.tags.oci_labels from the git facts of the project directory.


def build_labels(project_dir: Path, version: str, now: datetime | None = None) -> dict[str, str]:
    """`org.opencontainers.image.created/.revision/.version/.source` for this build (tags.oci_labels decides)."""
    return tags.oci_labels(created=now or datetime.now(timezone.utc), version=version,
                           revision=gitinfo.facts(project_dir).commit, source=gitinfo.origin_url(project_dir))


# ----------------------------------------------------------------------------------------------------------
# The build


def context_home(image: str, syntax: str) -> Path:
    """The default context directory: stable per image and builder, because BuildKit sends only the files
    that changed since its last build from the same directory (a fresh temporary one means sending the
    wheelhouse and the weights again on every rebuild)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bgeimg" / "contexts"
    return root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', image)}.{syntax}"


def _daemon_mirrors() -> list[str]:
    try:
        info = engines.api_client().info()
    except Exception:
        return []
    return list((info.get("RegistryConfig") or {}).get("Mirrors") or [])


def build(
    profile: Profile,
    options: BuildOptions,
    *,
    chosen: engines.Chosen | None = None,
    on_engine: Callable[[engines.Chosen], None] | None = None,
    on_event: Callable[[str, BuildEvent, StepLog], None] | None = None,
) -> BuildReport:
    """Build `profile` for each platform asked for and report what came out. Raises a BgeimgError subclass."""
    platforms = parse_platforms(",".join(options.platforms) if options.platforms else None, profile)
    for item in platforms:
        check_emulation(item, options.binfmt_dir)
    if options.ca_bundle is not None and not options.ca_bundle.is_file():
        raise BgeimgError(f"CA bundle {options.ca_bundle} is not a file", "pass --ca-bundle FILE (PEM)")
    if options.wheelhouse is not None and not options.wheelhouse.is_dir():
        raise BgeimgError(f"wheelhouse {options.wheelhouse} is not a directory",
                          "pass --wheelhouse DIR holding the .whl files (pip download -d DIR ...)")
    # Bad input is reported before the engine is asked anything.
    chosen = chosen or engines.select(options.engine)
    if on_engine is not None:
        on_engine(chosen)
    engine = chosen.engine
    unsupported = engine.unsupported(BuildRequest(
        context_dir=Path("."), tags=(), platforms=tuple(platforms), push=options.push,
        cache_to=tuple(options.cache_to)))
    if unsupported:
        raise BgeimgError(f"{unsupported} needs the buildx backend (this build uses {engine.name})",
                          "build, then run bgeimg push IMAGE, which assembles the per-platform images"
                          if unsupported == "--push" else "use --engine buildx (install docker-buildx)")

    render_options = rendering.RenderOptions(backend=engine.syntax, wheelhouse=options.wheelhouse is not None,
                                             ca_bundle=options.ca_bundle is not None)
    version = split_tag(options.image)[1] or "latest"
    labels = build_labels(options.project_dir, version)
    secrets = {"ca_bundle": options.ca_bundle.resolve()} if options.ca_bundle and engine.syntax == "buildkit" else {}
    mirror = profile.mirrors.registry or ", ".join(_daemon_mirrors()) or None
    base_images = list(dict.fromkeys([profile.builder_base, profile.runtime_base]))

    # buildx pushing builds every platform in one call; everything else builds one platform at a time.
    groups = [platforms] if (engine.multi_platform and options.push) else [[p] for p in platforms]
    results: list[PlatformResult] = []
    directory = options.context_dir or context_home(options.image, engine.syntax)
    directory.mkdir(parents=True, exist_ok=True)
    # One context for every platform: the Dockerfile is the same, only --platform differs.
    lock = models.Lock.load(options.lock_file, update=options.update_lock) if options.lock_file else None
    contexts.prepare(profile, directory, render_options, wheelhouse=options.wheelhouse,
                     ca_bundle=options.ca_bundle, lock=lock)
    for group in groups:
        if len(group) == 1:
            tags = [platform_tag(options.image, group[0])]
            if group[0] == host_platform():
                tags.append(options.image)
        else:
            tags = [options.image]
        request = BuildRequest(
            context_dir=directory, tags=tuple(tags), platforms=tuple(group), labels=labels, secrets=secrets,
            cache_from=tuple(options.cache_from), cache_to=tuple(options.cache_to), no_cache=options.no_cache,
            push=options.push,
        )
        log = StepLog()
        started = time.monotonic()
        image_id = None
        try:
            for event in engine.build(request, log):
                if event.kind == "done":
                    image_id = event.image_id
                if on_event is not None:
                    on_event(",".join(group), event, log)
        except BuildError as exc:
            raise classify_failure(exc.raw, exc.steps or log.steps, base_images=base_images, mirror=mirror,
                                   wheelhouse=options.wheelhouse is not None, platform=",".join(group)) from None
        seconds = time.monotonic() - started
        assert image_id is not None
        if options.push:
            results.append(PlatformResult(",".join(group), image_id, tags, 0, 0, "", seconds, log.steps))
            continue
        info = engine.inspect_image(image_id)
        results.append(PlatformResult(group[0], info.id, tags, info.size, info.layers, info.architecture,
                                      seconds, log.steps))
    return BuildReport(profile=profile.name, engine=engine.name, engine_reason=chosen.reason, image=options.image,
                       labels=labels, platforms=results)
