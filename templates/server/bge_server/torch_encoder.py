"""The torch runtime: a BGE checkpoint loaded with transformers + torch.

No sentence-transformers or FlagEmbedding at run time (they drag in scipy and scikit-learn): pooling and
normalisation come from the checkpoint's sentence-transformers files (encoder.pooling_of); bge-m3's sparse and
ColBERT heads (sparse_linear.pt, colbert_linear.pt) are loaded directly. Each call is ONE forward pass over the
batch it is given; the batcher forms batches and calls from one thread, so there is no lock here.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before torch loads libgomp: OpenMP's default spin-waiting makes each forward pass fight the event loop (and any
# neighbour) for the cores (docs/server.md, bench/serving.py: today's server against the same with this set).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from bge_server.cpu import cpu_threads  # noqa: E402
from bge_server.device import resolve  # noqa: E402
from bge_server.encoder import Encoded, Settings, lexical_weights, max_length_of, pooling_of  # noqa: E402


class TorchEncoder:
    runtime = "torch"

    def __init__(self, settings: Settings):
        self.settings = settings
        path = settings.model_dir
        # torch would start one thread per host core; the container's quota is what it may use
        self.threads, self.threads_source = (settings.threads, "BGE_THREADS") if settings.threads else cpu_threads()
        torch.set_num_threads(self.threads)
        choice = resolve(settings.device)  # BGE_DEVICE=cuda without a usable GPU raises: no silent CPU fallback
        self._device = torch.device(choice.device)
        self.device, self.device_reason = choice.device, choice.reason
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32  # FP16 on GPU only
        self.config = AutoConfig.from_pretrained(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if settings.task == "rerank":
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype)
        else:
            model = AutoModel.from_pretrained(path, dtype=self.dtype)
        self.model = model.to(self._device).eval()
        self.pooling, self.normalize_default = pooling_of(path)
        self.max_length = max_length_of(path, settings.max_length, getattr(self.tokenizer, "model_max_length", None),
                                        self.config.to_dict())
        self.sparse_head = self._head(path / "sparse_linear.pt")
        self.colbert_head = self._head(path / "colbert_linear.pt")
        self.special_ids = set(self.tokenizer.all_special_ids)

    def _head(self, path: Path) -> torch.nn.Linear | None:
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        out_features, in_features = state["weight"].shape
        head = torch.nn.Linear(in_features, out_features)
        head.load_state_dict(state)
        return head.to(self._device, self.dtype).eval()

    @property
    def dimension(self) -> int | None:
        if self.settings.task == "rerank":
            return None
        return int(getattr(self.config, "hidden_size", 0)) or None

    def info(self) -> dict:
        return {"runtime": self.runtime, "device": self.device, "device_reason": self.device_reason,
                "threads": self.threads, "threads_source": self.threads_source,
                "dtype": str(self.dtype).replace("torch.", ""), "pooling": self.pooling,
                "sparse": self.sparse_head is not None, "colbert": self.colbert_head is not None}

    def token_counts(self, items: list[str] | list[tuple[str, str]]) -> list[int]:
        if not items:
            return []
        if isinstance(items[0], tuple):
            ids = self.tokenizer([q for q, _ in items], [t for _, t in items])["input_ids"]
        else:
            ids = self.tokenizer(list(items))["input_ids"]
        return [len(row) for row in ids]

    @torch.inference_mode()
    def embed(self, texts: list[str], *, normalize: bool, sparse: bool, colbert: bool) -> Encoded:
        if sparse and self.sparse_head is None:
            raise LookupError("this model has no sparse head (sparse_linear.pt); only bge-m3 ships one")
        if colbert and self.colbert_head is None:
            raise LookupError("this model has no ColBERT head (colbert_linear.pt); only bge-m3 ships one")
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self._device)
        mask = enc["attention_mask"]
        hidden = self.model(**enc).last_hidden_state
        dense = self._pool(hidden, mask)
        if normalize:
            dense = torch.nn.functional.normalize(dense, p=2, dim=-1)
        return Encoded(dense=dense.float().cpu().tolist(),
                       sparse=self._sparse(hidden, enc["input_ids"], mask) if sparse else None,
                       colbert=self._colbert(hidden, mask) if colbert else None,
                       tokens=int(mask.sum()))

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if self.pooling == "last":
            last = mask.sum(1) - 1
            return hidden[torch.arange(hidden.size(0)), last]
        return hidden[:, 0]

    def _sparse(self, hidden, input_ids, mask) -> list[dict[str, float]]:
        weights = torch.relu(self.sparse_head(hidden)).squeeze(-1) * mask
        return lexical_weights(input_ids.tolist(), weights.float().cpu().tolist(), self.special_ids)

    def _colbert(self, hidden, mask) -> list[list[list[float]]]:
        vecs = self.colbert_head(hidden[:, 1:]) * mask[:, 1:].unsqueeze(-1)
        vecs = torch.nn.functional.normalize(vecs, p=2, dim=-1)
        out = []
        for row, m in zip(vecs.float().cpu(), mask[:, 1:].cpu()):
            out.append(row[: int(m.sum())].tolist())
        return out

    @torch.inference_mode()
    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Raw relevance logits of (query, text) pairs from a cross-encoder."""
        enc = self.tokenizer([q for q, _ in pairs], [t for _, t in pairs], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt").to(self._device)
        logits = self.model(**enc).logits
        return logits[:, 0].float().cpu().tolist() if logits.dim() == 2 else logits.float().cpu().tolist()
