"""Push per-platform local images as one multi-arch image under each tag, to a registry and its mirrors.

    local images (one per platform) --inspect--> diff_ids --layer cache + HEAD/mount--> what each registry
    lacks --one docker save, only those layers gzipped (reproducibly, in parallel, uploaded as each is ready)-->
    one manifest per platform, put by digest --> every manifest confirmed present --> one index under each tag.

A second push of the same image exports and compresses nothing and uploads no layer (bgeimg.release.blobs).

A tag is written last, only when everything it points to is in the registry: an interrupted push leaves at most
unreferenced blobs, never a tag pointing at a partial image. Each registry (the target and every mirror) is
pushed independently; a failure on one is reported and does not undo the others.
"""

from __future__ import annotations

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
from bgeimg.progress import Meter
from bgeimg.release import blobs as blobsync
from bgeimg.release.export import LocalImage, describe
from bgeimg.release.layercache import LayerCache
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
    work: blobsync.Work = field(default_factory=blobsync.Work)  # local work, shared by every target of a push
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
                "blobs_mounted": self.stats.blobs_mounted, "images_exported": self.work.images_exported,
                "layers_compressed": self.work.layers_compressed, "signed": self.signed, "sboms": self.sboms}


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
        _put_tags(client, repository, index.raw, index.media_type, tags, result, say)
    except BgeimgError as exc:
        result.error = str(exc)
    result.stats = client.stats
    return result


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
                *, count_skips: bool = True, present: set[str] | None = None,
                uploaded: set[str] | None = None) -> None:
    for blob in [image.config, *image.layers]:
        if uploaded and blob.digest in uploaded:
            continue
        if (present and blob.digest in present) or client.blob_exists(repository, blob.digest) is not None:
            if count_skips:
                client.stats.blobs_skipped += 1
            continue
        if blob.path is None and blob.data is None:  # found at the start, gone now (a registry GC?)
            raise RegistryError(f"{blob.digest} vanished from {client.host}/{repository} during the push",
                                "push again")
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


def _put_tags(client: RegistryClient, repository: str, index: bytes, media_type: str, tags: list[str],
              result: Pushed, say: Callable[[str], None]) -> None:
    """The index under its digest, then under each tag: the tags, what users pull, come last."""
    result.digest = _put_index(client, repository, "sha256:" + hashlib.sha256(index).hexdigest(), index, media_type)
    for tag in tags:
        _put_index(client, repository, tag, index, media_type)
        result.tags.append(tag)
        say(f"{client.host}/{repository}:{tag} -> {result.digest}")


def _put_index(client: RegistryClient, repository: str, ref: str, index: bytes, media_type: str,
               attempts: int = 4) -> str:
    """Put the index under its digest or a tag. A concurrent push of the same image rewrites the registry's links
    to the platform manifests as this put checks them (distribution writes them in place), which reads as
    DIGEST_INVALID / MANIFEST_BLOB_UNKNOWN for a moment: wait and put again."""
    for attempt in range(attempts):
        try:
            return client.put_manifest(repository, ref, index, media_type)
        except RegistryError as exc:
            if attempt == attempts - 1 or not any(code in str(exc) for code in _BLOB_MISSING):
                raise
        time.sleep(0.5 * (2 ** attempt))
    raise AssertionError("unreachable")


def push_to(client: RegistryClient, repository: str, images: list[PlatformImage], tags: list[str],
            progress: Callable[[str], None] | None = None, annotations: dict[str, str] | None = None, *,
            present: set[str] | None = None, uploaded: set[str] | None = None) -> Pushed:
    """Push to one registry; the result carries the error instead of raising, so mirrors stay independent.
    `present`: digests already found there; `uploaded`: digests this push already sent (while exporting)."""
    result = Pushed(registry=client.host, repository=repository, platforms=[i.platform for i in images])
    say = progress or (lambda _msg: None)
    try:
        for image in images:
            _send_blobs(client, repository, image, say, present=present, uploaded=uploaded)
            _put_platform_manifest(client, repository, image, say)
        # Tags are written only once every platform manifest is confirmed present.
        for image in images:
            if client.head_manifest(repository, image.manifest_digest) is None:
                raise RegistryError(f"{client.host}/{repository}@{image.manifest_digest} missing after upload")
        _put_tags(client, repository, index_of(images, annotations), DOCKER_LIST, tags, result, say)
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
         progress: Callable[[str], None] | None = None, meter: Meter | None = None, client_factory=RegistryClient,
         annotations: dict[str, str] | None = None, cache: LayerCache | None = None) -> list[Pushed]:
    """Ask every target what it has, export and compress only what one lacks (once), then put the manifests and
    tags on each target; one Pushed per target, errors inside."""
    if not tags:
        raise PushError("no tags to push", "pass --scheme or --tag")
    if len(local) == 1 and _containerd_store(docker_api):  # a multi-platform image goes up as its index
        workdir = Path(tempfile.mkdtemp(prefix="bgeimg-push-"))
        try:
            index = export_index(docker_api, local[0], workdir)
            if index is not None:
                return [push_index_to(client_factory(t.registry), t.repository, index, tags, progress)
                        for t in targets]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    images = [_inspect(docker_api, ref) for ref in local]
    platforms = [i.platform for i in images]
    if len(set(platforms)) != len(platforms):
        raise PushError(f"two local images have the same platform ({', '.join(platforms)})",
                        "give one image per platform")
    cache = cache if cache is not None else LayerCache()
    dests = [blobsync.Destination(client_factory(t.registry), t.repository) for t in targets]
    workdir = Path(tempfile.mkdtemp(prefix="bgeimg-push-"))
    try:
        ready, work = blobsync.prepare(docker_api, images, dests, cache, workdir, meter=meter, say=progress)
        prepared = [_platform_image(image, r) for image, r in zip(images, ready)]
        results = []
        for dest in dests:
            client = dest.client
            if dest.error is not None:
                result = Pushed(registry=client.host, repository=dest.repository, platforms=platforms,
                                stats=client.stats, error=dest.error)
            else:
                result = push_to(client, dest.repository, prepared, tags, progress, annotations, present=dest.present,
                                 uploaded=dest.uploaded)
            result.work = work
            if result.ok:
                for image in prepared:
                    for blob in [image.config, *image.layers]:
                        cache.found(blob.digest, client.host, dest.repository)
            results.append(result)
        return results
    finally:
        try:
            cache.save()
        except OSError:
            pass  # the cache is a hint: a read-only home makes the next push slower, not wrong
        shutil.rmtree(workdir, ignore_errors=True)


def _inspect(docker_api, ref: str) -> LocalImage:
    try:
        return describe(docker_api.inspect_image(ref), ref)
    except Exception:
        raise PushError(f"no local image {ref}", "build it first (bgeimg build) or name an existing image") from None


def _platform_image(image: LocalImage, ready: blobsync.Ready) -> PlatformImage:
    config = Blob(digest=ready.config_digest, size=len(ready.config), data=ready.config)
    layers = [Blob(digest=d, size=size, path=path) for d, size, path in ready.layers]
    result = PlatformImage(source=image.ref, platform=image.platform, config=config, layers=layers)
    result.manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": b.digest, "size": b.size} for b in layers],
    }, separators=(",", ":")).encode()
    return result


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
            progress: Callable[[str], None] | None = None, meter: Meter | None = None) -> list[Pushed]:
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
    results = push(docker_api, local, targets, tagset.tags, progress=progress, meter=meter, annotations=annotations)
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
