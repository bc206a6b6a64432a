"""The ONNX runtime's model side on the host: refuse an unexportable model before a build, and `bgeimg export`.

The export itself is templates/export_onnx.py, the script the image's export stage runs; this module loads its
list of architectures and runs it on the host, so the rule and the code are written once."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from bgeimg import resources
from bgeimg.errors import BgeimgError, ModelError

SCRIPT = "export_onnx.py"
NEEDS = ("torch", "transformers", "onnx", "onnxruntime")


@cache
def _script() -> ModuleType:
    # Only its constants and check_exportable are used here: it imports torch inside functions, never at the top.
    spec = importlib.util.spec_from_file_location("bgeimg_export_onnx", resources.templates_dir() / SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exportable() -> tuple[str, ...]:
    return tuple(_script().EXPORTABLE)


def check_exportable(model_dir: Path) -> None:
    """ModelError (exit 2) for a checkpoint the builder's export cannot turn into ONNX, before any build."""
    script = _script()
    try:
        script.check_exportable(model_dir)
    except script.Refused as exc:
        raise ModelError(str(exc)) from None


def export(src: Path, out: Path, *, task: str = "embed", quantize: str = "none") -> dict:
    """Run the builder-stage export on this host (torch, transformers, onnx and onnxruntime must be installed)."""
    if not (src / "config.json").is_file():
        raise ModelError(f"{src} has no config.json", "give the directory of a transformers checkpoint")
    check_exportable(src)
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise BgeimgError(f"exporting to ONNX needs {', '.join(missing)} in the Python that runs bgeimg",
                          f"pip install {' '.join(NEEDS)}")
    done = subprocess.run([sys.executable, str(resources.templates_dir() / SCRIPT), str(src), str(out),
                           "--task", task, "--quantize", quantize], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"ONNX export of {src} failed: {last}")
    return json.loads((out / "onnx_export.json").read_text())
