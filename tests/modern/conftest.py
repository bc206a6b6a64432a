"""Fixtures for the modern-engine tests: each engine of the test bed (tests/modern/engines.py), skipped with the
command to start it when absent (a failure under CI=true, like the other test-bed fixtures)."""

from __future__ import annotations

import os

import pytest

from engines import ENGINES, BedEngine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _engine(name: str) -> BedEngine:
    engine = ENGINES[name]
    if not engine.answers():
        message = f"{name} does not answer at {engine.host}: run `scripts/testbed.sh up --modern` first"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing test bed is a failure, not a skip)")
        pytest.skip(message)
    return engine


@pytest.fixture(scope="session")
def docker20() -> BedEngine:
    return _engine("docker20")


@pytest.fixture(scope="session")
def docker26() -> BedEngine:
    return _engine("docker26")


@pytest.fixture(scope="session", params=sorted(ENGINES))
def docker_engine(request) -> BedEngine:
    """Each engine of the test bed in turn."""
    return _engine(request.param)
