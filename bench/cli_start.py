"""How long `bgeimg --help` takes to answer, against the floor it stands on (the interpreter, and typer alone),
side by side in one run, plus the modules on the path that cost the most to import.

    python bench/cli_start.py [--rounds 15]

Each round runs every command once, in turn, so a noisy neighbour slows them all alike; the medians are printed.
Target (issue 19): `bgeimg --help` under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def import_costs(top: int) -> list[tuple[int, str]]:
    """Cumulative import time (us) of the slowest modules under `import bgeimg.cli.app`, from -X importtime."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bgeimg.cli.app"],
                       capture_output=True, text=True, check=True)
    rows = []
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    exe = shutil.which("bgeimg") or os.path.join(os.path.dirname(sys.executable), "bgeimg")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "bgeimg --help": [exe, "--help"],
        "bgeimg analyze --help": [exe, "analyze", "--help"],
        "bgeimg build --help": [exe, "build", "--help"],
    }
    for cmd in cases.values():  # warm the page cache and the .pyc files first
        timed(cmd)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, cmd in cases.items():
            times[name].append(timed(cmd))
    med = {name: statistics.median(t) for name, t in times.items()}
    floor = med["python -c 'import typer'"]
    print(f"{'command':28} {'median':>8} {'vs typer alone':>15}")
    for name, m in med.items():
        print(f"{name:28} {m:7.3f}s {m / floor:14.2f}x")
    verdict = "meets" if med["bgeimg --help"] < 0.3 else "MISSES"
    print(f"\nbgeimg --help {med['bgeimg --help']:.3f} s: {verdict} the 0.3 s target ({args.rounds} rounds)")
    print("\nslowest imports on the path (cumulative, ms):")
    for us, name in import_costs(10):
        print(f"  {us / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
