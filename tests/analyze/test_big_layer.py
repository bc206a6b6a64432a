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


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_file_over_8gib_in_a_plain_layer(tmp_path, fmt):
    """A 9 GiB file: its size no longer fits the 11 octal digits of a tar header (GNU writes base-256, PAX a
    size record). The layer is a sparse file on disk, so the test costs no disk and no reading."""
    import hashlib
    import json

    size = 9 << 30
    ti = tarfile.TarInfo("opt/model/huge.gguf")
    ti.size = size
    header = ti.tobuf(format=fmt)
    root = tmp_path / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_hex = "ab" * 32  # not the real digest: a layout's blob names are not re-hashed by analyze
    with open(blobs / layer_hex, "wb") as f:
        f.write(header)
        f.seek(size, 1)
        f.write(bytes(1024))
    tar_len = len(header) + size + 1024
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "cd" * 32]}}).encode()
    (blobs / hashlib.sha256(config).hexdigest()).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                                                          "size": len(config)},
                           "layers": [{"digest": "sha256:" + layer_hex, "size": tar_len,
                                       "mediaType": "application/vnd.oci.image.layer.v1.tar"}]}).encode()
    (blobs / hashlib.sha256(manifest).hexdigest()).write_bytes(manifest)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"digest": "sha256:" + hashlib.sha256(manifest).hexdigest(), "size": len(manifest)}]}))
    report = analyze(str(root))
    assert report.layers[0].size == size
    assert report.layers[0].tar_size == tar_len
    assert report.biggest_files[0].path == "/opt/model/huge.gguf"
