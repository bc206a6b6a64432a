"""The layer stream's decompressor and tape (bgeimg.analyze.layers.inflate, Tape): gzip members one after another,
output bounded per call however well the input compresses, and every way a stream can be cut or damaged."""

import gzip
import hashlib
import io
import os
import tarfile

import pytest

from bgeimg.analyze.errors import AnalyzeInputError
from bgeimg.analyze.layers import INFLATE_MAX, ISAL_ERROR, file_chunks, inflate, scan_chunks
from bgeimg.oci.zstd import compress


def chunks(data: bytes, size: int = 1000):
    return (data[i:i + size] for i in range(0, len(data), size))


def test_gzip_members_padding_and_bounded_output():
    zeros = bytes(16 << 20)  # compresses 1000:1: one input chunk holds far more than INFLATE_MAX of output
    noise = os.urandom(300_000)
    blob = gzip.compress(zeros, 9) + b"\0" * 700 + gzip.compress(noise) + b"\0" * 3
    out = list(inflate(chunks(blob, 1 << 16), "gzip"))
    assert b"".join(out) == zeros + noise
    assert max(len(o) for o in out) <= INFLATE_MAX


@pytest.mark.parametrize("damage", ["cut", "crc", "garbage-after"])
def test_gzip_damage_is_an_error(damage):
    blob = bytearray(gzip.compress(os.urandom(200_000)))
    if damage == "cut":
        blob = blob[:-5]
    elif damage == "crc":
        blob[-6] ^= 0xFF  # the CRC32 in the trailer
    else:
        blob += b"not gzip"
    with pytest.raises({"cut": EOFError, "crc": ISAL_ERROR, "garbage-after": (EOFError, ISAL_ERROR)}[damage]):
        b"".join(inflate(chunks(bytes(blob)), "gzip"))


def test_zstd_frames_and_truncation():
    data = os.urandom(100_000) + bytes(3 << 20)
    blob = compress(data) + compress(b"tail")
    assert b"".join(inflate(chunks(blob), "zstd")) == data + b"tail"
    with pytest.raises(EOFError):
        b"".join(inflate(chunks(blob[:-3]), "zstd"))


def test_scan_chunks_counts_and_hashes_every_byte():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i, size in enumerate((0, 1, 511, 512, 513, 2 << 20)):
            ti = tarfile.TarInfo(f"d/{'x' * 120}{i}")  # long names: PAX headers across chunk edges
            ti.size = size
            tf.addfile(ti, io.BytesIO(os.urandom(size)))
    tar = buf.getvalue() + bytes(4096)  # zero blocks after the end marker count too
    for blob, kind in ((tar, "none"), (gzip.compress(tar), "gzip")):
        scan = scan_chunks(chunks(blob, 777), digest=True)
        assert scan.compression == kind
        assert scan.tar_size == len(tar) and scan.tar_digest == "sha256:" + hashlib.sha256(tar).hexdigest()
        assert sorted(scan.files.values()) == [0, 1, 511, 512, 513, 2 << 20]
    with pytest.raises(AnalyzeInputError, match="truncated or corrupt"):
        scan_chunks(chunks(gzip.compress(tar)[:-100], 777))
    with pytest.raises(AnalyzeInputError, match="not a tar"):
        scan_chunks(file_chunks(io.BytesIO(b"hello")))
