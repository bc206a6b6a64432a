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


