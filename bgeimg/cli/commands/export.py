"""`bgeimg export`: a checkpoint's ONNX form on this host, the same export the ONNX image's builder stage runs."""

from __future__ import annotations

from pathlib import Path

import typer

from bgeimg.cli.output import line


def export(
    src: Path = typer.Argument(..., help="A transformers checkpoint directory (config.json, weights, tokenizer)."),
    out: Path = typer.Argument(..., help="Where the ONNX form goes; mount it at /models of an onnx-external image."),
    task: str = typer.Option("embed", "--task", help="embed (an embedding model) or rerank (a cross-encoder)."),
    quantize: str = typer.Option("none", "--quantize", help="none (fp32) or int8 (dynamic, onnxruntime)."),
) -> None:
    """Export SRC to ONNX in OUT (model.onnx, tokenizer, pooling files, heads). Needs torch, transformers, onnx
    and onnxruntime in this Python; the result is checked against torch before it is written."""
    from bgeimg.context.onnx import export as run_export
    from bgeimg.errors import BgeimgError

    if task not in ("embed", "rerank"):
        raise BgeimgError(f"--task {task!r} is not embed or rerank")
    if quantize not in ("none", "int8"):
        raise BgeimgError(f"--quantize {quantize!r} is not none or int8")
    manifest = run_export(src, out, task=task, quantize=quantize)
    line(f"exported {src} to {out}: {manifest['source']}, quantize {manifest['quantize']}, smallest cosine to "
         f"torch {manifest['min_cosine_to_torch']}")
