"""bundle save/load through the real engine: round trip, and corrupted or truncated files refused before any
image is imported."""

from __future__ import annotations

import subprocess
import sys
import uuid

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

    import zstandard

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    other.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    result = bgeimg("bundle", "load", str(other))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {other} is not a bgeimg bundle (no bgeimg-bundle/1 manifest) "
                                     "(make one with `bgeimg bundle save`)")
    missing = bgeimg("bundle", "load", str(tmp_path / "nope.tar.zst"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    absent = bgeimg("bundle", "save", "bgeimg-test-operate/absent:1", "-o", str(tmp_path / "b.tar.zst"))
    assert absent.returncode == 2 and "no local image bgeimg-test-operate/absent:1" in absent.stderr
    assert not (tmp_path / "b.tar.zst").exists()
