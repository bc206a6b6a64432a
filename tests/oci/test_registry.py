"""The registry client against real distribution registries: the test bed's and our own (TLS + htpasswd)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time

import pytest
from regtools import index_of, tiny_image, unique_repo, write_docker_config

from bgeimg.analyze.errors import AnalyzeInputError
from bgeimg.analyze.image import pick_manifest
from bgeimg.oci.mediatypes import DOCKER_LIST
from bgeimg.oci.registry import (
    Credentials,
    NotFoundError,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    load_credentials,
)

pytestmark = pytest.mark.registry


def push_tiny(client: RegistryClient, repo: str, arch: str, payload: bytes, chunk_size=None):
    layer, config, manifest = tiny_image(arch, payload)
    for blob in (layer, config):
        if client.blob_exists(repo, blob.digest) is None:
            client.upload_blob(repo, blob.digest, blob.data, chunk_size=chunk_size)
    client.put_manifest(repo, manifest.digest, manifest.data, manifest.media_type)
    return layer, config, manifest


def test_multiarch_index_roundtrip(registry):
    client = RegistryClient(registry, credentials=None)
    repo = unique_repo("reg")
    amd = push_tiny(client, repo, "amd64", b"amd64 payload")
    arm = push_tiny(client, repo, "arm64", b"arm64 payload" * 5000, chunk_size=16 * 1024)
    raw = index_of([(amd[2], "amd64"), (arm[2], "arm64")], attestation=True)
    digest = client.put_manifest(repo, "v1", raw, DOCKER_LIST)

    top = client.get_manifest(repo, "v1")
    assert top.digest == digest and top.is_index and top.media_type == DOCKER_LIST
    def read(desc):
        return client.get_manifest(repo, desc["digest"]).json

    for plat, (_, config, manifest) in (("linux/amd64", amd), ("linux/arm64", arm)):
        desc, body = pick_manifest(top.json, read, plat, "v1")
        assert desc["digest"] == manifest.digest
        assert json.loads(client.get_blob(repo, body["config"]["digest"]))["architecture"] == plat.split("/")[1]
        assert client.get_blob(repo, config.digest) == config.data
    assert client.head_manifest(repo, "v1") == digest
    assert client.head_manifest(repo, "nope") is None
    assert client.list_tags(repo) == ["v1"]
    assert b"".join(client.iter_blob(repo, arm[0].digest)) == arm[0].data
    with pytest.raises(AnalyzeInputError, match=r"it has: linux/amd64, linux/arm64\)"):  # attestation left out
        pick_manifest(top.json, read, "linux/s390x", "v1")
    with pytest.raises(NotFoundError):
        client.get_manifest(repo, "missing")


def test_pick_manifest_skips_attestations_and_matches_arm64_v8():
    index = {"manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]}
    body = {"config": {}, "layers": []}
    assert pick_manifest(index, lambda d: body, "linux/arm64", "x")[0]["digest"].endswith("2")
    assert pick_manifest(index, lambda d: body, "linux/arm64/v8", "x")[0]["digest"].endswith("2")
    assert pick_manifest(index, lambda d: body, None, "x")[0]["digest"].endswith("2")  # the only image
    with pytest.raises(AnalyzeInputError, match=r"it has: linux/arm64/v8\)"):
        pick_manifest(index, lambda d: body, "unknown/unknown", "x")


def test_mount_across_repositories_sends_no_bytes(registry):
    client = RegistryClient(registry, credentials=None)
    src, dst = unique_repo("src"), unique_repo("dst")
    layer, _, _ = push_tiny(client, src, "amd64", b"mount me")
    sent = client.stats.blob_bytes_uploaded
    assert client.blob_exists(dst, layer.digest) is None
    assert client.mount_blob(dst, layer.digest, src) is True
    assert client.blob_exists(dst, layer.digest) == len(layer.data)
    assert client.stats.blob_bytes_uploaded == sent


def test_tls_htpasswd_right_credentials(tls_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(write_docker_config(tmp_path / "dc", tls_registry.host,
                                                                tls_registry.user, tls_registry.password)))
    client = RegistryClient(tls_registry.host)
    assert client.ping() == {"url": f"https://{tls_registry.host}", "auth": "basic"}
    repo = unique_repo("tls")
    _, config, manifest = push_tiny(client, repo, "amd64", b"over tls")
    assert client.get_manifest(repo, manifest.digest).digest == manifest.digest
    assert repr(Credentials("u", "hidden-pw")).count("hidden-pw") == 0


def test_tls_htpasswd_wrong_and_missing_credentials(tls_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(write_docker_config(tmp_path / "dc", tls_registry.host,
                                                                tls_registry.user, "wrong-password-xyz")))
    with pytest.raises(RegistryAuthError, match="refused the credentials") as info:
        RegistryClient(tls_registry.host).ping()
    assert "wrong-password-xyz" not in str(info.value)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    with pytest.raises(RegistryAuthError, match="docker login"):
        RegistryClient(tls_registry.host).ping()


def test_tls_without_ca_is_refused_clearly(tls_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("BGEIMG_CERTS_D", str(tmp_path / "no-certs"))
    with pytest.raises(RegistryError, match="ca.crt"):
        RegistryClient(f"https://{tls_registry.host}", credentials=None, retries=0).ping()


def test_credential_helper(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text('#!/bin/sh\nread host\nif [ "$host" = "reg.example:5000" ]; then\n'
                      'echo \'{"ServerURL":"reg.example:5000","Username":"bob","Secret":"pw-from-helper"}\'\n'
                      'else echo "credentials not found in native keychain"; exit 1; fi\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"credHelpers": {"reg.example:5000": "fake"}, "credsStore": "fake"}))
    assert load_credentials("reg.example:5000", cfg) == Credentials("bob", "pw-from-helper")
    assert load_credentials("other.example", cfg) is None
    cfg.write_text(json.dumps({"credHelpers": {"reg.example:5000": "absent"}}))
    with pytest.raises(RegistryAuthError, match="docker-credential-absent"):
        load_credentials("reg.example:5000", cfg)
    # docker's order: credHelpers, then credsStore, then auths (the store wins over a stale file entry)
    stale = base64.b64encode(b"old:stale-pw").decode()
    cfg.write_text(json.dumps({"credsStore": "fake", "auths": {"reg.example:5000": {"auth": stale},
                                                               "other.example": {"auth": stale}}}))
    assert load_credentials("reg.example:5000", cfg) == Credentials("bob", "pw-from-helper")
    assert load_credentials("other.example", cfg) == Credentials("old", "stale-pw")  # the store has none


def test_stopped_registry_gives_clear_error_and_retries(own_registry):
    client = RegistryClient(own_registry.host, credentials=None, retries=2, backoff=0.05)
    client.ping()
    own_registry.stop()
    with pytest.raises(RegistryError, match="cannot reach registry") as info:
        client.get_manifest("bgeimg-test-push/x", "latest")
    assert "connection refused" in str(info.value) and info.value.hint == "gave up after 3 attempts"
    assert client.stats.retries == 2


class Throttle:
    """An HTTP proxy in front of a real registry that answers the first `count` GETs of paths containing `path`
    with `status` (and `Retry-After: retry_after` when given), then passes everything through."""

    def __init__(self, upstream: str, path: str, status: int, count: int, retry_after: str | None = None):
        import http.server
        import threading

        import requests

        self.refused: list[float] = []
        throttle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if path in self.path and len(throttle.refused) < count:
                    throttle.refused.append(time.monotonic())
                    self.send_response(status)
                    if retry_after:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                up = requests.get(f"http://{upstream}{self.path}", headers={k: v for k, v in self.headers.items()
                                                                          if k.lower() != "host"}, timeout=30)
                self.send_response(up.status_code)
                for k, v in up.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(up.content)))
                self.end_headers()
                self.wfile.write(up.content)

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("status,retry_after", [(429, "1"), (503, None)])
def test_reads_are_retried_by_urllib3_honouring_retry_after(registry, status, retry_after):
    writer = RegistryClient(registry, credentials=None)
    repo = unique_repo("throttle")
    _, config, manifest = push_tiny(writer, repo, "amd64", b"throttled")
    proxy = Throttle(registry, f"/manifests/{manifest.digest}", status, count=2, retry_after=retry_after)
    try:
        client = RegistryClient(f"http://{proxy.host}", credentials=None, retries=3, backoff=0.1)
        start = time.monotonic()
        got = client.get_manifest(repo, manifest.digest)
        took = time.monotonic() - start
    finally:
        proxy.server.shutdown()
    assert got.digest == manifest.digest and len(proxy.refused) == 2 and client.stats.retries == 2
    gap = proxy.refused[1] - proxy.refused[0]
    if retry_after:  # the registry asked for a second between tries; urllib3's own backoff would be ~0.1 s
        assert gap >= 0.95 and took >= 1.9
    else:  # urllib3 retries the first failure at once, then waits backoff 0.1 x 2 plus up to 0.05 of jitter
        assert gap < 0.5 and 0.2 <= took < 1.5


def test_reads_give_up_with_the_registrys_answer(registry):
    proxy = Throttle(registry, "/tags/list", 503, count=100)
    try:
        client = RegistryClient(f"http://{proxy.host}", credentials=None, retries=2, backoff=0.01)
        with pytest.raises(RegistryError, match="503"):
            client.list_tags("bgeimg-test/any")
    finally:
        proxy.server.shutdown()
    assert len(proxy.refused) == 3 and client.stats.retries == 2


def test_ca_bundle_is_one_file_per_content(tls_registry, tmp_path):
    import glob
    import tempfile

    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "bgeimg-ca-*")))
    paths = {RegistryClient(f"https://{tls_registry.host}", credentials=None).session.verify for _ in range(3)}
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "bgeimg-ca-*")))
    assert len(paths) == 1 and len(after - before) <= 1 and not [p for p in after if p.endswith(".part")]


def test_cli_wrong_password_one_line_no_secret(tls_registry, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, DOCKER_CONFIG=str(write_docker_config(tmp_path / "dc", tls_registry.host,
                                                                 tls_registry.user, "Wr0ng-Pa55word")))
    r = subprocess.run([sys.executable, "-m", "bgeimg", "tags", f"{tls_registry.host}/bgeimg-test-push/x"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 3
    assert "refused the credentials" in r.stderr and "Traceback" not in r.stderr
    assert "Wr0ng-Pa55word" not in r.stderr + r.stdout and tls_registry.password not in r.stderr + r.stdout
