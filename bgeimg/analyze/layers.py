"""Read one layer tar (plain, gzip or zstd) as a stream and keep only what the report needs.

Nothing is extracted and no file content is kept, except the small `*.dist-info/RECORD` files that say which
Python distribution owns which file, and the system's package list and release (dpkg status, os-release) that
the SBOM reads. Sizes are counted from the bytes that pass, never from the gzip ISIZE
trailer (it is the size modulo 4 GiB).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import posixpath
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from isal import isal_zlib

from bgeimg.analyze.errors import AnalyzeInputError
from bgeimg.oci.streams import CHUNK, ChunkStream
from bgeimg.oci.zstd import ZstdError, ZstdFile

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
RECORD_MAX = 8 << 20  # a RECORD larger than this is not a RECORD worth reading
# The installed Debian packages (status.d/: distroless images) and the distribution they come from: `bgeimg sbom`.
SYSTEM_FILES = ("/var/lib/dpkg/status", "/usr/lib/os-release", "/etc/os-release")
SYSTEM_DIRS = ("/var/lib/dpkg/status.d",)
SYSTEM_MAX = 32 << 20
# `analyze --advise` looks inside files too: ELF section tables, Python imports, small scripts. Off by default so
# the plain report keeps skipping file data (a seek per file in archives).
ELF_MIN = 64 << 10  # smaller binaries are not worth a finding
PY_MAX = 4 << 20
TEXT_MAX = 64 << 10


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
    if name[:1] not in ("/", ".") and "//" not in name and "/." not in name:  # the common, clean case
        return "/" + name.rstrip("/")
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
    system: dict[str, bytes] = field(default_factory=dict)  # SYSTEM_FILES (and status.d/*) -> their text
    # with probe=True (analyze --advise):
    elf_strippable: dict[str, int] = field(default_factory=dict)  # ELF file -> bytes of its symbol tables/debug info
    py_imports: dict[str, frozenset[str]] = field(default_factory=dict)  # .py file -> modules it may import
    texts: dict[str, bytes] = field(default_factory=dict)  # small scripts an entry point may run
    tar_digest: str | None = None  # sha256 of the uncompressed tar (the diff_id) when scan_layer was asked for it


# isal's stub types its error as an instance; it is a class (igzip_lib.IsalError)
ISAL_ERROR = cast("type[Exception]", isal_zlib.error)
INFLATE_MAX = 1 << 19  # bytes of output per inflate call: memory stays bounded however well a layer compresses


def inflate(chunks, compression: str) -> Iterator[bytes]:
    """The uncompressed bytes of a blob given as chunks ('gzip', 'zstd' or 'none'), as chunks."""
    if compression == "gzip":
        return _gunzip(chunks)
    if compression == "zstd":
        # every frame in turn; a frame cut short raises EOFError
        return file_chunks(ZstdFile(io.BufferedReader(ChunkStream(chunks), CHUNK)), INFLATE_MAX)
    return iter(chunks)


def _gunzip(chunks) -> Iterator[bytes]:
    """gzip members one after another, by ISA-L (about twice zlib's speed here; it releases the GIL, as zlib does,
    and checks each member's CRC and length). A stream cut short is an error; zero padding after the last member is
    allowed, as gzip allows it."""
    obj = isal_zlib.decompressobj(31)
    for data in chunks:
        while True:
            if obj.eof:
                data = data.lstrip(b"\0")
                if not data:
                    break
                obj = isal_zlib.decompressobj(31)
            out = obj.decompress(data, INFLATE_MAX)
            if out:
                yield out
            data = obj.unused_data if obj.eof else obj.unconsumed_tail
            if not data and (obj.eof or len(out) < INFLATE_MAX):  # else output is still pending: ask again
                break
    if not obj.eof:
        raise EOFError("gzip stream ended before the end of its member")


def file_chunks(f, size: int = CHUNK) -> Iterator[bytes]:
    """A file object read front to back, as chunks."""
    return iter(lambda: f.read(size), b"")


class Tape:
    """A stream of chunks as the tar walk reads it: `read(n)` for headers and the few files kept, `skip(n)` to pass
    file data without copying it. Every byte is counted (the exact tar length) and, given a hash, hashed (the
    diff_id) once, a whole chunk at a time as it arrives (hashlib and the inflate release the GIL on chunks)."""

    def __init__(self, chunks, hasher=None):
        self._chunks = iter(chunks)
        self.hasher = hasher
        self.count = 0
        self._buf = b""
        self._pos = 0

    def _more(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self.count += len(chunk)
                if self.hasher is not None:
                    self.hasher.update(chunk)
                self._buf, self._pos = chunk, 0
                return True
        return False

    def read(self, n: int) -> bytes:
        end = self._pos + n
        if end <= len(self._buf):  # within the chunk at hand: the common case
            out = self._buf[self._pos:end]
            self._pos = end
            return out
        parts = [self._buf[self._pos:]]
        got = len(parts[0])
        self._buf, self._pos = b"", 0
        while got < n and self._more():
            take = self._buf[:n - got]
            parts.append(take)
            got += len(take)
            self._pos = len(take)
        return b"".join(parts)

    def skip(self, n: int) -> None:
        while n > len(self._buf) - self._pos:
            n -= len(self._buf) - self._pos
            self._buf, self._pos = b"", 0
            if not self._more():
                raise TarCorrupt("unexpected end of data")
        self._pos += n

    def drain(self) -> None:
        """Read to the end (the zero blocks and padding after the end marker count too)."""
        self._buf, self._pos = b"", 0
        while self._more():
            pass


class TarCorrupt(ValueError):
    pass


def scan_layer(fileobj, *, size: int | None = None, seekable: bool = False, what: str = "layer",
               probe: bool = False, digest: bool = False) -> LayerScan:
    """Scan a layer blob. `fileobj` must support `peek` (a BufferedReader) so the magic bytes can be sniffed.

    A seekable plain tar of known `size` is walked header to header (file data is skipped by seeking); anything
    else is read once, front to back (`scan_chunks`)."""
    head = fileobj.peek(512)[:512]
    if compression_of(head, what) == "none" and seekable and size is not None and not digest:
        start = fileobj.tell()
        scan = walk_tar(fileobj, what=what, probe=probe)
        if fileobj.tell() - start > size:
            raise _corrupt_error(what, TarCorrupt("unexpected end of data"))
        scan.tar_size = size
        return scan
    return scan_chunks(file_chunks(fileobj), what=what, probe=probe, digest=digest)


def walk_tar(f, *, what: str = "layer", probe: bool = False) -> LayerScan:
    """Walk a plain tar given as a reader with read/seek/tell (forward seeks only) header to header, file data
    skipped by seeking; the caller sets `tar_size`."""
    scan = LayerScan(compression="none")
    with _corrupt(what):
        _walk(f, scan, seekable=True, probe=probe)
    return scan


def compression_of(head: bytes, what: str) -> str:
    compression = sniff(head)
    if compression is None:
        raise AnalyzeInputError(f"{what} is not a tar, gzip or zstd layer")
    return compression


def scan_chunks(chunks, *, what: str = "layer", probe: bool = False, digest: bool = False) -> LayerScan:
    """Scan a layer blob given as chunks (a registry blob, a layer in a stream): read once, front to back, every
    uncompressed byte counted (and hashed into `tar_digest` with `digest`)."""
    chunks = iter(chunks)
    first = b""
    for chunk in chunks:  # enough bytes to tell the compression (a network chunk can be short)
        first += chunk
        if len(first) >= 512:
            break
    scan = LayerScan(compression=compression_of(first[:512], what))
    with _corrupt(what):
        tape = Tape(inflate(itertools.chain((first,), chunks), scan.compression),
                    hashlib.sha256() if digest else None)
        _walk(tape, scan, seekable=False, probe=probe)
        tape.drain()
        scan.tar_size = tape.count
        if tape.hasher is not None:
            scan.tar_digest = "sha256:" + tape.hasher.hexdigest()
    return scan


@contextlib.contextmanager
def _corrupt(what: str):
    """A broken layer as one line (exit 2), whichever reader noticed."""
    try:
        yield
    except AnalyzeInputError:
        raise
    except (EOFError, OSError, ValueError, zlib.error, ISAL_ERROR, ZstdError) as exc:
        raise _corrupt_error(what, exc) from None


def _corrupt_error(what: str, exc: Exception) -> AnalyzeInputError:
    return AnalyzeInputError(f"{what} is truncated or corrupt ({type(exc).__name__}: {exc})",
                             "re-create the archive, e.g. with `docker save -o FILE IMAGE`")


ZERO_BLOCK = bytes(512)
_PAD = 511


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256 (GNU), for sizes of 8 GiB and more
        n = int.from_bytes(field[1:], "big")
        return n
    field = field.split(b"\0", 1)[0].strip(b" \0")
    return int(field, 8) if field else 0


def _pax(data: bytes) -> dict[str, str]:
    out = {}
    pos = 0
    while pos < len(data):
        sp = data.index(b" ", pos)
        length = int(data[pos:sp])
        rec = data[sp + 1: pos + length - 1]  # drop the trailing newline
        key, _, value = rec.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def tar_entries(read, skip) -> Iterator[tuple[str, str | None, bytes, int, bytes]]:
    """The entries of a tar read front to back (ustar with its name prefix, GNU long names, PAX), without a TarInfo
    per entry (layers of venvs hold tens of thousands): (name, link name from a long-name record or None, type
    flag, data size, the 512-byte header). The caller reads or skips each entry's data and padding (`skip`) before
    the next. Used for layers and for the outer `docker save` tar alike."""
    pending: dict[str, str] = {}
    first = True
    while True:
        hdr = read(512)
        if len(hdr) < 512:
            if not hdr:
                return  # no end marker: accepted, as Go's archive/tar does
            raise TarCorrupt("unexpected end of data")
        if hdr == ZERO_BLOCK:
            return
        if first:  # one checksum proves it is a tar; later garbage fails the octal parsing or reads past the end
            first = False
            chk = hdr[148:156].split(b"\0", 1)[0].strip(b" ")
            if not chk or int(chk, 8) != sum(hdr) - sum(hdr[148:156]) + 256:
                raise TarCorrupt("bad tar header checksum")
        kind = hdr[156:157]
        size = _octal(hdr[124:136])
        if kind in (b"x", b"g", b"L", b"K"):
            payload = read(size)
            if len(payload) < size:
                raise TarCorrupt("unexpected end of data")
            skip(-size & _PAD)
            if kind == b"x" and (b"path=" in payload or b"size=" in payload):  # else only times/xattrs
                pending.update(_pax(payload))
            elif kind == b"L":
                pending["path"] = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind == b"K":
                pending["linkpath"] = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if pending:
            name = pending.get("path")
            linkname = pending.get("linkpath")
            if "size" in pending:
                size = int(pending["size"])
            pending = {}
        else:
            name = linkname = None
        if name is None:
            name = hdr[0:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if hdr[257:262] == b"ustar" and hdr[345]:
                prefix = hdr[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                name = prefix + "/" + name
        yield name, linkname, kind, size, hdr


def link_name(linkname: str | None, hdr: bytes) -> str:
    """An entry's link target: the long-name record's, else the header's."""
    if linkname is not None:
        return linkname
    return hdr[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _walk(f, scan: LayerScan, seekable: bool, probe: bool = False) -> None:
    """Walk a layer's tar headers, skipping file data, keeping what LayerScan holds."""
    files, dirs = scan.files, scan.dirs
    read = f.read
    skip = f.skip if not seekable else lambda n: f.seek(n, 1)  # a Tape passes data without copying it

    def data(n: int) -> bytes:
        block = read(n)
        if len(block) < n:
            raise TarCorrupt("unexpected end of data")
        skip(-n & _PAD)
        return block

    for name, linkname, kind, size, hdr in tar_entries(read, skip):
        path = norm(name)
        parent, _, base = path.rpartition("/")
        has_data = kind in (b"0", b"\0", b"7")
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                scan.opaque.append(parent or "/")
            elif not base.startswith(WHITEOUT + WHITEOUT):  # .wh..wh.plnk etc. are aufs metadata, not deletions
                scan.whiteouts.append(parent + "/" + base[len(WHITEOUT):])
            if has_data and size:
                skip(size + (-size & _PAD))
            continue
        if kind == b"5":
            dirs.add(path)
            continue
        if has_data:
            n = size
            if base == "RECORD" and n <= RECORD_MAX and parent.endswith(".dist-info"):
                scan.records[path] = data(n)
            elif n <= SYSTEM_MAX and (path in SYSTEM_FILES or parent in SYSTEM_DIRS):
                scan.system[path] = data(n)
            elif probe and n and _probe(path, base, n, f, seekable, scan, data, skip):
                pass
            elif n:
                skip(n + (-n & _PAD))
        elif kind == b"2":
            n = len(link_name(linkname, hdr).encode("utf-8", "surrogateescape"))  # what lstat reports: the engine counts it
            scan.symlinks.add(path)
        else:
            n = 0  # hard links (counted once, at their target), devices, fifos
            if size and kind not in (b"1",):
                skip(size + (-size & _PAD))
        files[path] = n
        scan.size += n


class Window:
    """A byte range of a file on disk (a layer inside an archive, or a blob), read with os.pread through a small
    window: walking tar headers is then a slice per header and a number per skip, with no buffer to discard."""

    BLOCK = 1 << 16

    def __init__(self, fd: int, start: int, size: int):
        self.fd, self.start, self.end = fd, start, start + size
        self.pos = start
        self.buf = b""
        self.buf_at = start

    def _fill(self, n: int) -> None:
        want = min(max(n, self.BLOCK), max(self.end - self.pos, 0))
        self.buf = os.pread(self.fd, want, self.pos) if want else b""
        self.buf_at = self.pos

    def peek(self, n: int = 1) -> bytes:
        off = self.pos - self.buf_at
        if off < 0 or off + n > len(self.buf):
            self._fill(n)
            off = 0
        return self.buf[off: off + n]

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.end - self.pos
        if n > self.BLOCK:  # big reads (decompressor input): straight from the file
            data = os.pread(self.fd, min(n, max(self.end - self.pos, 0)), self.pos)
        else:
            data = self.peek(n)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = self.start + offset if whence == 0 else self.pos + offset
        return self.pos - self.start

    def tell(self) -> int:
        return self.pos - self.start


# ---- probes (analyze --advise) -----------------------------------------------------------------------------------

_IMPORT_RX = re.compile(
    rb"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)|import[ \t]+([^\n#;]+))", re.M)
_DYNAMIC_RX = re.compile(rb"""(?:import_module|__import__)\(\s*["']([\w.]+)["']""")
_LAZY_RX = re.compile(rb"_LazyModule|^def __getattr__\(|lazy_loader|^__getattr__[ \t]*=", re.M)
LAZY = "<lazy>"  # marker in py_imports: the module loads its submodules on attribute access


def python_imports(source: bytes) -> frozenset[str]:
    """Every module a source file may import, anywhere in it (functions, try blocks and TYPE_CHECKING included:
    over-counting only hides a finding, never invents one). Relative imports keep their leading dots;
    `from a import b` yields both a and a.b (b may be a submodule)."""
    out: set[str] = set()
    for m in _IMPORT_RX.finditer(source):
        if m.group(3) is not None:
            for part in m.group(3).split(b","):
                name = part.strip().split()[0:1]
                if name:
                    out.add(name[0].decode("ascii", "replace"))
            continue
        mod = m.group(1).decode("ascii", "replace")
        out.add(mod)
        sep = "" if mod.endswith(".") else "."
        for part in m.group(2).strip(b"()").replace(b"\\", b"").split(b","):
            name = part.strip().split()[0:1]
            if name and name[0] != b"*":
                out.add(mod + sep + name[0].decode("ascii", "replace"))
    out.update(m.group(1).decode("ascii", "replace") for m in _DYNAMIC_RX.finditer(source))
    if _LAZY_RX.search(source):
        out.add(LAZY)
    return frozenset(n for n in out if n)


def elf_strippable(header: bytes, table: bytes) -> int | None:
    """Bytes `strip --strip-unneeded` would remove: the symbol table, its string table and debug sections
    (non-allocated PROGBITS larger than 4 KiB). `table` is the section header table."""
    if header[:4] != b"\x7fELF" or len(header) < 64:
        return None
    end = "<" if header[5] == 1 else ">"
    wide = header[4] == 2
    entsize = 64 if wide else 40
    fmt = end + ("IIQQQQI" if wide else "IIIIIII")
    sections = [struct.unpack_from(fmt, table, i) for i in range(0, len(table) - entsize + 1, entsize)]
    total = 0
    for _name, kind, flags, _addr, _off, size, link in sections:
        if kind == 2:  # SHT_SYMTAB, and the string table it names
            total += size + (sections[link][5] if link < len(sections) else 0)
        elif kind == 1 and not flags & 2 and size > 4096:  # SHT_PROGBITS without SHF_ALLOC: debug info
            total += size
    return total


def _elf_table_span(header: bytes) -> tuple[int, int] | None:
    if header[:4] != b"\x7fELF" or len(header) < 64:
        return None
    end = "<" if header[5] == 1 else ">"
    if header[4] == 2:
        (shoff,), (entsize, count) = struct.unpack_from(end + "Q", header, 0x28), struct.unpack_from(end + "HH", header, 0x3A)
    else:
        (shoff,), (entsize, count) = struct.unpack_from(end + "I", header, 0x20), struct.unpack_from(end + "HH", header, 0x2E)
    if entsize not in (40, 64) or not count:
        return None
    return shoff, entsize * count


def _python_file(path: str) -> bool:
    return "-packages/" in path or "/lib/python3" not in path  # the standard library is not a distribution


def _probe(path, base, n, f, seekable, scan, data, skip) -> bool:
    """Look inside one regular file of size n (its data is next in `f`); return False to let the caller skip it."""
    if base.endswith(".py") and n <= PY_MAX and _python_file(path):
        scan.py_imports[path] = python_imports(data(n))
        return True
    if n <= TEXT_MAX and ("entrypoint" in base or base.endswith(".sh") or path.startswith("/usr/local/bin/")):
        scan.texts[path] = data(n)
        return True
    if n < ELF_MIN:
        return False
    pad = -n & _PAD
    if seekable:
        start = f.tell()
        header = f.read(64)
        span = _elf_table_span(header)
        if span and span[0] + span[1] <= n:
            f.seek(start + span[0])
            found = elf_strippable(header, f.read(span[1]))
            if found:
                scan.elf_strippable[path] = found
        f.seek(start + n + pad)
        return True
    # a stream: read through, keeping the header and the section header table as they pass
    header = f.read(min(64, n))
    got = len(header)
    span = _elf_table_span(header)
    table = b""
    while got < n:
        chunk = f.read(min(CHUNK, n - got))
        if not chunk:
            raise TarCorrupt("unexpected end of data")
        if span and got + len(chunk) > span[0] and got < span[0] + span[1]:
            lo = max(span[0] - got, 0)
            table += chunk[lo:lo + span[1] - len(table)]
        got += len(chunk)
    if span and len(table) == span[1]:
        found = elf_strippable(header, table)
        if found:
            scan.elf_strippable[path] = found
    skip(pad)
    return True
