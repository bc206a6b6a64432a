"""analyze on images in the test bed's registry, read without pulling: each layer streamed once, verified."""

from __future__ import annotations

import json
import urllib.request

import pytest
from analyze_images import A1, GONE
from test_archives import one_line_error

from bgeimg.analyze import analyze

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


# What only the source knows: its compressed blobs and their manifest. Everything else is the image's content and
# must be the same figure whichever way it was read.
SOURCE_FIELDS = ("ref", "source", "manifest_digest", "compressed_size")
BLOB_FIELDS = ("digest", "compressed_size", "compression")


def content(doc: dict) -> dict:
    doc = {k: v for k, v in doc.items() if k not in SOURCE_FIELDS}
    doc["layers"] = [{k: v for k, v in la.items() if k not in BLOB_FIELDS} for la in doc["layers"]]
    if doc.get("advice"):
        doc["advice"] = {k: v for k, v in doc["advice"].items() if k != "ref"}
    return doc


def test_registry_streamed_equals_archive(bgeimg, pushed_small, small_archive, registry):
    """The full report, --advise and gates included, streamed from the registry with no pull, equals the report of
    a `docker save` archive of the same image in every figure."""
    gates = ("--advise", "--max-wasted", "1MB", "--max-user-wasted-percent", "0.9", "--json", "--no-cache")
    remote = bgeimg("analyze", f"registry:{pushed_small}", *gates)
    local = bgeimg("analyze", str(small_archive), *gates)
    assert remote.code == local.code == 1, remote.err + local.err  # max-wasted fails: A1 + GONE are wasted
    r, a = remote.json, local.json
    assert r["source"] == "registry" and r["files_scanned"] and r["waste"]["wasted_bytes"] == A1 + GONE
    assert content(r) == content(a)
    assert r["advice"]["findings"] or r["advice"]["base_findings"] or r["advice"]["notes"]  # advice was given
    # what the registry adds: the compressed blobs, exactly as its manifest lists them
    repo, tag = pushed_small[len(registry) + 1:].split(":")
    manifest = get_manifest(registry, repo, tag)
    assert [la["compressed_size"] for la in r["layers"]] == [d["size"] for d in manifest["layers"]]
    assert [la["digest"] for la in r["layers"]] == [d["digest"] for d in manifest["layers"]]
    assert [la["compression"] for la in r["layers"]] == ["gzip"] * len(manifest["layers"])
    assert r["compressed_size"] == sum(d["size"] for d in manifest["layers"])


def test_registry_second_run_reads_no_layer(pushed_small, tmp_path, monkeypatch):
    from bgeimg.analyze.cache import LayerCache
    from bgeimg.analyze.remote import from_registry
    from bgeimg.analyze.report import build_report
    from bgeimg.oci.registry import RegistryClient

    fetched: list[str] = []
    real = RegistryClient.iter_blob

    def counting(self, repo, digest, chunk_size=1 << 20):
        fetched.append(digest)
        return real(self, repo, digest, chunk_size)

    monkeypatch.setattr(RegistryClient, "iter_blob", counting)
    cache = LayerCache(tmp_path / "cache", max_bytes=1 << 30)
    first = build_report(from_registry(pushed_small, cache=cache))
    n_layers = len(first.layers)
    assert len(fetched) == n_layers + 1  # every layer once, and the config
    fetched.clear()
    second = build_report(from_registry(pushed_small, cache=LayerCache(tmp_path / "cache", max_bytes=1 << 30)))
    assert fetched == []  # manifest only: config and layers from the cache
    assert second.to_json() == first.to_json()
    # --advise's probing scans are kept apart from the plain ones
    build_report(from_registry(pushed_small, probe=True, cache=LayerCache(tmp_path / "cache", max_bytes=1 << 30)))
    assert len(fetched) == n_layers


def test_registry_index_platforms(registry):
    ref = f"registry:{registry}/library/python:3.11-slim"
    amd = analyze(ref)
    arm = analyze(ref, platform="linux/arm64")
    assert amd.platform == "linux/amd64" and arm.platform.startswith("linux/arm64")  # the config may add /v8
    index = get_manifest(registry, "library/python", "3.11-slim")
    digests = {d["platform"]["architecture"]: d["digest"] for d in index["manifests"]}
    assert amd.manifest_digest == digests["amd64"] and arm.manifest_digest == digests["arm64"]
    for report in (amd, arm):  # each platform's own layers, read in full
        assert report.files_scanned and report.size == sum(la.size for la in report.layers) > 0
    assert {la.diff_id for la in amd.layers}.isdisjoint({la.diff_id for la in arm.layers})


def test_registry_cli_bad_inputs(bgeimg, registry):
    r = bgeimg("analyze", f"registry:{registry}/library/python:3.11-slim", "--platform", "linux/s390x")
    one_line_error(r, 2)
    assert r.err.strip() == (f"error: {registry}/library/python:3.11-slim has no image for linux/s390x (it has: "
                             "linux/amd64, linux/arm64/v8) (pick one with --platform)")
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


def test_registry_blob_or_diff_id_mismatch(bgeimg, auth_registry, tmp_path, monkeypatch):
    """A blob whose bytes do not hash to its digest, and a layer whose tar is not the diff_id its config names:
    one line each, exit 3, and nothing of them cached."""
    import json as _json

    from analyze_archives import Image, Layer

    monkeypatch.setenv("DOCKER_CONFIG", str(auth_registry.docker_config(tmp_path / "cfg")))
    monkeypatch.setenv("BGEIMG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BGEIMG_CACHE_MAX", "1GB")
    layer = Layer([("file", "opt/data.bin", bytes(range(256)) * 400)], "gzip")
    image = Image([layer])
    upload(auth_registry, "bgeimg-test-analyze/corrupt", "1", image)
    blob = auth_registry.blob_path(layer.digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length: only the hash can tell
    blob.write_bytes(bytes(data))
    r = bgeimg("analyze", f"registry:{auth_registry.host}/bgeimg-test-analyze/corrupt:1")
    one_line_error(r, 3)
    assert r.err.strip() == (f"error: blob bgeimg-test-analyze/corrupt@{layer.digest} from {auth_registry.host} "
                             "does not match its digest")

    class Lying(Image):
        def config(self) -> bytes:
            cfg = _json.loads(super().config())
            cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
            return _json.dumps(cfg, sort_keys=True).encode()

    good = Layer([("file", "opt/other.bin", b"x" * 5000)], "gzip")
    upload(auth_registry, "bgeimg-test-analyze/lying", "1", Lying([good]))
    r = bgeimg("analyze", f"registry:{auth_registry.host}/bgeimg-test-analyze/lying:1")
    one_line_error(r, 3)
    assert r.err.strip() == (f"error: {auth_registry.host}/bgeimg-test-analyze/lying:1: layer {good.digest} unpacks "
                             f"to {good.diff_id}, not the diff_id sha256:{'0' * 64} its config names (the image in "
                             "the registry is corrupt: push it again)")
    assert not list((tmp_path / "cache").glob("layers/*"))
