"""What every runtime shares: settings, result types, the checkpoint's pooling rule and the background loader.

The encoder itself lives in one module per runtime (torch_encoder.py, onnx_encoder.py), imported lazily by
load_encoder, so an ONNX image never imports torch and a torch image never imports onnxruntime. Encoders take
ONE batch per call and hold no lock: the batcher (batcher.py) calls them from a single worker thread.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNTIMES = ("torch", "onnx")


class ModelUnusable(RuntimeError):
    """The model files cannot be served (no ONNX form, a corrupted graph): waiting or retrying cannot help, so
    the Loader stops the process with this one line and exit status 1 instead of answering /health with 503."""


class InputTooLong(ValueError):
    """An input has more tokens than the model takes and truncation was not allowed."""


@dataclass
class Encoded:
    """Per-input results of one embed call."""

    dense: list[list[float]]
    sparse: list[dict[str, float]] | None = None
    colbert: list[list[list[float]]] | None = None
    tokens: int = 0


@dataclass
class Settings:
    model_dir: Path
    task: str = "embed"  # embed | rerank
    device: str = "cpu"
    runtime: str = "torch"  # torch | onnx
    max_batch_size: int = 32  # texts per forward pass
    max_batch_tokens: int = 16384  # padded tokens (texts x longest) per forward pass
    max_queue: int = 512  # texts waiting for a forward pass; more answers 429
    grace_seconds: float = 20.0  # after SIGTERM, time to finish queued work
    max_length: int | None = None
    max_inputs: int = 256  # texts per request
    threads: int | None = None  # intra-op threads; None: the container's CPU quota


def read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pooling_of(model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalise?) from the sentence-transformers files; BGE's default (CLS, normalised) otherwise."""
    modules = read_json(model_dir / "modules.json") or []
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict))
    pool_dir = next((m.get("path") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith(
        "Pooling")), "1_Pooling")
    pool = read_json(model_dir / str(pool_dir) / "config.json") or {}
    if pool.get("pooling_mode_mean_tokens"):
        mode = "mean"
    elif pool.get("pooling_mode_cls_token"):
        mode = "cls"
    elif pool.get("pooling_mode_lasttoken"):
        mode = "last"
    else:
        mode, normalize = "cls", True  # BGE checkpoints without sentence-transformers files
    return mode, normalize


def max_length_of(model_dir: Path, setting: int | None, tokenizer_max: int | None, config: dict) -> int:
    """Tokens the model takes: the smallest of the setting, sentence_bert_config.json, the tokenizer's limit and
    the position embeddings (every runtime uses this one rule)."""
    limits = [setting]
    st = read_json(model_dir / "sentence_bert_config.json") or {}
    limits.append(st.get("max_seq_length"))
    limits.append(tokenizer_max if tokenizer_max and tokenizer_max < 1_000_000 else None)
    positions = config.get("max_position_embeddings")
    if positions:  # RoBERTa-style models (bge-m3) reserve two positions for padding offsets
        limits.append(positions - 2 if config.get("model_type", "") in ("xlm-roberta", "roberta") else positions)
    return min(int(v) for v in limits if v)


def check_lengths(counts: list[int], max_length: int) -> None:
    """InputTooLong for the first count over the model's limit (truncate=false)."""
    for i, n in enumerate(counts):
        if n > max_length:
            raise InputTooLong(f"input {i} has {n} tokens, more than the model's {max_length}; "
                               "shorten it or send truncate=true")


def load_encoder(settings: Settings) -> Any:
    """The encoder of settings.runtime; its module is imported only here. Plain import statements, not
    importlib with a computed name: `bgeimg analyze --advise` reads them to know what the server can import."""
    if settings.runtime == "torch":
        from bge_server.torch_encoder import TorchEncoder

        return TorchEncoder(settings)
    if settings.runtime == "onnx":
        from bge_server.onnx_encoder import OnnxEncoder

        return OnnxEncoder(settings)
    raise ValueError(f"BGE_RUNTIME={settings.runtime!r} is not one of {', '.join(RUNTIMES)}")


@dataclass
class Loader:
    """Loads the encoder in the background so /health can answer 503 until it is ready."""

    settings: Settings
    encoder: Any = None
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)
    ready: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self.thread.start()

    def _load(self) -> None:
        try:
            self.encoder = load_encoder(self.settings)
        except ModelUnusable as exc:
            print(f"bgeimg: {exc}", file=sys.stderr, flush=True)
            os._exit(1)  # from the loader thread: the whole server stops, the orchestrator sees exit 1
        except Exception as exc:  # reported by /health and the log, the server keeps answering
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"bge-server: model failed to load from {self.settings.model_dir}: {self.error}", flush=True)
        finally:
            self.ready.set()


def lexical_weights(ids: list[list[int]], weights: list[list[float]], special: set[int]) -> list[dict[str, float]]:
    """bge-m3's sparse output per text: token id -> its largest weight, special tokens and zeros left out."""
    out = []
    for row_ids, row_w in zip(ids, weights):
        lexical: dict[str, float] = {}
        for token_id, w in zip(row_ids, row_w):
            if token_id in special or w <= 0:
                continue
            key = str(token_id)
            lexical[key] = max(lexical.get(key, 0.0), w)
        out.append(lexical)
    return out
