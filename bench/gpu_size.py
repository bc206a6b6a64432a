"""The gpu image's size without a GPU: what is measured here and what is estimated, kept apart, per CUDA flavour.

    python bench/gpu_size.py [--image TAG] [--wheelhouse DIR --torch VERSION --work DIR] [--json]

measured   the base (the engine's python:3.11-slim: the test bed's stand-in unless a real one is there), a built
           gpu image (--image: e.g. built from a local CUDA 13 wheelhouse), and the gpu profile's requirement set
           installed from --wheelhouse into a venv (torch pinned to --torch, the version the wheelhouse holds),
           then slimmed by the profile's own builder commands (bgeimg render's slim step), by `du`
declared   the compressed wheel sizes PyPI's JSON API lists for the exact CUDA wheels torch's metadata pins
           (pip --dry-run --report, --no-deps): torch==2.13.0 is PyPI's CUDA 13.0 build; download.pytorch.org
           (cu126, cu128) does not answer here, so 12.8 and 12.6 are represented by the last PyPI torch builds for
           them (2.9.1: cu128, 2.7.1: cu126): what those CUDA versions' wheels weigh, not torch 2.13.0's own
estimated  installed = declared x (installed / wheel bytes of the wheelhouse, measured); image = base + that
           installed size x the slimming ratio measured on the wheelhouse's venv + the weights (bge-m3: 2271 MB)

Seed 001's CUDA image was 3.6 GB (DESIGN.md): the figure to beat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement

CA = "/etc/ssl/certs/ca-certificates.crt"
ENV = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11",
       "python_full_version": "3.11.0", "implementation_name": "cpython", "os_name": "posix", "extra": ""}
# flavour -> the PyPI torch whose metadata pins that CUDA's wheels
TORCH = {"13.0": "2.13.0", "12.8": "2.9.1", "12.6": "2.7.1"}
BGE_M3_WEIGHTS = 2_271_000_000  # model.safetensors of BAAI/bge-m3 (FP32), as the gpu profile bakes it
SEED_001 = 3_600_000_000


def metadata(requirements: list[str]) -> dict[str, dict]:
    """name -> pip's report metadata for each requirement, --no-deps, for linux/amd64 CPython 3.11."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        args = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet", "--no-deps",
                "--ignore-installed", "--report", str(report), "--target", f"{tmp}/t", "--platform",
                "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                "--only-binary=:all:", "--cert", CA, *requirements]
        subprocess.run(args, check=True, capture_output=True, timeout=600)
        return {i["metadata"]["name"].lower(): i["metadata"] for i in json.loads(report.read_text())["install"]}


def pins(meta: dict, extras: set[str] = frozenset()) -> list[tuple[str, str, set[str]]]:
    out = []
    for line in meta.get("requires_dist") or []:
        req = Requirement(line)
        if req.marker is not None and not any(req.marker.evaluate({**ENV, "extra": e}) for e in ({""} | extras)):
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            out.append((req.name.lower(), exact[0], set(req.extras)))
    return out


_JSON: dict[str, dict] = {}


def wheel_size(name: str, version: str) -> int:
    """The linux x86_64 (CPython 3.11 or py3) wheel's size PyPI's JSON API declares for name==version."""
    if name not in _JSON:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=60) as r:
            _JSON[name] = json.load(r)
    releases = _JSON[name]["releases"]
    if version.endswith(".*"):  # a wildcard pin (==13.0.85.*): the newest release it matches, as pip picks
        from packaging.version import Version

        prefix = version[:-2]
        version = max((v for v in releases if (v == prefix or v.startswith(prefix + ".")) and releases[v]),
                      key=Version, default=prefix)
    files = releases.get(version) or []
    for f in files:
        fn = f["filename"]
        if fn.endswith(".whl") and "x86_64" in fn and ("cp311" in fn or "-py3-none-" in fn or "py2.py3" in fn):
            return int(f["size"])
    for f in files:  # pure-Python metapackages
        if f["filename"].endswith("none-any.whl"):
            return int(f["size"])
    raise LookupError(f"PyPI lists no linux x86_64 wheel of {name}=={version}")


def cuda_set(flavour: str) -> dict[str, tuple[str, int]]:
    """The CUDA wheels (and triton, torch itself) the flavour's torch pins: name -> (version, declared bytes)."""
    torch_version = TORCH[flavour]
    meta = metadata([f"torch=={torch_version}"])["torch"]
    chosen = {"torch": (torch_version, wheel_size("torch", torch_version))}
    todo = pins(meta)
    while todo:
        name, version, extras = todo.pop()
        if not (name.startswith(("nvidia-", "cuda-")) or name == "triton") or name in chosen:
            continue
        chosen[name] = (version, wheel_size(name, version))
        if name == "cuda-toolkit":  # a metapackage: its extras pin the nvidia-* wheels
            todo += pins(metadata([f"cuda-toolkit[{','.join(sorted(extras))}]=={version}"])["cuda-toolkit"], extras)
    return chosen


