"""Read one layer tar (plain, gzip or zstd) as a stream and keep only what the report needs.

Nothing is extracted and no file content is kept, except the small `*.dist-info/RECORD` files that say which
Python distribution owns which file. Sizes are counted from the bytes that pass, never from the gzip ISIZE
trailer (it is the size modulo 4 GiB).
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from dataclasses import dataclass, field

from bgeimg.analyze.errors import AnalyzeInputError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
RECORD_MAX = 8 << 20  # a RECORD larger than this is not a RECORD worth reading


def sniff(head: bytes) -> str | None:
    """Compression of a blob from its first bytes: 'gzip', 'zstd', 'none' (a tar) or None (not a layer)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "none"
    if len(head) >= 512 and head[:512] == b"\0" * 512:  # an empty layer is a tar of zero blocks
        return "none"
    return None


def norm(name: str) -> str:
    """Tar member name -> absolute path without trailing slash ('./usr/bin/' -> '/usr/bin')."""
    return posixpath.normpath("/" + name.lstrip("/"))


@dataclass
class LayerScan:
    """What one layer holds. `size` is the content size the engine reports (regular file bytes, symlink target
    lengths, hard links once); `tar_size` is the exact length of the uncompressed tar stream."""

    compression: str = "none"
    tar_size: int = 0
    size: int = 0
    files: dict[str, int] = field(default_factory=dict)  # every non-directory entry -> its size
    dirs: set[str] = field(default_factory=set)
    symlinks: set[str] = field(default_factory=set)  # their size is the target length (dive counts 0)
    whiteouts: list[str] = field(default_factory=list)  # paths this layer deletes from the layers below
    opaque: list[str] = field(default_factory=list)  # directories whose lower contents this layer hides
    records: dict[str, bytes] = field(default_factory=dict)  # dist-info RECORD path -> its text


class _Counting:
    """A read-only stream that counts the bytes read through it (the decompressed tar length)."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _decompressor(fileobj, compression: str):
    if compression == "gzip":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=True, read_size=CHUNK)
    return fileobj


def scan_layer(fileobj, *, size: int | None = None, seekable: bool = False, what: str = "layer") -> LayerScan:
    """Scan a layer blob. `fileobj` must support `peek` (a BufferedReader) so the magic bytes can be sniffed.

    A seekable plain tar of known `size` is walked header to header (file data is skipped by seeking); anything
    else is read once, front to back."""
    head = fileobj.peek(512)[:512]
    compression = sniff(head)
    if compression is None:
        raise AnalyzeInputError(f"{what} is not a tar, gzip or zstd layer")
    scan = LayerScan(compression=compression)
    try:
        if compression == "none" and seekable and size is not None:
            tf = tarfile.open(fileobj=fileobj, mode="r:")
            _walk(tf, scan)
            scan.tar_size = size
        else:
            counter = _Counting(_decompressor(fileobj, compression))
            tf = tarfile.open(fileobj=counter, mode="r|", bufsize=CHUNK)
            _walk(tf, scan)
            counter.drain()
            scan.tar_size = counter.count
    except AnalyzeInputError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise AnalyzeInputError(f"{what} is truncated or corrupt ({type(exc).__name__}: {exc})",
                                "re-create the archive, e.g. with `docker save -o FILE IMAGE`") from None
    except Exception as exc:  # zstandard.ZstdError and friends
        if type(exc).__module__.startswith("zstandard"):
            raise AnalyzeInputError(f"{what} is truncated or corrupt (zstd: {exc})") from None
        raise
    return scan


def _walk(tf: tarfile.TarFile, scan: LayerScan) -> None:
    files, dirs = scan.files, scan.dirs
    while True:
        ti = tf.next()
        if ti is None:
            break
        tf.members.clear()  # tarfile keeps every header otherwise; we only need the one in hand
        path = norm(ti.name)
        parent, base = posixpath.split(path)
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                scan.opaque.append(parent)
            elif not base.startswith(WHITEOUT + WHITEOUT):  # .wh..wh.plnk etc. are aufs metadata, not deletions
                scan.whiteouts.append(posixpath.join(parent, base[len(WHITEOUT):]))
            continue
        if ti.isdir():
            dirs.add(path)
            continue
        if ti.isreg():
            n = ti.size
            if base == "RECORD" and parent.endswith(".dist-info") and n <= RECORD_MAX:
                scan.records[path] = tf.extractfile(ti).read()
        elif ti.issym():
            n = len(ti.linkname.encode())  # what lstat reports, and so what the engine counts
            scan.symlinks.add(path)
        else:
            n = 0  # hard links (counted once, at their target), devices, fifos
        files[path] = n
        scan.size += n


class ChunkStream(io.RawIOBase):
    """A file object over an iterator of byte chunks (docker-py's streamed `get_image`)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not len(self._buf):
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
