"""`analyze --advise` on a planted image of the old gpu image's kind: a CUDA base (libraries under
/usr/local/cuda) and CUDA wheels that bring the same libraries again under site-packages/nvidia/. The base's
copies are one finding with their exact bytes; a base library no wheel brings is left alone."""

from __future__ import annotations

import pytest
from analyze_images import build_planted

from bgeimg.analyze import analyze
from bgeimg.analyze.advise import advise

SITE = "opt/venv/lib/python3.11/site-packages"
CUDA = "usr/local/cuda-12.4/targets/x86_64-linux/lib"
BASE = {  # what nvidia/cuda:12.4.1-runtime carries, in miniature
    f"{CUDA}/libcublas.so.12": b"b" * 700_000,
    f"{CUDA}/libcublasLt.so.12": b"l" * 900_000,
    f"{CUDA}/libcurand.so.10": b"r" * 400_000,
    f"{CUDA}/libnvblas.so.12": b"n" * 300_000,  # no wheel brings this one: not a duplicate
}
WHEELS = {  # PyPI's CUDA 13 wheels: other sonames for cuBLAS, the same one for cuRAND
    f"{SITE}/nvidia/cu13/lib/libcublas.so.13": b"B" * 800_000,
    f"{SITE}/nvidia/cu13/lib/libcublasLt.so.13": b"L" * 1_000_000,
    f"{SITE}/nvidia/cu13/lib/libcurand.so.10": b"R" * 450_000,
    f"{SITE}/torch/lib/libtorch_cuda.so": b"t" * 100_000,
}
# the base's layers end with its CMD (as nvidia/cuda's and python's do); the build adds the venv after it
DOCKERFILE = """FROM python:3.11-slim
COPY usr/ /usr/
CMD ["python3"]
COPY opt/ /opt/
CMD ["python3", "-c", "import torch"]
"""


@pytest.mark.engine
def test_base_cuda_libraries_the_wheels_bring_again_are_one_finding(docker_api) -> None:
    tag = build_planted(docker_api, "cuda-twice", DOCKERFILE, {**BASE, **WHEELS})
    try:
        report = analyze(tag, platform="linux/amd64", probe=True)
        advice = advise(report)
    finally:
        docker_api.remove_image(tag, force=True)
    found = {f.kind: f for f in advice.findings}
    dup = found["duplicate-libraries"]
    assert dup.bytes == 700_000 + 900_000 + 400_000 and dup.files == 3
    assert dup.paths == [f"/{CUDA}"]
    assert "3 libraries, 1 with the same soname" in dup.title
    assert "python:3.11-slim" in dup.fix and "cuda: flavour" in dup.fix
    assert all(layer < report.base_layers for layer in dup.layers)  # the base's copies, not the wheels'
    assert advice.floor == advice.size - sum(f.bytes for f in advice.findings)
