"""Offline bundles: several images (every platform present locally) in one zstd-compressed tar with a
manifest of sha256 checksums, for sites with no network.

    site.tar.zst = zstd( tar( bgeimg-bundle.json, oci-layout, index.json, manifest.json, blobs/sha256/... ) )

Inside is one OCI image layout (bgeimg.oci.layout) made from a single `docker save` of every image: a layer
shared by several images (the base, the venv) is stored once, `index.json` names every image and platform, and
docker's `manifest.json` sits beside it. So besides `bgeimg bundle load`, `zstd -dc site.tar.zst | docker load`
and `skopeo copy oci-archive:site.tar:NAME:TAG ...` (after `zstd -d`) read it too. `bgeimg-bundle.json` comes
first and holds each file's sha256 and size.

`load` reads the file twice: first it checks every member against the manifest, then it imports. A corrupted or
truncated file is refused before anything reaches the engine. Bundles of the first format (one `docker save`
per image, `manifest.json` first) still load.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bgeimg.errors import BgeimgError
from bgeimg.oci import layout
from bgeimg.oci.docker import export_stream
from bgeimg.oci.streams import sha256_file
from bgeimg.oci.zstd import CompressionParameter, ZstdError, ZstdFile
from bgeimg.progress import Meter, Silent, step

FORMAT = "bgeimg-bundle/2"
FORMAT_V1 = "bgeimg-bundle/1"  # images/N.tar, one docker save each: still loaded
CHECKSUMS = "bgeimg-bundle.json"


class BundleError(BgeimgError):
    """A bundle cannot be written or is not a valid, complete bundle (exit 2)."""


@dataclass
class Member:
    refs: list[str]
    file: str
    sha256: str
    size: int


def _images_for(docker_api, image: str) -> list[str]:
    """The image and its per-platform siblings (`NAME:TAG-amd64`, ... as `bgeimg build` tags them) that exist."""
    from bgeimg.release.push import platform_images

    return [r for r in dict.fromkeys([*platform_images(docker_api, image), image]) if _exists(docker_api, r)]


def _exists(docker_api, ref: str) -> bool:
    try:
        docker_api.inspect_image(ref)
        return True
    except Exception:
        return False


def save(docker_api, images: list[str], output: Path, meter: Meter | None = None) -> list[Member]:
    """Write the bundle: one `docker save` of every image into an OCI layout on disk (each blob once), then the
    checksums and the layout into one zstd-compressed tar."""
    from bgeimg import atomic

    atomic.check_new_file(output)  # a wrong -o is reported before the engine is asked for anything
    meter = meter or Silent()
    work = Path(tempfile.mkdtemp(prefix="bgeimg-bundle-"))  # removed in `finally:`, on SIGINT/SIGTERM too
    try:
        refs: list[str] = []
        for image in images:
            found = _images_for(docker_api, image)
            if not found:
                raise BundleError(f"no local image {image}", "build or pull it first")
            refs += [r for r in found if r not in refs]
        with step(meter, "export", f"export {len(refs)} images", None) as advance:
            stream = export_stream(docker_api, refs)
            try:
                saved = layout.from_docker_save(stream, work, advance, order=refs)
            finally:
                stream.close()
        members = [Member(refs=[i.ref], file=f"blobs/sha256/{i.manifest[7:]}", sha256=i.manifest[7:], size=i.size)
                   for i in saved]
        names = layout.files(work)
        # A blob's name is its sha256 (layout.py hashed it as it was written); only the metadata is hashed here.
        sums = {name: (name[len("blobs/sha256/"):] if name.startswith("blobs/sha256/") else sha256_file(work / name),
                       (work / name).stat().st_size) for name in names}
        checksums = json.dumps({"format": FORMAT, "images": [vars(m) for m in members], "files": sums},
                               indent=1).encode()
        total = sum(size for _, size in sums.values())
        # a half-written bundle never carries the final name
        with step(meter, "write", f"write {output.name}", total) as advance, atomic.file(output, "wb") as raw:
            level = {CompressionParameter.compression_level: 3, CompressionParameter.nb_workers: os.cpu_count() or 1}
            with ZstdFile(raw, "w", options=level) as zst:  # closing it leaves `raw` open for atomic.file
                with tarfile.open(fileobj=zst, mode="w|") as tar:
                    info = tarfile.TarInfo(CHECKSUMS)
                    info.size = len(checksums)
                    tar.addfile(info, io.BytesIO(checksums))
                    for name in names:
                        tar.add(work / name, arcname=name)
                        advance(sums[name][1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return members




def _size(path: Path) -> int:
    if not path.is_file():
        raise BundleError(f"{path}: no such file", "give the path of a bundle made by `bgeimg bundle save`")
    return path.stat().st_size


@contextlib.contextmanager
def _opened(path: Path, advance) -> Iterator:
    """The bundle's tar stream, its compressed bytes reported to `advance`."""
    with path.open("rb") as raw:
        with ZstdFile(_Counted(raw, advance)) as inner:
            yield inner


