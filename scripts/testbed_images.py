#!/usr/bin/env python3
"""Push the test bed's stand-in base images to a local registry (stdlib only).

Used by scripts/testbed.sh. Takes one rootfs tarball per architecture (made by
debootstrap), turns each into a single gzipped layer, and pushes through the
registry HTTP API (distribution v2):

  library/python:3.11-slim                  (amd64 + arm64 manifest list)
  nvidia/cuda:12.4.1-runtime-ubuntu22.04    (amd64 + arm64 manifest list)

Each per-platform manifest has a real image config (architecture, os, variant,
rootfs.diff_ids, history, Env, Cmd, Labels) -- which `docker import` cannot write
for a foreign architecture.

Subcommands:
  push  --registry HOST:PORT --layer-cache DIR --rootfs ARCH=TAR [--rootfs ...]
  check --registry HOST:PORT [--arch A ...]  exit 0 when every stand-in tag has these architectures
                                 (default amd64 and arm64)
  list  --registry HOST:PORT     print repo:tag [platforms] for the whole registry
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join([MT_LIST, MT_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST])

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STANDIN_LABEL = "org.bgeimg.testbed.standin"
BUILT_BY = (
    "debootstrap --variant=minbase bookworm "
    "--include=python3,python3-venv,python-is-python3,ca-certificates "
    "(bgeimg test bed stand-in, not the real image)"
)

# repository -> (tag, extra env, labels)
IMAGES = {
    "library/python": (
        "3.11-slim",
        ["LANG=C.UTF-8"],
        {STANDIN_LABEL: "true", "org.bgeimg.testbed.standin.for": "python:3.11-slim"},
    ),
    "nvidia/cuda": (
        "12.4.1-runtime-ubuntu22.04",
        [
            "LANG=C.UTF-8",
            "CUDA_VERSION=12.4.1",
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
            "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
            "BGEIMG_TESTBED_STANDIN=true",
        ],
        {
            STANDIN_LABEL: "true",
            "org.bgeimg.testbed.standin.for": "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
            "maintainer": "bgeimg test bed (stand-in, no CUDA inside)",
        },
    ),
}

PLATFORMS = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}


def log(msg: str) -> None:
    print(f"testbed_images: {msg}", file=sys.stderr, flush=True)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- layers


def prepare_layer(rootfs_tar: str, cache_dir: str) -> dict:
    """gzip the rootfs tar deterministically (mtime 0, no name); cached by tar identity."""
    os.makedirs(cache_dir, exist_ok=True)
    st = os.stat(rootfs_tar)
    base = os.path.join(cache_dir, os.path.basename(rootfs_tar))
    meta_path = base + ".layer.json"
    gz_path = base + ".gz"
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if os.path.exists(meta_path) and os.path.exists(gz_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("source") == ident and os.path.getsize(gz_path) == meta["size"]:
            meta["path"] = gz_path
            return meta
    log(f"compressing {rootfs_tar}")
    t0 = time.time()
    h_raw = hashlib.sha256()
    tmp = f"{gz_path}.{os.getpid()}.tmp"  # per process: two concurrent `up`s must not write one file
    with open(rootfs_tar, "rb") as src, open(tmp, "wb") as raw_out:
        # filename="" and mtime=0 make the gzip header deterministic
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, compresslevel=6, mtime=0) as gz:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                h_raw.update(chunk)
                gz.write(chunk)
    h_gz = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h_gz.update(chunk)
    os.replace(tmp, gz_path)
    meta = {
        "source": ident,
        "diff_id": "sha256:" + h_raw.hexdigest(),
        "digest": "sha256:" + h_gz.hexdigest(),
        "size": os.path.getsize(gz_path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
    }
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    log(f"compressed to {meta['size'] / 1e6:.1f} MB in {time.time() - t0:.1f}s")
    meta["path"] = gz_path
    return meta


# --------------------------------------------------------------------------- registry


class Registry:
    def __init__(self, hostport: str):
        self.hostport = hostport

    def request(self, method, path, body=None, headers=None, length=None):
        conn = http.client.HTTPConnection(self.hostport, timeout=300)
        hdrs = dict(headers or {})
        if body is not None and length is not None:
            hdrs["Content-Length"] = str(length)
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.headers, data

    def blob_exists(self, repo: str, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return status == 200

    def upload_blob(self, repo: str, digest: str, *, data: bytes | None = None,
                    path: str | None = None, mount_from: list[str] = ()) -> None:
        if self.blob_exists(repo, digest):
            return
        for other in mount_from:
            if other != repo and self.blob_exists(other, digest):
                q = urllib.parse.urlencode({"mount": digest, "from": other})
                status, _, body = self.request("POST", f"/v2/{repo}/blobs/uploads/?{q}", b"", length=0)
                if status == 201:
                    return
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"", length=0)
        if status != 202:
            raise RuntimeError(f"start upload {repo}: HTTP {status} {body[:300]!r}")
        loc = headers["Location"]
        u = urllib.parse.urlsplit(loc)
        target = u.path + "?" + (u.query + "&" if u.query else "") + urllib.parse.urlencode({"digest": digest})
        hdrs = {"Content-Type": "application/octet-stream"}
        if path is not None:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                status, _, body = self.request("PUT", target, f, hdrs, length=size)
        else:
            status, _, body = self.request("PUT", target, data, hdrs, length=len(data))
        if status != 201:
            raise RuntimeError(f"upload {digest} to {repo}: HTTP {status} {body[:300]!r}")

    def put_manifest(self, repo: str, ref: str, media_type: str, data: bytes) -> None:
        status, _, body = self.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", data, {"Content-Type": media_type}, length=len(data)
        )
        if status != 201:
            raise RuntimeError(f"put manifest {repo}:{ref}: HTTP {status} {body[:300]!r}")

    def get_manifest(self, repo: str, ref: str, method="GET"):
        status, headers, body = self.request(method, f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        if status != 200:
            return None, None
        return headers.get("Content-Type"), body

    def catalog(self) -> list[str]:
        status, _, body = self.request("GET", "/v2/_catalog?n=1000")
        if status != 200:
            raise RuntimeError(f"catalog: HTTP {status}")
        return json.loads(body).get("repositories") or []

    def tags(self, repo: str) -> list[str]:
        status, _, body = self.request("GET", f"/v2/{repo}/tags/list")
        if status != 200:
            return []
        return json.loads(body).get("tags") or []


# --------------------------------------------------------------------------- commands


def make_config(arch: str, layer: dict, env_extra: list[str], labels: dict) -> dict:
    plat = PLATFORMS[arch]
    created = layer["created"]
    cfg = {
        "Env": [PATH_ENV] + env_extra,
        "Cmd": ["python3"],
        "Labels": labels,
    }
    config = {
        "architecture": plat["architecture"],
        "os": plat["os"],
        "created": created,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"]]},
        "history": [
            {"created": created, "created_by": BUILT_BY, "comment": "bgeimg test bed"},
            {"created": created, "created_by": "ENV " + " ".join(cfg["Env"]), "empty_layer": True},
            {"created": created, "created_by": 'CMD ["python3"]', "empty_layer": True},
        ],
    }
    if "variant" in plat:
        config["variant"] = plat["variant"]
    return config


def cmd_push(args) -> int:
    reg = Registry(args.registry)
    tars = {}
    for spec in args.rootfs:
        arch, _, tar = spec.partition("=")
        if arch not in PLATFORMS or not tar:
            raise SystemExit(f"bad --rootfs {spec!r} (want amd64=PATH or arm64=PATH)")
        tars[arch] = tar
    # zlib releases the GIL: compress the architectures in parallel
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(tars)) as pool:
        futs = {arch: pool.submit(prepare_layer, tar, args.layer_cache) for arch, tar in tars.items()}
        layers = {arch: f.result() for arch, f in futs.items()}
    repos = list(IMAGES)
    for repo, (tag, env_extra, labels) in IMAGES.items():
        entries = []
        for arch in sorted(layers):
            layer = layers[arch]
            t0 = time.time()
            reg.upload_blob(repo, layer["digest"], path=layer["path"], mount_from=repos)
            config = canonical(make_config(arch, layer, env_extra, labels))
            cdig = sha256_digest(config)
            reg.upload_blob(repo, cdig, data=config)
            manifest = canonical({
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "size": len(config), "digest": cdig},
                "layers": [{"mediaType": MT_LAYER, "size": layer["size"], "digest": layer["digest"]}],
            })
            mdig = sha256_digest(manifest)
            reg.put_manifest(repo, mdig, MT_MANIFEST, manifest)
            entries.append({
                "mediaType": MT_MANIFEST,
                "size": len(manifest),
                "digest": mdig,
                "platform": dict(PLATFORMS[arch]),
            })
            log(f"pushed {repo}@{mdig[:19]} ({arch}) in {time.time() - t0:.1f}s")
        index = canonical({"schemaVersion": 2, "mediaType": MT_LIST, "manifests": entries})
        reg.put_manifest(repo, tag, MT_LIST, index)
        log(f"tagged {args.registry}/{repo}:{tag} [{', '.join(sorted(layers))}]")
    return 0


def describe(reg: Registry, repo: str, tag: str) -> str | None:
    ctype, body = reg.get_manifest(repo, tag)
    if body is None:
        return None
    doc = json.loads(body)
    if ctype in (MT_LIST, MT_OCI_INDEX) or "manifests" in doc:
        plats = []
        for m in doc.get("manifests", []):
            p = m.get("platform", {})
            plats.append(p.get("os", "?") + "/" + p.get("architecture", "?") + ("/" + p["variant"] if p.get("variant") else ""))
        return ", ".join(plats)
    return "single manifest"


def cmd_check(args) -> int:
    reg = Registry(args.registry)
    ok = True
    for repo, (tag, _, _) in IMAGES.items():
        desc = describe(reg, repo, tag)
        want = {"linux/" + "/".join(filter(None, (PLATFORMS[a]["architecture"], PLATFORMS[a].get("variant"))))
                for a in (args.arch or PLATFORMS)}
        have = set((desc or "").split(", "))
        if not want <= have:
            ok = False
            if not args.quiet:
                log(f"missing or incomplete: {repo}:{tag} ({desc})")
    return 0 if ok else 1


def cmd_list(args) -> int:
    reg = Registry(args.registry)
    for repo in sorted(reg.catalog()):
        for tag in sorted(reg.tags(repo)):
            print(f"  {args.registry}/{repo}:{tag}  [{describe(reg, repo, tag)}]")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("push")
    sp.add_argument("--registry", required=True)
    sp.add_argument("--layer-cache", required=True)
    sp.add_argument("--rootfs", action="append", required=True, metavar="ARCH=TAR")
    sc = sub.add_parser("check")
    sc.add_argument("--registry", required=True)
    sc.add_argument("--quiet", action="store_true")
    sc.add_argument("--arch", action="append", choices=sorted(PLATFORMS))
    sl = sub.add_parser("list")
    sl.add_argument("--registry", required=True)
    args = p.parse_args(argv)
    try:
        return {"push": cmd_push, "check": cmd_check, "list": cmd_list}[args.cmd](args)
    except (OSError, RuntimeError, http.client.HTTPException) as e:
        log(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
