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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.errors import BgeimgError, OutsideError
from bgeimg.oci.mediatypes import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST
from bgeimg.oci.platform import ARCH_SUFFIX, platform_matches, platform_str
from bgeimg.oci.reference import check_repository, split_registry, split_tag
from bgeimg.oci.registry import RegistryClient, RegistryError, Stats
from bgeimg.release.sign import KeySpec


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

    @property
    def source(self) -> bytes | Path:
        """What to upload: the bytes in memory, else the file."""
        if self.data is not None:
            return self.data
        assert self.path is not None, "a blob has its bytes or a path"
        return self.path


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
    signed: bool = False  # push --sign: the index and every platform manifest
    sboms: dict[str, str] = field(default_factory=dict)  # push --sbom: platform -> the attached SBOM's digest

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {"registry": self.registry, "repository": self.repository, "digest": self.digest, "tags": self.tags,
                "platforms": self.platforms, "error": self.error, "bytes_uploaded": self.stats.blob_bytes_uploaded,
                "blobs_uploaded": self.stats.blobs_uploaded, "blobs_skipped": self.stats.blobs_skipped,
                "signed": self.signed, "sboms": self.sboms}


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
    if platforms:  # os, architecture and variant all compared: windows/amd64 is not linux/amd64
        have = {ref: _platform_of(docker_api, ref) for ref in found}
        found = [ref for ref in found if any(platform_matches(have[ref], p) for p in platforms)]
        missing = {p for p in platforms if not any(platform_matches(have[ref], p) for ref in found)}
        if missing:
            raise PushError(f"no local image of {image} for {', '.join(sorted(missing))}",
                            f"build it first: bgeimg build --platform {','.join(platforms)} --tag {image}")
    return found


def _platform_of(docker_api, ref: str) -> str:
    info = docker_api.inspect_image(ref)
    return platform_str({"os": info.get("Os", "linux"), "architecture": info.get("Architecture", "amd64"),
                         "variant": info.get("Variant")})


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
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]  # read() is all it needs
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


@dataclass
class LocalIndex:
    """A multi-platform image of a containerd image store, as `docker save` gives it (an OCI layout): the index
    and every blob it reaches (manifests, configs, layers, attestations), pushed byte for byte."""

    source: str
    media_type: str
    raw: bytes  # the index bytes: its digest is the image's
    manifests: dict[str, tuple[str, bytes]]  # digest -> (media type, raw) of the image and attestation manifests
    blobs: dict[str, Path]  # digest -> file (configs and layers)
    platforms: list[str]


def _containerd_store(docker_api) -> bool:
    from bgeimg.build.builders import image_store

    try:
        return image_store(docker_api.info()) == "containerd"
    except Exception:
        return False


