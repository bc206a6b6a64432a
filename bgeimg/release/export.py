"""The local side of a push: what an engine image is made of (from `inspect`, no export), and exporting it once
with only the layers a registry lacks compressed, in parallel, each handed on as soon as it is ready.

Compression is reproducible: ISA-L's gzip at a fixed level, no name, mtime 0, so the same layer always gives the
same digest (the version is pinned in pyproject and recorded in the layer cache with each digest).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading
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


def gzip_file(raw: Path, dest: Path) -> tuple[str, int]:
    """Gzip `raw` into `dest` reproducibly; (digest, size) hashed as written, not read back."""
    packer = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, 31)  # wbits 31: a gzip member, mtime 0, no name
    digest, size = hashlib.sha256(), 0
    with raw.open("rb") as src, dest.open("wb") as out:
        while True:
            block = src.read(BLOCK)
            data = packer.compress(block) if block else packer.flush()
            digest.update(data)
            size += len(data)
            out.write(data)
            if not block:
                break
    return "sha256:" + digest.hexdigest(), size


@dataclass
class Export:
    """What one export gave: the compressed layers it was asked for and the image config."""

    layers: dict[str, Layer]
    config: bytes | None


def export(docker_api, image: LocalImage, wanted: set[str], *, need_config: bool, skip_sizes: set[int],
           workdir: Path, pool: Executor, on_layer: Callable[[Layer], None] | None = None,
           meter: Meter | None = None) -> Export:
    """Stream `docker save` once; spool and compress (on `pool`) only the layers in `wanted`.

    A docker 20.10 save names layers by a v1 id, not their diff_id, so a layer is known only once it is read and
    hashed. A member whose size is that of a layer this push does not need (`skip_sizes`, from the cache) is only
    hashed; any other is spooled and compressed if its hash is wanted. A wanted layer skipped by a size collision
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
    hexid = image.image_id.split(":")[-1]
    configs: dict[str, bytes] = {}
    manifest = None
    stream = export_stream(docker_api, [image.ref])
    key = f"export {image.ref}"
    meter.start(key, f"export {image.ref}", image.size or None)
    lock = threading.Lock()
    try:
        counted = _Counting(stream, lambda n: meter.advance(key, n))
        with tarfile.open(fileobj=counted, mode="r|") as tar:  # type: ignore[call-overload]  # read() is all it needs
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
                    if head == b"{":  # an image config (a layer tar never starts with `{`)
                        configs[name] = head + fh.read()
                        if name in (f"{hexid}.json", f"blobs/sha256/{hexid}"):
                            need_config = False
                        if not wanted and not need_config:
                            break
                        continue
                    fh = _Prefixed(head, fh)
                elif not (name.endswith("layer.tar") or name.startswith("blobs/")):
                    continue
                named = f"sha256:{name.rsplit('/', 1)[-1]}" if name.startswith("blobs/sha256/") else None
                if named is not None and named in image.diff_ids and named not in wanted:
                    continue  # a save that names layers by diff_id (docker 25+): skipped unread
                spool = member.size not in skip or named in wanted
                diff_id, raw = _read(fh, workdir / f"raw-{len(got)}-{member.offset}" if spool else None)
                if diff_id in wanted and diff_id not in got and raw is not None:
                    with lock:
                        got[diff_id] = pool.submit(_compress, diff_id, member.size, raw, on_layer)
                elif raw is not None:
                    raw.unlink()
                if set(got) >= wanted and not need_config:
                    break
    except (tarfile.TarError, OSError) as exc:
        raise OutsideError(f"docker save of {image.ref} broke off ({type(exc).__name__})",
                           "is the engine healthy?") from None
    finally:
        stream.close()  # an early stop: the engine ends its export
        meter.finish(key)
    if manifest:
        entry = manifest[0]
        return configs.get(entry.get("Config", ""))
    for name in (f"{hexid}.json", f"blobs/sha256/{hexid}"):
        if name in configs:
            return configs[name]
    return None


def _read(fh, spool: Path | None) -> tuple[str, Path | None]:
    """Hash a layer as it streams by, writing it to `spool` when given."""
    digest = hashlib.sha256()
    out = spool.open("wb") if spool else None
    try:
        while True:
            block = fh.read(BLOCK)
            if not block:
                break
            digest.update(block)
            if out:
                out.write(block)
    finally:
        if out:
            out.close()
    return "sha256:" + digest.hexdigest(), spool


def _compress(diff_id: str, diff_size: int, raw: Path, on_layer: Callable[[Layer], None] | None) -> Layer:
    dest = raw.with_name(raw.name.replace("raw-", "layer-") + ".tar.gz")
    try:
        digest, size = gzip_file(raw, dest)
    finally:
        raw.unlink()
    layer = Layer(diff_id=diff_id, diff_size=diff_size, digest=digest, size=size, path=dest)
    if on_layer:
        on_layer(layer)
    return layer


class _Prefixed:
    """`head` then the rest of `fh`, as one readable stream."""

    def __init__(self, head: bytes, fh):
        self._head, self._fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data + (self._fh.read(n - len(data)) if n > len(data) else b"" if n >= 0 else self._fh.read())
        return self._fh.read(n)


class _Counting:
    """A readable stream that reports how many bytes went by."""

    def __init__(self, fh, advance: Callable[[int], None]):
        self._fh, self._advance = fh, advance

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if data:
            self._advance(len(data))
        return data
