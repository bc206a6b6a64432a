"""Release tests. Push: registries of the push tests' own (Debian's docker-registry on free loopback ports: plain, htpasswd + TLS),
a TCP proxy that can cut a registry off mid-push, and tiny amd64 + arm64 images built on the test bed.
Sign and canary: cosign and nginx from the test bed (scripts/testbed.sh unpacks them into its cache), cosign key
pairs; small multi-platform images put straight into the registry are in release_images.py."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEBIAN_DOCKER = "/usr/bin/docker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OwnRegistry:
    directory: Path
    port: int
    tls: bool = False
    user: str | None = None
    password: str | None = None
    process: subprocess.Popen | None = None
    ca: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> OwnRegistry:
        log = (self.directory / "registry.log").open("ab")
        self.process = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(self.directory / "config.yml")],
                                        stdout=log, stderr=log)
        deadline = time.time() + 20
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"registry on {self.port} did not start: {(self.directory / 'registry.log').read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_registry(tmp: Path, *, tls: bool = False, user: str | None = None, password: str | None = None) -> OwnRegistry:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    reg = OwnRegistry(tmp, port, tls=tls, user=user, password=password)
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"}}
    if user:
        import bcrypt

        (tmp / "htpasswd").write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
        config["auth"] = {"htpasswd": {"realm": "bgeimg-test", "path": str(tmp / "htpasswd")}}
    if tls:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bgeimg test CA",
                 "-keyout", "ca.key", "-out", "ca.crt", cwd=tmp)
        (tmp / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
                 "-out", "server.csr", cwd=tmp)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "san.cnf", "-out", "server.crt", cwd=tmp)
        config["http"]["tls"] = {"certificate": str(tmp / "server.crt"), "key": str(tmp / "server.key")}
        reg.ca = tmp / "ca.crt"
    import yaml

    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    return reg.start()


@pytest.fixture(autouse=True)
def layer_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own push layer cache (BGEIMG_CACHE_DIR), so what one test pushed never speeds up another."""
    directory = tmp_path / "bgeimg-cache"
    monkeypatch.setenv("BGEIMG_CACHE_DIR", str(directory))
    return directory


@pytest.fixture()
def own_registry(tmp_path):
    made: list[OwnRegistry] = []

    def make(**kw) -> OwnRegistry:
        reg = make_registry(tmp_path / f"reg{len(made)}", **kw)
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.stop()


@pytest.fixture()
def docker_config(tmp_path, monkeypatch):
    """A private DOCKER_CONFIG with the given credentials, like `docker login` writes it."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))

    def login(host: str, user: str, password: str) -> None:
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))

    return login


@dataclass
class CutProxy:
    """A TCP proxy in front of a registry that dies once `cut_after` client bytes have passed (the registry
    "stopped in the middle of a push"), refusing connections until `restore()`."""

    target_port: int
    cut_after: int | None = None
    port: int = field(default_factory=free_port)
    sent: int = 0
    down: bool = False
    _server: socket.socket | None = None
    _conns: list = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> CutProxy:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(50)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, counting: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.down:
                    break
                if counting:
                    self.sent += len(data)
                    if self.cut_after is not None and self.sent > self.cut_after:
                        self.cut()
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.down = True
        for s in self._conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        self.cut_after = None
        self.down = False

    def close(self) -> None:
        self.cut()
        self._server.close()


@pytest.fixture()
def cut_proxy():
    made = []

    def make(target_port: int, cut_after: int | None = None) -> CutProxy:
        proxy = CutProxy(target_port, cut_after).start()
        made.append(proxy)
        return proxy

    yield make
    for p in made:
        p.close()


def build_tiny(docker_api, tag: str, platform: str, payload_kb: int = 64) -> None:
    """A tiny image per platform: the stand-in base + a layer of random bytes, so each build is unique."""
    cmd = [DEBIAN_DOCKER, "build", "--no-cache", "--platform", platform, "-t", tag, "--label",
           "org.opencontainers.image.created=2026-11-22T00:00:00Z", "-"]
    dockerfile = (f"FROM python:3.11-slim\nRUN head -c {payload_kb * 1024} /dev/urandom > /payload && uname -m > /arch\n")
    subprocess.run(cmd, input=dockerfile.encode(), check=True, capture_output=True,
                   env={**os.environ, "DOCKER_BUILDKIT": "1"})  # BuildKit honours --platform for FROM


@pytest.fixture()
def tiny_image(docker_api):
    """`bgeimg-test-push/tiny-<id>:1` with -amd64 and -arm64 siblings, as `bgeimg build` leaves them."""
    name = f"bgeimg-test-push/tiny-{uuid.uuid4().hex[:8]}"
    made = []

    def make(platforms=("linux/amd64", "linux/arm64"), payload_kb: int = 64) -> str:
        for platform in platforms:
            tag = f"{name}:1-{platform.split('/')[1]}"
            build_tiny(docker_api, tag, platform, payload_kb)
            made.append(tag)
        return f"{name}:1"

    yield make
    for tag in made:
        try:
            docker_api.remove_image(tag, force=True)
        except Exception:
            pass


# ---- sign, canary

@pytest.fixture
def cosign_env(cosign, tmp_path, monkeypatch):
    """cosign on BGEIMG_COSIGN, its home (TUF cache) inside the test's tmp dir, no key from the caller's env."""
    monkeypatch.setenv("BGEIMG_COSIGN", cosign)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COSIGN_KEY", raising=False)
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)


def make_keys(cosign: str, directory: Path, password: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([cosign, "generate-key-pair"], cwd=directory, env={**os.environ, "COSIGN_PASSWORD": password},
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return directory / "cosign.key", directory / "cosign.pub"


@pytest.fixture(scope="session")
def keys(cosign, tmp_path_factory):
    """Two cosign key pairs: ours and someone else's."""
    base = tmp_path_factory.mktemp("keys")
    return {"ours": make_keys(cosign, base / "ours", "s3cret-pw"), "other": make_keys(cosign, base / "other", "x")}


@pytest.fixture
def repo() -> str:
    return f"bgeimg-test/release-{uuid.uuid4().hex[:8]}"
