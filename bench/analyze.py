"""bgeimg analyze vs dive on the same >= 1 GB image, from the engine, a `docker save` archive and a registry, first
run (empty layer cache) and second run (cache warm): wall time, peak RSS and the ratios, side by side in one run.

    python bench/analyze.py [--runs 3] [--mb 1100] [--files 20000]

Builds (or reuses) bgeimg-bench/analyze:<hash> in the test bed's engine (not bgeimg-test-*, which test runs clean
up): the stand-in python:3.11-slim, a layer of many small files (like a venv), big random files in three layers,
one overwritten and one deleted in a later layer. Saves it once to /var/cache/bgeimg-testbed/bench/ (outside the
clone; `docker load`ed again when the engine lost the image) and pushes it once to the test bed's registry. Then
runs each tool as a child process `--runs` times, interleaved, measuring wall time and the child's peak RSS
(os.wait4 rusage), and prints medians:

- engine: `dive IMAGE` and `bgeimg analyze IMAGE`, first (empty cache: the layers read from the engine's own
  overlay2 store, bgeimg.analyze.store), first through the export (`BGEIMG_ENGINE_STORE=0`: the engine's
  `docker save` streamed, as where the store is not readable), second (cache warm: the inspect only) and a
  relabelled build of it (a new config on the cached layers: the inspect and the history API); the engine's export
  alone (the ImageSave API that `docker save`, dive and the export path call, streamed and discarded), the floor
  of any tool that reads layers through the API.
- archive: `dive --source docker-archive` and `bgeimg analyze ARCHIVE`, first (no cache) and second (the layer
  scans the engine run cached).
- registry: `bgeimg analyze registry:REF` first (every layer streamed once) and second (manifest only), and the
  transfer alone (every blob of the manifest streamed and digest-checked, nothing else). dive cannot read a
  registry.

With --docker26, the engine rows again on the test bed's Docker 26 (containerd image store), from the same
Dockerfile built there.

Targets: engine >= 1.5x faster than dive; archive >= 2x faster than dive, <= 200 MB RSS; registry time <= 1.3x
(archive + transfer), peak RSS <= 1.5x the archive path's.
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
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("BGEIMG_TESTBED_CACHE", "/var/cache/bgeimg-testbed")) / "bench"
DOCKER = shutil.which("docker") or "/usr/bin/docker"
REGISTRY = os.environ.get("BGEIMG_TEST_REGISTRY", "127.0.0.1:5000")
REMOTE_REPO = "bgeimg-test-analyze/bench"  # in the test bed's registry
EXPORT = """
import sys, docker
api = docker.APIClient(timeout=3600, **docker.utils.kwargs_from_env())
for _ in api.get_image(sys.argv[1], chunk_size=1 << 20):
    pass
"""
TRANSFER = """
import json, sys
from bgeimg.oci.reference import parse_reference
from bgeimg.oci.registry import RegistryClient
r = parse_reference(sys.argv[1]); c = RegistryClient(r.registry)
m = json.loads(c.get_manifest(r.repository, r.ref).raw)
for d in [m["config"], *m["layers"]]:
    for _ in c.iter_blob(r.repository, d["digest"]):
        pass
"""


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
    tag = "bgeimg-bench/analyze:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    archive = CACHE / (tag.split(":")[1] + ".tar")
    api = docker.APIClient(timeout=3600, **docker.utils.kwargs_from_env())
    try:
        api.inspect_image(tag)
        if archive.exists():
            return tag, archive
    except docker.errors.ImageNotFound:
        if archive.exists():  # another session pruned the image: the saved archive brings it back as it was
            loaded = subprocess.run([DOCKER, "load", "-q", "-i", str(archive)], check=True, capture_output=True,
                                    text=True).stdout.split()[-1]  # "Loaded image: NAME" (an older archive's name)
            if loaded != tag:
                subprocess.run([DOCKER, "tag", loaded, tag], check=True)
            return tag, archive
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


def ensure_relabelled(tag: str) -> str:
    """The bench image with one more label: a new config on the same layers (a re-tag or a label-only rebuild)."""
    import docker

    api = docker.APIClient(timeout=600, **docker.utils.kwargs_from_env())
    relabel = tag + "-relabel"
    text = f"FROM {tag}\nLABEL bench.relabel={tag.split(':')[1]}\n"
    for chunk in api.build(fileobj=io.BytesIO(text.encode()), tag=relabel, rm=True, decode=True):
        if "error" in chunk:
            sys.exit(f"build failed: {chunk['error']}")
    return relabel


def ensure_modern(mb: int, files: int) -> tuple[str, str]:
    """The same Dockerfile built on the test bed's Docker 26 (containerd image store: `docker save` streams the
    stored gzip blobs). A pulled image will not do there: the store drops a pulled image's blobs once unpacked."""
    host = os.environ.get("BGEIMG_TEST_DOCKER26_HOST", "unix:///var/run/bgeimg-docker26.sock")
    cli = os.environ.get("BGEIMG_TEST_DOCKER26_CLI", DOCKER)
    text = dockerfile(mb, files)
    tag = "bgeimg-bench/analyze26:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    if subprocess.run([cli, "-H", host, "image", "inspect", tag], capture_output=True).returncode != 0:
        print(f"building {tag} on Docker 26...", file=sys.stderr)
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if os.environ.get("BGEIMG_TEST_BUILDX_CONFIG"):
            env["DOCKER_CONFIG"] = os.environ["BGEIMG_TEST_BUILDX_CONFIG"]
        with tempfile.TemporaryDirectory() as context:
            subprocess.run([cli, "-H", host, "build", "--platform", "linux/amd64", "-t", tag, "-f", "-", context],
                           input=text.encode(), check=True, env=env, stdout=subprocess.DEVNULL)
    return tag, host


