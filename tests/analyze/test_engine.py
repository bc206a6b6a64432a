"""analyze on real images built in the test bed: from the engine, from `docker save`, cross-checked against
`docker history` and dive on the same archive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from analyze_images import A1, A2, GONE, PKG

from bgeimg.analyze import analyze
from bgeimg.analyze.sources import from_engine

pytestmark = pytest.mark.engine


def test_engine_report_matches_docker_history(docker_api, small_image):
    report = analyze(small_image)
    assert report.source == "engine" and report.labels["io.bgeimg.profile"] == "analyze-test"
    # docker history: one row per history entry; our layers are the non-empty ones, in the same order
    # (the API lists newest first, one row per config history entry; empty_layer rows have no layer)
    rows = list(reversed(docker_api.history(small_image)))
    history = from_engine(small_image).config["history"]
    assert len(rows) == len(history) > len(report.layers)
    by_layer = [r for r, h in zip(rows, history) if not h.get("empty_layer")]
    assert [r["Size"] for r in by_layer] == [layer.size for layer in report.layers]
    instructions = [layer.instruction for layer in report.layers]
    assert report.size == docker_api.inspect_image(small_image)["Size"]
    assert instructions[-1].startswith("RUN mkdir -p")
    assert report.layers[0].category == "base image"
    assert report.layers[-1].category == "Python dependencies"
    # the waste is exactly what the Dockerfile threw away
    assert report.waste.wasted_bytes == A1 + GONE
    paths = {f.path: f for f in report.waste.files}
    assert paths["/opt/a.bin"].wasted == A1 and paths["/opt/a.bin"].copies == 2
    assert paths["/opt/gone.bin"].removed_in == 2
    pkg = next(p for p in report.packages if p.name == "fakepkg")
    assert pkg.size == PKG + len(f"fakepkg/core.so,,{PKG}\nfakepkg-1.0.dist-info/RECORD,,\n")


def test_docker_save_archive_gives_the_same_report(small_image, small_archive):
    engine = analyze(small_image).to_json()
    archive = analyze(str(small_archive)).to_json()
    for key in ("size", "categories", "waste", "packages", "config_digest"):
        assert archive[key] == engine[key], key
    assert [la["size"] for la in archive["layers"]] == [le["size"] for le in engine["layers"]]
    assert [la["tar_size"] for la in archive["layers"]] == [le["tar_size"] for le in engine["layers"]]


def test_dive_on_the_same_archive(small_archive):
    """dive's layer sizes omit symlink targets (it sums tar header sizes); its wasted bytes count every copy
    of a path seen in more than one layer. Both are reproduced exactly from our scan."""
    dive = shutil.which("dive") or str(Path(sys.executable).parent / "dive")
    out = small_archive.parent / "dive.json"
    subprocess.run([dive, "--source", "docker-archive", "--ci", "--json", str(out), str(small_archive)],
                   check=True, capture_output=True, env={**os.environ, "CI": "true"})
    d = json.loads(out.read_text())
    report = analyze(str(small_archive))
    assert [layer["sizeBytes"] for layer in d["layer"]] == [
        layer.size - layer.symlink_bytes for layer in report.layers]
    assert d["image"]["inefficientBytes"] == report.waste.dive_wasted_bytes
    assert d["image"]["efficiencyScore"] == pytest.approx(report.waste.dive_efficiency, abs=1e-4)
    # dive counts the copy that stays: its waste is ours plus the surviving 2 MB copy of /opt/a.bin
    assert report.waste.dive_wasted_bytes - report.waste.wasted_bytes == A2


def test_cli_on_engine_image_prints_verdict(bgeimg, small_image):
    r = bgeimg("analyze", small_image, "--max-wasted", "1MB")
    assert r.code == 1 and "max-wasted" in r.err
    assert "FAIL" in r.out and "/opt/a.bin" in r.out and "fakepkg" in r.out
