"""Helpers and fixtures of the registry client tests (from the push draft): our own `docker-registry serve`
processes on free loopback ports (plain HTTP, or htpasswd behind TLS with a throwaway CA), and tiny synthetic
images uploaded through the real API."""

from __future__ import annotations

import gzip
import io
import json
import socket
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bgeimg.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST
from bgeimg.oci.registry import sha256_digest

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryProcess:
    """A distribution registry we start and stop ourselves (for auth, TLS and fault drills)."""

    def __init__(self, tmp: Path, tls: tuple[Path, Path] | None = None, htpasswd: Path | None = None):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        cfg = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
               "  filesystem:", f"    rootdirectory: {tmp / 'storage'}", "  delete:", "    enabled: true",
               "http:", f"  addr: {self.host}"]
        if tls:
            cfg += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        if htpasswd:
            cfg += ["auth:", "  htpasswd:", "    realm: bgeimg-test", f"    path: {htpasswd}"]
        self.config = tmp / "registry.yml"
        self.config.write_text("\n".join(cfg) + "\n")
        self.log = tmp / "registry.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"registry on {self.host} did not start: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_registry(tmp_path):
    """A fresh plain-HTTP registry of our own (we may stop and restart it)."""
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed (scripts/testbed.sh up)")
    reg = RegistryProcess(tmp_path)
    reg.start()
    yield reg
    reg.stop()


def _make_ca_and_cert(d: Path) -> tuple[Path, Path, Path]:
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ca_key, ca_crt, key, csr, crt = (d / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt"))
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2",
        "-subj", "/CN=bgeimg test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(crt), "-days", "2", "-extfile", str(ext))
    return ca_crt, crt, key


@pytest.fixture
def tls_registry(tmp_path, monkeypatch):
    """htpasswd auth (user `pusher`, bcrypt) behind TLS; the CA sits in a certs.d dir as dockerd reads it."""
    bcrypt = pytest.importorskip("bcrypt")
    password = "s3cret-" + uuid.uuid4().hex[:8]
    ht = tmp_path / "htpasswd"
    ht.write_text("pusher:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode() + "\n")
    ca, crt, key = _make_ca_and_cert(tmp_path)
    reg = RegistryProcess(tmp_path, tls=(crt, key), htpasswd=ht)
    certs_d = tmp_path / "certs.d"
    (certs_d / reg.host).mkdir(parents=True)
    (certs_d / reg.host / "ca.crt").write_bytes(ca.read_bytes())
    monkeypatch.setenv("BGEIMG_CERTS_D", str(certs_d))
    reg.start()
    reg.user, reg.password = "pusher", password
    yield reg
    reg.stop()


def write_docker_config(d: Path, host: str, user: str, password: str) -> Path:
    import base64

    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(
        {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    return d


@dataclass
class Blob:
    digest: str
    data: bytes
    media_type: str


def tiny_image(arch: str, payload: bytes) -> tuple[Blob, Blob, Blob]:
    """(layer, config, manifest) of a one-layer image for linux/`arch`, deterministic for the same input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("payload.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer_tar = raw.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": {"Labels": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}},
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer_tar)]}},
                        sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": sha256_digest(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": sha256_digest(layer)}]}, sort_keys=True).encode()
    return (Blob(sha256_digest(layer), layer, "layer"), Blob(sha256_digest(config), config, "config"),
            Blob(sha256_digest(manifest), manifest, DOCKER_MANIFEST))


def index_of(manifests: list[tuple[Blob, str]], attestation: bool = False) -> bytes:
    entries = [{"mediaType": DOCKER_MANIFEST, "size": len(m.data), "digest": m.digest,
                "platform": {"os": "linux", "architecture": arch}} for m, arch in manifests]
    if attestation:
        # distribution checks that children exist, so the stand-in attestation points at a real manifest.
        entries.append({"mediaType": DOCKER_MANIFEST, "size": len(manifests[0][0].data), "digest": manifests[0][0].digest,
                        "platform": {"os": "unknown", "architecture": "unknown"},
                        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    return json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries}).encode()


def unique_repo(name: str) -> str:
    return f"bgeimg-test-push/{name}-{uuid.uuid4().hex[:8]}"
