"""The gpu image's serving path on a real GPU, offline, in well under 8 minutes; JSON on stdout (or --out).

    python bench/gpu_check.py [--out docs/gpu_check.json]

Uses the torch + CUDA stack of the machine it runs on (no network, no downloads): builds a small BERT and a
small XLM-R from their configs with random weights (and a word-level tokenizer), loads each through the server's
own TorchEncoder with BGE_DEVICE=auto (FP16 on cuda when a GPU is usable), embeds and reranks, and compares with
the same model in FP32 on the CPU (cosine >= 0.999). Then lists the CUDA and torch shared libraries the process
mapped (/proc/self/maps) with their sizes, against all that are installed: what serving never maps is the
candidate prune list for the gpu profile.

Without a usable GPU it runs the same on the CPU (CI does), and says it saw no GPU and why (bge_server.device).
Needs torch, transformers and tokenizers importable (a GPU machine without transformers: `pip install --target
DIR transformers` elsewhere, then `PYTHONPATH=DIR python bench/gpu_check.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "templates" / "server"))  # what PYTHONPATH=/opt/app does in the image
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

MIN_COSINE = 0.999
WORDS = ("the a of to and in is for on with that by this be are from at as it an or text vector search model "
         "query passage embedding rerank score gpu cpu cuda driver image layer size small fast slow bge server "
         "token batch length dense sparse colbert cat sat mat dog ran park city river night day").split()
TEXTS = ["the cat sat on the mat", "a dog ran in the park at night", "bge model turns text into a dense vector",
         "this query is for the search server", "cuda driver and gpu image size", "small fast model"]
QUERY = "which text is about the gpu image"
# the shared libraries a CUDA torch stack installs: torch's own, the nvidia-* wheels', triton's
LIB_DIRS = ("torch/lib", "nvidia", "triton", "cuda", "torch.libs", "nvidia_cudnn", "cusparselt")


def tiny_checkpoint(arch: str, directory: Path, task: str) -> None:
    """A small model of `arch` (hub layout: config.json, model.safetensors, tokenizer.json) with random weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(special + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", model_max_length=128).save_pretrained(directory)
    # bge-small's shape for BERT (bge-*-en), a narrower bge-m3 for XLM-R: small enough to build in seconds
    config = AutoConfig.for_model(arch, vocab_size=len(vocab), hidden_size=384, num_hidden_layers=4,
                                  num_attention_heads=12, intermediate_size=1536, max_position_embeddings=130,
                                  pad_token_id=0, num_labels=1, type_vocab_size=1 if arch == "xlm-roberta" else 2)
    torch.manual_seed(0)
    cls = AutoModelForSequenceClassification if task == "rerank" else AutoModel
    cls.from_config(config).save_pretrained(directory)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def check_model(arch: str, task: str, workdir: Path) -> dict:
    from bge_server.encoder import Settings
    from bge_server.torch_encoder import TorchEncoder

    directory = workdir / f"{arch}-{task}"
    tiny_checkpoint(arch, directory, task)
    t0 = time.perf_counter()
    served = TorchEncoder(Settings(model_dir=directory, task=task, device="auto"))
    load_s = time.perf_counter() - t0
    reference = TorchEncoder(Settings(model_dir=directory, task=task, device="cpu"))
    t0 = time.perf_counter()
    if task == "rerank":
        pairs = [(QUERY, t) for t in TEXTS]
        got, want = served.score(pairs), reference.score(pairs)
        similarity = [cosine(got, want)]  # the scores of all pairs as one vector: the ranking's shape
        detail = {"max_abs_diff": max(abs(g - w) for g, w in zip(got, want)),
                  "same_order": sorted(range(len(got)), key=got.__getitem__) == sorted(range(len(want)),
                                                                                         key=want.__getitem__)}
    else:
        got = served.embed(TEXTS, normalize=True, sparse=False, colbert=False).dense
        want = reference.embed(TEXTS, normalize=True, sparse=False, colbert=False).dense
        similarity = [cosine(g, w) for g, w in zip(got, want)]
        detail = {}
    if served.device == "cuda":
        import torch

        torch.cuda.synchronize()
    # the weights' own dtype, not what the encoder asked for (an older transformers may ignore dtype=)
    weights = str(next(served.model.parameters()).dtype).replace("torch.", "")
    return {"arch": arch, "task": task, "device": served.device, "dtype": weights,
            "load_s": round(load_s, 3), "run_s": round(time.perf_counter() - t0, 3),
            "min_cosine": round(min(similarity), 6), "ok": min(similarity) >= MIN_COSINE, **detail}


def _site_dirs() -> list[Path]:
    import torch

    return [Path(torch.__file__).resolve().parent.parent]


def mapped_libraries() -> dict:
    """CUDA and torch shared libraries this process mapped, against every one installed under site-packages."""
    mapped: set[str] = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ".so" in parts[5]:
                mapped.add(os.path.realpath(parts[5].strip()))
    installed: dict[str, int] = {}
    for site in _site_dirs():
        for top in LIB_DIRS:
            base = site / top
            if not base.exists():
                continue
            for path in base.rglob("*.so*"):
                if path.is_file() and not path.is_symlink():
                    installed[str(path.resolve())] = path.stat().st_size
    site = str(_site_dirs()[0]) + "/"

    def rows(paths):
        return sorted(({"path": p.removeprefix(site), "bytes": installed[p]} for p in paths),
                      key=lambda r: (-r["bytes"], r["path"]))

    used = [p for p in installed if p in mapped]
    unused = [p for p in installed if p not in mapped]
    # outside site-packages: the driver's libcuda / libnvidia-* that the container runtime mounts
    driver = sorted(p for p in mapped if ("libcuda" in p or "libnvidia" in p) and not p.startswith(site))
    return {"site_packages": site, "installed_bytes": sum(installed.values()),
            "mapped_bytes": sum(installed[p] for p in used), "unmapped_bytes": sum(installed[p] for p in unused),
            "mapped": rows(used), "unmapped": rows(unused), "driver_libraries": driver}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    import torch
    from bge_server import device

    reason = device.why_not_cuda()
    result: dict = {
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "gpu": reason is None,
        "gpu_name": torch.cuda.get_device_name(0) if reason is None else None,
        "driver": device.driver_version(), "no_gpu_reason": reason,
    }
    # the server's own log lines (BGE_DEVICE=auto's fallback) go to stderr: stdout is the JSON
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        result["models"] = [check_model(arch, task, Path(tmp)) for arch in ("bert", "xlm-roberta")
                            for task in ("embed", "rerank")]
    result["libraries"] = mapped_libraries()
    result["ok"] = all(m["ok"] for m in result["models"])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if reason is not None:
        print(f"gpu_check: saw no GPU ({reason}); ran on the CPU", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
