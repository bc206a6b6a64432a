"""What bgeimg has pushed before: diff_id -> compressed blob, and where each blob was seen, as the docker engine
keeps it, so a second push asks the registry first and compresses nothing.

    <cache dir>/push/layers.json   {"layers": {diff_id: [{digest, size, diff_size, compression}]},
                                     "seen": {digest: ["registry/repository", ...]}}
    <cache dir>/push/configs/<hex>  the image config bytes, by the engine's image id

The cache dir is $BGEIMG_CACHE_DIR, else $XDG_CACHE_HOME/bgeimg, else ~/.cache/bgeimg. The file is only a hint:
every entry is checked against the registry (HEAD, or a cross-repository mount) before a push relies on it, so a
stale or lying entry costs one request and the layer is compressed again. Writes merge with what another push
wrote meanwhile (under a lock) and replace the file atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bgeimg.resources import cache_dir

FORMAT = "bgeimg-layer-cache/1"
MAX_SEEN = 16  # repositories remembered per blob: enough to find a mount source, bounded


@dataclass(frozen=True)
class Compressed:
    """One compressed form of a layer: what a manifest needs, and how it was made."""

    digest: str
    size: int
    diff_size: int  # the uncompressed tar's size: lets an export skip layers it does not need by their header
    compression: str


class LayerCache:
    def __init__(self, root: Path | None = None):
        self.root = (root or cache_dir()) / "push"
        self.layers: dict[str, list[Compressed]] = {}
        self.seen: dict[str, list[str]] = {}
        self._forgotten: set[tuple[str, str]] = set()
        self._read_into(self)

    # -------------------------------------------------------------- read

    @property
    def path(self) -> Path:
        return self.root / "layers.json"

    def _read_into(self, target: LayerCache) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return  # no cache yet, or an unreadable one: a push without hints is still correct
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return
        for diff_id, entries in (doc.get("layers") or {}).items():
            for e in entries:
                with contextlib.suppress(TypeError):
                    target._add_layer(diff_id, Compressed(**e))
        for digest, places in (doc.get("seen") or {}).items():
            for place in places:
                target._add_seen(digest, place)

    def lookup(self, diff_id: str, compression: str) -> list[Compressed]:
        """Known compressed forms of `diff_id`, the one made with `compression` first."""
        return sorted(self.layers.get(diff_id, []), key=lambda c: c.compression != compression)

    def diff_size(self, diff_id: str) -> int | None:
        known = self.layers.get(diff_id)
        return known[0].diff_size if known else None

    def seen_in(self, digest: str) -> list[str]:
        """`registry/repository` places where `digest` was pushed or found, the latest first."""
        return list(self.seen.get(digest, []))

    # -------------------------------------------------------------- write

    def _add_layer(self, diff_id: str, entry: Compressed) -> None:
        entries = [e for e in self.layers.get(diff_id, []) if e.compression != entry.compression]
        self.layers[diff_id] = [entry, *entries][:4]

    def _add_seen(self, digest: str, place: str) -> None:
        places = [p for p in self.seen.get(digest, []) if p != place]
        self.seen[digest] = [place, *places][:MAX_SEEN]

    def record(self, diff_id: str, entry: Compressed) -> None:
        self._add_layer(diff_id, entry)

    def found(self, digest: str, registry: str, repository: str) -> None:
        self._add_seen(digest, f"{registry}/{repository}")

    def forget(self, digest: str, registry: str, repository: str) -> None:
        """The registry does not have `digest` where the cache said it was."""
        place = f"{registry}/{repository}"
        self.seen[digest] = [p for p in self.seen.get(digest, []) if p != place]
        self._forgotten.add((digest, place))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "layers.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def save(self) -> None:
        """Merge with what is on disk now (another push may have written) and replace the file atomically."""
        with self._locked():
            merged = LayerCache.__new__(LayerCache)
            merged.root, merged.layers, merged.seen = self.root, {}, {}
            self._read_into(merged)
            for diff_id, entries in self.layers.items():
                for e in reversed(entries):
                    merged._add_layer(diff_id, e)
            for digest, places in self.seen.items():
                for place in reversed(places):
                    merged._add_seen(digest, place)
            for digest, place in self._forgotten:
                if place not in self.seen.get(digest, []):
                    merged.seen[digest] = [p for p in merged.seen.get(digest, []) if p != place]
            doc = {"format": FORMAT,
                   "layers": {k: [asdict(e) for e in v] for k, v in sorted(merged.layers.items())},
                   "seen": {k: v for k, v in sorted(merged.seen.items()) if v}}
            _write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())

    # -------------------------------------------------------------- image configs

    def config(self, image_id: str) -> bytes | None:
        """The config bytes of the engine's image `image_id`, when an earlier push saw them."""
        try:
            return (self.root / "configs" / image_id.split(":")[-1]).read_bytes()
        except OSError:
            return None

    def store_config(self, image_id: str, raw: bytes) -> None:
        path = self.root / "configs" / image_id.split(":")[-1]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, raw)


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
