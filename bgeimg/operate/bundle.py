"""Offline bundles: several images (every platform present locally) in one zstd-compressed tar with a
manifest of sha256 checksums, for sites with no network.

    site.tar.zst = zstd( tar( manifest.json, images/0.tar, images/1.tar, ... ) )   each images/N.tar: `docker save`

`load` reads the file twice: first it checks every member against the manifest, then it imports. A corrupted or
truncated file is refused before anything reaches the engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from bgeimg.errors import BgeimgError

FORMAT = "bgeimg-bundle/1"


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


def save(docker_api, images: list[str], output: Path) -> list[Member]:
    """Write the bundle. Each image is streamed out of the engine into a temporary file (never whole in memory)."""
    members: list[Member] = []
    work = Path(tempfile.mkdtemp(prefix="bgeimg-bundle-"))
    try:
        refs: list[str] = []
        for image in images:
            found = _images_for(docker_api, image)
            if not found:
                raise BundleError(f"no local image {image}", "build or pull it first")
            refs += [r for r in found if r not in refs]
        for i, ref in enumerate(refs):
            path = work / f"{i}.tar"
            digest = hashlib.sha256()
            with path.open("wb") as fh:
                for chunk in docker_api.get_image(ref):
                    digest.update(chunk)
                    fh.write(chunk)
            members.append(Member(refs=[ref], file=f"images/{i}.tar", sha256=digest.hexdigest(),
                                  size=path.stat().st_size))
        manifest = json.dumps({"format": FORMAT, "images": [vars(m) for m in members]}, indent=2).encode()
        partial = output.with_name(output.name + ".partial")
        with partial.open("wb") as raw:
            with zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(raw) as zst:
                with tarfile.open(fileobj=zst, mode="w|") as tar:
                    info = tarfile.TarInfo("manifest.json")
                    info.size = len(manifest)
                    tar.addfile(info, io.BytesIO(manifest))
                    for m in members:
                        tar.add(work / Path(m.file).name, arcname=m.file)
        partial.replace(output)  # a half-written bundle never carries the final name
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return members


def _open(path: Path):
    if not path.is_file():
        raise BundleError(f"{path}: no such file", "give the path of a bundle made by `bgeimg bundle save`")
    raw = path.open("rb")
    return raw, tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(raw), mode="r|")


def _corrupt(path: Path, exc: Exception) -> BundleError:
    return BundleError(f"{path} is corrupted or truncated ({type(exc).__name__}: {str(exc)[:100]})",
                       "copy the bundle again and compare its sha256 with the source's")


def verify(path: Path) -> list[Member]:
    """Check every member against the manifest; returns the members. Imports nothing."""
    raw, tar = _open(path)
    manifest: dict | None = None
    seen: dict[str, tuple[str, int]] = {}
    try:
        with raw, tar:
            for entry in tar:
                fh = tar.extractfile(entry)
                if fh is None:
                    continue
                if entry.name == "manifest.json":
                    manifest = json.loads(fh.read())
                    continue
                digest, size = hashlib.sha256(), 0
                for chunk in iter(lambda f=fh: f.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
                seen[entry.name] = (digest.hexdigest(), size)
    except (zstandard.ZstdError, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise _corrupt(path, exc) from None
    if not manifest or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a bgeimg bundle (no {FORMAT} manifest)", "make one with `bgeimg bundle save`")
    members = [Member(**m) for m in manifest["images"]]
    for m in members:
        got = seen.get(m.file)
        if got is None:
            raise BundleError(f"{path} is truncated: {m.file} ({', '.join(m.refs)}) is missing",
                              "copy the bundle again")
        if got != (m.sha256, m.size):
            raise BundleError(f"{path}: {m.file} ({', '.join(m.refs)}) does not match its checksum",
                              "the file was altered or damaged in transit; copy it again")
    return members


def load(docker_api, path: Path) -> list[Member]:
    """Verify the whole bundle, then import each image into the engine."""
    members = verify(path)
    wanted = {m.file for m in members}
    raw, tar = _open(path)
    try:
        with raw, tar:
            for entry in tar:
                if entry.name in wanted:
                    fh = tar.extractfile(entry)
                    chunks = iter(lambda f=fh: f.read(1 << 20), b"")  # streamed to the engine, never whole in memory
                    for event in docker_api.load_image(chunks):
                        if isinstance(event, dict) and event.get("error"):
                            raise BundleError(f"the engine refused {entry.name}: {event['error']}")
    except (zstandard.ZstdError, tarfile.TarError, EOFError, OSError) as exc:  # changed under our feet
        raise _corrupt(path, exc) from None
    return members