def venv_stages(wheelhouse: Path, torch_version: str, work: Path) -> dict[str, int]:
    """Install the gpu profile's requirements from the wheelhouse, then run its slim commands on a copy: bytes."""
    import re
    import shutil

    from bgeimg import profile as profiles
    from bgeimg.context.render import RenderOptions, template_values

    p = profiles.resolve("gpu").profile
    reqs = [f"torch=={torch_version}" if Requirement(r).name == "torch" else r for r in p.requirements]
    venv, slim = work / "venv", work / "slim"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-compile", "--no-index",
                    "--find-links", str(wheelhouse), *reqs], check=True)
    stages = {"installed": du(venv)}
    subprocess.run(["cp", "-a", str(venv), str(slim)], check=True)  # a real copy: strip rewrites hard links in place
    py = str(slim / "bin/python")
    for cmd in template_values(p, RenderOptions())["slim_commands"]:
        cmd = cmd.replace("/opt/venv", str(slim))
        cmd = re.sub(r"^pip ", f"{py} -m pip ", cmd)
        cmd = re.sub(r"(^|\s)python ", rf"\g<1>{py} ", cmd)
        subprocess.run(["sh", "-c", cmd], check=True)
    stages["slimmed"] = du(slim)
    return stages


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def image_size(ref: str) -> int | None:
    run = subprocess.run(["/usr/bin/docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True,
                         text=True)
    return int(run.stdout.strip()) if run.returncode == 0 else None


def mb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", help="a gpu image built here (its size is measured)")
    ap.add_argument("--wheelhouse", type=Path, help="wheels of the gpu profile's requirement set (CUDA 13.0)")
    ap.add_argument("--torch", default="2.14.1", help="the torch version the wheelhouse holds")
    ap.add_argument("--work", type=Path, default=Path("/var/cache/bgeimg-testbed/gpu-size"),
                    help="where the venvs are made (replaced)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    measured = {"base python:3.11-slim": image_size("python:3.11-slim")}
    if args.image:
        measured[f"image {args.image}"] = image_size(args.image)
    if args.wheelhouse:
        stages = venv_stages(args.wheelhouse, args.torch, args.work)
        measured[f"venv torch {args.torch} CUDA 13.0, installed"] = stages["installed"]
        measured[f"venv torch {args.torch} CUDA 13.0, slimmed"] = stages["slimmed"]
    sets = {f: cuda_set(f) for f in TORCH}
    declared = {f: sum(size for _, size in s.values()) for f, s in sets.items()}
    installed_ratio = slim_ratio = None
    if args.wheelhouse:
        # installed bytes per wheel byte, both of the very same set (the wheelhouse's files)
        wheels = sum(w.stat().st_size for w in args.wheelhouse.glob("*.whl"))
        measured["wheelhouse (its .whl files)"] = wheels
        installed_ratio = stages["installed"] / wheels
        slim_ratio = stages["slimmed"] / stages["installed"]
    estimated = {}
    for f in TORCH:
        row = {"declared_wheels": declared[f]}
        if installed_ratio:
            row["installed"] = declared[f] * installed_ratio
        if installed_ratio and slim_ratio and measured["base python:3.11-slim"]:
            row["image_bge_m3"] = measured["base python:3.11-slim"] + row["installed"] * slim_ratio + BGE_M3_WEIGHTS
        estimated[f] = row
    result = {"measured": measured, "declared_sets": {f: {n: list(v) for n, v in s.items()} for f, s in sets.items()},
              "estimated": estimated, "installed_ratio": installed_ratio, "slim_ratio": slim_ratio,
              "seed_001": SEED_001}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("measured (MB)")
    for k, v in measured.items():
        print(f"  {k:40} {mb(v)}")
    print("declared wheel sizes on PyPI (MB; torch's pins: 13.0 torch 2.13.0, 12.8 torch 2.9.1, 12.6 torch 2.7.1)")
    names = sorted({n for s in sets.values() for n in s})
    print(f"  {'wheel':28}" + "".join(f"{f:>10}" for f in TORCH))
    for n in names:
        print(f"  {n:28}" + "".join(f"{mb(sets[f][n][1]) if n in sets[f] else '-':>10}" for f in TORCH))
    print(f"  {'total':28}" + "".join(f"{mb(declared[f]):>10}" for f in TORCH))
    if installed_ratio:
        print(f"estimated (MB; installed = declared x {installed_ratio:.2f}, slimmed x {slim_ratio or 0:.3f}, "
              f"measured on the 13.0 stack)")
        print(f"  {'':28}" + "".join(f"{f:>10}" for f in TORCH))
        print(f"  {'installed CUDA stack':28}" + "".join(f"{mb(estimated[f].get('installed')):>10}" for f in TORCH))
        print(f"  {'image with bge-m3':28}" + "".join(f"{mb(estimated[f].get('image_bge_m3')):>10}" for f in TORCH))
        print(f"  {'vs seed 001 (3600 MB)':28}" + "".join(
            f"{(estimated[f].get('image_bge_m3') or 0) / SEED_001:>10.2f}" for f in TORCH))
    return 0


if __name__ == "__main__":
    sys.exit(main())
