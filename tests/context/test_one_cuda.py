"""One CUDA per gpu image: the CUDA major the torch wheels need (pip's --dry-run --report for the image's platform,
against the index the image installs from) is the one its label names, and the base brings no CUDA of its own.

download.pytorch.org may be unreachable (it is on the project's build machine): PyPI's torch==2.13.0 for Linux is
the CUDA 13.0 build (cuda-toolkit==13.0.3, nvidia-*-cu13), so PyPI stands in as the cu130 index's mirror; the 12.x
flavours are resolved only where their index answers. `--no-deps`: this network's PyPI lacks nvidia-cudnn-cu13,
and torch's own metadata names every CUDA wheel it pulls in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.context.render import render
from bgeimg.profile import cuda

PYPI = "https://pypi.org/simple"
CA = "/etc/ssl/certs/ca-certificates.crt"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=10).close()
        return True
    except Exception:
        return False


def wheel_majors(requirements: list[str], index: str, tmp_path: Path) -> dict[str, int]:
    """CUDA majors named by the metadata of what pip picks for linux/amd64, CPython 3.11 (the image's Python)."""
    req = tmp_path / "requirements.txt"
    req.write_text("".join(f"{r}\n" for r in requirements))
    report = tmp_path / "report.json"
    args = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet", "--no-deps",
            "--ignore-installed", "--report", str(report), "--target", str(tmp_path / "t"),
            "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
            "--only-binary=:all:", "--index-url", index, "-r", str(req)]
    if Path(CA).exists():
        args[4:4] = ["--cert", CA]
    run = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-1500:]
    found: dict[str, int] = {}
    for item in json.loads(report.read_text())["install"]:
        meta = item["metadata"]
        found.update(cuda.cuda_majors(meta["name"], meta["version"], meta.get("requires_dist")))
    return found


def _index_for(flavour: cuda.Flavour) -> str:
    if _answers(flavour.index_url):
        return flavour.index_url
    if flavour.version == "13.0" and _answers(PYPI):
        return PYPI  # PyPI's torch 2.13.0 is the cu130 build: a mirror of that index for this requirement set
    if flavour.version == "13.0" and IN_CI:
        pytest.fail("neither download.pytorch.org nor PyPI answers (CI=true: a failure, not a skip)")
    pytest.skip(f"{flavour.index_url} does not answer from here; PyPI carries no torch 2.13.0 for CUDA "
                f"{flavour.version}")


@pytest.mark.parametrize("version", list(cuda.FLAVOURS))
def test_wheels_need_the_cuda_the_label_names_and_the_base_brings_none(version, tmp_path) -> None:
    p = profiles.resolve("gpu", sets=[f"cuda={version}"]).profile
    flavour = cuda.flavour(version)
    ctx = render(p)
    text = ctx.dockerfile
    assert f"--extra-index-url {flavour.index_url} " in text  # what the image installs from
    assert f'io.bgeimg.cuda.version="{version}"' in text
    assert not p.base_image.startswith("nvidia/cuda")  # python:3.11-slim: no CUDA libraries in the base
    requirements = ctx.files["requirements.txt"].decode().split()
    majors = wheel_majors(requirements, _index_for(flavour), tmp_path)
    assert majors, "the resolved torch names no CUDA wheels: is it the CPU build?"
    assert set(majors.values()) == {flavour.major}, majors


def test_the_old_runtime_base_was_a_second_cuda(tmp_path) -> None:
    # what issue 18 found, as a check that can fail: the CUDA 12.4 runtime base next to PyPI's CUDA 13 wheels
    if not _answers(PYPI):
        if IN_CI:
            pytest.fail("PyPI does not answer (CI=true: a failure, not a skip)")
        pytest.skip("PyPI does not answer from here")
    base_major = int("12.4.1".split(".")[0])  # nvidia/cuda:12.4.1-runtime-ubuntu22.04's CUDA_VERSION
    majors = wheel_majors(["torch==2.13.0"], PYPI, tmp_path)
    assert set(majors.values()) == {13} != {base_major}
    assert "nvidia-cudnn-cu13==9.20.0.48" in majors and any(k.startswith("cuda-toolkit") for k in majors)
