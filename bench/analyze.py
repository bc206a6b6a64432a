#!/usr/bin/env python3
"""bgeimg analyze vs dive on the same >= 1 GB `docker save` archive: wall time and peak RSS, side by side.

    python bench/analyze.py [--runs 3] [--mb 1100] [--files 20000]

Builds (or reuses) bgeimg-test-analyze/bench:<hash> in the test bed's engine: the stand-in python:3.11-slim, a
layer of many small files (like a venv), big random files in three layers, one overwritten and one deleted in a
later layer. Saves it once to /var/cache/bgeimg-testbed/bench/ (outside the clone), then runs each tool as a
child process `--runs` times, measuring wall time and the child's peak RSS (os.wait4 rusage), and prints the
medians and the ratios. Targets: bgeimg at least 2x faster than dive, at most 200 MB RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("BGEIMG_TESTBED_CACHE", "/var/cache/bgeimg-testbed")) / "bench"
DOCKER = "/usr/bin/docker"


def dockerfile(mb: int, files: int) -> str:
    part = mb // 3
    return f"""FROM python:3.11-slim
RUN python3 -c "import os; d = '/opt/venv/lib/python3.11/site-packages'; \\
    [os.makedirs(f'{{d}}/pkg{{i % 200}}', exist_ok=True) or \\
     open(f'{{d}}/pkg{{i % 200}}/m{{i}}.py', 'wb').write(os.urandom(512 + i % 4096)) for i in range({files})]"
RUN head -c {part}M /dev/urandom > /opt/w1.bin
RUN head -c {part}M /dev/urandom > /opt/w2.bin && head -c 64M /dev/urandom > /opt/tmp.bin
RUN head -c {part}M /dev/urandom > /opt/w3.bin && head -c 32M /dev/urandom > /opt/w1.bin && rm /opt/tmp.bin
"""


def ensure_archive(mb: int, files: int) -> tuple[str, Path]:
    import docker

    text = dockerfile(mb, files)
    tag = "bgeimg-test-analyze/bench:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    archive = CACHE / (tag.split(":")[1] + ".tar")
    if archive.exists():
        return tag, archive
    api = docker.APIClient(timeout=3600, **docker.utils.kwargs_from_env())
    try:
        api.inspect_image(tag)
    except docker.errors.ImageNotFound:
        print(f"building {tag} (~{mb} MB)...", file=sys.stderr)
        for chunk in api.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True, decode=True,
                               platform="linux/amd64"):  # never an arm64 base another build left behind
            if "error" in chunk:
                sys.exit(f"build failed: {chunk['error']}")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".partial")
    subprocess.run([DOCKER, "save", "-o", str(partial), tag], check=True)
    partial.rename(archive)
    return tag, archive


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode not in (0, 1):  # 1: a gate or dive's CI rules failed; still a measurement
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=1100, help="MB of big random files (in three layers)")
    ap.add_argument("--files", type=int, default=20000, help="small files in the venv-like layer")
    args = ap.parse_args()

    tag, archive = ensure_archive(args.mb, args.files)
    dive = shutil.which("dive") or str(Path(sys.executable).parent / "dive")
    out = CACHE / "dive.json"
    tools = {
        "bgeimg analyze (archive)": [sys.executable, "-m", "bgeimg", "analyze", str(archive), "--json"],
        "dive (archive)": [dive, "--source", "docker-archive", "--ci", "--json", str(out), str(archive)],
        "bgeimg analyze (engine)": [sys.executable, "-m", "bgeimg", "analyze", tag, "--source", "engine", "--json"],
    }
    with open(archive, "rb") as f:  # warm the page cache so the first tool is not charged for the disk
        while f.read(1 << 24):
            pass
    results = {}
    for _ in range(args.runs):
        for name, cmd in tools.items():  # interleaved, so both see the same machine load
            results.setdefault(name, []).append(measure(cmd))
    size = archive.stat().st_size
    report = json.loads(subprocess.run(tools["bgeimg analyze (archive)"], capture_output=True, check=True).stdout)
    d = json.loads(out.read_text())
    print(f"image {tag}: archive {size / 1e9:.2f} GB, {len(report['layers'])} layers, "
          f"{sum(la['files'] for la in report['layers'])} files; median of {args.runs} runs")
    print(f"{'tool':28} {'wall s':>8} {'peak RSS MB':>12}")
    med = {}
    for name, runs in results.items():
        med[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"{name:28} {med[name][0]:8.2f} {med[name][1]:12.1f}")
    b, dv = med["bgeimg analyze (archive)"], med["dive (archive)"]
    print(f"speed: dive / bgeimg = {dv[0] / b[0]:.1f}x (target >= 2x)  "
          f"memory: bgeimg {b[1]:.0f} MB (target <= 200 MB), dive / bgeimg = {dv[1] / b[1]:.1f}x")
    print(f"numbers: bgeimg size {report['size']} wasted {report['waste']['wasted_bytes']} "
          f"(dive-style {report['waste']['dive_wasted_bytes']}); dive size {d['image']['sizeBytes']} "
          f"wasted {d['image']['inefficientBytes']}")


if __name__ == "__main__":
    main()
