"""Hand-built image archives for the analyze tests, written with Python's tarfile so every expected byte count
comes from what the test wrote (no fixtures checked in, nothing hard-coded)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.oci.zstd import compress as zstd_compress


def _info(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 1700000000
    return ti


@dataclass
class Layer:
    """Entries: ("file", path, bytes) ("dir", path) ("symlink", path, target) ("hardlink", path, target)
    ("whiteout", path) ("opaque", dir). Paths are written without a leading slash, as engines do."""

    entries: list[tuple]
    compression: str = "none"  # none | gzip | zstd
    fmt: int = tarfile.PAX_FORMAT  # or GNU_FORMAT (long names as ././@LongLink entries)
    tar: bytes = b""
    blob: bytes = b""

    def __post_init__(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=self.fmt) as tf:
            for kind, path, *rest in self.entries:
                path = path.lstrip("/")
                if kind == "file":
                    tf.addfile(_info(path, tarfile.REGTYPE, len(rest[0])), io.BytesIO(rest[0]))
                elif kind == "dir":
                    tf.addfile(_info(path, tarfile.DIRTYPE))
                elif kind == "fifo":
                    tf.addfile(_info(path, tarfile.FIFOTYPE))
                elif kind in ("symlink", "hardlink"):
                    ti = _info(path, tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE)
                    ti.linkname = rest[0]
                    tf.addfile(ti)
                elif kind == "whiteout":
                    d, _, base = path.rpartition("/")
                    tf.addfile(_info(f"{d}/.wh.{base}" if d else f".wh.{base}", tarfile.REGTYPE))
                elif kind == "opaque":
                    tf.addfile(_info(f"{path}/.wh..wh..opq", tarfile.REGTYPE))
        self.tar = buf.getvalue()
        if self.compression == "gzip":
            self.blob = gzip.compress(self.tar, mtime=0)
        elif self.compression == "zstd":
            self.blob = zstd_compress(self.tar)
        else:
            self.blob = self.tar

    @property
    def size(self) -> int:
        """What the engine (and bgeimg) counts: file bytes plus symlink target lengths."""
        total = 0
        for kind, _path, *rest in self.entries:
            if kind == "file":
                total += len(rest[0])
            elif kind == "symlink":
                total += len(rest[0].encode())
        return total

    @property
    def diff_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.tar).hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()


@dataclass
class Image:
    layers: list[Layer]
    history: list[dict] | None = None  # None: one history entry per layer; []: no history at all
    arch: str = "amd64"
    labels: dict = field(default_factory=dict)
    env: list[str] = field(default_factory=list)
    cmd: list[str] | None = None

    def config(self) -> bytes:
        history = self.history
        if history is None:
            history = [{"created_by": f"/bin/sh -c #(nop) COPY file:{i} in /"} for i in range(len(self.layers))]
        cfg = {"architecture": self.arch, "os": "linux",
               "config": {"Labels": self.labels or None, "Env": self.env or None,
                          **({"Cmd": self.cmd} if self.cmd else {})},
               "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]}}
        if history:
            cfg["history"] = history
        return json.dumps(cfg, sort_keys=True).encode()

    def config_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config()).hexdigest()

    def manifest(self) -> bytes:
        types = {"none": "application/vnd.oci.image.layer.v1.tar",
                 "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
        return json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.config_digest(),
                       "size": len(self.config())},
            "layers": [{"mediaType": types[layer.compression], "digest": layer.digest, "size": len(layer.blob)}
                       for layer in self.layers],
        }).encode()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    tf.addfile(_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


def write_legacy_save(path: Path, image: Image, tag: str = "bgeimg-test-analyze/hand:1") -> Path:
    """The `docker save` layout of Docker <= 24: <id>/layer.tar, <config>.json, manifest.json LAST."""
    cfg_hex = image.config_digest().split(":")[1]
    names = []
    with tarfile.open(path, "w") as tf:
        for i, layer in enumerate(image.layers):
            lid = hashlib.sha256(f"{cfg_hex}{i}".encode()).hexdigest()
            tf.addfile(_info(lid, tarfile.DIRTYPE))
            _add(tf, f"{lid}/VERSION", b"1.0")
            _add(tf, f"{lid}/json", json.dumps({"id": lid}).encode())
            _add(tf, f"{lid}/layer.tar", layer.blob)
            names.append(f"{lid}/layer.tar")
        _add(tf, f"{cfg_hex}.json", image.config())
        _add(tf, "manifest.json", json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": [tag],
                                               "Layers": names}]).encode())
        _add(tf, "repositories", json.dumps({tag.split(":")[0]: {tag.split(":")[1]: names[-1][:64]}}).encode())
    return path


def _blob(tf: tarfile.TarFile, data: bytes, seen: set) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    if hexd not in seen:
        seen.add(hexd)
        _add(tf, f"blobs/sha256/{hexd}", data)
    return f"blobs/sha256/{hexd}"


def write_oci_save(path: Path, image: Image, tag: str = "bgeimg-test-analyze/hand:1",
                   docker_manifest: bool = True) -> Path:
    """The `docker save` layout of Docker >= 25: an OCI layout (blobs first) plus manifest.json; without
    `docker_manifest`, a plain OCI archive (as `buildx --output type=oci` writes)."""
    seen: set = set()
    with tarfile.open(path, "w") as tf:
        layer_names = [_blob(tf, layer.blob, seen) for layer in image.layers]
        cfg = _blob(tf, image.config(), seen)
        man = image.manifest()
        _blob(tf, man, seen)
        _add(tf, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(tf, "index.json", json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(man).hexdigest(), "size": len(man)}]}).encode())
        if docker_manifest:
            _add(tf, "manifest.json", json.dumps([{"Config": cfg, "RepoTags": [tag],
                                                   "Layers": layer_names}]).encode())
    return path


def write_oci_dir(root: Path, images: dict[str, Image], nested: bool = True, attestation: bool = True) -> Path:
    """An OCI image layout directory. With `nested`, index.json points to an inner index that lists one
    manifest per platform (plus an `unknown/unknown` attestation manifest, as BuildKit writes)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> dict:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return {"digest": f"sha256:{hexd}", "size": len(data)}

    entries = []
    for plat, image in images.items():
        for layer in image.layers:
            put(layer.blob)
        put(image.config())
        os_, arch = plat.split("/")[:2]
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(image.manifest()),
                        "platform": {"os": os_, "architecture": arch}})
    if attestation:
        att = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.empty.v1+json", **put(b"{}")},
                          "layers": []}).encode()
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(att),
                        "platform": {"os": "unknown", "architecture": "unknown"},
                        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    if nested:
        inner = json.dumps(index).encode()
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", **put(inner)}]}
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root
