"""Time to healthy of two images, started in alternating order, as the median of paired ratios.

    python bench/start_pairs.py bgeimg-bench/onnx-cpu:onnx bgeimg-bench/onnx-cpu-pyc:onnx --rounds 12

For a difference too small for bench/onnx_vs_torch.py's three rounds to show on a shared machine (there: onnx-cpu,
whose bytecode is stripped, against the same image with `slim.bytecode=imported`, both built by that bench).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_size import started  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    times: dict[str, list[float]] = {args.first: [], args.second: []}
    for i in range(args.rounds):
        for tag in (args.first, args.second) if i % 2 == 0 else (args.second, args.first):
            container, _, seconds = started(client, tag, None)
            container.remove(force=True)
            times[tag].append(seconds)
    for tag, values in times.items():
        print(f"{tag}: median {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(a / b for a, b in zip(times[args.first], times[args.second]))
    print(f"{args.first} starts in {ratio:.3f}x the time of {args.second} (median of {args.rounds} paired ratios)")


if __name__ == "__main__":
    main()
