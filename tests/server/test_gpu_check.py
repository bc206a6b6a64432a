"""bench/gpu_check.py, as CI runs it (no GPU): it still loads the server's encoder for a small BERT and XLM-R,
embeds and reranks against FP32 on the CPU, lists the torch libraries the process mapped, and says it saw no GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu_and_says_it_saw_no_gpu(tmp_path) -> None:
    out = tmp_path / "gpu_check.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=480,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # no BGE_* from the caller
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result == json.loads(out.read_text())
    assert result["gpu"] is False and result["no_gpu_reason"].startswith("no GPU visible")
    assert "gpu_check: saw no GPU" in run.stderr
    assert [(m["arch"], m["task"]) for m in result["models"]] == [
        ("bert", "embed"), ("bert", "rerank"), ("xlm-roberta", "embed"), ("xlm-roberta", "rerank")]
    assert all(m["ok"] and m["device"] == "cpu" and m["dtype"] == "float32" and m["min_cosine"] >= 0.999
               for m in result["models"])
    libs = result["libraries"]
    mapped = {row["path"] for row in libs["mapped"]}
    assert any(p.startswith("torch/lib/libtorch_cpu") for p in mapped)  # serving maps torch's core library
    assert libs["mapped_bytes"] + libs["unmapped_bytes"] == libs["installed_bytes"]
    assert libs["unmapped_bytes"] > 0  # torch ships libraries a start never maps (its test .so, at least)
