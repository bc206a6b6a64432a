"""A local cache of layer scans by diff_id and of image configs by digest, so a layer shared between images (the
base, the venv) is read once and a second `analyze` of an image whose layers were all seen reads no layer.

Content-addressed, so an entry never goes stale: a layer scan is keyed by the layer's diff_id (the sha256 of its
uncompressed tar) and by the scanner that made it (a hash of layers.py, so a changed scanner misses instead of
reading old results); scans made with and without `--advise`'s probes are kept apart. Scans are written only from
sources that vouch for the diff_id: the engine (it checked its layers when it pulled, loaded or built them) and a
registry (blob digest and diff_id both verified while streaming). Archives and OCI layouts read entries but write
none: their layers are walked by seeking over file data, which cannot prove what a diff_id names. A config is
checked against its digest on every read.

Where: `$BGEIMG_CACHE_DIR` (else `$XDG_CACHE_HOME/bgeimg`, else `~/.cache/bgeimg`), under `layers/` and
`configs/`. Bound: `$BGEIMG_CACHE_MAX` (default 1GB); the least recently used entries go first. A cache that
cannot be read or written is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zlib
from pathlib import Path

from bgeimg.analyze import layers as scanner
from bgeimg.analyze.layers import LayerScan

DEFAULT_MAX = 1 << 30
_HEX = re.compile(r"^sha256:([0-9a-f]{64})$")


def _scanner_id() -> str:
    try:
        return hashlib.sha256(Path(scanner.__file__).read_bytes()).hexdigest()[:12]
    except OSError:
        from bgeimg import __version__

        return "v" + __version__


def cache_root() -> Path:
    from bgeimg.resources import cache_dir

    return cache_dir()


def _encode(scan: LayerScan) -> bytes:
    # bytes as latin-1 text and paths with their surrogate escapes: JSON round-trips both exactly
    doc = {
        "tar_size": scan.tar_size, "size": scan.size, "files": scan.files, "dirs": sorted(scan.dirs),
        "symlinks": sorted(scan.symlinks), "whiteouts": scan.whiteouts, "opaque": scan.opaque,
        "records": {k: v.decode("latin-1") for k, v in scan.records.items()},
        "elf_strippable": scan.elf_strippable,
        "py_imports": {k: sorted(v) for k, v in scan.py_imports.items()},
        "texts": {k: v.decode("latin-1") for k, v in scan.texts.items()},
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)


def _decode(data: bytes) -> LayerScan:
    doc = json.loads(zlib.decompress(data))
    return LayerScan(
        compression="none", tar_size=doc["tar_size"], size=doc["size"], files=doc["files"], dirs=set(doc["dirs"]),
        symlinks=set(doc["symlinks"]), whiteouts=doc["whiteouts"], opaque=doc["opaque"],
        records={k: v.encode("latin-1") for k, v in doc["records"].items()},
        elf_strippable=doc["elf_strippable"],
        py_imports={k: frozenset(v) for k, v in doc["py_imports"].items()},
        texts={k: v.encode("latin-1") for k, v in doc["texts"].items()})


class LayerCache:
    """Layer scans and configs on disk. `get_*` return None on a miss (or an unreadable entry)."""

    def __init__(self, root: Path | None = None, max_bytes: int | None = None):
        self.root = root or cache_root()
        if max_bytes is None:
            from bgeimg.analyze.gates import parse_size

            limit = os.environ.get("BGEIMG_CACHE_MAX")
            max_bytes = parse_size(limit, "BGEIMG_CACHE_MAX") if limit else DEFAULT_MAX
        self.max_bytes = max_bytes
        self.scanner = _scanner_id()
        self.hits = 0
        self.misses = 0

    def _layer_path(self, diff_id: str | None, probe: bool) -> Path | None:
        m = _HEX.match(diff_id or "")
        if not m:
            return None
        return self.root / "layers" / f"{self.scanner}-{'probe' if probe else 'plain'}-{m.group(1)}"

    def get_scan(self, diff_id: str | None, probe: bool) -> LayerScan | None:
        path = self._layer_path(diff_id, probe)
        if path is None:
            return None
        try:
            scan = _decode(path.read_bytes())
            os.utime(path)  # least recently used goes first
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError, zlib.error):
            self._drop(path)
            self.misses += 1
            return None
        self.hits += 1
        return scan

    def has_scan(self, diff_id: str | None, probe: bool) -> bool:
        path = self._layer_path(diff_id, probe)
        return path is not None and path.is_file()

    def put_scan(self, diff_id: str | None, probe: bool, scan: LayerScan) -> None:
        path = self._layer_path(diff_id, probe)
        if path is not None:
            self._write(path, _encode(scan))

    def get_config(self, digest: str | None) -> bytes | None:
        m = _HEX.match(digest or "")
        if not m:
            return None
        path = self.root / "configs" / m.group(1)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(raw).hexdigest() != m.group(1):
            self._drop(path)
            return None
        return raw

    def put_config(self, raw: bytes) -> None:
        self._write(self.root / "configs" / hashlib.sha256(raw).hexdigest(), raw)

    # ---- storage ------------------------------------------------------------------------------------------------

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a reader sees the old entry or the new one, never half of one
        except OSError:
            return
        self._trim()

    def _drop(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    def _trim(self) -> None:
        entries = []
        for sub in ("layers", "configs"):
            try:
                with os.scandir(self.root / sub) as it:
                    for e in it:
                        if e.is_file() and not e.name.startswith(".tmp-"):
                            st = e.stat()
                            entries.append((st.st_mtime, st.st_size, e.path))
            except OSError:
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            self._drop(Path(p))
            total -= size


def open_cache(enabled: bool = True) -> LayerCache | None:
    return LayerCache() if enabled else None