def export_index(docker_api, ref: str, workdir: Path) -> LocalIndex | None:
    """`docker save REF` of a containerd store, when it holds an index of several platforms; None otherwise
    (a classic store's save, or one platform: the per-platform path applies)."""
    from bgeimg.oci.mediatypes import INDEX_TYPES, is_attestation

    workdir = Path(tempfile.mkdtemp(dir=workdir))
    files: dict[str, Path] = {}
    index_json = None
    with tarfile.open(fileobj=_StreamReader(docker_api.get_image(ref)), mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            if not member.isfile():
                continue
            fh = tar.extractfile(member)
            if member.name == "index.json":
                index_json = json.loads(fh.read())
            elif member.name.startswith("blobs/sha256/"):
                dest = workdir / member.name.rsplit("/", 1)[1]
                with dest.open("wb") as out:
                    shutil.copyfileobj(fh, out, 1 << 20)
                files["sha256:" + dest.name] = dest
    if not index_json or not index_json.get("manifests"):
        return None
    top = index_json["manifests"][0]
    if top.get("mediaType") not in INDEX_TYPES:
        return None
    raw = files[top["digest"]].read_bytes()
    doc = json.loads(raw)
    images = [d for d in doc.get("manifests", []) if not is_attestation(d)]
    if len(images) < 2:
        return None
    manifests = {d["digest"]: (d["mediaType"], files[d["digest"]].read_bytes()) for d in doc["manifests"]}
    return LocalIndex(source=ref, media_type=top["mediaType"], raw=raw, manifests=manifests,
                      blobs={d: f for d, f in files.items() if d not in manifests and d != top["digest"]},
                      platforms=[platform_str(d.get("platform")) for d in images])


def push_index_to(client: RegistryClient, repository: str, index: LocalIndex, tags: list[str],
                  progress: Callable[[str], None] | None = None) -> Pushed:
    """One index per tag, its bytes untouched: blobs a manifest names, then each manifest, then the index."""
    result = Pushed(registry=client.host, repository=repository, platforms=index.platforms)
    say = progress or (lambda _msg: None)
    try:
        for digest, (media_type, raw) in index.manifests.items():
            doc = json.loads(raw)
            for desc in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                blob = desc.get("digest")
                if not blob or client.blob_exists(repository, blob) is not None:
                    client.stats.blobs_skipped += 1 if blob else 0
                    continue
                if blob not in index.blobs:
                    raise OutsideError(f"{index.source}: blob {blob[:19]} is not in the local store",
                                       "pull or build the image again")
                say(f"{client.host}: upload {blob[7:19]} ({index.blobs[blob].stat().st_size} bytes)")
                client.upload_blob(repository, blob, index.blobs[blob])
            client.put_manifest(repository, digest, raw, media_type)
        result.digest = client.put_manifest(repository, "sha256:" + hashlib.sha256(index.raw).hexdigest(),
                                            index.raw, index.media_type)
        for tag in tags:
            client.put_manifest(repository, tag, index.raw, index.media_type)
            result.tags.append(tag)
            say(f"{client.host}/{repository}:{tag} -> {result.digest}")
    except BgeimgError as exc:
        result.error = str(exc)
    result.stats = client.stats
    return result


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


def index_of(images: list[PlatformImage], annotations: dict[str, str] | None = None) -> bytes:
    """One manifest list over the platforms, in a stable order; `annotations` (the OCI version of what was pushed)
    go on the index, where registries and `docker buildx imagetools inspect` show them."""
    manifests = sorted((img.descriptor() for img in images), key=lambda d: d["digest"])
    manifests.sort(key=lambda d: (d["platform"]["os"], d["platform"]["architecture"]))
    doc: dict = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": manifests}
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(doc, separators=(",", ":")).encode()


# What a registry answers when a manifest names a blob it does not (yet) have: another push of the same image may
# be finishing that very blob (both skipped or both uploaded it), or the blob was lost. Checked and re-sent.
_BLOB_MISSING = ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "DIGEST_INVALID")


def _send_blobs(client: RegistryClient, repository: str, image: PlatformImage, say: Callable[[str], None],
                *, count_skips: bool = True) -> None:
    for blob in [image.config, *image.layers]:
        if client.blob_exists(repository, blob.digest) is not None:
            if count_skips:
                client.stats.blobs_skipped += 1
            continue
        say(f"{client.host}: {image.platform} upload {blob.digest[7:19]} ({blob.size} bytes)")
        client.upload_blob(repository, blob.digest, blob.source)


def _put_platform_manifest(client: RegistryClient, repository: str, image: PlatformImage,
                           say: Callable[[str], None], attempts: int = 4) -> None:
    """Put the manifest; when the registry says a blob it names is missing (a concurrent push of the same image
    is finishing it, or its upload was lost), check every blob, send the missing ones again and retry."""
    for attempt in range(attempts):
        try:
            client.put_manifest(repository, image.manifest_digest, image.manifest, DOCKER_MANIFEST)
            return
        except RegistryError as exc:
            if attempt == attempts - 1 or not any(code in str(exc) for code in _BLOB_MISSING):
                raise
        time.sleep(0.5 * (2 ** attempt))  # let the other push's upload commit before looking again
        _send_blobs(client, repository, image, say, count_skips=False)


