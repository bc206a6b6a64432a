"""A layer over 4 GiB: sizes must be exact (the gzip ISIZE trailer holds the size modulo 2^32)."""

from __future__ import annotations

import gzip
import struct
import tarfile

import pytest
from analyze_archives import Image, Layer, write_oci_dir

from bgeimg.analyze import analyze

MIB = 1 << 20
FILE_SIZE = 4400 * MIB  # > 4 GiB


def big_gzip_layer() -> tuple[bytes, int]:
    """A gzip stream of a tar holding one 4400 MiB file of zeros, made of gzip members (valid gzip): a header
    member, one 1 MiB zero member repeated, and an end member. Returns (blob, exact tar length)."""
    ti = tarfile.TarInfo("opt/model/huge.safetensors")
    ti.size = FILE_SIZE
    header = ti.tobuf(format=tarfile.USTAR_FORMAT)
    zeros = gzip.compress(bytes(MIB), compresslevel=1, mtime=0)
    tail = bytes(1024)  # FILE_SIZE is a multiple of 512: no padding; then two zero blocks
    tar_len = len(header) + FILE_SIZE + len(tail)
    blob = gzip.compress(header, mtime=0) + zeros * (FILE_SIZE // MIB) + gzip.compress(tail, mtime=0)
    return blob, tar_len


@pytest.mark.slow
def test_layer_over_4gib_is_sized_exactly(tmp_path):
    blob, tar_len = big_gzip_layer()
    isize = struct.unpack("<I", blob[-4:])[0]
    assert isize != tar_len and tar_len > 4 << 30  # a tool trusting ISIZE would be wrong
    small = Layer([("file", "etc/os-release", b"x" * 10)], "gzip")
    big = Layer([], "gzip")
    big.blob = blob  # hand-made stream; its diff_id is not needed here
    image = Image([small, big])
    root = write_oci_dir(tmp_path / "layout", {"linux/amd64": image}, nested=False, attestation=False)
    report = analyze(str(root))
    layer = report.layers[1]
    assert layer.tar_size == tar_len
    assert layer.size == FILE_SIZE
    assert layer.compressed_size == len(blob)
    assert layer.category == "model weights"
    assert report.size == FILE_SIZE + 10
