"""The ONNX runtime: a BGE model's ONNX graph run with onnxruntime, tokenized with `tokenizers`, pooled in numpy.

No torch or transformers here: an ONNX image carries neither. The model directory holds the ONNX form bgeimg's
export writes (templates/export_onnx.py: model.onnx [+ model.onnx_data], the tokenizer and sentence-transformers
files, bge-m3's sparse and ColBERT heads as sparse_linear.npz / colbert_linear.npz) or a repository's own
onnx/model.onnx next to its tokenizer. The batcher calls from one thread; each call sorts its batch by length and
runs it as LANES sub-batches at once, each on one intra-op thread (onnxruntime sessions take concurrent runs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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
# Forward passes at once per call, each on threads // LANES intra-op threads. On the 2-core bench machine two
# single-thread passes over the two halves of a sorted 32-text batch beat one 2-thread pass: 1.56-1.60x torch's
# batch throughput against 1.35-1.45x (local A/B of bench/onnx_vs_torch.py's load, docs/server.md), as a
# 2-thread pass waits on a thread wake-up at every operator. The cost: a lone text runs on threads // LANES
# threads, a 250-token one in 63 ms against 43 ms (MiniLM, this machine).
LANES = 2
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _sub_batches(lengths: list[int], lanes: int) -> list[list[int]]:
    """Indices sorted by length (similar lengths pad least), cut in two where the halves' padded tokens (texts x
    the longest) are closest, so the two lanes finish together; one run when there is one lane or one text."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    if lanes < 2 or len(order) < 2:
        return [order] if order else []
    n, longest = len(order), lengths[order[-1]]
    cut = min(range(1, n), key=lambda k: max(k * lengths[order[k - 1]], (n - k) * longest))
    return [order[:cut], order[cut:]]


def find_graph(model_dir: Path) -> Path | None:
    return next((model_dir / g for g in GRAPHS if (model_dir / g).is_file()), None)


def session_options(threads: int, optimized: bool = False) -> ort.SessionOptions:
    """Chosen by measurement on the 2-core bench machine (docs/server.md, "ONNX session options"). A graph the
    export already optimised (onnx_export.json "optimized") needs only the basic passes: a faster start."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimized
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # operators in order; the encoder's lanes run sub-batches side by side
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
        self.lanes = min(LANES, self.threads)  # 1 or 2 (_sub_batches cuts in two)
        self.pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="onnx") if self.lanes > 1 else None
        try:
            self.session = ort.InferenceSession(str(graph), sess_options=session_options(
                max(1, self.threads // self.lanes), optimized=bool(export.get("optimized"))),
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
        self.pad_id = pad_id if pad_id is not None else 0
        self.tokenizer.no_padding()  # _runs pads each sub-batch to its own longest text
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
                "threads_source": self.threads_source, "lanes": self.lanes, "dtype": self.dtype,
                "pooling": self.pooling, "sparse": self.sparse_head is not None,
                "colbert": self.colbert_head is not None}

    def token_counts(self, items: list[str] | list[tuple[str, str]]) -> list[int]:
        if not items:
            return []
        return [len(e.ids) for e in self.counter.encode_batch(list(items))]

    def _runs(self, items: list):
        """The forward passes of one call (_sub_batches), at once: (indices into items, output, ids, mask) each."""
        encodings = self.tokenizer.encode_batch(items)
        work = []
        for index in _sub_batches([len(e.ids) for e in encodings], self.lanes):
            rows = [encodings[i] for i in index]
            width = max(len(e.ids) for e in rows)
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for r, e in enumerate(rows):  # right padding, as the tokenizer's own would be
                n = len(e.ids)
                ids[r, :n], mask[r, :n], types[r, :n] = e.ids, 1, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            work.append((index, {k: v for k, v in feed.items() if k in self.input_names}, ids, mask))

        def forward(w) -> np.ndarray:
            return self.session.run([self.output], w[1])[0]

        outs = self.pool.map(forward, work) if self.pool and len(work) > 1 else map(forward, work)
        for (index, _, ids, mask), out in zip(work, list(outs)):
            yield index, out, ids, mask

    def embed(self, texts: list[str], *, normalize: bool, sparse: bool, colbert: bool) -> Encoded:
        if sparse and self.sparse_head is None:
            raise LookupError("this model has no sparse head (sparse_linear.pt); only bge-m3 ships one")
        if colbert and self.colbert_head is None:
            raise LookupError("this model has no ColBERT head (colbert_linear.pt); only bge-m3 ships one")
        n = len(texts)
        dense: list = [None] * n
        sparse_out: list = [None] * n
        colbert_out: list = [None] * n
        tokens = 0
        for index, hidden, ids, mask in self._runs(list(texts)):
            vectors = self._pool(hidden, mask)
            if normalize:
                vectors = _normalize(vectors)
            parts = [(dense, vectors.astype(np.float32).tolist())]
            if sparse:
                parts.append((sparse_out, self._sparse(hidden, ids, mask)))
            if colbert:
                parts.append((colbert_out, self._colbert(hidden, mask)))
            for target, values in parts:
                for i, value in zip(index, values):
                    target[i] = value
            tokens += int(mask.sum())
        return Encoded(dense=dense, sparse=sparse_out if sparse else None, colbert=colbert_out if colbert else None,
                       tokens=tokens)

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
        scores: list = [None] * len(pairs)
        for index, logits, _, _ in self._runs(list(pairs)):
            for i, value in zip(index, logits[:, 0].tolist() if logits.ndim == 2 else logits.tolist()):
                scores[i] = value
        return scores
