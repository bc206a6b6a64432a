"""Fixtures for the analyze tests: running the real CLI as a child process (where errors become one line)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest


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
                           timeout=timeout, env={**__import__("os").environ, "COLUMNS": "200"})
        return Run(p.returncode, p.stdout, p.stderr)

    return run
