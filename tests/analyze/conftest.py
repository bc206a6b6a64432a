"""Fixtures for the analyze tests: running the real CLI as a child process (where errors become one line)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from analyze_images import DOCKERFILE


@pytest.fixture(autouse=True, scope="session")
def layer_cache_dir(tmp_path_factory):
    """The analyze tests' layer cache (bgeimg.analyze.cache) lives in a temporary directory, never the user's
    ~/.cache, and holds nothing (BGEIMG_CACHE_MAX=0): every test reads the layers it checks from its source. The
    cache's own tests give LayerCache a bound or set BGEIMG_CACHE_MAX themselves."""
    path = tmp_path_factory.mktemp("layer-cache")
    saved = {k: os.environ.get(k) for k in ("BGEIMG_CACHE_DIR", "BGEIMG_CACHE_MAX")}
    os.environ.update(BGEIMG_CACHE_DIR=str(path), BGEIMG_CACHE_MAX="0")
    yield path
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def bgeimg():
    """Run `python -m bgeimg ARGS...` and return its exit code and output."""

    def run(*args: str, timeout: int = 600) -> Run:
        p = subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, "COLUMNS": "200"})
        return Run(p.returncode, p.stdout, p.stderr)

    return run


# ---- a small real image built by the test bed's engine -------------------------------------------------------

PLATFORM = "linux/amd64"  # explicit: other engineers' arm64 builds may leave an arm64 python:3.11-slim locally
TAG = "bgeimg-test-analyze/small:" + hashlib.sha256((PLATFORM + DOCKERFILE).encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def small_image(docker_api) -> str:
    """A small real image built by the engine from the stand-in python:3.11-slim (reused when present)."""
    try:
        docker_api.inspect_image(TAG)
        return TAG
    except Exception:
        pass
    for chunk in docker_api.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=TAG, rm=True, decode=True,
                                  platform=PLATFORM):
        if "error" in chunk:
            pytest.fail(f"building {TAG} failed: {chunk['error']}")
    return TAG


@pytest.fixture(scope="session")
def small_archive(small_image, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("save") / "small.tar"
    subprocess.run(["/usr/bin/docker", "save", "-o", str(path), small_image], check=True)
    return path




# ---- a password-protected registry of our own -----------------------------------------------------------------

AUTH_USER, AUTH_PASSWORD = "analyze", "s3cret-analyze"


@dataclass
class AuthRegistry:
    host: str  # 127.0.0.1:PORT, plain HTTP, htpasswd (basic) auth
    user: str
    password: str
    root: Path  # its storage: a test may corrupt a blob there

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"

    def docker_config(self, directory: Path, with_auth: bool = True) -> Path:
        """A docker config dir (for DOCKER_CONFIG) holding this registry's credentials, or none."""
        import base64

        directory.mkdir(parents=True, exist_ok=True)
        auths = {self.host: {"auth": base64.b64encode(f"{self.user}:{self.password}".encode()).decode()}}
        (directory / "config.json").write_text(json.dumps({"auths": auths if with_auth else {}}))
        return directory


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory, registry):
    """The Debian distribution registry binary (the test bed's own), started on a free port with htpasswd auth
    and stopped at the end. `registry` is requested so a missing test bed fails/skips the same way."""
    import socket
    import time
    import urllib.error
    import urllib.request

    import bcrypt

    binary = "/usr/bin/docker-registry"
    if not Path(binary).exists():
        pytest.fail(f"{binary} is missing (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("auth-registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (root / "htpasswd").write_bytes(AUTH_USER.encode() + b":" + bcrypt.hashpw(AUTH_PASSWORD.encode(),
                                                                              bcrypt.gensalt(rounds=5)) + b"\n")
    (root / "config.yml").write_text(f"""version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}
http: {{addr: 127.0.0.1:{port}}}
auth: {{htpasswd: {{realm: bgeimg-analyze-test, path: {root / 'htpasswd'}}}}}
""")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=open(root / "registry.log", "wb"))
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the auth registry did not start: {(root / 'registry.log').read_text()[-500:]}")
        yield AuthRegistry(f"127.0.0.1:{port}", AUTH_USER, AUTH_PASSWORD, root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
