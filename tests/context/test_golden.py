"""Golden files: every shipped profile's Dockerfile, per backend, byte for byte (truss-style).

Regenerate after an intended template change with BGEIMG_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.context.render import RenderOptions, render_dockerfile

GOLDEN = Path(__file__).parent / "golden"
SHIPPED = ["cpu-slim", "cuda-runtime", "external-model", "onnx-cpu", "onnx-external"]
CASES = [(p, b) for p in SHIPPED for b in ("classic", "buildkit")]
OTHER_CUDA = ["12.6", "12.8"]  # the gpu profile ships 13.0 (cuda-runtime.*.Dockerfile); one CUDA per image


@pytest.mark.parametrize(("name", "backend"), CASES)
def test_dockerfile_matches_golden(name: str, backend: str) -> None:
    text = render_dockerfile(profiles.resolve(name).profile, RenderOptions(backend=backend))
    golden = GOLDEN / f"{name}.{backend}.Dockerfile"
    if os.environ.get("BGEIMG_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}: run with BGEIMG_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


@pytest.mark.parametrize("version", OTHER_CUDA)
def test_gpu_dockerfile_per_cuda_flavour_matches_golden(version: str) -> None:
    text = render_dockerfile(profiles.resolve("gpu", sets=[f"cuda={version}"]).profile,
                             RenderOptions(backend="buildkit"))
    tag = "cu" + version.replace(".", "")
    golden = GOLDEN / f"cuda-runtime.{tag}.buildkit.Dockerfile"
    if os.environ.get("BGEIMG_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}: run with BGEIMG_UPDATE_GOLDEN=1"
    assert text == golden.read_text()
    assert f"--extra-index-url https://download.pytorch.org/whl/{tag} " in text
    assert f'BGE_CUDA_VERSION="{version}"' in text and f'io.bgeimg.cuda.version="{version}"' in text


def test_gpu_base_carries_no_cuda_of_its_own() -> None:
    # the wheels bring CUDA: an nvidia/cuda runtime base would be a second copy (issue 18)
    text = render_dockerfile(profiles.resolve("gpu").profile)
    assert "FROM python:3.11-slim AS builder" in text and "FROM python:3.11-slim AS runtime" in text
    assert "nvidia/cuda" not in text
    assert 'io.bgeimg.cuda.min_driver="580.65.06"' in text and 'BGE_MIN_DRIVER="580.65.06"' in text


@pytest.mark.parametrize("name", SHIPPED)
def test_rendering_is_deterministic(name: str) -> None:
    runs = {render_dockerfile(profiles.resolve(name).profile) for _ in range(3)}
    assert len(runs) == 1


def test_gpu_alias_renders_cuda_runtime() -> None:
    assert profiles.resolve("gpu").profile == profiles.resolve("cuda-runtime").profile


def test_only_buildkit_gets_buildkit_syntax() -> None:
    p = profiles.resolve("cpu-slim").profile
    classic = render_dockerfile(p, RenderOptions(backend="classic", wheelhouse=True, ca_bundle=True))
    buildkit = render_dockerfile(p, RenderOptions(backend="buildkit", wheelhouse=True, ca_bundle=True))
    assert "--mount=" not in classic and "--no-cache-dir" in classic
    assert "COPY wheels/ /tmp/build/wheels/" in classic and "COPY ca-bundle.crt" in classic
    assert "--mount=type=cache,target=/root/.cache/pip" in buildkit
    assert "--mount=type=secret,id=ca_bundle" in buildkit and "COPY ca-bundle.crt" not in buildkit
    assert "--mount=type=bind,source=wheels" in buildkit and "COPY wheels/" not in buildkit


def test_wheels_and_ca_stay_in_the_builder_stage() -> None:
    text = render_dockerfile(profiles.resolve("cpu-slim").profile, RenderOptions(wheelhouse=True, ca_bundle=True))
    runtime = text.split(" AS runtime", 1)[1]
    assert "wheels" not in runtime and "ca-bundle" not in runtime
    assert "--no-index" in text and "download.pytorch.org" not in text  # a wheelhouse means no index at all


def test_layer_order_deps_model_app_labels() -> None:
    text = render_dockerfile(profiles.resolve("cpu-slim").profile)
    runtime = text.split(" AS runtime", 1)[1]
    order = [runtime.index(s) for s in ("COPY --from=builder /opt/venv", "COPY model/", "COPY server/", "LABEL ")]
    assert order == sorted(order)


def test_external_model_has_no_weights_and_no_offline_flag() -> None:
    text = render_dockerfile(profiles.resolve("external-model").profile)
    assert "COPY model/" not in text
    assert 'BGE_MODEL_DIR="/models"' in text and "HF_HUB_OFFLINE" not in text
