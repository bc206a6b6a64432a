"""Builder-stage (or host) export: a BGE checkpoint -> the ONNX form the ONNX runtime serves.

    python export_onnx.py SRC OUT [--task embed|rerank] [--quantize none|int8]

Needs torch, transformers, onnx and onnxruntime, which live only where this runs (the image's export stage or
the host of `bgeimg export`); OUT gets what the runtime stage needs and nothing else:
  model.onnx (+ model.onnx_data for models over 2 GB, such as bge-m3), the tokenizer and sentence-transformers
  files, config.json, bge-m3's heads as sparse_linear.npz / colbert_linear.npz (plain arrays), and
  onnx_export.json saying where the graph came from and how close it is to torch on a few texts.
A repository's own onnx/model.onnx is used when its inputs and outputs fit the server; otherwise the model is
exported with torch.onnx (TorchScript exporter, opset 17, dynamic batch and sequence axes).
Exit 2 with one line for a model this cannot export (unknown architecture, no config.json); 1 when the export's
answers differ from torch's (cosine below 0.9999 in fp32, 0.99 in int8).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

# Architectures (config.json model_type) exported and checked here; bgeimg reads this list too (before a build).
EXPORTABLE = ("bert", "xlm-roberta", "roberta", "camembert", "distilbert", "electra", "mpnet")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# What the runtime reads besides the graph (tokenizer.json holds the whole tokenizer: no vocab.txt or
# sentencepiece model); weights, other runtimes' exports and docs stay behind.
KEEP = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
        "sentence_bert_config.json", "config_sentence_transformers.json")
HEADS = ("sparse_linear", "colbert_linear")
CHECK_TEXTS = ["BGE models turn text into vectors.", "hello", "A somewhat longer sentence, with punctuation, "
               "numbers like 42 and words the vocabulary may split."]
LIMITS = {"none": 0.9999, "int8": 0.99}
EXTERNAL_OVER = 1_500_000_000  # protobuf's 2 GB limit, with room for the graph itself


class Refused(Exception):
    """A model this export cannot handle: exit 2, one line."""


def model_type(src: Path) -> str:
    try:
        config = json.loads((src / "config.json").read_text())
    except (OSError, ValueError):
        raise Refused(f"{src} has no readable config.json; give the directory of a transformers checkpoint") from None
    return str(config.get("model_type", ""))


def check_exportable(src: Path) -> None:
    """Refuse, before anything slow, a model whose graph can neither be taken from onnx/ nor exported."""
    kind = model_type(src)
    if kind not in EXPORTABLE and not (src / "onnx" / "model.onnx").is_file():
        raise Refused(f"model type {kind or '(none)'!r} of {src} cannot be exported to ONNX (supported: "
                      f"{', '.join(EXPORTABLE)}); use runtime: torch for it")


def repository_graph(src: Path, task: str) -> Path | None:
    """The repository's own onnx/model.onnx when the server can feed it and read its output."""
    import onnx

    path = src / "onnx" / "model.onnx"
    if not path.is_file():
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    wanted = "logits" if task == "rerank" else "last_hidden_state"
    if "input_ids" in inputs and set(inputs) <= set(INPUTS) and wanted in outputs:
        return path
    print(f"export: {path} has inputs {inputs} and outputs {outputs}; exporting from the checkpoint instead",
          file=sys.stderr)
    return None


def torch_model(src: Path, task: str):
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if task == "rerank" else AutoModel
    return cls.from_pretrained(src, dtype=torch.float32).eval()


