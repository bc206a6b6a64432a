"""The ONNX runtime: a BGE model's ONNX graph run with onnxruntime, tokenized with `tokenizers`, pooled in numpy.

No torch or transformers here: an ONNX image carries neither. The model directory holds the ONNX form bgeimg's
export writes (templates/export_onnx.py: model.onnx [+ model.onnx_data], the tokenizer and sentence-transformers
files, bge-m3's sparse and ColBERT heads as sparse_linear.npz / colbert_linear.npz) or a repository's own
onnx/model.onnx next to its tokenizer. Each call is ONE forward pass over the batch it is given (the batcher forms
batches and calls from one thread), so there is no lock here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from bge_server.cpu import cpu_threads
from bge_server.encoder import Encoded, ModelUnusable, Settings, lexical_weights, max_length_of, pooling_of, read_json

# Where the graph may lie in a model directory: bgeimg's export first, then a hub repository's own folder.
GRAPHS = ("model.onnx", "onnx/model.onnx")
# Errors only in the log (a read-only container cannot persist onnxruntime's telemetry id: noise), no telemetry.
ort.set_default_logger_severity(3)
ort.disable_telemetry_events()
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def find_graph(model_dir: Path) -> Path | None:
    return next((model_dir / g for g in GRAPHS if (model_dir / g).is_file()), None)


def session_options(threads: int, optimized: bool = False) -> ort.SessionOptions:
    """Chosen by measurement on the 2-core bench machine (docs/server.md, "ONNX session options"). A graph the
    export already optimised (onnx_export.json "optimized") needs only the basic passes: a faster start."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimized
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # one batch at a time: parallelism inside the operators only
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads would compete with the HTTP threads for the same cores between batches.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # warnings about unused initializers are noise in a server log
    return opts


def _special_ids(model_dir: Path, tokenizer: Tokenizer) -> set[int]:
    """What transformers' all_special_ids gives: the named special tokens and the additional ones."""
    ids: set[int] = set()
    for source in ("special_tokens_map.json", "tokenizer_config.json"):
        data = read_json(model_dir / source) or {}
        names = [data.get(k) for k in SPECIAL_KEYS] + list(data.get("additional_special_tokens") or [])
        for name in names:
            token = name.get("content") if isinstance(name, dict) else name
            if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
                ids.add(tokenizer.token_to_id(token))
    return ids