def ensure_pushed(tag: str) -> str:
    """The image in the test bed's registry (pushed once; the registry keeps it)."""
    import urllib.error
    import urllib.request

    repo, ref = REMOTE_REPO, tag.split(":")[1]
    target = f"{REGISTRY}/{repo}:{ref}"
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{ref}", method="HEAD",
                                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        urllib.request.urlopen(req, timeout=10)
        return target
    except urllib.error.HTTPError:
        pass
    print(f"pushing {target}...", file=sys.stderr)
    subprocess.run([DOCKER, "tag", tag, target], check=True)
    subprocess.run([DOCKER, "push", target], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([DOCKER, "rmi", target], check=True, stdout=subprocess.DEVNULL)  # the tag only
    return target


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode not in (0, 1):  # 1: a gate or dive's CI rules failed; still a measurement
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=1100, help="MB of big random files (in three layers)")
    ap.add_argument("--files", type=int, default=20000, help="small files in the venv-like layer")
    ap.add_argument("--docker26", action="store_true",
                    help="also the engine rows on the test bed's Docker 26 (containerd image store)")
    args = ap.parse_args()

    tag, archive = ensure_archive(args.mb, args.files)
    remote = ensure_pushed(tag)
    relabel = ensure_relabelled(tag)
    modern = ensure_modern(args.mb, args.files) if args.docker26 else None
    dive = shutil.which("dive") or str(Path(sys.executable).parent / "dive")
    out = CACHE / "dive.json"
    bg = [sys.executable, "-m", "bgeimg", "analyze"]
    dive_env = {"CI": "true"}
    with open(archive, "rb") as f:  # warm the page cache so the first tool is not charged for the disk
        while f.read(1 << 24):
            pass
    results: dict[str, list[tuple[float, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="bgeimg-bench-analyze-"))
    try:
        for run in range(args.runs):
            engine_cache, registry_cache = work / f"engine{run}", work / f"registry{run}"
            steps = [  # interleaved, so every tool sees the same machine load
                ("engine export alone (floor)", [sys.executable, "-c", EXPORT, tag], {}),
                ("dive (engine)", [dive, tag, "--ci", "--json", str(out)], dive_env),
                ("bgeimg (engine, first)", [*bg, tag, "--source", "engine", "--json"],
                 {"BGEIMG_CACHE_DIR": str(engine_cache)}),
                ("bgeimg (engine, cached)", [*bg, tag, "--source", "engine", "--json"],
                 {"BGEIMG_CACHE_DIR": str(engine_cache)}),
                ("bgeimg (engine, export)", [*bg, tag, "--source", "engine", "--json"],
                 {"BGEIMG_CACHE_DIR": str(work / f"export{run}"), "BGEIMG_ENGINE_STORE": "0"}),
                ("bgeimg (engine, relabelled)", [*bg, relabel, "--source", "engine", "--json"],
                 {"BGEIMG_CACHE_DIR": str(engine_cache)}),
                ("dive (archive)", [dive, "--source", "docker-archive", "--ci", "--json", str(out), str(archive)],
                 dive_env),
                ("bgeimg (archive, first)", [*bg, str(archive), "--json", "--no-cache"], {}),
                ("bgeimg (archive, cached)", [*bg, str(archive), "--json"], {"BGEIMG_CACHE_DIR": str(engine_cache)}),
                ("registry transfer alone", [sys.executable, "-c", TRANSFER, remote], {}),
                ("bgeimg (registry, first)", [*bg, f"registry:{remote}", "--json"],
                 {"BGEIMG_CACHE_DIR": str(registry_cache)}),
                ("bgeimg (registry, cached)", [*bg, f"registry:{remote}", "--json"],
                 {"BGEIMG_CACHE_DIR": str(registry_cache)}),
            ]
            if modern:
                tag26, host = modern
                on26 = {"DOCKER_HOST": host, "BGEIMG_CACHE_DIR": str(work / f"engine26-{run}")}
                steps += [
                    ("engine26 export alone (floor)", [sys.executable, "-c", EXPORT, tag26], on26),
                    ("dive (engine26)", [dive, tag26, "--ci", "--json", str(CACHE / "dive26.json")], {**dive_env, **on26}),
                    ("bgeimg (engine26, first)", [*bg, tag26, "--source", "engine", "--json"], on26),
                    ("bgeimg (engine26, cached)", [*bg, tag26, "--source", "engine", "--json"], on26),
                ]
            for name, cmd, env in steps:
                results.setdefault(name, []).append(measure(cmd, env))
        docs = {}
        for src, ref in (("engine", tag), ("archive", str(archive)), ("registry", f"registry:{remote}")):
            p = subprocess.run([*bg, ref, "--json", "--no-cache"], capture_output=True, check=False)
            docs[src] = json.loads(p.stdout)
        p = subprocess.run([*bg, tag, "--source", "engine", "--json", "--no-cache"], capture_output=True, check=False,
                           env={**os.environ, "BGEIMG_ENGINE_STORE": "0"})
        docs["engine-export"] = json.loads(p.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = docs["archive"]
    d = json.loads(out.read_text())
    print(f"image {tag}: archive {archive.stat().st_size / 1e9:.2f} GB, {len(report['layers'])} layers, "
          f"{sum(la['files'] for la in report['layers'])} files, registry {report_compressed(docs['registry'])}; "
          f"median of {args.runs} runs")
    print(f"{'tool':30} {'wall s':>8} {'peak RSS MB':>12}")
    med = {}
    for name, runs in results.items():
        med[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"{name:30} {med[name][0]:8.2f} {med[name][1]:12.1f}")

    def t(name: str) -> float:
        return med[name][0]

    print("ratios (higher is better for bgeimg):")
    if modern:
        print(f"  engine26: dive / bgeimg = {t('dive (engine26)') / t('bgeimg (engine26, first)'):.2f}x first, "
              f"{t('dive (engine26)') / t('bgeimg (engine26, cached)'):.1f}x cached (target >= 1.5x); "
              f"export alone / bgeimg first = {t('engine26 export alone (floor)') / t('bgeimg (engine26, first)'):.2f}")
    print(f"  engine:   dive / bgeimg = {t('dive (engine)') / t('bgeimg (engine, first)'):.2f}x first, "
          f"{t('dive (engine)') / t('bgeimg (engine, cached)'):.1f}x cached, "
          f"{t('dive (engine)') / t('bgeimg (engine, relabelled)'):.1f}x relabelled (target >= 1.5x); "
          f"through the export {t('dive (engine)') / t('bgeimg (engine, export)'):.2f}x; "
          f"export alone / bgeimg export = {t('engine export alone (floor)') / t('bgeimg (engine, export)'):.2f}, "
          f"export alone / dive = {t('engine export alone (floor)') / t('dive (engine)'):.2f}")
    print(f"  archive:  dive / bgeimg = {t('dive (archive)') / t('bgeimg (archive, first)'):.2f}x first, "
          f"{t('dive (archive)') / t('bgeimg (archive, cached)'):.2f}x cached (target >= 2x); "
          f"bgeimg RSS {med['bgeimg (archive, first)'][1]:.0f} MB (target <= 200 MB)")
    budget = t("bgeimg (archive, first)") + t("registry transfer alone")
    print(f"  registry: bgeimg / (archive + transfer) = {t('bgeimg (registry, first)') / budget:.2f} (target <= 1.3), "
          f"RSS registry / archive = {med['bgeimg (registry, first)'][1] / med['bgeimg (archive, first)'][1]:.2f} "
          f"(target <= 1.5); dive (engine) / bgeimg = {t('dive (engine)') / t('bgeimg (registry, first)'):.2f}x "
          f"first, {t('dive (engine)') / t('bgeimg (registry, cached)'):.1f}x cached")
    same = all(content(docs[s]) == content(docs["archive"]) for s in ("engine", "engine-export", "registry"))
    print(f"numbers: engine (store and export), archive and registry reports equal in every figure: {same}; bgeimg size "
          f"{report['size']} wasted {report['waste']['wasted_bytes']} (dive-style "
          f"{report['waste']['dive_wasted_bytes']}); dive size {d['image']['sizeBytes']} wasted "
          f"{d['image']['inefficientBytes']}")


def report_compressed(doc: dict) -> str:
    return f"{doc['compressed_size'] / 1e9:.2f} GB compressed"


def content(doc: dict) -> dict:
    """A report without what only its source knows (the ref, the compressed blobs)."""
    doc = {k: v for k, v in doc.items() if k not in ("ref", "source", "manifest_digest", "compressed_size")}
    doc["layers"] = [{k: v for k, v in la.items() if k not in ("digest", "compressed_size", "compression")}
                     for la in doc["layers"]]
    return doc


if __name__ == "__main__":
    main()
