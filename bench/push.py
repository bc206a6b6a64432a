"""Bytes uploaded by a first push, a second push of the same image, and a promote, side by side in one run.

    python bench/push.py [--payload-mb 50]     # needs the test bed (scripts/testbed.sh up)

Targets: the second push and the promote upload no layer bytes (blobs are found by HEAD; promote only puts a
manifest). A fresh registry of its own is started so the first push really uploads everything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "push"))

from conftest import build_tiny, make_registry  # noqa: E402

from bgeimg.oci.reference import parse_reference  # noqa: E402
from bgeimg.oci.registry import RegistryClient  # noqa: E402
from bgeimg.release import promote as promoting  # noqa: E402
from bgeimg.release import push as pushing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payload-mb", type=int, default=50, help="size of the image's own random layer")
    args = parser.parse_args()
    api = docker.APIClient(base_url="unix:///var/run/docker.sock", timeout=900)
    name = f"bgeimg-bench/push-{uuid.uuid4().hex[:6]}"
    local = f"{name}:1-amd64"
    build_tiny(api, local, "linux/amd64", payload_kb=args.payload_mb * 1024)
    registry = make_registry(Path(tempfile.mkdtemp(prefix="bgeimg-bench-push-")))
    rows = []
    try:
        for label, tags in (("first push", ["1.0.0"]), ("second push, same image", ["1.0.0", "again"])):
            start = time.monotonic()
            result = pushing.push(api, [local], [pushing.target(registry.host, name)], tags)[0]
            assert result.ok, result.error
            rows.append((label, result.stats.blob_bytes_uploaded, result.stats.blobs_uploaded,
                         result.stats.manifest_bytes_uploaded, time.monotonic() - start))
        client = RegistryClient(registry.host)
        start = time.monotonic()
        promoting.promote(client, parse_reference(f"{registry.host}/{name}:1.0.0"), "stable")
        rows.append(("promote to stable", client.stats.blob_bytes_uploaded, client.stats.blobs_uploaded,
                     client.stats.manifest_bytes_uploaded, time.monotonic() - start))
    finally:
        registry.stop()
        api.remove_image(local, force=True)
    print(f"{'step':<26}{'layer bytes':>14}{'blobs':>7}{'manifest bytes':>16}{'seconds':>9}")
    for label, blob_bytes, blobs, manifest_bytes, seconds in rows:
        print(f"{label:<26}{blob_bytes:>14}{blobs:>7}{manifest_bytes:>16}{seconds:>9.2f}")
    first = rows[0][1]
    later = rows[1][1] + rows[2][1]
    print(f"second push + promote upload {later} layer bytes vs {first} for the first push: "
          f"{'PASS' if later == 0 and first > 0 else 'FAIL'}")


if __name__ == "__main__":
    main()
