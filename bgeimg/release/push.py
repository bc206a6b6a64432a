"""Push per-platform local images as one multi-arch image under each tag, to a registry and its mirrors.

    local images (one per platform) --docker save--> layers gzipped deterministically (so a second push finds
    every blob present and sends none) --> blobs (HEAD first) --> one manifest per platform, put by digest
    --> every manifest confirmed present --> one image index put under each tag.

A tag is written last, only when everything it points to is in the registry: an interrupted push leaves at most
unreferenced blobs, never a tag pointing at a partial image. Each registry (the target and every mirror) is
pushed independently; a failure on one is reported and does not undo the others.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.errors import BgeimgError, OutsideError
from bgeimg.oci.mediatypes import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST
from bgeimg.oci.platform import ARCH_SUFFIX, platform_str
from bgeimg.oci.reference import check_repository, split_registry, split_tag
from bgeimg.oci.registry import RegistryClient, RegistryError, Stats


class PushError(BgeimgError):
    """Bad push input: no such local image, no registry, an incomplete platform set (exit 2)."""


class PushFailed(OutsideError):
    """At least one registry did not receive the image (exit 3); the others did."""


@dataclass
class Blob:
    digest: str
    size: int
    path: Path | None = None  # compressed layer on disk; None for the config (kept in memory)
    data: bytes | None = None


@dataclass
class PlatformImage:
    """One local image ready to upload: its config, its gzipped layers, and the manifest that ties them."""

    source: str  # the local reference it came from
    platform: str  # os/arch[/variant]
    config: Blob
    layers: list[Blob]
    manifest: bytes = b""

    @property
    def manifest_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    def descriptor(self) -> dict:
        os_, arch, *variant = self.platform.split("/")
        plat = {"architecture": arch, "os": os_}
        if variant:
            plat["variant"] = variant[0]
        return {"mediaType": DOCKER_MANIFEST, "digest": self.manifest_digest, "size": len(self.manifest),
                "platform": plat}


@dataclass
class Pushed:
    """What one registry received."""

    registry: str
    repository: str
    digest: str | None = None  # the index digest, the same under every tag
    tags: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {"registry": self.registry, "repository": self.repository, "digest": self.digest, "tags": self.tags,
                "platforms": self.platforms, "error": self.error, "bytes_uploaded": self.stats.blob_bytes_uploaded,
                "blobs_uploaded": self.stats.blobs_uploaded, "blobs_skipped": self.stats.blobs_skipped}


# ---------------------------------------------------------------------------------------------------------
# Local images


def platform_images(docker_api, image: str, platforms: list[str] | None = None) -> list[str]:
    """The local images to push for `image`: its per-platform siblings `image-<arch>` (what `bgeimg build` makes)
    when they exist, else the image itself."""
    name, tag = split_tag(image)
    tag = tag or "latest"
    siblings = []
    for suffix in ARCH_SUFFIX.values():
        ref = f"{name}:{tag}-{suffix}"
        try:
            docker_api.inspect_image(ref)
        except Exception:
            continue
        siblings.append(ref)
    found = siblings or [image]
    if platforms:
        wanted = {p.split("/")[1] for p in platforms}
        found = [ref for ref in found if _arch_of(docker_api, ref) in wanted]
        missing = wanted - {_arch_of(docker_api, ref) for ref in found}
        if missing:
            raise PushError(f"no local image of {image} for {', '.join(sorted(missing))}",
                            f"build it first: bgeimg build --platform {','.join(platforms)} --tag {image}")
    return found


def _arch_of(docker_api, ref: str) -> str:
    return docker_api.inspect_image(ref)["Architecture"]


def _gzip_to(src, dest: Path) -> tuple[str, int, str]:
    """Gzip a layer tar stream into `dest` deterministically (no name, mtime 0): (digest, size, diff_id)."""
    raw = hashlib.sha256()
    with dest.open("wb") as out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                raw.update(chunk)
                gz.write(chunk)
    packed = hashlib.sha256()
    with dest.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            packed.update(chunk)
    return "sha256:" + packed.hexdigest(), dest.stat().st_size, "sha256:" + raw.hexdigest()


def export(docker_api, ref: str, workdir: Path) -> PlatformImage:
    """Stream `docker save REF` (never whole in memory) into a config blob and gzipped layer files."""
    try:
        docker_api.inspect_image(ref)  # get_image is lazy: a missing image would only fail mid-stream
    except Exception:
        raise PushError(f"no local image {ref}", "build it first (bgeimg build) or name an existing image") from None
    stream = docker_api.get_image(ref)
    reader = _StreamReader(stream)
    workdir = Path(tempfile.mkdtemp(dir=workdir))  # one directory per image: layer file names repeat
    compressed: dict[str, tuple[str, int, str, Path]] = {}
    configs: dict[str, bytes] = {}
    manifest = None
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            fh = tar.extractfile(member)
            head = fh.read(1)  # a stream cannot seek back, so the first byte is carried along
            if member.name == "manifest.json":
                manifest = json.loads(head + fh.read())
            elif member.name.endswith(".json") or (member.name.startswith("blobs/") and head == b"{"):
                # an image config: legacy `<id>.json`, or a JSON blob (a layer tar never starts with `{`)
                configs[member.name] = head + fh.read()
            elif member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                dest = workdir / f"layer-{len(compressed)}.tar.gz"
                compressed[member.name] = (*_gzip_to(_Prefixed(head, fh), dest), dest)
    if not manifest:
        raise OutsideError(f"docker save of {ref} has no manifest.json", "is the engine healthy?")
    entry = manifest[0]
    config_raw = configs[entry["Config"]]
    config = json.loads(config_raw)
    layers = []
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    for i, name in enumerate(entry["Layers"]):
        digest, size, diff_id, path = compressed[name]
        if i < len(diff_ids) and diff_ids[i] != diff_id:
            raise OutsideError(f"{ref}: layer {i} does not match its diff_id", "the saved image is corrupt")
        layers.append(Blob(digest=digest, size=size, path=path))
    config_blob = Blob(digest="sha256:" + hashlib.sha256(config_raw).hexdigest(), size=len(config_raw),
                       data=config_raw)
    platform = platform_str({"os": config.get("os", "linux"), "architecture": config.get("architecture", "amd64"),
                             "variant": config.get("variant")})
    image = PlatformImage(source=ref, platform=platform, config=config_blob, layers=layers)
    image.manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config_blob.digest, "size": config_blob.size},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": b.digest, "size": b.size} for b in layers],
    }, separators=(",", ":")).encode()
    return image


class _Prefixed:
    """`head` then the rest of `fh`, as one readable stream."""

    def __init__(self, head: bytes, fh):
        self._head, self._fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data + (self._fh.read(n - len(data)) if n > len(data) else b"" if n >= 0 else self._fh.read())
        return self._fh.read(n)


class _StreamReader:
    """A file-like view of docker-py's chunk iterator, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


