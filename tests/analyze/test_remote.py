"""analyze on images in the test bed's registry, read without pulling (manifest and config only)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from test_archives import one_line_error

from bgeimg.analyze import analyze, compare

pytestmark = [pytest.mark.engine, pytest.mark.registry]

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def get_manifest(registry: str, repo: str, ref: str) -> dict:
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


@pytest.fixture(scope="session")
def pushed_small(docker_api, registry, small_image) -> str:
    repo, tag = small_image.split(":")
    target = f"{registry}/{repo}"
    docker_api.tag(small_image, target, tag)
    for line in docker_api.push(target, tag, stream=True, decode=True):
        if "error" in line:
            pytest.fail(f"push failed: {line['error']}")
    return f"{target}:{tag}"


def test_registry_image_compressed_sizes_and_history(pushed_small, small_image, registry):
    remote = analyze(f"registry:{pushed_small}")
    local = analyze(small_image)
    assert remote.source == "registry" and not remote.files_scanned and remote.waste is None
    repo, tag = pushed_small[len(registry) + 1:].split(":")
    manifest = get_manifest(registry, repo, tag)
    assert [layer.compressed_size for layer in remote.layers] == [d["size"] for d in manifest["layers"]]
    assert [layer.digest for layer in remote.layers] == [d["digest"] for d in manifest["layers"]]
    assert remote.compressed_size == sum(d["size"] for d in manifest["layers"])
    assert [layer.instruction for layer in remote.layers] == [layer.instruction for layer in local.layers]
    assert [layer.diff_id for layer in remote.layers] == [layer.diff_id for layer in local.layers]
    assert remote.config_digest == local.config_digest
    # the same image, side by side across sources: every layer shared
    cmp = compare(local, remote)
    assert len(cmp.shared_layers) == len(local.layers)


def test_registry_index_platforms(registry):
    ref = f"registry:{registry}/library/python:3.11-slim"
    amd = analyze(ref)
    arm = analyze(ref, platform="linux/arm64")
    assert amd.platform == "linux/amd64" and arm.platform.startswith("linux/arm64")  # the config may add /v8
    index = get_manifest(registry, "library/python", "3.11-slim")
    digests = {d["platform"]["architecture"]: d["digest"] for d in index["manifests"]}
    assert amd.manifest_digest == digests["amd64"] and arm.manifest_digest == digests["arm64"]


def test_registry_cli_json_gate_and_bad_inputs(bgeimg, pushed_small, registry):
    r = bgeimg("analyze", f"registry:{pushed_small}", "--json", "--max-size", "1GB")
    assert r.code == 0, r.err
    doc = r.json
    assert doc["size"] is None and doc["compressed_size"] > 0 and doc["gates"][0]["value"] == doc["compressed_size"]
    text = bgeimg("analyze", f"registry:{pushed_small}", "--max-wasted", "1MB")
    assert text.code == 1 and "wasted bytes unknown" in text.err

    one_line_error(bgeimg("analyze", f"registry:{registry}/library/python:3.11-slim", "--platform", "linux/s390x"),
                   2, "linux/amd64", "linux/arm64")
    one_line_error(bgeimg("analyze", f"registry:{registry}/bgeimg-test-analyze/none:missing"), 2)
    one_line_error(bgeimg("analyze", "registry:127.0.0.1:1/bgeimg-test-analyze/x:1"), 3)


def upload(reg, repo: str, tag: str, image) -> str:
    """Push a hand-built image over the registry API with basic auth (no docker login: the shared docker
    config stays untouched). Returns the manifest digest."""
    import hashlib

    import requests

    auth = (reg.user, reg.password)
    base = f"http://{reg.host}/v2/{repo}"
    blobs = [layer.blob for layer in image.layers] + [image.config()]
    for data in blobs:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"{base}/blobs/uploads/", auth=auth, timeout=30)
        start.raise_for_status()
        loc = start.headers["Location"]
        loc = loc if loc.startswith("http") else f"http://{reg.host}{loc}"
        sep = "&" if "?" in loc else "?"
        requests.put(f"{loc}{sep}digest={digest}", data=data, auth=auth, timeout=30,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    manifest = image.manifest()
    requests.put(f"{base}/manifests/{tag}", data=manifest, auth=auth, timeout=30,
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}).raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_registry_with_auth_from_docker_config(bgeimg, auth_registry, tmp_path, monkeypatch):
    from analyze_archives import Image, Layer

    image = Image([Layer([("file", "etc/os-release", b"x" * 1000)], "gzip"),
                   Layer([("file", "opt/app/main.py", b"print(1)\n" * 50)], "zstd")],
                  history=[{"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
                           {"created_by": "COPY main.py /opt/app/ # buildkit"}])
    digest = upload(auth_registry, "bgeimg-test-analyze/auth", "1", image)
    ref = f"registry:{auth_registry.host}/bgeimg-test-analyze/auth:1"

    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.docker_config(tmp_path / "with")))
    r = bgeimg("analyze", ref, "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert doc["manifest_digest"] == digest
    assert [la["compressed_size"] for la in doc["layers"]] == [len(layer.blob) for layer in image.layers]
    assert [la["instruction"] for la in doc["layers"]] == ["ADD file:abc in /", "COPY main.py /opt/app/"]
    assert auth_registry.password not in r.out + r.err

    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.docker_config(tmp_path / "without", with_auth=False)))
    denied = bgeimg("analyze", ref)
    one_line_error(denied, 3)
    assert "401" in denied.err or "credentials" in denied.err
