"""Byte streams of blobs: an iterator of chunks (docker-py's streamed `docker save`, a registry blob) as a
file object that tarfile, gzip and zstd can read."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20


class ChunkStream(io.RawIOBase):
    """A file object over an iterator of byte chunks; wrap it in io.BufferedReader for peek()."""

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


class Counting:
    """A readable stream that reports how many bytes went by (for byte progress)."""

    def __init__(self, fh, advance: Callable[[int], None]):
        self._fh, self._advance = fh, advance

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if data:
            self._advance(len(data))
        return data


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read a chunk at a time (model files and bundle members can be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