# ---------------------------------------------------------------------------------------------------------
# Upload


def index_of(images: list[PlatformImage]) -> bytes:
    """One manifest list over the platforms, in a stable order."""
    manifests = sorted((img.descriptor() for img in images), key=lambda d: d["digest"])
    manifests.sort(key=lambda d: (d["platform"]["os"], d["platform"]["architecture"]))
    return json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": manifests},
                      separators=(",", ":")).encode()


def push_to(client: RegistryClient, repository: str, images: list[PlatformImage], tags: list[str],
            progress: Callable[[str], None] | None = None) -> Pushed:
    """Push to one registry; the result carries the error instead of raising, so mirrors stay independent."""
    result = Pushed(registry=client.host, repository=repository, platforms=[i.platform for i in images])
    say = progress or (lambda _msg: None)
    try:
        for image in images:
            for blob in [image.config, *image.layers]:
                if client.blob_exists(repository, blob.digest) is not None:
                    client.stats.blobs_skipped += 1
                    continue
                say(f"{client.host}: {image.platform} upload {blob.digest[7:19]} ({blob.size} bytes)")
                client.upload_blob(repository, blob.digest, blob.data if blob.data is not None else blob.path)
            client.put_manifest(repository, image.manifest_digest, image.manifest, DOCKER_MANIFEST)
        # Tags are written only once every platform manifest is confirmed present.
        for image in images:
            if client.head_manifest(repository, image.manifest_digest) is None:
                raise RegistryError(f"{client.host}/{repository}@{image.manifest_digest} missing after upload")
        index = index_of(images)
        result.digest = client.put_manifest(repository, "sha256:" + hashlib.sha256(index).hexdigest(), index,
                                            DOCKER_LIST)
        for tag in tags:
            client.put_manifest(repository, tag, index, DOCKER_LIST)
            result.tags.append(tag)
            say(f"{client.host}/{repository}:{tag} -> {result.digest}")
    except BgeimgError as exc:
        result.error = str(exc)
    result.stats = client.stats
    return result


