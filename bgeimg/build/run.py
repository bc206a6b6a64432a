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
    RegistryRefused,
    Step,
    StepLog,
    classify_failure,
)
from bgeimg.build.builders import PlatformNotServed, image_store
from bgeimg.context import assemble as contexts
from bgeimg.context import model as models
from bgeimg.context import render as rendering
from bgeimg.errors import BgeimgError
from bgeimg.oci import imageindex
from bgeimg.oci.docker import api_client, docker_host
from bgeimg.oci.platform import ARCH_SUFFIX, MACHINES, PLATFORM_RE, host_platform, platform_matches
from bgeimg.oci.reference import parse_reference, split_tag
from bgeimg.oci.registry import RegistryClient
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
    extra_tags: list[str] = field(default_factory=list)  # more -t NAME:TAG, given to every image made
    builder: str | None = None  # buildx --builder
    build_args: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)  # BuildKit secret id -> file (--secret id=ID,src=FILE)
    provenance: str | None = None  # buildx --provenance (None: buildx's default)
    sbom: str | None = None  # buildx --sbom
    metadata_file: Path | None = None  # buildx --metadata-file, written in buildx's format
    source_date_epoch: int | None = None  # reproducible images (buildx): None leaves timestamps as they fall
    raw_progress: bool = False  # --progress rawjson: buildx's own JSON stream (other backends: bgeimg's events)


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
    digest: str | None = None  # the platform's manifest digest, where the image went to a registry or an index

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
    index: dict | None = None  # an index made by the build: digest, media_type, attestations
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        for result, row in zip(self.platforms, data["platforms"]):
            row["cached_steps"] = result.cached_steps
            row["steps"] = [{"name": s.name, "cached": s.cached} for s in result.steps]
        return data

    def write(self, path: Path) -> None:
        from bgeimg import atomic

        atomic.write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


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
    if options.ca_bundle is not None and not options.ca_bundle.is_file():
        raise BgeimgError(f"CA bundle {options.ca_bundle} is not a file", "pass --ca-bundle FILE (PEM)")
    if options.wheelhouse is not None and not options.wheelhouse.is_dir():
        raise BgeimgError(f"wheelhouse {options.wheelhouse} is not a directory",
                          "pass --wheelhouse DIR holding the .whl files (pip download -d DIR ...)")
    for sid, src in options.secrets.items():
        if not src.is_file():
            raise BgeimgError(f"--secret id={sid}: {src} is not a file", "pass --secret id=ID,src=FILE")
    # Bad input is reported before the engine is asked anything.
    chosen = chosen or engines.select(options.engine, builder=options.builder)
    if on_engine is not None:
        on_engine(chosen)
    engine = chosen.engine
    check_platforms(engine, platforms, options.binfmt_dir)
    unsupported = engine.unsupported(BuildRequest(
        context_dir=Path("."), tags=(), platforms=tuple(platforms), push=options.push,
        cache_to=tuple(options.cache_to)))
    if unsupported and unsupported.startswith("--cache-to with"):
        raise BgeimgError(f"{unsupported}: that builder cannot export a build cache",
                          "turn on the containerd image store (daemon.json features.containerd-snapshotter), or "
                          "docker buildx create --use --driver docker-container")
    if unsupported:
        raise BgeimgError(f"{unsupported} needs the buildx backend (this build uses {engine.name})",
                          "build, then run bgeimg push IMAGE, which assembles the per-platform images"
                          if unsupported == "--push" else "use --engine buildx (install docker-buildx)")

    render_options = rendering.RenderOptions(backend=engine.syntax, wheelhouse=options.wheelhouse is not None,
                                             ca_bundle=options.ca_bundle is not None)
    version = split_tag(options.image)[1] or "latest"
    labels = build_labels(options.project_dir, version)
    secrets = {"ca_bundle": options.ca_bundle.resolve()} if options.ca_bundle and engine.syntax == "buildkit" else {}
    if options.secrets and engine.syntax != "buildkit":
        raise BgeimgError(f"--secret needs a BuildKit backend (this build uses {engine.name})",
                          "use --engine buildx or --engine buildkit")
    secrets.update({sid: src.resolve() for sid, src in options.secrets.items()})
    epoch = options.source_date_epoch if engine.rewrites_timestamps() else None
    if epoch is not None:
        # one time for every file, the config and the created label: the same inputs give the same digest
        labels = build_labels(options.project_dir, version, datetime.fromtimestamp(epoch, timezone.utc))
        labels["io.bgeimg.source-date-epoch"] = str(epoch)
    mirror = profile.mirrors.registry or ", ".join(_daemon_mirrors()) or None
    base_images = list(dict.fromkeys([profile.builder_base, profile.runtime_base]))

    # One call for several platforms where the backend can; else one platform at a time (a note says so).
    groups, note = engine.plan(platforms, options.push)
    notes = [note] if note else []
    if note and on_event is not None:
        on_event("", BuildEvent("note", note), StepLog())
    assemble = options.push and len(groups) > 1  # built one by one and loaded: bgeimg push makes the index
    results: list[PlatformResult] = []
    directory = options.context_dir or context_home(options.image, engine.syntax)
    directory.mkdir(parents=True, exist_ok=True)
    # One context for every platform: the Dockerfile is the same, only --platform differs.
    lock = models.Lock.load(options.lock_file, update=options.update_lock) if options.lock_file else None
    contexts.prepare(profile, directory, render_options, wheelhouse=options.wheelhouse,
                     ca_bundle=options.ca_bundle, lock=lock)
    everyone = [options.image, *options.extra_tags]
    index: dict | None = None
    for group in groups:
        if len(group) == 1:
            tags = [platform_tag(options.image, group[0])]
            if group[0] == host_platform():
                tags += everyone
        else:
            tags = list(everyone)
        push = options.push and not assemble
        request = BuildRequest(
            context_dir=directory, tags=tuple(dict.fromkeys(tags)), platforms=tuple(group), labels=labels,
            secrets=secrets, build_args=dict(options.build_args), cache_from=tuple(options.cache_from),
            cache_to=tuple(options.cache_to), no_cache=options.no_cache, push=push, builder=options.builder,
            provenance=options.provenance, sbom=options.sbom, source_date_epoch=epoch,
            raw_progress=options.raw_progress,
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
        if push or len(group) > 1:  # an index (or a pushed image): read back from where it went
            info = _made(request.tags[0], push)
            index = _index_json(info) if len(group) > 1 or info.attestations else None
            for made in info.images:
                results.append(PlatformResult(made.platform, made.digest, list(request.tags), made.size, made.layers,
                                              made.architecture, seconds, steps_for(made.platform, log.steps),
                                              digest=made.digest))
            continue
        image = engine.inspect_image(image_id)
        results.append(PlatformResult(group[0], image.id, tags, image.size, image.layers, image.architecture,
                                      seconds, log.steps))
    if assemble:
        index = _assemble(options, [r.tags[0] for r in results], results)
    if options.metadata_file is not None and hasattr(engine, "write_metadata"):
        engine.write_metadata(options.metadata_file)
    return BuildReport(profile=profile.name, engine=engine.name, engine_reason=chosen.reason, image=options.image,
                       labels=labels, platforms=results, index=index, notes=notes)


FIXED_EPOCH = 315532800  # 1980-01-01T00:00:00Z: the epoch outside a git checkout (zip's earliest date)


def source_date_epoch(project_dir: Path) -> int:
    """$SOURCE_DATE_EPOCH, else the commit time of the project's git HEAD, else FIXED_EPOCH."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise BgeimgError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                              "export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct), or unset it")
        return int(value)
    return gitinfo.commit_time(project_dir) or FIXED_EPOCH


def parse_build_args(items: list[str]) -> dict[str, str]:
    """`--build-arg KEY=VALUE` (repeatable) as buildx reads it."""
    args = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise BgeimgError(f"--build-arg {item.split('=', 1)[0]!r}... is not KEY=VALUE", "e.g. --build-arg A=1")
        args[key] = value
    return args


def parse_secrets(items: list[str]) -> dict[str, Path]:
    """`--secret id=ID,src=FILE` (repeatable) as buildx reads it; the value never appears in a message."""
    secrets = {}
    for item in items:
        fields = dict(part.partition("=")[::2] for part in item.split(","))
        sid, src = fields.get("id", ""), fields.get("src") or fields.get("source", "")
        if not re.match(r"^[A-Za-z0-9_.-]+$", sid) or not src or set(fields) - {"id", "src", "source", "type"}:
            raise BgeimgError("--secret takes id=ID,src=FILE", "e.g. --secret id=hf_token,src=$HOME/.hf_token")
        secrets[sid] = Path(src).expanduser()
    return secrets


def check_platforms(engine, platforms: list[str], binfmt_dir: Path | None) -> None:
    """Each platform must be one the builder serves (a buildx builder says which), else runnable here (qemu)."""
    foreign = [p for p in platforms if p != host_platform()]
    if engine.name == "engine" and foreign and image_store(api_client().info()) == "containerd":
        # Seen with Docker 26: the Engine API's classic builder on the containerd store loses its intermediate
        # images on a foreign platform ("failed to get destination image ... No such image") part of the time.
        raise PlatformError(f"the Engine API's classic builder cannot build {', '.join(foreign)} reliably on this "
                            "engine's containerd image store",
                            "use --engine buildx or --engine buildkit (BuildKit is this engine's default builder)")
    served = engine.served_platforms()
    for item in platforms:
        if served is None:
            check_emulation(item, binfmt_dir)
        elif not any(platform_matches(have, item) or platform_matches(item, have) for have in served):
            builder = engine.builder()
            fix = (f"register qemu for it (docker run --privileged --rm tonistiigi/binfmt --install "
                   f"{ARCH_SUFFIX.get(item, item)}), or drop it from --platform" if builder.driver == "docker" else
                   f"add a node that serves it (docker buildx create --append --name {builder.name} "
                   f"--platform {item} ENDPOINT), or drop it from --platform")
            raise PlatformNotServed(f"buildx builder {builder.name} ({builder.driver} driver) does not serve {item}; "
                                    f"it serves {', '.join(served)}", fix)


def steps_for(platform: str, steps: list[Step]) -> list[Step]:
    """The steps of one platform in a multi-platform build: BuildKit prefixes them `[linux/arm64 stage i/n]`;
    steps without a platform prefix (context, metadata) belong to every platform."""
    mine = []
    for step in steps:
        match = re.match(r"^\[(linux/[^ \]]+)[ \]]", step.name)
        if match is None or platform_matches(match.group(1), platform) or platform_matches(platform, match.group(1)):
            mine.append(step)
    return mine


def _made(image: str, pushed: bool):
    """What the build put under `image`: the pushed index or manifest, or the local multi-platform image."""
    if pushed:
        ref = parse_reference(image)
        return imageindex.from_registry(RegistryClient(ref.registry), ref.repository, ref.tag or "latest")
    return imageindex.from_engine(api_client(), image)


def _index_json(info) -> dict:
    return {"digest": info.digest, "media_type": info.media_type,
            "attestations": [asdict(a) for a in info.attestations]}


def _assemble(options: BuildOptions, local: list[str], results: list[PlatformResult]) -> dict:
    """Per-platform builds that were loaded: push them as one index per tag, the way `bgeimg push` does, and
    fill in each platform's manifest digest from the registry."""
    from bgeimg.release import push as pushing

    by_repo: dict[tuple[str, str], list[str]] = {}
    for item in [options.image, *options.extra_tags]:
        ref = parse_reference(item)
        by_repo.setdefault((ref.registry, ref.repository), []).append(ref.tag or "latest")
    for (registry, repository), repo_tags in by_repo.items():
        (pushed,) = pushing.push(api_client(), local, [pushing.Target(registry, repository)], repo_tags)
        if pushed.error:
            raise RegistryRefused(f"registry {registry} refused the push of {registry}/{repository}: "
                                  f"{pushed.error}", f"check that it runs and accepts pushes "
                                  f"(docker login {registry} when it needs credentials)")
    info = _made(options.image, True)
    for result in results:
        made = next((m for m in info.images if platform_matches(m.platform, result.platform)), None)
        if made is not None:
            result.digest = made.digest
    return _index_json(info)

