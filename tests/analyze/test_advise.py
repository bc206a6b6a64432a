"""`bgeimg analyze --advise` on a real image with planted bloat: each finding with the exact bytes planted.

The image is of seed 001's kind (one stage, things copied in and left behind), built by the test bed's engine
from the stand-in python:3.11-slim. The planted files have known sizes, so every byte count is checked exactly;
the symbol-table estimate is checked against binutils' own `strip` on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from analyze_images import build_planted, dist

from bgeimg.analyze import analyze
from bgeimg.analyze.advise import advise
from bgeimg.analyze.layers import elf_strippable, python_imports

SITE = "/opt/venv/lib/python3.11/site-packages"
PLATFORM = "linux/amd64"


def native_library() -> Path:
    """A real shared library with its symbol table, from the test venv (tokenizers ships one)."""
    import tokenizers

    return next(Path(tokenizers.__file__).parent.glob("tokenizers*.so"))


def planted() -> dict[str, bytes]:
    files: dict[str, bytes] = {
        "wheels/torch-9.9-py3-none-any.whl": b"w" * 1_500_000,
        "wheels/numpy-9.9-py3-none-any.whl": b"w" * 700_000,
        "root/.cache/pip/http-v2/a/b/c/0123": b"c" * 1_200_000,
        "root/.cache/pip/http-v2/d/e/f/4567": b"c" * 300_000,
        "opt/model/config.json": b'{"model_type": "bert"}',
        "opt/model/model.safetensors": b"s" * 2_000_000,
        "opt/model/pytorch_model.bin": b"b" * 2_000_000,
        "opt/app/app.py": b"import usedpkg\nprint(usedpkg.VALUE)\n",
    }
    used = dist("usedpkg", {
        "usedpkg/__init__.py": b"from . import core\nVALUE = core.VALUE\n",
        "usedpkg/core.py": b"VALUE = 42\n",
        "usedpkg/tests/test_core.py": b"# " + b"t" * 1_100_000 + b"\n",
        "usedpkg/tests/data.bin": b"d" * 400_000,
        "usedpkg/_native.abi3.so": native_library().read_bytes(),
    })
    bloat = dist("bloatpkg", {"bloatpkg/__init__.py": b"import json\n", "bloatpkg/data.bin": b"x" * 1_300_000})
    files.update({f"{SITE[1:]}/{k}": v for k, v in {**used, **bloat}.items()})
    return files


DOCKERFILE = """FROM python:3.11-slim
COPY wheels/ /wheels/
COPY root/ /root/
COPY opt/ /opt/
WORKDIR /opt/app
ENV PYTHONPATH=/opt/app
CMD ["python3", "-m", "app"]
"""


@pytest.fixture(scope="module")
def bloated(docker_api) -> tuple[str, dict[str, bytes]]:
    files = planted()
    tag = build_planted(docker_api, "bloated", DOCKERFILE, files, PLATFORM)
    yield tag, files
    docker_api.remove_image(tag, force=True)


def size_of(files: dict[str, bytes], prefix: str, exclude: str | None = None) -> int:
    return sum(len(v) for k, v in files.items() if k.startswith(prefix) and not (exclude and exclude in k))


def strip_saving(path: Path, tmp_path: Path) -> int:
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    subprocess.run(["strip", "--strip-unneeded", str(copy)], check=True)
    return path.stat().st_size - copy.stat().st_size


@pytest.mark.engine
def test_every_planted_bloat_is_found_with_its_exact_size(bloated, tmp_path) -> None:
    tag, files = bloated
    advice = advise(analyze(tag, platform=PLATFORM, probe=True))
    found = {f.kind: f for f in advice.findings}
    site = SITE[1:] + "/"

    assert found["wheelhouse"].bytes == size_of(files, "wheels/") == 2_200_000
    assert found["wheelhouse"].files == 2 and found["wheelhouse"].paths == ["/wheels"]
    assert found["caches"].bytes == size_of(files, "root/.cache/pip/") == 1_500_000
    assert found["tests"].bytes == size_of(files, site + "usedpkg/tests/") == 1_500_000 + 3
    assert found["tests"].paths == [f"{SITE}/usedpkg/tests/"]
    assert found["duplicate-weights"].bytes == 2_000_000
    assert found["duplicate-weights"].paths == ["/opt/model"]
    # bloatpkg is installed and never imported by the entry point (python3 -m app -> usedpkg); usedpkg is
    assert found["unused-packages"].bytes == size_of(files, site + "bloatpkg")
    assert "bloatpkg" in found["unused-packages"].title and "usedpkg" not in found["unused-packages"].title
    assert advice.entry_modules == ["app"]
    # the symbol table of the planted library, as binutils' strip removes it (alignment aside)
    expected = strip_saving(native_library(), tmp_path)
    assert abs(found["symbols"].bytes - expected) <= expected * 0.01
    assert found["symbols"].paths == [f"{SITE}/usedpkg/_native.abi3.so"]
    assert set(found) == {"wheelhouse", "caches", "tests", "duplicate-weights", "unused-packages", "symbols"}
    # the floor is the image without them; the base image's own docs/locales are listed apart
    assert advice.floor == advice.size - sum(f.bytes for f in advice.findings)
    assert advice.ratio == round(advice.size / advice.floor, 4) and advice.ratio > 1.05
    assert "docs" in {f.kind for f in advice.base_findings}
    assert all(f.layers and min(f.layers) >= 1 for f in advice.findings)


@pytest.mark.engine
def test_advise_cli_prints_fixes_gates_on_the_floor_ratio_and_rejects_a_bad_ratio(bgeimg, bloated) -> None:
    tag, _ = bloated
    run = bgeimg("analyze", tag, "--platform", PLATFORM, "--advise")
    assert run.code == 0, run.err
    assert "wheels copied into the image" in run.out and "bgeimg build --wheelhouse" in run.out
    assert "slim.remove_tests: true" in run.out and "floor" in run.out

    run = bgeimg("analyze", tag, "--platform", PLATFORM, "--max-floor-ratio", "1.05", "--json")
    assert run.code == 1
    doc = json.loads(run.out)
    gate = next(g for g in doc["gates"] if g["name"] == "max-floor-ratio")
    assert not gate["passed"] and gate["value"] == doc["advice"]["ratio"] > 1.05
    assert doc["advice"]["actionable"] == 6
    assert run.err.strip().count("\n") == 0 and "ratio to floor" in run.err and "Traceback" not in run.err

    run = bgeimg("analyze", tag, "--max-floor-ratio", "0.9")
    assert run.code == 2 and run.err.count("\n") == 1 and "1.05" in run.err and "Traceback" not in run.err


def test_python_imports_over_count_rather_than_miss() -> None:
    found = python_imports(b"import os, a.b as c\nfrom . import x\nfrom .y import (p,\n q)\n"
                           b"def f():\n    from lazy.mod import thing  # inside a function: still counted\n"
                           b"importlib.import_module('dyn.mod')\n")
    assert {"os", "a.b", ".", ".x", ".y", ".y.p", ".y.q", "lazy.mod", "lazy.mod.thing", "dyn.mod"} <= found
    assert "<lazy>" in python_imports(b"import sys\nsys.modules[__name__] = _LazyModule(__name__)\n")
    assert "<lazy>" not in found


def test_elf_estimate_matches_strip_and_ignores_non_elf(tmp_path) -> None:
    lib = native_library()
    data = lib.read_bytes()
    shoff = int.from_bytes(data[0x28:0x30], "little")
    count = int.from_bytes(data[0x3C:0x3E], "little")
    estimate = elf_strippable(data[:64], data[shoff:shoff + 64 * count])
    expected = strip_saving(lib, tmp_path)
    assert expected > 1_000_000 and abs(estimate - expected) <= expected * 0.01
    assert elf_strippable(b"#!/bin/sh\n" + bytes(54), b"") is None
    assert os.path.getsize(lib) == len(data)


def _archive_with_bytecode(tmp_path, labels: dict) -> Path:
    from analyze_archives import Image, Layer, write_oci_save

    site = SITE.lstrip("/")
    lib = native_library().read_bytes()
    base = Layer([("file", "etc/os-release", b"ID=debian\n")])
    app = Layer([  # gzip: the ELF probe reads the library as a stream, keeping its section table as it passes
        ("file", "opt/app/main.py", b"import used\n"),
        ("file", f"{site}/used/__init__.py", b"from . import big\n"),
        ("file", f"{site}/used/big.py", b"# " + b"s" * 1_200_000 + b"\n"),
        ("file", f"{site}/used/__pycache__/__init__.cpython-311.pyc", b"p" * 100),
        ("file", f"{site}/used/__pycache__/__init__.cpython-310.pyc", b"p" * 1_100_000),
        ("file", f"{site}/used/_native.abi3.so", lib),
    ], compression="gzip")
    image = Image([base, app], labels=labels, cmd=["python3", "/opt/app/main.py"],
                  history=[{"created_by": "/bin/sh -c #(nop) ADD file:base in /"},
                           {"created_by": "/bin/sh -c #(nop) COPY dir:app in /"}])
    return write_oci_save(tmp_path / "image.tar", image)


def test_bytecode_findings_and_streamed_symbols_from_an_archive(tmp_path) -> None:
    advice = advise(analyze(str(_archive_with_bytecode(tmp_path, {})), probe=True))
    found = {f.kind: f for f in advice.findings}
    lib = native_library().read_bytes()
    shoff = int.from_bytes(lib[0x28:0x30], "little")
    count = int.from_bytes(lib[0x3C:0x3E], "little")
    assert found["symbols"].bytes == elf_strippable(lib[:64], lib[shoff:shoff + 64 * count]) > 1_000_000
    assert found["duplicate-bytecode"].bytes == 1_100_000  # the cpython-310 copy; 311 is the interpreter's
    missing = found["missing-bytecode"]
    assert missing.files == 1 and missing.bytes == 0 and not missing.deliberate  # used/big.py, reached by import
    assert advice.entry_modules == [] and advice.floor == advice.size - found["symbols"].bytes - 1_100_000

    labelled = advise(analyze(str(_archive_with_bytecode(tmp_path, {"io.bgeimg.slim.bytecode": "imported"})),
                              probe=True))
    kept = next(f for f in labelled.findings if f.kind == "missing-bytecode")
    assert kept.deliberate and "imported" in kept.deliberate and kept not in labelled.actionable