def push_to(client: RegistryClient, repository: str, images: list[PlatformImage], tags: list[str],
            progress: Callable[[str], None] | None = None, annotations: dict[str, str] | None = None) -> Pushed:
    """Push to one registry; the result carries the error instead of raising, so mirrors stay independent."""
    result = Pushed(registry=client.host, repository=repository, platforms=[i.platform for i in images])
    say = progress or (lambda _msg: None)
    try:
        for image in images:
            _send_blobs(client, repository, image, say)
            _put_platform_manifest(client, repository, image, say)
        # Tags are written only once every platform manifest is confirmed present.
        for image in images:
            if client.head_manifest(repository, image.manifest_digest) is None:
                raise RegistryError(f"{client.host}/{repository}@{image.manifest_digest} missing after upload")
        index = index_of(images, annotations)
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
         progress: Callable[[str], None] | None = None, client_factory=RegistryClient,
         annotations: dict[str, str] | None = None) -> list[Pushed]:
    """Export each local image once, then push to every target; one Pushed per target, errors inside."""
    if not tags:
        raise PushError("no tags to push", "pass --scheme or --tag")
    workdir = Path(tempfile.mkdtemp(prefix="bgeimg-push-"))
    try:
        if len(local) == 1 and _containerd_store(docker_api):  # a multi-platform image goes up as its index
            index = export_index(docker_api, local[0], workdir)
            if index is not None:
                return [push_index_to(client_factory(t.registry), t.repository, index, tags, progress)
                        for t in targets]
        images = [export(docker_api, ref, workdir) for ref in local]
        platforms = [i.platform for i in images]
        if len(set(platforms)) != len(platforms):
            raise PushError(f"two local images have the same platform ({', '.join(platforms)})",
                            "give one image per platform")
        return [push_to(client_factory(t.registry), t.repository, images, tags, progress, annotations)
                for t in targets]
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
    sign: KeySpec | None = None  # sign what was pushed with this key
    sbom: bool = False  # attach a CycloneDX SBOM of the image to the pushed digest


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
    git = gitinfo.facts(project_dir)
    tagset = tagging.compute_tags(policy, version=request.version, git=git, now=datetime.now(timezone.utc))
    # The version of what was pushed (the label inside says what it was built as, often `latest`), fixed per
    # version and commit so pushing the same image twice gives the same index digest.
    annotations = {"org.opencontainers.image.version": tagset.version or tagset.tags[0]}
    if git.commit:
        annotations["org.opencontainers.image.revision"] = git.commit
    docker_api = api_client()
    local = platform_images(docker_api, request.images[0], request.platforms) if len(request.images) == 1 \
        else list(request.images)
    results = push(docker_api, local, targets, tagset.tags, progress=progress, annotations=annotations)
    if request.sign is not None or request.sbom:
        _after_push(results, request, local, project_dir / "bgeimg.lock", progress or (lambda _msg: None))
    return results


def _after_push(results: list[Pushed], request: ReleaseRequest, local: list[str], lock: Path,
                say: Callable[[str], None]) -> None:
    """Attach the SBOMs and/or sign each registry's pushed digest; a failure is that registry's error (exit 3).
    The SBOMs go first, so a signature made afterwards is the last word on what was released."""
    from bgeimg.analyze.report import analyze
    from bgeimg.oci.reference import Reference
    from bgeimg.release import sbom, sign

    boms = {}
    if request.sbom:
        for image in local:
            report = analyze(image, source="engine")
            boms[report.platform] = sbom.to_json(sbom.build(report, lock))
    for result in results:
        if not result.ok or not result.digest:
            continue
        client = RegistryClient(result.registry)
        pushed = Reference(result.registry, result.repository, None, result.digest)
        try:
            if boms:
                result.sboms = sbom.attach_all(client, result.repository, result.digest, boms)
                say(f"{result.registry}/{result.repository}@{result.digest}: SBOM attached for "
                    f"{', '.join(result.sboms)}")
            if request.sign is not None:
                sign.sign(client, pushed, request.sign)
                result.signed = True
                say(f"{result.registry}/{result.repository}@{result.digest}: signed (index and every platform)")
        except BgeimgError as exc:
            result.error = f"pushed {result.digest}, but: {exc}"


def check_results(results: list[Pushed]) -> None:
    """Raise PushFailed (exit 3) when any target failed; the others' results were already printed."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise PushFailed(f"push failed on {len(failed)} of {len(results)} registries: "
                         + "; ".join(f"{r.registry}: {r.error}" for r in failed))
