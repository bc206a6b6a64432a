"""Load a BGE checkpoint with transformers + torch and compute embeddings or rerank scores.

No sentence-transformers or FlagEmbedding at run time (they drag in scipy and scikit-learn): pooling and
normalisation are read from the sentence-transformers files the checkpoint ships (modules.json,
1_Pooling/config.json, sentence_bert_config.json) and done here; bge-m3's sparse and ColBERT heads
(sparse_linear.pt, colbert_linear.pt) are loaded directly.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer


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
    max_batch_size: int = 32
    max_length: int | None = None
    max_inputs: int = 256  # texts per request


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pooling_of(model_dir: Path) -> tuple[str, bool]:
    """(pooling mode, normalise?) from the sentence-transformers files; BGE's default (CLS, normalised) otherwise."""
    modules = _read_json(model_dir / "modules.json") or []
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict))
    pool_dir = next((m.get("path") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith(
        "Pooling")), "1_Pooling")
    pool = _read_json(model_dir / str(pool_dir) / "config.json") or {}
    if pool.get("pooling_mode_mean_tokens"):
        mode = "mean"
    elif pool.get("pooling_mode_cls_token"):
        mode = "cls"
    elif pool.get("pooling_mode_lasttoken"):
        mode = "last"
    else:
        mode, normalize = "cls", True  # BGE checkpoints without sentence-transformers files
    return mode, normalize


class Encoder:
    """One loaded model. Calls are serialised: torch already uses every core for one batch."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.lock = threading.Lock()
        path = settings.model_dir
        self.device = torch.device("cuda" if settings.device == "cuda" and torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32  # FP16 on GPU only
        self.config = AutoConfig.from_pretrained(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if settings.task == "rerank":
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype)
        else:
            model = AutoModel.from_pretrained(path, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.pooling, self.normalize = pooling_of(path)
        self.max_length = self._max_length(path)
        self.sparse_head = self._head(path / "sparse_linear.pt")
        self.colbert_head = self._head(path / "colbert_linear.pt")

    def _max_length(self, path: Path) -> int:
        limits = [self.settings.max_length]
        st = _read_json(path / "sentence_bert_config.json") or {}
        limits.append(st.get("max_seq_length"))
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        limits.append(tok_max if tok_max and tok_max < 1_000_000 else None)
        positions = getattr(self.config, "max_position_embeddings", None)
        if positions:  # RoBERTa-style models (bge-m3) reserve two positions for padding offsets
            limits.append(positions - 2 if getattr(self.config, "model_type", "") in ("xlm-roberta", "roberta")
                          else positions)
        return min(int(v) for v in limits if v)

    def _head(self, path: Path) -> torch.nn.Linear | None:
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        out_features, in_features = state["weight"].shape
        head = torch.nn.Linear(in_features, out_features)
        head.load_state_dict(state)
        return head.to(self.device, self.dtype).eval()

    @property
    def dimension(self) -> int | None:
        if self.settings.task == "rerank":
            return None
        return int(getattr(self.config, "hidden_size", 0)) or None

    def _check_lengths(self, texts: list[str] | list[tuple[str, str]], truncate: bool) -> None:
        if truncate:
            return
        for i, text in enumerate(texts):
            ids = self.tokenizer(*text) if isinstance(text, tuple) else self.tokenizer(text)
            n = len(ids["input_ids"])
            if n > self.max_length:
                raise InputTooLong(f"input {i} has {n} tokens, more than the model's {self.max_length}; "
                                   "shorten it or send truncate=true")

    def _batches(self, items: list):
        size = self.settings.max_batch_size
        for start in range(0, len(items), size):
            yield items[start : start + size]

    @torch.inference_mode()
    def embed(self, texts: list[str], *, normalize: bool | None = None, truncate: bool = True,
              sparse: bool = False, colbert: bool = False) -> Encoded:
        self._check_lengths(texts, truncate)
        normalize = self.normalize if normalize is None else normalize
        result = Encoded(dense=[], sparse=[] if sparse else None, colbert=[] if colbert else None)
        with self.lock:
            for batch in self._batches(texts):
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(self.device)
                result.tokens += int(enc["attention_mask"].sum())
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"]
                dense = self._pool(hidden, mask)
                if normalize:
                    dense = torch.nn.functional.normalize(dense, p=2, dim=-1)
                result.dense += dense.float().cpu().tolist()
                if sparse:
                    result.sparse += self._sparse(hidden, enc["input_ids"], mask)
                if colbert:
                    result.colbert += self._colbert(hidden, mask)
        return result

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if self.pooling == "last":
            last = mask.sum(1) - 1
            return hidden[torch.arange(hidden.size(0)), last]
        return hidden[:, 0]

    def _sparse(self, hidden, input_ids, mask) -> list[dict[str, float]]:
        if self.sparse_head is None:
            raise LookupError("this model has no sparse head (sparse_linear.pt); only bge-m3 ships one")
        weights = torch.relu(self.sparse_head(hidden)).squeeze(-1) * mask
        special = set(self.tokenizer.all_special_ids)
        out = []
        for row_ids, row_w in zip(input_ids.tolist(), weights.float().cpu().tolist()):
            lexical: dict[str, float] = {}
            for token_id, w in zip(row_ids, row_w):
                if token_id in special or w <= 0:
                    continue
                key = str(token_id)
                lexical[key] = max(lexical.get(key, 0.0), w)
            out.append(lexical)
        return out

    def _colbert(self, hidden, mask) -> list[list[list[float]]]:
        if self.colbert_head is None:
            raise LookupError("this model has no ColBERT head (colbert_linear.pt); only bge-m3 ships one")
        vecs = self.colbert_head(hidden[:, 1:]) * mask[:, 1:].unsqueeze(-1)
        vecs = torch.nn.functional.normalize(vecs, p=2, dim=-1)
        out = []
        for row, m in zip(vecs.float().cpu(), mask[:, 1:].cpu()):
            out.append(row[: int(m.sum())].tolist())
        return out

    @torch.inference_mode()
    def rerank(self, query: str, texts: list[str], *, truncate: bool = True) -> list[float]:
        """Raw relevance logits of (query, text) pairs from a cross-encoder."""
        self._check_lengths([(query, t) for t in texts], truncate)
        scores: list[float] = []
        with self.lock:
            for batch in self._batches(texts):
                enc = self.tokenizer([query] * len(batch), batch, padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                logits = self.model(**enc).logits
                scores += logits[:, 0].float().cpu().tolist() if logits.dim() == 2 else logits.float().cpu().tolist()
        return scores


@dataclass
class Loader:
    """Loads the encoder in the background so /health can answer 503 until it is ready."""

    settings: Settings
    encoder: Encoder | None = None
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self.thread.start()

    def _load(self) -> None:
        try:
            self.encoder = Encoder(self.settings)
        except Exception as exc:  # reported by /health and the log, the server keeps answering
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"bge-server: model failed to load from {self.settings.model_dir}: {self.error}", flush=True)
