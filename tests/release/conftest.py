"""Fixtures of the release tests: cosign and nginx from the test bed (scripts/testbed.sh unpacks them into its
cache), cosign key pairs, and small multi-platform images put straight into the test bed's registry."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOOLS = Path(os.environ.get("BGEIMG_TESTBED_CACHE", "/var/cache/bgeimg-testbed")) / "tools" / "root"


def _tool(env: str, path: Path, name: str) -> str:
    found = os.environ.get(env) or str(path)
    if not os.access(found, os.X_OK):
        message = f"{name} is not available at {found}: run `scripts/testbed.sh up` (it unpacks {name} into its cache)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def cosign() -> str:
    return _tool("BGEIMG_COSIGN", TOOLS / "usr/bin/cosign", "cosign")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return _tool("BGEIMG_NGINX", TOOLS / "usr/sbin/nginx", "nginx")


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
