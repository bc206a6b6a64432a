"""The local side of a push: what an engine image is made of (from `inspect`, no export), and exporting it once
with only the layers a registry lacks compressed, in parallel, each handed on as soon as it is ready.

Compression is reproducible: ISA-L's gzip at a fixed level, no name, mtime 0, so the same layer always gives the
same digest (the version is pinned in pyproject and recorded in the layer cache with each digest).
"""

from __future__ import annotations

import hashlib
import json
import queue
import tarfile
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import isal
from isal import isal_zlib

from bgeimg.errors import OutsideError
from bgeimg.oci.docker import export_stream
from bgeimg.oci.platform import platform_str
from bgeimg.oci.streams import Counting
from bgeimg.progress import Meter, Silent

LEVEL = 2  # ISA-L's default: a /usr/lib tar to 0.368 of its size at 112 MB/s; zlib -6: 0.324 at 7 MB/s here
COMPRESSION = f"gzip isal-{isal.__version__} level {LEVEL} mtime 0"
BLOCK = 1 << 20


@dataclass
class LocalImage:
    """An engine image as `inspect` shows it: enough to ask a registry what it has before exporting anything."""

    ref: str
    image_id: str
    diff_ids: list[str]
    platform: str
    size: int  # the engine's idea of the image size: the export progress bar's total


def describe(info: dict, ref: str) -> LocalImage:
    """From `docker_api.inspect_image(ref)`."""
    return LocalImage(ref=ref, image_id=info["Id"], diff_ids=list((info.get("RootFS") or {}).get("Layers") or []),
                      platform=platform_str({"os": info.get("Os", "linux"),
                                             "architecture": info.get("Architecture", "amd64"),
                                             "variant": info.get("Variant")}),
                      size=int(info.get("Size") or 0))


@dataclass
class Layer:
    """A layer compressed on disk."""

    diff_id: str
    diff_size: int
    digest: str
    size: int
    path: Path


class _Gzip:
    """One layer gzipped on a pool thread while the export reads it: the reader puts blocks, then its verdict
    (the diff_id it hashed, wanted or not) and None; the thread keeps the file only when it was wanted."""

    def __init__(self, dest: Path, diff_size: int):
        self.dest, self.diff_size = dest, diff_size
        self.blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=32)  # at most 32 MB ahead of the gzip
        self.diff_id: str | None = None  # set (None: not wanted, or the read broke off) before the final None
        self.passthrough = False  # the engine saved it gzipped already (a containerd store): kept as it is

    def run(self, on_layer: Callable[[Layer], None] | None) -> Layer | None:
        packer = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, 31)  # wbits 31: gzip, mtime 0, no name
        digest, size = hashlib.sha256(), 0
        with self.dest.open("wb") as out:
            while True:
                block = self.blocks.get()
                if self.passthrough:
                    data = block or b""
                else:
                    data = packer.compress(block) if block is not None else packer.flush()
                digest.update(data)
                size += len(data)
                out.write(data)
                if block is None:
                    break
        if self.diff_id is None:
            self.dest.unlink()
            return None
        layer = Layer(diff_id=self.diff_id, diff_size=self.diff_size, digest="sha256:" + digest.hexdigest(),
                      size=size, path=self.dest)
        if on_layer:
            on_layer(layer)
        return layer


@dataclass
class Export:
    """What one export gave: the compressed layers it was asked for and the image config."""

    layers: dict[str, Layer]
    config: bytes | None


def export(docker_api, image: LocalImage, wanted: set[str], *, need_config: bool, skip_sizes: set[int],
           workdir: Path, pool: Executor, on_layer: Callable[[Layer], None] | None = None,
           meter: Meter | None = None) -> Export:
    """Stream `docker save` once; gzip (on `pool`, while reading) only the layers in `wanted`.

    A docker 20.10 save names layers by a v1 id, not their diff_id, so a layer is known only once it is read and
    hashed. A member whose size is that of a layer this push does not need (`skip_sizes`, from the cache) is only
    hashed; any other is gzipped as it streams by and kept if its hash is wanted. A wanted layer skipped by a size collision
    is caught by its hash and fetched in a second pass. The export stops as soon as everything wanted is in."""
    meter = meter or Silent()
    got: dict[str, Future] = {}
    config = None
    for attempt in range(2):
        skip = set() if attempt else skip_sizes
        config = _one_pass(docker_api, image, wanted - set(got), need_config and config is None, skip, workdir,
                           pool, on_layer, meter, got) or config
        if set(got) >= wanted and (config is not None or not need_config):
            break
    layers = {diff_id: fut.result() for diff_id, fut in got.items()}  # a failed compression raises here
    missing = wanted - set(layers)
    if missing or (need_config and config is None):
        raise OutsideError(f"docker save of {image.ref} lacks {'layer ' + min(missing) if missing else 'its config'}",
                           "the engine's image store may be damaged: docker pull or rebuild the image")
    return Export(layers=layers, config=config)