@dataclass
class Target:
    """A registry host and the repository path to push to (`host[:port][/namespace]` + image name)."""

    registry: str
    repository: str


def repository_name(local: str) -> str:
    """`bge-m3:1.0-amd64` -> `bge-m3`; `team/bge-m3:x` -> `team/bge-m3` (the local name without its tag)."""
    return split_tag(local)[0]


def target(registry: str, name: str) -> Target:
    host, namespace = split_registry(registry)
    repo = f"{namespace}/{name}" if namespace else name
    return Target(registry=host, repository=check_repository(repo))


def default_registry(config_registry: str | None) -> str | None:
    """The project config's `registry`, else $BGE_REGISTRY_URL (what push and doctor use without --registry)."""
    return config_registry or os.environ.get("BGE_REGISTRY_URL") or None


def resolve_registry(flag: str | None, config_registry: str | None) -> str:
    """--registry, else the project config's `registry`, else $BGE_REGISTRY_URL."""
    value = flag or default_registry(config_registry)
    if not value:
        raise PushError("no registry to push to",
                        "pass --registry HOST[/NAMESPACE], set `registry:` in bgeimg.yaml, or export BGE_REGISTRY_URL")
    return value


def push(docker_api, local: list[str], targets: list[Target], tags: list[str], *,
         progress: Callable[[str], None] | None = None, client_factory=RegistryClient) -> list[Pushed]:
    """Export each local image once, then push to every target; one Pushed per target, errors inside."""
    if not tags:
        raise PushError("no tags to push", "pass --scheme or --tag")
    workdir = Path(tempfile.mkdtemp(prefix="bgeimg-push-"))
    try:
        images = [export(docker_api, ref, workdir) for ref in local]
        platforms = [i.platform for i in images]
        if len(set(platforms)) != len(platforms):
            raise PushError(f"two local images have the same platform ({', '.join(platforms)})",
                            "give one image per platform")
        return [push_to(client_factory(t.registry), t.repository, images, tags, progress) for t in targets]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class ReleaseRequest:
    """`bgeimg push` as plain values: which local images, where to, and the tag rules (None = the config's)."""

    images: list[str]
    registry: str | None = None
    repo: str | None = None
    mirrors: list[str] = field(default_factory=list)
    schemes: tuple[str, ...] | None = None
    version: str | None = None
    extra_tags: tuple[str, ...] = ()
    latest: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    long_commit: bool = False
    allow_dirty: bool = False
    platforms: list[str] | None = None


def release(request: ReleaseRequest, *, config_registry: str | None, config_tags: dict, project_dir: Path,
            progress: Callable[[str], None] | None = None) -> list[Pushed]:
    """Resolve the targets and the tag set (bad input first), then push; one Pushed per target."""
    from datetime import datetime, timezone

    from bgeimg.oci.docker import api_client
    from bgeimg.release import gitinfo
    from bgeimg.release import tags as tagging

    name = request.repo or repository_name(request.images[0])
    targets = [target(r, name) for r in [resolve_registry(request.registry, config_registry), *request.mirrors]]
    policy = tagging.policy_from_config(
        config_tags, schemes=request.schemes, latest=request.latest, prefix=request.prefix, suffix=request.suffix,
        long_commit=request.long_commit or None, allow_dirty=request.allow_dirty, extra=request.extra_tags)
    tagset = tagging.compute_tags(policy, version=request.version, git=gitinfo.facts(project_dir),
                                  now=datetime.now(timezone.utc))
    docker_api = api_client()
    local = platform_images(docker_api, request.images[0], request.platforms) if len(request.images) == 1 \
        else list(request.images)
    return push(docker_api, local, targets, tagset.tags, progress=progress)


def check_results(results: list[Pushed]) -> None:
    """Raise PushFailed (exit 3) when any target failed; the others' results were already printed."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise PushFailed(f"push failed on {len(failed)} of {len(results)} registries: "
                         + "; ".join(f"{r.registry}: {r.error}" for r in failed))