class _Counted:
    """A file whose reads are reported to a meter (the bundle's compressed bytes: the bar's total)."""

    def __init__(self, fh, advance):
        self._fh, self._advance = fh, advance

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._advance(len(data))
        return data


def _corrupt(path: Path, exc: Exception) -> BundleError:
    return BundleError(f"{path} is corrupted or truncated ({type(exc).__name__}: {str(exc)[:100]})",
                       "copy the bundle again and compare its sha256 with the source's")


def _check(path: Path, meter: Meter) -> tuple[str, list[Member]]:
    """Read the whole bundle once and check every member against its checksums: (format, members)."""
    size = _size(path)
    manifest: dict | None = None
    seen: dict[str, tuple[str, int]] = {}
    try:
        with step(meter, "verify", f"verify {path.name}", size) as advance, _opened(path, advance) as inner, \
                tarfile.open(fileobj=inner, mode="r|") as tar:
            for entry in tar:
                fh = tar.extractfile(entry)
                if fh is None:
                    continue
                if manifest is None and entry.name in (CHECKSUMS, "manifest.json"):
                    doc = json.loads(fh.read())
                    if isinstance(doc, dict):
                        manifest = doc
                    continue
                digest, size = hashlib.sha256(), 0
                for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
                seen[entry.name] = (digest.hexdigest(), size)
            return _compare(path, manifest, seen)  # inside the step: a mismatch is a failed verify
    except (ZstdError, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise _corrupt(path, exc) from None


def _compare(path: Path, manifest: dict | None, seen: dict[str, tuple[str, int]]) -> tuple[str, list[Member]]:
    """What was read against the checksums the bundle carries."""
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_V1):
        raise BundleError(f"{path} is not a bgeimg bundle (no {FORMAT} manifest)", "make one with `bgeimg bundle save`")
    try:
        members = [Member(**m) for m in manifest["images"]]
        if not all(isinstance(m.file, str) and isinstance(m.sha256, str) and isinstance(m.size, int)
                   and isinstance(m.refs, list) for m in members):
            raise TypeError("wrong types")
        if manifest["format"] == FORMAT_V1:
            expected = {m.file: (m.sha256, m.size) for m in members}
        else:
            expected = {str(name): (str(digest), int(size)) for name, (digest, size) in manifest["files"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BundleError(f"{path}: its manifest is malformed ({type(exc).__name__}: {str(exc)[:80]})",
                          "make the bundle again with `bgeimg bundle save`") from None
    owner = {m.file: f" ({', '.join(m.refs)})" for m in members}
    for name, want in expected.items():
        got = seen.get(name)
        if got is None:
            raise BundleError(f"{path} is truncated: {name}{owner.get(name, '')} is missing", "copy the bundle again")
        if got != tuple(want):
            raise BundleError(f"{path}: {name}{owner.get(name, '')} does not match its checksum",
                              "the file was altered or damaged in transit; copy it again")
    extra = sorted(set(seen) - set(expected))
    if extra:
        raise BundleError(f"{path}: {extra[0]} is not in the bundle's checksums", "copy the bundle again")
    return manifest["format"], members


def verify(path: Path, meter: Meter | None = None) -> list[Member]:
    """Check every member against the manifest; returns the members. Imports nothing."""
    return _check(path, meter or Silent())[1]


def load(docker_api, path: Path, meter: Meter | None = None) -> list[Member]:
    """Verify the whole bundle, then import it into the engine: the OCI layout as one `docker load` (each shared
    layer once), a first-format bundle one image at a time."""
    meter = meter or Silent()
    fmt, members = _check(path, meter)
    try:
        with step(meter, "load", f"load {path.name}", _size(path)) as advance, _opened(path, advance) as inner:
            if fmt == FORMAT:
                _engine_load(docker_api, iter(functools.partial(inner.read, 1 << 20), b""), path.name)
            else:
                wanted = {m.file for m in members}
                with tarfile.open(fileobj=inner, mode="r|") as tar:
                    for entry in tar:
                        fh = tar.extractfile(entry)
                        if entry.name in wanted and fh is not None:
                            _engine_load(docker_api, iter(functools.partial(fh.read, 1 << 20), b""), entry.name)
    except (ZstdError, tarfile.TarError, EOFError, OSError) as exc:  # changed under our feet
        raise _corrupt(path, exc) from None
    return members


def _engine_load(docker_api, chunks, what: str) -> None:
    """Stream a tar to `docker load` (never whole in memory)."""
    for event in docker_api.load_image(chunks):
        if isinstance(event, dict) and event.get("error"):
            raise BundleError(f"the engine refused {what}: {event['error']}")
