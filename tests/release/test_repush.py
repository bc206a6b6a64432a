"""Fast re-push: the layer cache lets a second push export, compress and upload nothing, and a cache that lies
(a blob the registry no longer has, a digest that was never pushed) still gives a correct, identical push."""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.request

import pytest
from pushhelp import bgeimg, config_of, fetch, manifest

pytestmark = [pytest.mark.engine, pytest.mark.registry]


def push(image: str, host: str, *args: str) -> dict:
    result = bgeimg("push", image, "--registry", host, "--scheme", "commit", "--allow-dirty", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def layers_of(host: str, repo: str, index_digest: str) -> tuple[list[dict], list[str]]:
    _, index = manifest(host, repo, index_digest)
    child = index["manifests"][0]["digest"]
    return manifest(host, repo, child)[1]["layers"], config_of(host, repo, child)["rootfs"]["diff_ids"]


def test_second_push_exports_compresses_and_uploads_nothing(docker_api, tiny_image, own_registry,
                                                            layer_cache) -> None:
    image = tiny_image(platforms=("linux/amd64",), payload_kb=2000)
    reg = own_registry()
    first = push(image, reg.host, "--tag", "one")
    assert first["images_exported"] == 1 and first["layers_compressed"] >= 2 and first["bytes_uploaded"] > 2_000_000
    assert (layer_cache / "push" / "layers.json").is_file()
    again = push(image, reg.host, "--tag", "two")
    assert again["digest"] == first["digest"]
    assert (again["images_exported"], again["layers_compressed"], again["bytes_uploaded"], again["blobs_uploaded"]) \
        == (0, 0, 0, 0)
    # another repository of the same registry: every blob mounted, still nothing exported or uploaded
    other = push(image, reg.host, "--tag", "three", "--repo", "elsewhere/tiny")
    assert other["digest"] == first["digest"] and other["bytes_uploaded"] == 0 and other["layers_compressed"] == 0
    assert other["blobs_mounted"] == first["blobs_uploaded"]
    # not a terminal: byte progress as one plain line per finished step (a new registry: export and uploads again)
    plain = bgeimg("push", image, "--registry", own_registry().host, "--tag", "four", "--scheme", "commit",
                   "--allow-dirty")
    assert plain.returncode == 0, plain.stderr
    lines = plain.stderr.splitlines()
    assert any(x.startswith(f"export {image}-amd64: ") and " bytes in " in x for x in lines), plain.stderr
    assert sum(x.startswith("upload ") and " bytes in " in x for x in lines) == first["blobs_uploaded"] - 1  # + config


def test_a_cache_that_lies_still_gives_a_correct_push(docker_api, tiny_image, own_registry, layer_cache) -> None:
    image = tiny_image(platforms=("linux/amd64",), payload_kb=1000)
    repo = image.split(":")[0]
    reg = own_registry()
    first = push(image, reg.host, "--tag", "one")
    layers, diff_ids = layers_of(reg.host, repo, first["digest"])
    # 1. the registry lost a blob the cache says it has
    gone = layers[-1]["digest"]
    req = urllib.request.Request(f"http://{reg.host}/v2/{repo}/blobs/{gone}", method="DELETE")
    assert urllib.request.urlopen(req, timeout=10).status == 202
    # 2. the cache maps another layer to a blob that was never pushed anywhere
    cache_file = layer_cache / "push" / "layers.json"
    doc = json.loads(cache_file.read_text())
    doc["layers"][diff_ids[0]][0]["digest"] = "sha256:" + "0" * 64
    cache_file.write_text(json.dumps(doc))
    again = push(image, reg.host, "--tag", "two")
    # both layers compressed again, to the same bytes: the same image, and every blob really there
    assert again["layers_compressed"] == 2 and again["blobs_uploaded"] == 1
    assert again["digest"] == first["digest"]
    for layer, diff_id in zip(layers, diff_ids):
        with fetch(reg.host, f"/v2/{repo}/blobs/{layer['digest']}", accept="*/*") as r:
            packed = r.read()
        assert "sha256:" + hashlib.sha256(packed).hexdigest() == layer["digest"]
        assert "sha256:" + hashlib.sha256(gzip.decompress(packed)).hexdigest() == diff_id
    # and the cache was corrected: a third push does nothing
    third = push(image, reg.host, "--tag", "three")
    assert (third["layers_compressed"], third["bytes_uploaded"]) == (0, 0)


DOCKER26 = "/var/run/bgeimg-docker26.sock"  # scripts/testbed.sh up --modern: Docker 26 with the containerd store


def test_push_from_a_containerd_image_store(own_registry, docker_api) -> None:
    """Docker 26's containerd store saves layers gzipped: they go up as saved (nothing compressed), the config is
    found by its content, and the image runs where it is pulled."""
    import os
    import subprocess
    import uuid
    from pathlib import Path

    if not Path(DOCKER26).is_socket():
        pytest.skip(f"no Docker 26 at {DOCKER26} (scripts/testbed.sh up --modern)")
    env = {**os.environ, "DOCKER_HOST": f"unix://{DOCKER26}"}
    image = f"bgeimg-test-push/d26-{uuid.uuid4().hex[:8]}:1"
    subprocess.run(["/usr/bin/docker", "build", "-q", "-t", image, "-"], check=True, capture_output=True, env=env,
                   input=b"FROM python:3.11-slim\nRUN head -c 100000 /dev/urandom > /blob\n")
    reg = own_registry()
    pulled = f"{reg.host}/{image.split(':')[0]}:one"
    try:
        first = bgeimg("push", image, "--registry", reg.host, "--tag", "one", "--scheme", "commit", "--allow-dirty",
                       "--json", env=env)
        assert first.returncode == 0, first.stderr
        doc = json.loads(first.stdout)[0]
        assert doc["layers_compressed"] == 2 and doc["blobs_uploaded"] == 3
        again = json.loads(bgeimg("push", image, "--registry", reg.host, "--tag", "two", "--scheme", "commit",
                                  "--allow-dirty", "--json", env=env).stdout)[0]
        assert (again["digest"], again["images_exported"], again["bytes_uploaded"]) == (doc["digest"], 0, 0)
        subprocess.run(["/usr/bin/docker", "pull", "-q", pulled], check=True, capture_output=True)
        ran = subprocess.run(["/usr/bin/docker", "run", "--rm", pulled, "wc", "-c", "/blob"], capture_output=True,
                             text=True, check=True)
        assert ran.stdout.split()[0] == "100000"
    finally:
        subprocess.run(["/usr/bin/docker", "rmi", image], capture_output=True, env=env)
        subprocess.run(["/usr/bin/docker", "rmi", pulled], capture_output=True)