def export(src: Path, task: str, target: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    model = torch_model(src, task)
    tokenizer = AutoTokenizer.from_pretrained(src)
    sample = tokenizer(["hello world", "a second, longer text"], padding=True, return_tensors="pt")
    names = [n for n in INPUTS if n in sample]
    output = "logits" if task == "rerank" else "last_hidden_state"

    class Graph(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            return getattr(self.inner(**dict(zip(names, tensors))), output)

    # eval() on the wrapper: the exporter restores the wrapper's mode afterwards, and a training-mode wrapper
    # would leave dropout on in `model`, which the check below uses.
    wrapper = Graph(model).eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch"} if task == "rerank" else {0: "batch", 1: "sequence"}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings are about code paths BGE models never take
        torch.onnx.export(wrapper, tuple(sample[n] for n in names), str(target), dynamo=False, opset_version=17,
                          input_names=names, output_names=[output], dynamic_axes=axes, do_constant_folding=True)


def save(graph: Path, target: Path) -> None:
    """Write `graph` (and its external data) as target, with one external data file when it is over 2 GB."""
    import onnx

    model = onnx.load(str(graph))  # with its external data, wherever the exporter or the repository put it
    large = model.ByteSize() > EXTERNAL_OVER if model.ByteSize() >= 0 else True
    onnx.save_model(model, str(target), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=f"{target.name}_data", size_threshold=1024)


def quantize(fp32: Path, target: Path, keep_ffn: bool) -> None:
    """Dynamic int8 (weights per channel, activations per batch). keep_ffn leaves the feed-forward MatMuls in
    fp32: on all-MiniLM-L6-v2 quantizing everything gives cosine 0.981 to torch, keeping the FFN 0.996."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process is for CNNs
    exclude = []
    if keep_ffn:
        nodes = onnx.load(str(fp32), load_external_data=False).graph.node
        exclude = [n.name for n in nodes if n.op_type == "MatMul" and ("/intermediate/" in n.name or (
            "/output/dense" in n.name and "/attention/" not in n.name))]
    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=exclude, use_external_data_format=fp32.with_name(f"{fp32.name}_data").exists())


def optimize(target: Path) -> None:
    """onnxruntime's EXTENDED graph fusions (attention, layer norm, GELU), saved, so a server start does not
    spend its time on them. EXTENDED, not ALL: ALL adds layouts for this very CPU, EXTENDED runs anywhere."""
    import onnxruntime as ort

    staged = target.with_name("model.raw.onnx")
    target.rename(staged)
    data = target.with_name(f"{target.name}_data")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(target)
    if data.exists():  # the graph names its data file: keep that name, write the optimized data beside it
        data.rename(staged.with_name(data.name + ".raw"))
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", data.name)
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(staged), sess_options=opts, providers=["CPUExecutionProvider"])
    for leftover in (staged, staged.with_name(data.name + ".raw")):
        leftover.unlink(missing_ok=True)


def heads(src: Path, out: Path) -> list[str]:
    """bge-m3's linear heads as plain arrays: the runtime has numpy, not torch."""
    import numpy as np
    import torch

    found = []
    for name in HEADS:
        path = src / f"{name}.pt"
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            np.savez(out / f"{name}.npz", weight=state["weight"].float().numpy(), bias=state["bias"].float().numpy())
            found.append(name)
    return found


def agreement(src: Path, graph: Path, task: str) -> float:
    """Smallest cosine (embed) or sign-agreeing closeness (rerank) of the ONNX graph to torch on CHECK_TEXTS."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    model = torch_model(src, task)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    feeds = {i.name for i in session.get_inputs()}
    if task == "rerank":
        batch = tokenizer(CHECK_TEXTS[:1] * len(CHECK_TEXTS), CHECK_TEXTS, padding=True, return_tensors="pt")
    else:
        batch = tokenizer(CHECK_TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        result = model(**batch)
    expected = (result.logits if task == "rerank" else result.last_hidden_state).numpy()
    got = session.run(None, {k: v.numpy().astype(np.int64) for k, v in batch.items() if k in feeds})[0]
    if task == "rerank":  # one logit per pair: the scores' correlation (a shared offset would hide a bad graph)
        a, b = expected.reshape(-1) - expected.mean(), got.reshape(-1) - got.mean()
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    # The vectors the server answers with: CLS and mean pooling both (the export does not know which one the
    # checkpoint's sentence-transformers files choose, and both must hold).
    mask = batch["attention_mask"].numpy()[..., None].astype(np.float32)
    pooled = [(e[:, 0], g[:, 0]) for e, g in [(expected, got)]]
    pooled.append(((expected * mask).sum(1) / mask.sum(1), (got * mask).sum(1) / mask.sum(1)))
    cosines = [(a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
               for a, b in pooled]
    return float(np.concatenate(cosines).min())


def run(src: Path, out: Path, task: str, mode: str) -> dict:
    check_exportable(src)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.onnx"
    for name in KEEP:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    for sub in src.glob("*_Pooling"):
        shutil.copytree(sub, out / sub.name, dirs_exist_ok=True)
    found = heads(src, out)
    with tempfile.TemporaryDirectory() as tmp:
        graph = repository_graph(src, task)
        source = "repository onnx/model.onnx" if graph else "torch.onnx export"
        if graph is None:
            graph = Path(tmp) / "exported.onnx"
            export(src, task, graph)
        fp32 = Path(tmp) / "model.onnx" if mode == "int8" else target
        save(graph, fp32)
        scope = None
        if mode == "int8":
            # Everything first; where that strays from torch, the feed-forward layers stay in fp32.
            for scope, keep_ffn in (("all MatMuls", False), ("attention MatMuls, FFN in fp32", True)):
                quantize(fp32, target, keep_ffn)
                cosine = agreement(src, target, task)
                print(f"export: int8 of {scope}: smallest cosine to torch {cosine:.6f}")
                if cosine >= LIMITS[mode]:
                    break
        optimize(target)
        cosine = agreement(src, target, task)
    manifest = {"source": source, "task": task, "quantize": mode, "int8_scope": scope, "opset": 17, "heads": found,
                "optimized": "extended", "min_cosine_to_torch": round(cosine, 6)}
    (out / "onnx_export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"export: {source}, quantize {mode}, smallest cosine to torch {cosine:.6f} over {len(CHECK_TEXTS)} texts"
          + (f", heads {', '.join(found)}" if found else ""))
    if cosine < LIMITS[mode]:
        raise SystemExit(f"export: the ONNX graph differs from torch (cosine {cosine:.6f} < {LIMITS[mode]}); "
                         "report this model, or use runtime: torch")
    return manifest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", choices=("embed", "rerank"), default="embed")
    parser.add_argument("--quantize", choices=tuple(LIMITS), default="none")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        run(args.src, args.out, args.task, args.quantize)
    except Refused as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
