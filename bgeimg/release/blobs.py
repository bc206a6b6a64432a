"""Getting every blob of the images into each registry with as little work as possible:

    1. each layer's diff_id (from `inspect`) -> its compressed digest from the layer cache -> HEAD it in the
       target repository, else mount it from another repository of the same registry where it was seen
    2. one export per image, compressing only what some registry still lacks, in parallel; each layer is
       uploaded (one upload queue per registry) as soon as it is compressed, while the export goes on
    3. what the manifests need: the config and each layer's digest and size, whether it moved or not

A second push of the same image exports nothing, compresses nothing and uploads no layer: only HEADs.
A registry that fails is marked with its error and left out from then on; the others go on.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.errors import BgeimgError
from bgeimg.oci.registry import RegistryClient
from bgeimg.progress import Meter, Silent, step
from bgeimg.release.export import COMPRESSION, Layer, LocalImage, export
from bgeimg.release.layercache import Compressed, LayerCache, sha256_of


@dataclass
class Destination:
    """One registry repository being pushed to, and what this push knows it holds."""

    client: RegistryClient
    repository: str
    present: set[str] = field(default_factory=set)  # digests found there (HEAD or mount) before uploading
    uploaded: set[str] = field(default_factory=set)  # digests this push uploaded
    error: str | None = None
    queue: ThreadPoolExecutor | None = None  # one upload at a time per registry: its client's stats stay exact

    def fail(self, exc: BgeimgError) -> None:
        self.error = self.error or str(exc)


@dataclass
class Ready:
    """One image's blobs as its manifest names them: bytes in memory (the config), a file, or already there."""

    config_digest: str
    config: bytes
    layers: list[tuple[str, int, Path | None]]  # (digest, size, compressed file or None when nothing moved)


@dataclass
class Work:
    """The local work a push did: what `bench/push.py` and the tests read."""

    images_exported: int = 0
    layers_compressed: int = 0
    bytes_compressed: int = 0  # uncompressed bytes fed to gzip