def _head(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A linear head as (weight.T, bias), float32, as export_onnx.py writes it from the checkpoint's .pt file."""
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        return arrays["weight"].astype(np.float32).T.copy(), arrays["bias"].astype(np.float32)


def _normalize(x: np.ndarray) -> np.ndarray:
    # torch.nn.functional.normalize's rule: divide by max(norm, 1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class OnnxEncoder:
    runtime = "onnx"

    def __init__(self, settings: Settings):
        self.settings = settings
        path = settings.model_dir
        graph = find_graph(path)
        if graph is None:
            what = "a torch checkpoint" if (path / "config.json").is_file() else "no model"
            raise ModelUnusable(f"{path} holds {what} but no ONNX form ({' or '.join(GRAPHS)}); make one with "
                             f"`bgeimg export MODEL_DIR OUT_DIR` and mount OUT_DIR")
        self.device = "cpu"
        # onnxruntime would start one thread per host core; the container's quota is what it may use
        self.threads, self.threads_source = (settings.threads, "BGE_THREADS") if settings.threads else cpu_threads()
        export = read_json(path / "onnx_export.json") or {}
        try:
            self.session = ort.InferenceSession(str(graph), sess_options=session_options(
                self.threads, optimized=bool(export.get("optimized"))),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, ... : the file itself is bad
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ModelUnusable(f"{graph} is not a usable ONNX graph ({type(exc).__name__}: {reason}); "
                                "export it again with `bgeimg export MODEL_DIR OUT_DIR`") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(self.input_names) - set(INPUTS))
        if unknown or "input_ids" not in self.input_names:
            raise ValueError(f"{graph} takes inputs {self.input_names}; the server feeds {', '.join(INPUTS)}")
        outputs = [o.name for o in self.session.get_outputs()]
        wanted = "logits" if settings.task == "rerank" else "last_hidden_state"
        self.output = wanted if wanted in outputs else outputs[0]
        self.dtype = "int8" if export.get("quantize") == "int8" else "float32"
        # The tokenizer next to the graph (a repository's onnx/ folder may carry its own copy).
        tok_file = next((p for p in (path / "tokenizer.json", graph.parent / "tokenizer.json") if p.is_file()),
                        path / "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.counter = Tokenizer.from_file(str(tok_file))  # untruncated and unpadded: token_counts
        self.counter.no_truncation()
        self.counter.no_padding()
        self.config = read_json(path / "config.json") or read_json(graph.parent / "config.json") or {}
        tok_config = read_json(path / "tokenizer_config.json") or {}
        self.pooling, self.normalize_default = pooling_of(path)
        self.max_length = max_length_of(path, settings.max_length, tok_config.get("model_max_length"), self.config)
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        pad_token = (read_json(path / "special_tokens_map.json") or {}).get("pad_token") or tok_config.get(
            "pad_token") or "[PAD]"
        pad_token = pad_token.get("content") if isinstance(pad_token, dict) else pad_token
        pad_id = self.tokenizer.token_to_id(pad_token)
        self.tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad_token)
        self.special_ids = _special_ids(path, self.tokenizer)
        self.sparse_head = _head(path / "sparse_linear.npz")
        self.colbert_head = _head(path / "colbert_linear.npz")

    @property
    def dimension(self) -> int | None:
        if self.settings.task == "rerank":
            return None
        return int(self.config.get("hidden_size", 0)) or None

    def info(self) -> dict:
        return {"runtime": self.runtime, "device": self.device, "threads": self.threads,
                "threads_source": self.threads_source, "dtype": self.dtype,
                "pooling": self.pooling, "sparse": self.sparse_head is not None,
                "colbert": self.colbert_head is not None}

    def token_counts(self, items: list[str] | list[tuple[str, str]]) -> list[int]:
        if not items:
            return []
        return [len(e.ids) for e in self.counter.encode_batch(list(items))]

    def _run(self, items: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(items)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        feed = {k: v for k, v in feed.items() if k in self.input_names}
        (out,) = self.session.run([self.output], feed)
        return out, ids, mask

    def embed(self, texts: list[str], *, normalize: bool, sparse: bool, colbert: bool) -> Encoded:
        if sparse and self.sparse_head is None:
            raise LookupError("this model has no sparse head (sparse_linear.pt); only bge-m3 ships one")
        if colbert and self.colbert_head is None:
            raise LookupError("this model has no ColBERT head (colbert_linear.pt); only bge-m3 ships one")
        hidden, ids, mask = self._run(list(texts))
        dense = self._pool(hidden, mask)
        if normalize:
            dense = _normalize(dense)
        return Encoded(dense=dense.astype(np.float32).tolist(),
                       sparse=self._sparse(hidden, ids, mask) if sparse else None,
                       colbert=self._colbert(hidden, mask) if colbert else None,
                       tokens=int(mask.sum()))

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "mean":
            weights = mask[..., None].astype(hidden.dtype)
            return (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        if self.pooling == "last":
            return hidden[np.arange(hidden.shape[0]), mask.sum(1) - 1]
        return hidden[:, 0]

    def _sparse(self, hidden: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> list[dict[str, float]]:
        weight, bias = self.sparse_head
        weights = np.maximum(hidden @ weight + bias, 0.0)[..., 0] * mask
        return lexical_weights(ids.tolist(), weights.tolist(), self.special_ids)

    def _colbert(self, hidden: np.ndarray, mask: np.ndarray) -> list[list[list[float]]]:
        weight, bias = self.colbert_head
        vecs = _normalize((hidden[:, 1:] @ weight + bias) * mask[:, 1:, None])
        return [row[: int(m.sum())].tolist() for row, m in zip(vecs, mask[:, 1:])]

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Raw relevance logits of (query, text) pairs from a cross-encoder."""
        logits, _, _ = self._run(list(pairs))
        return logits[:, 0].tolist() if logits.ndim == 2 else logits.tolist()
