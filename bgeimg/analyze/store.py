"""An image read straight from the local engine's own store, without `docker save`: Docker's classic overlay2
store, or the containerd content store of Docker 24+ with the containerd image store.

The classic store:

For every layer the engine keeps the tar-split record of the exact tar it computed the diff_id over
(`image/overlay2/layerdb/sha256/<chain id>/tar-split.json.gz`: each tar header and padding as raw bytes, each
file's name and size) beside the files themselves (`overlay2/<cache-id>/diff`), and the image config as it was
hashed (`image/overlay2/imagedb/content/sha256/<id>`). `docker save` reassembles each layer tar from those two;
so does this module, lazily: the scanner walks the same tar, byte for byte, and only the few files it looks into
(RECORDs, the dpkg status, `--advise`'s probes) are read from disk. The export has to read, tar and copy every
byte first (Docker 20.10 stages the whole image before its first byte), which is what bounds dive and `docker save`.

The containerd store keeps every blob by its digest (`io.containerd.content.v1.content/blobs/sha256/<hex>`): the
image's index (its ID), the manifests, the config and the compressed layers as built or pulled. `ContentStore`
reads them with the registry client's three read calls, so the registry path (bgeimg.analyze.remote) reads them:
every blob checked against its digest, every layer against its diff_id, three layers at a time. The engine's own
export of such an image is slow (the test bed's Docker 26 takes 38 s for 1.5 GB, more than dive's whole run).

Either is used only where the store is on this machine and readable (a local engine run by root, or a rootless
engine's own user), and only when every record is where the engine keeps it and names what the image says (the
config by its digest, each layer's diff_id): otherwise StoreUnreadable, and the caller exports.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path

from bgeimg.analyze.layers import LayerScan, walk_tar
from bgeimg.oci.reference import DIGEST_RE

DRIVER = "overlay2"  # the classic store whose layout this module reads


class StoreUnreadable(Exception):
    """The store is not where, or not what, this module expects: export instead."""


CONTENT = "io.containerd.content.v1.content"
# where a containerd image store's blobs are: dockerd's own containerd, else the system one (namespace moby)
CONTENT_ROOTS = ("{root}/containerd/daemon/" + CONTENT, "/var/lib/containerd/" + CONTENT)


def _readable(path: Path) -> bool:
    return os.access(path, os.R_OK | os.X_OK)


def store_root(api) -> tuple[str, Path] | None:
    """("classic", the engine's root) or ("content", its containerd content store) when readable here, else None."""
    try:
        info = api.info()
    except Exception:
        return None
    root, driver = info.get("DockerRootDir"), info.get("Driver")
    if not root:
        return None
    if any(s[:1] == ["driver-type"] for s in info.get("DriverStatus") or []):  # the containerd image store
        for pattern in CONTENT_ROOTS:
            path = Path(pattern.format(root=root))
            if _readable(path / "blobs" / "sha256"):
                return "content", path
        return None
    if driver == DRIVER and _readable(Path(root) / "image" / DRIVER / "layerdb" / "sha256"):
        return "classic", Path(root)
    return None


class ContentStore:
    """A containerd content store behind the registry client's read calls (`repo` is ignored: blobs are shared)."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, digest: str) -> Path:
        if not DIGEST_RE.fullmatch(digest):
            raise StoreUnreadable(f"not a sha256 digest: {digest}")
        return self.root / "blobs" / "sha256" / digest.partition(":")[2]

    def get_blob(self, repo: str, digest: str) -> bytes:
        return b"".join(self.iter_blob(repo, digest))

    def get_manifest(self, repo: str, digest: str):
        from bgeimg.oci.registry import Manifest  # not at import: it brings requests into every analyze

        raw = self.get_blob(repo, digest)
        try:
            media = json.loads(raw).get("mediaType") or ""
        except (ValueError, AttributeError):
            media = ""
        return Manifest(media, digest, raw)

    def iter_blob(self, repo: str, digest: str, chunk_size: int = 1 << 20):
        h = hashlib.sha256()
        try:
            with open(self._path(digest), "rb", buffering=0) as f:
                while chunk := f.read(chunk_size):
                    h.update(chunk)
                    yield chunk
        except OSError as exc:  # not kept (content discarded after unpacking), or unreadable: the export says which
            raise StoreUnreadable(f"blob {digest}: {exc.strerror}") from None
        if "sha256:" + h.hexdigest() != digest:
            raise StoreUnreadable(f"blob {digest} does not match its digest")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The engine's layer keys: each layer's id over the ids below it (the OCI image spec's ChainID)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def read_config(root: Path, image_id: str) -> bytes:
    """The image config as the engine hashed it, checked against its id."""
    algo, _, hexd = image_id.partition(":")
    try:
        raw = (root / "image" / DRIVER / "imagedb" / "content" / algo / hexd).read_bytes()
    except OSError as exc:
        raise StoreUnreadable(f"config: {exc}") from None
    if "sha256:" + hashlib.sha256(raw).hexdigest() != image_id:
        raise StoreUnreadable("config does not match the image id")
    return raw


class Assembled:
    """A layer tar put together as the engine does for `docker save`, front to back: the tar-split's raw segments
    with each file's bytes in between, read from the layer's directory only when asked for. read/seek/tell with
    forward seeks, as the tar walk uses them; the record is read one line at a time, so memory stays flat however
    many files the layer holds."""

    def __init__(self, files_root: str, lines):
        self.root = files_root
        self.lines = iter(lines)
        self.piece: bytes | tuple[str, int] = b""  # raw bytes, or (file name, size)
        self.start = self.end = 0  # the current piece's span in the tar
        self.pos = 0

    def _next(self) -> bool:
        try:
            for line in self.lines:
                if not line.strip():
                    continue
                entry = json.loads(line)
                if entry["type"] == 2:  # a segment: headers, padding, the end blocks
                    piece: bytes | tuple[str, int] = base64.b64decode(entry.get("payload") or b"")
                    size = len(piece)
                else:  # a file's data
                    size = int(entry.get("size") or 0)
                    name = entry.get("name")
                    if name is None:
                        name = os.fsdecode(base64.b64decode(entry["name_raw"]))
                    piece = (name, size)
                if size:
                    self.piece, self.start, self.end = piece, self.end, self.end + size
                    return True
        except (OSError, EOFError, ValueError, KeyError, TypeError, zlib.error) as exc:  # a record cut or garbled
            raise StoreUnreadable(f"tar-split record: {exc}") from None
        return False

    def _file(self, name: str, size: int, offset: int, n: int) -> bytes:
        path = os.path.join(self.root, name.lstrip("/"))
        real = os.path.realpath(path)
        if not real.startswith(self.root + os.sep):  # a symlinked parent inside the layer: never leave it
            raise StoreUnreadable(f"{name} leaves the layer directory")
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                data = os.pread(fd, n, offset)
            finally:
                os.close(fd)
        except OSError as exc:  # vanished or unreadable under us: the export will say what is wrong
            raise StoreUnreadable(f"{name}: {exc.strerror}") from None
        if len(data) < n:
            raise StoreUnreadable(f"{name} is shorter than its record ({size} bytes)")
        return data

    def read(self, n: int) -> bytes:
        out = []
        while n > 0 and self._next_at(self.pos):
            off = self.pos - self.start
            take = min(n, self.end - self.pos)
            if isinstance(self.piece, bytes):
                chunk = self.piece[off: off + take]
            else:
                chunk = self._file(self.piece[0], self.piece[1], off, take)
            out.append(chunk)
            self.pos += take
            n -= take
        return out[0] if len(out) == 1 else b"".join(out)

    def _next_at(self, pos: int) -> bool:
        while pos >= self.end:
            if not self._next():
                return False
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = offset if whence == 0 else self.pos + offset
        if pos < self.start:
            raise StoreUnreadable("the tar walk went back")  # never: it only skips forward
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def total(self) -> int:
        """The tar's whole length (the rest of the record read through)."""
        while self._next():
            pass
        return max(self.end, self.pos)


def scan_stored_layer(root: Path, chain_id: str, diff_id: str, probe: bool, what: str) -> LayerScan:
    """One layer's scan from the store: its record checked to name `diff_id`, its tar reassembled and walked."""
    meta = root / "image" / DRIVER / "layerdb" / "sha256" / chain_id.partition(":")[2]
    try:
        if (meta / "diff").read_text().strip() != diff_id:
            raise StoreUnreadable(f"layer {chain_id} records another diff_id")
        cache_id = (meta / "cache-id").read_text().strip()
        if not cache_id or "/" in cache_id or cache_id.startswith("."):
            raise StoreUnreadable(f"layer {chain_id} has no usable cache-id")
        files = os.path.realpath(root / DRIVER / cache_id / "diff")
        if not os.path.isdir(files):
            raise StoreUnreadable(f"layer {chain_id} has no directory")
        with gzip.open(meta / "tar-split.json.gz", "rb") as record:
            tape = Assembled(files, record)
            scan = walk_tar(tape, what=what, probe=probe)
            scan.tar_size = tape.total()
        return scan
    except (OSError, EOFError, ValueError, KeyError, zlib.error) as exc:
        raise StoreUnreadable(f"layer {chain_id}: {exc}") from None
