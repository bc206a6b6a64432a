"""bundle save/load through the real engine: round trip, corrupted or truncated files refused before any image is
imported, and the OCI layout inside read by `docker load` (Docker 20.10, and 26 when the test bed runs it) and
skopeo, with a shared base stored once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.engine


def bgeimg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True)


@pytest.fixture()
def two_platform_image(docker_api, docker_client):
    name = f"bgeimg-test-operate/bundle-{uuid.uuid4().hex[:8]}:1"
    for platform in ("linux/amd64", "linux/arm64"):
        subprocess.run(["/usr/bin/docker", "build", "--no-cache", "--platform", platform, "-t",
                        f"{name}-{platform.split('/')[1]}", "-"], check=True, capture_output=True,
                       input=b"FROM python:3.11-slim\nRUN uname -m > /arch && head -c 200000 /dev/urandom > /blob\n",
                       env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"})
    yield name
    for suffix in ("amd64", "arm64"):
        try:
            docker_api.remove_image(f"{name}-{suffix}", force=True)
        except Exception:
            pass


def remove(docker_api, name: str) -> list[str]:
    ids = []
    for suffix in ("amd64", "arm64"):
        ids.append(docker_api.inspect_image(f"{name}-{suffix}")["Id"])
        docker_api.remove_image(f"{name}-{suffix}", force=True)
    return ids


def test_round_trip_through_the_engine(docker_api, docker_client, two_platform_image, tmp_path) -> None:
    bundle = tmp_path / "site.tar.zst"
    saved = bgeimg("bundle", "save", two_platform_image, "-o", str(bundle))
    assert saved.returncode == 0, saved.stderr
    assert f"{two_platform_image}-amd64" in saved.stdout and f"{two_platform_image}-arm64" in saved.stdout
    ids = remove(docker_api, two_platform_image)
    loaded = bgeimg("bundle", "load", str(bundle))
    assert loaded.returncode == 0, loaded.stderr
    for suffix, image_id in zip(("amd64", "arm64"), ids):
        info = docker_api.inspect_image(f"{two_platform_image}-{suffix}")
        assert info["Id"] == image_id and info["Architecture"] == suffix
    out = docker_client.containers.run(f"{two_platform_image}-amd64", ["cat", "/arch"], remove=True)
    assert out.decode().strip() == "x86_64"


def test_corrupted_and_truncated_bundles_import_nothing(docker_api, two_platform_image, tmp_path) -> None:
    bundle = tmp_path / "site.tar.zst"
    assert bgeimg("bundle", "save", two_platform_image, "-o", str(bundle)).returncode == 0
    remove(docker_api, two_platform_image)
    data = bundle.read_bytes()
    truncated = tmp_path / "truncated.tar.zst"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    corrupted = tmp_path / "corrupted.tar.zst"
    corrupted.write_bytes(bytes(flipped))
    for bad in (truncated, corrupted):
        result = bgeimg("bundle", "load", str(bad))
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip()
        assert line.startswith(f"error: {bad}") and ("corrupted or truncated" in line or "checksum" in line
                                                      or "truncated" in line), line
        assert "Traceback" not in result.stderr and line.count("\n") == 0
        for suffix in ("amd64", "arm64"):
            with pytest.raises(docker.errors.ImageNotFound):
                docker_api.inspect_image(f"{two_platform_image}-{suffix}")  # nothing was imported


def test_not_a_bundle_and_missing_file(tmp_path) -> None:
    other = tmp_path / "x.tar.zst"
    import io
    import tarfile

    from bgeimg.oci.zstd import ZstdFile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with ZstdFile(other, "w") as zst:
        zst.write(buf.getvalue())
    result = bgeimg("bundle", "load", str(other))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {other} is not a bgeimg bundle (no bgeimg-bundle/2 manifest) "
                                     "(make one with `bgeimg bundle save`)")
    missing = bgeimg("bundle", "load", str(tmp_path / "nope.tar.zst"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    absent = bgeimg("bundle", "save", "bgeimg-test-operate/absent:1", "-o", str(tmp_path / "b.tar.zst"))
    assert absent.returncode == 2 and "no local image bgeimg-test-operate/absent:1" in absent.stderr
    assert not (tmp_path / "b.tar.zst").exists()


DOCKER26 = "/var/run/bgeimg-docker26.sock"  # scripts/testbed.sh up --modern: Docker 26 with the containerd store


def skopeo() -> str:
    """Debian's skopeo (scripts/testbed.sh up --modern installs it)."""
    found = shutil.which("skopeo")
    if not found:
        pytest.fail("skopeo is not installed: run scripts/testbed.sh up --modern")
    return found