def prepare(docker_api, images: list[LocalImage], dests: list[Destination], cache: LayerCache, workdir: Path, *,
            meter: Meter | None = None, say: Callable[[str], None] | None = None) -> tuple[list[Ready], Work]:
    """Steps 1 and 2 for every destination at once; the returned blobs are in every destination without error,
    or on disk under `workdir` (the caller removes it once every manifest is put)."""
    meter = meter or Silent()
    tell = say or (lambda _msg: None)
    work = Work()
    known: dict[str, Compressed] = {}
    for image in images:
        for diff_id in image.diff_ids:
            hits = cache.lookup(diff_id, COMPRESSION)
            if hits:
                known[diff_id] = hits[0]
    lacking = {d for image in images for d in image.diff_ids if d not in known}
    for dest in dests:
        try:
            for diff_id, entry in known.items():
                if not _has(dest, entry, cache):
                    lacking.add(diff_id)
        except BgeimgError as exc:
            dest.fail(exc)
    configs = {image.image_id: _cached_config(cache, image) for image in images}
    for dest in dests:  # a config seen in another repository of the registry is mounted, like the layers
        for raw in configs.values():
            if raw is not None and dest.error is None:
                digest = sha256_of(raw)
                try:
                    _has(dest, Compressed(digest, len(raw), len(raw), "none"), cache)
                except BgeimgError as exc:
                    dest.fail(exc)
    made: dict[str, Layer] = {}
    uploads: list[tuple[Destination, Future]] = []
    lock = threading.Lock()

    def ship(layer: Layer) -> None:  # on a compression thread, as soon as a layer is ready
        with lock:
            for dest in dests:
                if dest.error is None and dest.queue is not None:
                    uploads.append((dest, dest.queue.submit(_ensure, dest, layer, meter, tell)))

    with ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="bgeimg-gzip") as pool:
        for dest in dests:
            dest.queue = ThreadPoolExecutor(1, thread_name_prefix=f"bgeimg-up-{dest.client.host}")
        leaving = True  # by an exception (Ctrl-C, SIGTERM, an export failure) unless the loop ends
        try:
            for image in images:
                want = {d for d in image.diff_ids if d in lacking and d not in made}
                if not want and configs[image.image_id] is not None:
                    continue
                sizes_wanted = {cache.diff_size(d) for d in want}
                skip = {s for d in image.diff_ids if d not in want and (s := cache.diff_size(d)) is not None}
                got = export(docker_api, image, want, need_config=configs[image.image_id] is None,
                             skip_sizes=skip - sizes_wanted, workdir=workdir, pool=pool, on_layer=ship,
                             meter=meter)
                work.images_exported += 1
                for layer in got.layers.values():
                    made[layer.diff_id] = layer
                    work.layers_compressed += 1
                    work.bytes_compressed += layer.diff_size
                    cache.record(layer.diff_id, Compressed(layer.digest, layer.size, layer.diff_size,
                                                           COMPRESSION))
                if got.config is not None:
                    configs[image.image_id] = got.config
                    cache.store_config(image.image_id, got.config)
            leaving = False
        finally:
            for dest in dests:
                assert dest.queue is not None
                # interrupted: the upload in flight ends, the queued ones never start (no tag is written anyway)
                dest.queue.shutdown(wait=True, cancel_futures=leaving)
    for _dest, fut in uploads:
        fut.result()  # _ensure keeps a registry's failure on its Destination; anything else is a bug: raise it
    ready = []
    for image in images:
        raw = configs[image.image_id]
        assert raw is not None, "export() raises when the config is missing"
        layers: list[tuple[str, int, Path | None]] = []
        for diff_id in image.diff_ids:
            if diff_id in made:
                m = made[diff_id]
                layers.append((m.digest, m.size, m.path))
            else:
                layers.append((known[diff_id].digest, known[diff_id].size, None))
        ready.append(Ready(config_digest=sha256_of(raw), config=raw, layers=layers))
    return ready, work


def _cached_config(cache: LayerCache, image: LocalImage) -> bytes | None:
    """The config an earlier push exported for this image id, if it still describes the same layers."""
    raw = cache.config(image.image_id)
    try:
        return raw if raw is not None and json.loads(raw)["rootfs"]["diff_ids"] == image.diff_ids else None
    except (ValueError, KeyError, TypeError):
        return None


def _has(dest: Destination, entry: Compressed, cache: LayerCache) -> bool:
    """Is the cached blob in the destination: there already, or mounted from where the cache saw it."""
    client, repo = dest.client, dest.repository
    size = client.blob_exists(repo, entry.digest)
    if size is not None and size in (entry.size, 0):  # some registries send no Content-Length on HEAD
        dest.present.add(entry.digest)
        return True
    for place in cache.seen_in(entry.digest):
        host, _, source = place.partition("/")
        if host == client.host and source != repo and client.mount_blob(repo, entry.digest, source):
            dest.present.add(entry.digest)
            return True
    cache.forget(entry.digest, client.host, repo)  # the cache was wrong about this registry
    return False


def _ensure(dest: Destination, layer: Layer, meter: Meter, say: Callable[[str], None]) -> None:
    """Upload a freshly compressed blob unless the destination has it (another image or push may have sent it)."""
    digest, path = layer.digest, layer.path
    if dest.error is not None or digest in dest.present or digest in dest.uploaded:
        return
    client = dest.client
    try:
        if client.blob_exists(dest.repository, digest) is not None:
            dest.present.add(digest)
            return
        say(f"{client.host}: upload {digest[7:19]} ({layer.size} bytes)")
        with step(meter, f"{client.host} {digest}", f"upload {digest[7:19]} to {client.host}",
                  path.stat().st_size) as advance:
            client.upload_blob(dest.repository, digest, path, progress=advance)
        dest.uploaded.add(digest)
    except BgeimgError as exc:
        dest.fail(exc)
