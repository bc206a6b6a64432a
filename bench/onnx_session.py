"""onnxruntime session options for the ONNX runtime's server, measured on this machine (the choice in
templates/server/bge_server/onnx_encoder.py: session_options).

    python bench/onnx_session.py [--rounds 5]

Exports the real MiniLM once (templates/export_onnx.py), then times one forward pass of a single text and of a
32-text batch under each setting, in rounds that visit every setting in turn (this machine is shared and noisy):
graph optimisation level at load (the export already saved the EXTENDED fusions), CPU memory arena, thread
spinning, intra-op threads (the shipped row is one of the encoder's LANES, on threads // LANES threads; the
lanes' side-by-side passes are measured by the servers in bench/onnx_vs_torch.py). Prints the median ms and each
setting's ratio to the shipped one, plus the session creation time (it is part of the start).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "templates" / "server"))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from bge_server.onnx_encoder import LANES, session_options  # noqa: E402
from image_size import minilm_dir  # noqa: E402

from bgeimg.context.onnx import _script  # noqa: E402

BASE = "shipped (one lane: BASIC, arena, no spin)"
TEXT = "Embeddings power semantic search over millions of documents in a few milliseconds."


def variants(threads: int) -> dict[str, ort.SessionOptions]:
    def shipped() -> ort.SessionOptions:
        # one of the encoder's lanes; the export saved the EXTENDED fusions
        return session_options(max(1, threads // LANES), optimized=True)

    out = {BASE: shipped()}
    for name, level in (("ALL", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                        ("EXTENDED", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
                        ("DISABLE_ALL", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        opts = shipped()
        opts.graph_optimization_level = level
        out[f"optimisation {name}"] = opts
    opts = shipped()
    opts.enable_cpu_mem_arena = False
    out["no memory arena"] = opts
    opts = shipped()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    out["spinning threads"] = opts
    out[f"one pass on all {threads} threads"] = session_options(threads, optimized=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="the container's CPU quota (threads of all lanes)")
    args = parser.parse_args()
    form = Path(tempfile.mkdtemp(prefix="bgeimg-onnx-session-")) / "minilm"
    _script().run(minilm_dir(), form, "embed", "none")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(form / "tokenizer.json"))
    tok.enable_padding()
    feeds = {}
    for name, n in (("1 text", 1), ("32 texts", 32)):
        enc = tok.encode_batch([TEXT] * n)
        feeds[name] = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                       "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                       "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
    sessions, created = {}, {}
    for label, opts in variants(args.threads).items():
        t = time.perf_counter()
        sessions[label] = ort.InferenceSession(str(form / "model.onnx"), sess_options=opts,
                                               providers=["CPUExecutionProvider"])
        created[label] = time.perf_counter() - t
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, session in sessions.items():
            for feed_name, feed in feeds.items():
                session.run(None, feed)  # warm
                reps = 20 if feed_name == "1 text" else 3
                t = time.perf_counter()
                for _ in range(reps):
                    session.run(None, feed)
                times.setdefault((label, feed_name), []).append((time.perf_counter() - t) / reps * 1000)
    base = BASE
    print(f"{'setting':<32}{'create ms':>10}" + "".join(f"{f + ' ms':>14}{'ratio':>7}" for f in feeds))
    for label in sessions:
        row = f"{label:<32}{created[label] * 1000:>10.0f}"
        for feed_name in feeds:
            ms = statistics.median(times[(label, feed_name)])
            ratio = statistics.median(a / b for a, b in zip(times[(label, feed_name)], times[(base, feed_name)]))
            row += f"{ms:>14.2f}{ratio:>7.2f}"
        print(row)


if __name__ == "__main__":
    main()