@pytest.fixture()
def two_images_one_base(docker_api):
    names = [f"bgeimg-test-operate/oci-{uuid.uuid4().hex[:8]}:{n}" for n in ("a", "b")]
    for name in names:
        subprocess.run(["/usr/bin/docker", "build", "--no-cache", "-t", name, "-"], check=True, capture_output=True,
                       input=b"FROM python:3.11-slim\nRUN head -c 300000 /dev/urandom > /blob\n",
                       env={"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"})
    yield names
    for name in names:
        try:
            docker_api.remove_image(name, force=True)
        except Exception:
            pass


def test_oci_layout_read_by_docker_load_and_skopeo(docker_api, two_images_one_base, tmp_path) -> None:
    bundle = tmp_path / "site.tar.zst"
    saved = bgeimg("bundle", "save", *two_images_one_base, "-o", str(bundle))
    assert saved.returncode == 0, saved.stderr
    plain = tmp_path / "site.tar"
    subprocess.run(["zstd", "-q", "-d", str(bundle), "-o", str(plain)], check=True)
    with tarfile.open(plain) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))
        manifests = [json.load(tar.extractfile(f"blobs/sha256/{m['digest'][7:]}")) for m in index["manifests"]]
    assert names[:4] == ["bgeimg-bundle.json", "oci-layout", "index.json", "manifest.json"]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == two_images_one_base
    assert all(m["platform"] == {"architecture": "amd64", "os": "linux"} for m in index["manifests"])
    layers = [[layer["digest"] for layer in m["layers"]] for m in manifests]
    assert layers[0][:-1] == layers[1][:-1] and layers[0][-1] != layers[1][-1]  # the base is shared
    referenced = {d for m, desc in zip(manifests, index["manifests"])
                  for d in [desc["digest"], m["config"]["digest"], *(x["digest"] for x in m["layers"])]}
    blobs = [n for n in names if n.startswith("blobs/sha256/")]
    assert len(blobs) == len(set(blobs)) == len(referenced)  # each blob once
    ids = [docker_api.inspect_image(n)["Id"] for n in two_images_one_base]
    for name in two_images_one_base:
        docker_api.remove_image(name, force=True)
    # Docker 20.10 reads docker's manifest.json inside the layout (it does not decompress zstd itself)
    with plain.open("rb") as fh:
        loaded = subprocess.run(["/usr/bin/docker", "load"], stdin=fh, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert [docker_api.inspect_image(n)["Id"] for n in two_images_one_base] == ids
    # skopeo reads the OCI layout, the zstd file as it is, and finds every blob by its digest
    out = tmp_path / "copied"
    copied = subprocess.run([skopeo(), "copy", f"oci-archive:{bundle}:{two_images_one_base[1]}", f"dir:{out}"],
                            capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    diff_ids = json.loads((out / json.loads((out / "manifest.json").read_text())["config"]["digest"][7:])
                          .read_text())["rootfs"]["diff_ids"]
    assert diff_ids == layers[1] == docker_api.inspect_image(two_images_one_base[1])["RootFS"]["Layers"]
    # Docker 26 with the containerd image store reads index.json, and the zstd file directly
    if not Path(DOCKER26).is_socket():
        pytest.skip(f"no Docker 26 at {DOCKER26} (scripts/testbed.sh up --modern): checked 20.10 and skopeo only")
    d26 = ["/usr/bin/docker", "-H", f"unix://{DOCKER26}"]
    try:
        result = subprocess.run([*d26, "load", "-i", str(bundle)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for name in two_images_one_base:
            assert f"Loaded image: {name}" in result.stdout
            got = subprocess.run([*d26, "image", "inspect", name, "--format", "{{json .RootFS.Layers}}"],
                                 capture_output=True, text=True, check=True)
            assert json.loads(got.stdout) == layers[two_images_one_base.index(name)]
    finally:
        subprocess.run([*d26, "rmi", *two_images_one_base], capture_output=True)
