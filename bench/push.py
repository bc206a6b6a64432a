"""bgeimg push against `docker push` of the same image, first and second push, side by side in one run.

    python bench/push.py [--payload-mb 700] [--layers 3]     # needs the test bed (scripts/testbed.sh up)

The image is the stand-in python:3.11-slim plus `--layers` layers of mixed data (random and text, compressible
about like a venv) totalling `--payload-mb`. Each tool pushes to a fresh registry of its own, so its first push
really uploads everything; bgeimg starts with an empty layer cache. Targets (issue 19): bgeimg's first push
<= 1.0x docker push's time; its second push <= 0.1x its first, with 0 layer bytes. A promote row shows that
moving a tag uploads nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "release"))

from conftest import DEBIAN_DOCKER, make_registry  # noqa: E402

from bgeimg.oci.reference import parse_reference  # noqa: E402
from bgeimg.oci.registry import RegistryClient  # noqa: E402
from bgeimg.release import promote as promoting  # noqa: E402
from bgeimg.release import push as pushing  # noqa: E402

# Mixed content: 40 % random bytes, 60 % words, so gzip has real work and a ratio near a Python venv's.
PAYLOAD = """import os, random
r = random.Random(os.environ["SEED"])
words = [bytes(r.choices(b"abcdefghijklmnopqrstuvwxyz_", k=r.randint(2, 12))) for _ in range(5000)]
os.makedirs("/payload", exist_ok=True)
left = int(os.environ["MB"]) << 20
i = 0
while left > 0:
    with open(f"/payload/{os.environ['LAYER']}-{i}.bin", "wb") as fh:
        for _ in range(64):
            fh.write(r.randbytes(26214) + b" ".join(r.choices(words, k=6000))[:39322])
    left -= 64 << 16
    i += 1
"""


def build(tag: str, payload_mb: int, layers: int) -> None:
    steps = "".join(f"RUN SEED={uuid.uuid4().hex} MB={payload_mb // layers} LAYER={n} python3 /gen.py\n"
                    for n in range(layers))
    dockerfile = f"FROM python:3.11-slim\nCOPY gen.py /gen.py\n{steps}"
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(dockerfile)
        Path(ctx, "gen.py").write_text(PAYLOAD)
        subprocess.run([DEBIAN_DOCKER, "build", "-q", "-t", tag, ctx], check=True, capture_output=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "1"})


def docker_push(api, local: str, host: str) -> float:
    remote = f"{host}/{local.split(':')[0]}:1"
    api.tag(local, remote.rsplit(":", 1)[0], "1")
    start = time.monotonic()
    subprocess.run([DEBIAN_DOCKER, "push", remote], check=True, capture_output=True)
    took = time.monotonic() - start
    api.remove_image(remote)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payload-mb", type=int, default=700, help="size of the image's own layers together")
    parser.add_argument("--layers", type=int, default=3, help="how many layers the payload is split into")
    args = parser.parse_args()
    os.environ["BGEIMG_CACHE_DIR"] = tempfile.mkdtemp(prefix="bgeimg-bench-cache-")  # an empty layer cache
    api = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=900)
    name = f"bgeimg-bench/push-{uuid.uuid4().hex[:6]}"
    local = f"{name}:1-amd64"
    build(local, args.payload_mb, args.layers)
    size = api.inspect_image(local)["Size"]
    ours = make_registry(Path(tempfile.mkdtemp(prefix="bgeimg-bench-push-")))
    theirs = make_registry(Path(tempfile.mkdtemp(prefix="bgeimg-bench-docker-")))
    rows = []
    try:
        for label, tags in (("bgeimg first push", ["1.0.0"]), ("bgeimg second push", ["1.0.0", "again"])):
            start = time.monotonic()
            result = pushing.push(api, [local], [pushing.target(ours.host, name)], tags)[0]
            assert result.ok, result.error
            rows.append((label, time.monotonic() - start, result.stats.blob_bytes_uploaded,
                         result.work.layers_compressed))
        client = RegistryClient(ours.host)
        start = time.monotonic()
        promoting.promote(client, parse_reference(f"{ours.host}/{name}:1.0.0"), "stable")
        rows.append(("bgeimg promote to stable", time.monotonic() - start, client.stats.blob_bytes_uploaded, 0))
        for label in ("docker push first", "docker push second"):
            rows.append((label, docker_push(api, local, theirs.host), None, None))
    finally:
        ours.stop()
        theirs.stop()
        api.remove_image(local, force=True)
    print(f"image {size / 1e6:.0f} MB ({args.layers} payload layers of {args.payload_mb // args.layers} MB + base), "
          f"{os.cpu_count()} cores")
    print(f"{'step':<26}{'seconds':>9}{'layer bytes':>14}{'compressed':>12}")
    for label, seconds, sent, compressed in rows:
        print(f"{label:<26}{seconds:>9.2f}{'' if sent is None else sent:>14}{'' if compressed is None else compressed:>12}")
    first, second, docker_first = rows[0][1], rows[1][1], rows[3][1]
    checks = [(f"first push vs docker push: {first / docker_first:.2f}x (target <= 1.0)", first <= docker_first),
              (f"second push vs first: {second / first:.3f}x (target <= 0.1)", second <= 0.1 * first),
              (f"second push layer bytes: {rows[1][2]} (target 0)", rows[1][2] == 0 and rows[1][3] == 0)]
    for text, ok in checks:
        print(f"{text}: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
