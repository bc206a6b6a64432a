"""Fixtures for the build tests: the tiny wheelhouse per platform, and image names whose tags are removed
afterwards (only the images these tests created: others share the engine)."""

from __future__ import annotations

import uuid

import pytest
from buildhelp import PREFIX, TINY
from enginebed import bed_engine


@pytest.fixture(scope="session")
def tiny_wheels(wheelhouse_factory):
    """platform -> a wheelhouse of fastapi + uvicorn for that platform (real pip download, cached)."""
    return lambda platform="linux/amd64": wheelhouse_factory(TINY, platform)


@pytest.fixture
def image_name(docker_api):
    """A unique image name under the tests' prefix; every tag made under it is removed afterwards."""
    name = f"{PREFIX}/t{uuid.uuid4().hex[:8]}"
    yield name
    for image in docker_api.images(name=name):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(name + ":"):
                try:
                    docker_api.remove_image(tag, noprune=False)
                except Exception:
                    pass  # still used by a container of this test run being removed; harmless


@pytest.fixture(autouse=True)
def _contexts_in_tmp(tmp_path, monkeypatch):
    """Build contexts default to ~/.cache/bgeimg/contexts; tests keep theirs in their own tmp dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ---- the test bed's two engines (tests/build/enginebed.py): Docker 20.10 and Docker 26 ----------------------


@pytest.fixture(scope="session")
def docker20():
    """Docker 20.10, the shared engine (classic image store)."""
    return bed_engine("docker20")


@pytest.fixture(scope="session")
def docker26():
    """Docker 26 with buildx and the containerd image store (`scripts/testbed.sh up --modern`)."""
    return bed_engine("docker26")
