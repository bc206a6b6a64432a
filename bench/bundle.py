"""Bundle size and time for two images sharing a base: the OCI-layout bundle against the first format (one
`docker save` per image in the same zstd tar), side by side in one run.

    python bench/bundle.py [--payload-mb 50]     # needs the test bed (scripts/testbed.sh up)

Each image is the stand-in python:3.11-slim plus a layer of its own (mixed random and text, as in
bench/push.py). The first format is rebuilt here exactly as `bundle save` wrote it before (zstd level 3).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from push import build  # noqa: E402

from bgeimg.oci.zstd import CompressionParameter, ZstdFile  # noqa: E402
from bgeimg.operate import bundle  # noqa: E402


def first_format(api, refs: list[str], output: Path) -> None:
    """`bundle save` before the OCI layout: a manifest, then one docker save per image."""
    with tempfile.TemporaryDirectory() as work:
        members = []
        for i, ref in enumerate(refs):
            path = Path(work) / f"{i}.tar"
            with path.open("wb") as fh:
                for chunk in api.get_image(ref):
                    fh.write(chunk)
            members.append({"refs": [ref], "file": f"images/{i}.tar", "size": path.stat().st_size})
        manifest = json.dumps({"format": "bgeimg-bundle/1", "images": members}).encode()
        level = {CompressionParameter.compression_level: 3, CompressionParameter.nb_workers: os.cpu_count() or 1}
        with output.open("wb") as raw, ZstdFile(raw, "w", options=level) as zst, \
                tarfile.open(fileobj=zst, mode="w|") as tar:
            info = tarfile.TarInfo("manifest.json")
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
            for m in members:
                tar.add(Path(work) / Path(m["file"]).name, arcname=m["file"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payload-mb", type=int, default=50, help="each image's own layer")
    args = parser.parse_args()
    api = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), timeout=900)
    refs = [f"bgeimg-bench/bundle-{uuid.uuid4().hex[:6]}:{n}" for n in ("a", "b")]
    for ref in refs:
        build(ref, args.payload_mb, 1)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as out:
            for label, write in (("first format (docker save each)", lambda p: first_format(api, refs, p)),
                                 ("OCI layout (each blob once)", lambda p: bundle.save(api, refs, p))):
                path = Path(out) / "site.tar.zst"
                start = time.monotonic()
                write(path)
                rows.append((label, path.stat().st_size, time.monotonic() - start))
                path.unlink()
    finally:
        for ref in refs:
            api.remove_image(ref, force=True)
    print(f"two images: stand-in python:3.11-slim + {args.payload_mb} MB of their own each")
    print(f"{'bundle':<34}{'bytes':>14}{'seconds':>9}")
    for label, size, seconds in rows:
        print(f"{label:<34}{size:>14,}{seconds:>9.1f}")
    print(f"OCI layout / first format: {rows[1][1] / rows[0][1]:.2f}x the bytes, {rows[1][2] / rows[0][2]:.2f}x the time")


if __name__ == "__main__":
    main()