def _one_pass(docker_api, image, wanted, need_config, skip, workdir, pool, on_layer, meter, got) -> bytes | None:
    configs: dict[str, bytes] = {}
    found: bytes | None = None
    manifest = None
    stream = export_stream(docker_api, [image.ref])
    key = f"export {image.ref}"
    meter.start(key, f"export {image.ref}", image.size or None)
    ok = False
    try:
        counted = Counting(stream, lambda n: meter.advance(key, n))
        with tarfile.open(fileobj=counted, mode="r|", bufsize=BLOCK) as tar:  # type: ignore[call-overload]
            for member in tar:
                if not member.isfile():
                    continue
                fh: Any = tar.extractfile(member)
                name = member.name
                if name == "manifest.json":
                    manifest = json.loads(fh.read())
                    continue
                if member.size < (4 << 20) and (name.endswith(".json") or name.startswith("blobs/")):
                    head = fh.read(1)
                    if head == b"{":  # JSON: a config, a manifest, an index (a layer tar never starts with `{`)
                        configs[name] = head + fh.read()
                        if _describes(configs[name], image):
                            found, need_config = configs[name], False
                        if not wanted and not need_config:
                            break
                        continue
                    fh = _Prefixed(head, fh)
                elif not (name.endswith("layer.tar") or name.startswith("blobs/")):
                    continue
                named = f"sha256:{name.rsplit('/', 1)[-1]}" if name.startswith("blobs/sha256/") else None
                if named is not None and named in image.diff_ids and named not in wanted:
                    continue  # a save that names layers by diff_id (docker 25+): skipped unread
                if member.size in skip and named not in wanted:
                    continue  # most likely a layer every registry has; if not, the second pass takes it
                gz = _Gzip(workdir / f"layer-{image.image_id[7:19]}-{member.offset}.tar.gz", member.size)
                job = pool.submit(gz.run, on_layer)
                try:
                    diff_id, gz.diff_size = _hash(fh, gz)
                    if diff_id in wanted and diff_id not in got:
                        gz.diff_id = diff_id
                        got[diff_id] = job
                finally:
                    gz.blocks.put(None)
                if set(got) >= wanted and not need_config:
                    break
        ok = True
    except (tarfile.TarError, OSError) as exc:
        raise OutsideError(f"docker save of {image.ref} broke off ({type(exc).__name__})",
                           "is the engine healthy?") from None
    finally:
        stream.close()  # an early stop: the engine ends its export
        meter.finish(key, ok)
    if found is None and manifest:
        found = configs.get(manifest[0].get("Config", ""))
    return found if found is not None and _describes(found, image) else None


def _describes(raw: bytes, image: LocalImage) -> bool:
    """Is `raw` the image config of `image` (its rootfs lists exactly the image's diff_ids)?"""
    try:
        doc = json.loads(raw)
        return isinstance(doc, dict) and (doc.get("rootfs") or {}).get("diff_ids") == image.diff_ids
    except ValueError:
        return False


def _hash(fh, gz: _Gzip) -> tuple[str, int]:
    """A layer's (diff_id, uncompressed size) as it streams by, each block handed to the gzip thread. A layer the
    engine saved gzipped (Docker 26's containerd store does) is hashed through inflate and kept as it is."""
    digest, size = hashlib.sha256(), 0
    inflate = None
    first = True
    while True:
        block = fh.read(BLOCK)
        if first:
            first = False
            if block[:2] == b"\x1f\x8b":
                gz.passthrough = True  # before the first block reaches the thread
                inflate = zlib.decompressobj(31)
        if not block:
            return "sha256:" + digest.hexdigest(), size
        plain = block
        if inflate is not None:
            plain = inflate.decompress(block)
            while inflate.eof and inflate.unused_data:  # concatenated gzip members (pigz and the like)
                rest = inflate.unused_data
                inflate = zlib.decompressobj(31)
                plain += inflate.decompress(rest)
        digest.update(plain)
        size += len(plain)
        gz.blocks.put(block)


class _Prefixed:
    """`head` then the rest of `fh`, as one readable stream."""

    def __init__(self, head: bytes, fh):
        self._head, self._fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data + (self._fh.read(n - len(data)) if n > len(data) else b"" if n >= 0 else self._fh.read())
        return self._fh.read(n)


