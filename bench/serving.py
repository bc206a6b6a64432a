"""Serving under load: the bgeimg image against today's bgeimg server, infinity-emb and a naive FastAPI +
sentence-transformers app, side by side on the same CPU, in one run.

    python bench/serving.py [--rounds 3] [--seconds 8]     # needs the test bed (scripts/testbed.sh up)

Servers (all serve the real all-MiniLM-L6-v2 directory, loopback only, one at a time under load):
  bgeimg         cpu-slim built now with the MiniLM weights (bgeimg.build, like bench/image_size.py), run with
                 --network host
  today          the same image with git main's templates/server and entrypoint (`git show main:...`), with
                 OMP_WAIT_POLICY unset as main's image has it: the server before issue 15
  today+passive  today's server with OMP_WAIT_POLICY=PASSIVE: how much of the gain is that setting alone
  infinity       infinity-emb[server,torch]==0.0.78 in its own venv (--infinity-venv, torch 2.13.0 CPU from disk),
                 as shipped (batch size 32, as ours)
  infinity+passive  the same with OMP_WAIT_POLICY=PASSIVE: the peer given the setting bgeimg ships
  naive          bench/serving_naive/app.py (seed 002's kind) in the infinity venv, which has sentence-transformers
Every server runs in a container with --network host (the peers from their host venv mounted read-only), so
each gets one cgroup of equal CPU weight.
Loads: closed loop, one-text requests at concurrency 1, 16 and 64, and 32-text requests at concurrency 4, over
the OpenAI-shaped route each server has. Each round runs every load on every server in turn (the order rotates
per round), so a slow moment of this shared machine hits all alike. texts/s are pooled over rounds; p50/p99
pool every request's latency. The targets of issue 15 are printed as PASS/FAIL.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from conftest import make_wheelhouse  # noqa: E402
from image_size import minilm_dir  # noqa: E402
from loadgen import Result, run_load  # noqa: E402

from bgeimg import profile as profiles  # noqa: E402
from bgeimg.build.run import BuildOptions, build  # noqa: E402

INFINITY_VENV = Path("/var/cache/bgeimg-testbed/venv-serving-infinity")
NEW_TAG, TODAY_TAG = "bgeimg-bench/serving:new", "bgeimg-bench/serving:today"
PORTS = {"bgeimg": 18601, "today": 18602, "today+passive": 18603, "infinity": 18604, "infinity+passive": 18606,
         "naive": 18605}
ROUTES = {"infinity": "/embeddings", "infinity+passive": "/embeddings"}  # the others: /v1/embeddings
LOADS = [("c1 x1", 1, 1), ("c16 x1", 16, 1), ("c64 x1", 64, 1), ("c4 x32", 4, 32)]
WORDS = ("how do i reset my password what is the refund policy for orders shipped abroad vector search "
         "embeddings retrieval augmented generation kubernetes autoscaling latency throughput bread recipe "
         "tax filing deadline river mountain city music library train schedule winter garden").split()


def texts(n: int, lo: int, hi: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + f" #{i}" for i in range(n)]


def build_images(client: docker.DockerClient, model: Path) -> None:
    profile = profiles.resolve("cpu-slim", sets=["torch_index_url=null", f"model={model}"]).profile
    wheelhouse = make_wheelhouse(profile.requirements, "linux/amd64")
    build(profile, BuildOptions(image=NEW_TAG, engine="auto", platforms=["linux/amd64"], wheelhouse=wheelhouse))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "main", "templates/server",
                                  "templates/entrypoint.sh"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(ctx)], input=archive, check=True)
        (ctx / "Dockerfile").write_text(
            f"FROM {NEW_TAG}\nUSER 0\nRUN rm -rf /opt/app/bge_server\nCOPY templates/server/ /opt/app/\n"
            "COPY templates/entrypoint.sh /usr/local/bin/bgeimg-entrypoint\nUSER 10001:10001\n")
        client.images.build(path=str(ctx), tag=TODAY_TAG, rm=True)


def wait_healthy(port: int, proc=None, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server on {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server on {port} not healthy after {timeout:.0f} s")


def start_servers(client: docker.DockerClient, model: Path, infinity_venv: Path):
    containers = []
    # main's entrypoint ends in this uvicorn line; here bound to loopback (--network host)
    def today(port: int, unset_omp: bool) -> list[str]:
        return [*(["env", "-u", "OMP_WAIT_POLICY"] if unset_omp else []), "python", "-m", "uvicorn",
                "bge_server.app:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]

    for name, tag, entrypoint in (("bgeimg", NEW_TAG, None), ("today", TODAY_TAG, today(PORTS["today"], True)),
                                  ("today+passive", TODAY_TAG, today(PORTS["today+passive"], False))):
        containers.append(client.containers.run(
            tag, detach=True, network_mode="host", entrypoint=entrypoint,
            environment={"BGE_PORT": str(PORTS[name]), "BGE_HOST": "127.0.0.1"},
            name=f"bgeimg-bench-serving-{name.replace('+', '-')}"))
    # infinity-emb and the naive app run from their host venv, mounted read-only into a container of the same
    # Debian: every server then sits in a cgroup of its own with the same CPU weight (a host process would get
    # a weight per thread against a container's one for all its threads on this busy machine).
    venv = infinity_venv.resolve()
    home = Path(os.path.realpath(venv / "bin" / "python")).parent.parent  # the Python the venv was made from
    mounts = {str(venv): {"bind": str(venv), "mode": "ro"}, str(home): {"bind": str(home), "mode": "ro"},
              str(model): {"bind": str(model), "mode": "ro"},
              str(ROOT / "bench" / "serving_naive"): {"bind": "/naive", "mode": "ro"}}
    peers = []
    for name, extra in (("infinity", {}), ("infinity+passive", {"OMP_WAIT_POLICY": "PASSIVE"})):
        peers.append((name, [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", str(model), "--engine", "torch",
                             "--device", "cpu", "--port", str(PORTS[name]), "--host", "127.0.0.1",
                             "--batch-size", "32", "--no-model-warmup", "--log-level", "warning"],  # no access log
                      {"INFINITY_ANONYMOUS_USAGE_STATS": "0", **extra}))
    peers.append(("naive", [str(venv / "bin" / "python"), "-m", "uvicorn", "app:app", "--app-dir", "/naive",
                            "--host", "127.0.0.1", "--port", str(PORTS["naive"]), "--no-access-log"],
                  {"NAIVE_MODEL": str(model)}))
    for name, entrypoint, env in peers:
        containers.append(client.containers.run(
            NEW_TAG, detach=True, network_mode="host", entrypoint=entrypoint, user="0", volumes=mounts,
            environment={"HOME": "/tmp", "HF_HUB_OFFLINE": "1", **env},
            name=f"bgeimg-bench-serving-{name.replace('+', '-')}"))
    return containers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load, server and round")
    parser.add_argument("--infinity-venv", type=Path, default=INFINITY_VENV)
    parser.add_argument("--skip-build", action="store_true", help="reuse the images of an earlier run")
    args = parser.parse_args()
    if not (args.infinity_venv / "bin" / "infinity_emb").exists():
        raise SystemExit(f"no infinity-emb in {args.infinity_venv}: python3 -m venv {args.infinity_venv} && "
                         f"{args.infinity_venv}/bin/pip install 'infinity-emb[server,torch]==0.0.78' torch==2.13.0")
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=900)
    model = minilm_dir()
    if not args.skip_build:
        build_images(client, model)
    containers = start_servers(client, model, args.infinity_venv)
    try:
        for port in PORTS.values():
            wait_healthy(port)
        one = [[t] for t in texts(400, 4, 14, 1)]  # RAG queries: 8-20 tokens
        many = [texts(32, 20, 80, 100 + k) for k in range(12)]  # passages: 30-110 tokens
        for name, port in PORTS.items():  # warm: first calls allocate and compile
            run_load(port, one, 4, 2, path=ROUTES.get(name, "/v1/embeddings"))
            run_load(port, many, 2, 2, path=ROUTES.get(name, "/v1/embeddings"))
        results: dict[tuple[str, str], list[Result]] = {}
        names = list(PORTS)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for label, concurrency, n in LOADS:
                for name in order:
                    r = run_load(PORTS[name], one if n == 1 else many, concurrency, args.seconds,
                                 path=ROUTES.get(name, "/v1/embeddings"))
                    results.setdefault((label, name), []).append(r)
                    print(f"round {rnd + 1} {label:<7} {name:<14} {r.texts_per_s:8.1f} texts/s  p50 "
                          f"{r.p50 * 1000:7.1f} ms  p99 {r.p99 * 1000:7.1f} ms  errors {r.errors}", flush=True)
        report(results, names, args)
    finally:
        for c in containers:
            c.remove(force=True)


def pooled(rs: list[Result]) -> tuple[float, float, float, int]:
    total = Result(texts=sum(r.texts for r in rs), seconds=sum(r.seconds for r in rs),
                   errors=sum(r.errors for r in rs), latencies=[x for r in rs for x in r.latencies])
    return total.texts_per_s, total.p50, total.p99, total.errors


def report(results, names, args) -> None:
    print(f"\n{args.rounds} rounds x {args.seconds:g} s per load and server; texts/s pooled, p50/p99 in ms")
    print("each cell: texts/s p50 p99 e<errors>")
    print(f"{'load':<8}" + "".join(f"{n:>26}" for n in names))
    table = {}
    for label, _, _ in LOADS:
        cells = []
        for name in names:
            tps, p50, p99, errors = table[(label, name)] = pooled(results[(label, name)])
            cells.append(f"{tps:7.1f} {p50 * 1000:6.0f} {p99 * 1000:6.0f} e{errors:<2}")
        print(f"{label:<8}" + "".join(f"{c:>26}" for c in cells))
    print("\nratios of bgeimg to each (throughput; p50 and p99 as bgeimg / other, lower is better)")
    for label, _, _ in LOADS:
        b = table[(label, "bgeimg")]
        parts = [f"{n} {b[0] / table[(label, n)][0]:.2f}x (p50 {b[1] / table[(label, n)][1]:.2f}, "
                 f"p99 {b[2] / table[(label, n)][2]:.2f})" for n in names if n != "bgeimg"]
        print(f"{label:<8} " + "; ".join(parts))

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    c16, c1, c4 = (lambda n: table[("c16 x1", n)]), (lambda n: table[("c1 x1", n)]), (lambda n: table[("c4 x32", n)])
    print("\ntargets (issue 15):")
    r = c16("bgeimg")[0] / c16("today")[0]
    print(f"  c16 one-text throughput vs today {r:.2f}x (>= 1.5): {verdict(r >= 1.5)}")
    r = c16("bgeimg")[0] / c16("infinity")[0]
    print(f"  c16 one-text throughput vs infinity-emb {r:.2f}x (>= 1.0): {verdict(r >= 1.0)}")
    r = c16("bgeimg")[2] / c16("infinity")[2]
    print(f"  c16 p99 vs infinity-emb {r:.2f}x (<= 1.0): {verdict(r <= 1.0)}")
    r = c16("bgeimg")[0] / c16("infinity+passive")[0]
    q = c16("bgeimg")[2] / c16("infinity+passive")[2]
    print(f"  (against infinity-emb with OMP_WAIT_POLICY=PASSIVE: throughput {r:.2f}x, p99 {q:.2f}x)")
    r = c1("bgeimg")[1] / c1("today")[1]
    print(f"  c1 p50 vs today {r:.2f}x (<= 1.0): {verdict(r <= 1.0)}")
    r = c4("bgeimg")[0] / c4("today")[0]
    print(f"  32-text throughput vs today {r:.2f}x (>= 1.0): {verdict(r >= 1.0)}")
    errors = sum(v[3] for v in table.values())
    print(f"  errors over all servers and loads: {errors}")


if __name__ == "__main__":
    main()
