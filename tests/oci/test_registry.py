"""The registry client against real distribution registries: the test bed's and our own (TLS + htpasswd)."""

from __future__ import annotations

import base64
import json
import os
import stat

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
    sleeps = []
    client = RegistryClient(own_registry.host, credentials=None, retries=2, sleep=sleeps.append)
    client.ping()
    own_registry.stop()
    with pytest.raises(RegistryError, match="cannot reach registry") as info:
        client.get_manifest("bgeimg-test-push/x", "latest")
    assert "connection refused" in str(info.value)
    assert sleeps == [0.5, 1.0]  # exponential backoff between the three attempts


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
