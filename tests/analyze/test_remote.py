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
    assert (amd.platform, arm.platform) == ("linux/amd64", "linux/arm64")
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
