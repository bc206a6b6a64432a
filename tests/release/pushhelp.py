"""Registry checks of the push tests, made with plain urllib so they do not trust bgeimg's own client."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def fetch(host: str, path: str, accept: str = ACCEPT, method: str = "GET"):
    req = urllib.request.Request(f"http://{host}{path}", headers={"Accept": accept}, method=method)
    return urllib.request.urlopen(req, timeout=10)


def has_manifest(host: str, repo: str, ref: str) -> bool:
    try:
        fetch(host, f"/v2/{repo}/manifests/{ref}", method="HEAD")
        return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def manifest(host: str, repo: str, ref: str) -> tuple[str, dict]:
    with fetch(host, f"/v2/{repo}/manifests/{ref}") as r:
        return r.headers["Docker-Content-Digest"], json.loads(r.read())


def config_of(host: str, repo: str, digest: str) -> dict:
    _, body = manifest(host, repo, digest)
    with fetch(host, f"/v2/{repo}/blobs/{body['config']['digest']}", accept="*/*") as r:
        return json.loads(r.read())


def bgeimg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True, env=env)
