"""The built wheel carries templates/ and profiles/: install it into a fresh venv and render from it."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_renders_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
                   check=True)
    wheel = next(dist.glob("bgeimg-*.whl"))
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True,
                           check=True).stdout
    assert "bgeimg/_data/templates/Dockerfile.j2" in names and "bgeimg/_data/profiles/cpu-slim.yaml" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    listing = subprocess.run([str(env_dir / "bin" / "bgeimg"), "profiles", "list"], cwd=work, capture_output=True,
                             text=True, check=True).stdout
    assert "cpu-slim" in listing and "gpu" in listing
    for name, golden in (("gpu", "cuda-runtime.classic"), ("external-model", "external-model.classic")):
        rendered = subprocess.run([str(py), "-m", "bgeimg", "render", "--profile", name], cwd=work,
                                  capture_output=True, text=True, check=True).stdout
        assert rendered == (ROOT / "tests" / "context" / "golden" / f"{golden}.Dockerfile").read_text()
    # the installed package really reads its own data, not this checkout's
    where = subprocess.run([str(py), "-c", "from bgeimg import resources; print(resources.templates_dir())"],
                           cwd=work, capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in where
