"""An OCI image layout made from one `docker save` stream: every blob stored once under `blobs/sha256/`, one
`index.json` naming each image and platform, and docker's own `manifest.json` beside it, so the same directory
(or a tar of it) is read by `docker load` (old engines read manifest.json, new ones index.json), by skopeo
(`oci-archive:`) and by any OCI tool.

    oci-layout, index.json, manifest.json, blobs/sha256/<hex>   (configs, layers as the engine saved them, manifests)
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bgeimg.errors import OutsideError
from bgeimg.oci.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, oci_layer_type
from bgeimg.oci.platform import platform_str
from bgeimg.oci.streams import Counting

BLOCK = 1 << 20
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"  # what skopeo's oci-archive:FILE:NAME selects by
CONTAINERD_NAME = "io.containerd.image.name"  # what containerd (docker 26's image store) tags an import with


@dataclass
class LayoutImage:
    ref: str
    platform: str
    manifest: str  # digest of its OCI manifest blob
    size: int  # bytes of its blobs (config, layers, manifest)


def _compact(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class _Blobs:
    """blobs/sha256/ under a directory: each written once, named by the sha256 of its bytes."""

    def __init__(self, root: Path):
        self.dir = root / "blobs" / "sha256"
        self.dir.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.dir / digest[7:]
        if not path.exists():
            path.write_bytes(data)
        return digest

    def put_stream(self, fh, tmp_name: str) -> tuple[str, int, bytes]:
        """Copy a stream in, hashing it; (digest, size, first bytes). A blob already there is not kept twice."""
        digest, size, head = hashlib.sha256(), 0, b""
        tmp = self.dir / f".{tmp_name}.partial"
        with tmp.open("wb") as out:
            for block in iter(lambda: fh.read(BLOCK), b""):
                head = head or block[:8]
                digest.update(block)
                size += len(block)
                out.write(block)
        name = "sha256:" + digest.hexdigest()
        if (self.dir / name[7:]).exists():
            tmp.unlink()
        else:
            os.replace(tmp, self.dir / name[7:])
        return name, size, head

    def size(self, digest: str) -> int:
        return (self.dir / digest[7:]).stat().st_size


def from_docker_save(stream, root: Path, advance: Callable[[int], None] | None = None,
                     order: list[str] | None = None) -> list[LayoutImage]:
    """Read a `docker save` tar stream (legacy or OCI-style) into an OCI image layout at `root`. `order`: the refs
    as the user named them, which the index keeps (docker save lists images in an order of its own)."""
    blobs = _Blobs(root)
    small: dict[str, bytes] = {}  # JSON members: configs, docker's manifest.json
    stored: dict[str, tuple[str, int, bytes]] = {}  # member name -> (digest, size, head)
    links: dict[str, str] = {}  # a save links a layer shared inside it to its first copy
    counted = Counting(stream, advance) if advance else stream
    try:
        with tarfile.open(fileobj=counted, mode="r|", bufsize=BLOCK) as tar:  # type: ignore[call-overload]
            for member in tar:
                if member.issym() or member.islnk():
                    base = posixpath.dirname(member.name) if member.issym() else ""
                    links[member.name] = posixpath.normpath(posixpath.join(base, member.linkname))
                    continue
                if not member.isfile():
                    continue
                fh = tar.extractfile(member)
                name = member.name
                if name.endswith(".json") and not name.startswith("blobs/"):
                    small[name] = fh.read()  # docker's manifest.json, a legacy save's <id>.json config
                elif name.endswith("layer.tar") or name.startswith("blobs/"):
                    if member.size < (4 << 20):
                        data = fh.read()
                        if name.startswith("blobs/") and data[:1] == b"{":  # a config or manifest, not a layer
                            small[name] = data
                            continue
                        stored[name] = (blobs.put(data), len(data), data[:8])
                    else:
                        stored[name] = blobs.put_stream(fh, f"{len(stored)}")
    except (tarfile.TarError, OSError) as exc:
        raise OutsideError(f"docker save broke off ({type(exc).__name__}: {str(exc)[:100]})",
                           "is the engine healthy?") from None
    if "manifest.json" not in small:
        raise OutsideError("docker save gave no manifest.json", "is the engine healthy?")
    images = []
    for entry in json.loads(small["manifest.json"]):
        config = small[entry["Config"]]
        config_digest = blobs.put(config)
        layers: list[dict] = []
        for name in entry["Layers"]:
            name = links.get(name, name)
            if name not in stored:
                raise OutsideError(f"docker save has no layer {name}", "is the engine healthy?")
            digest, size, head = stored[name]
            layers.append({"mediaType": oci_layer_type(head), "digest": digest, "size": size})
        manifest = _compact({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                             "layers": layers})
        manifest_digest = blobs.put(manifest)
        plat = json.loads(config)
        total = len(config) + len(manifest) + sum(int(layer["size"]) for layer in layers)
        for ref in entry.get("RepoTags") or [None]:
            images.append(LayoutImage(ref=ref or "", platform=platform_str(plat), manifest=manifest_digest,
                                      size=total))
    if order:
        images.sort(key=lambda i: order.index(i.ref) if i.ref in order else len(order))
    _write_index(root, blobs, images)
    return images


def _write_index(root: Path, blobs: _Blobs, images: list[LayoutImage]) -> None:
    """index.json (OCI) and manifest.json (docker load) over the images; oci-layout."""
    entries, docker = [], []
    for image in images:
        os_, arch, *variant = image.platform.split("/")
        platform = {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}
        annotations = {REF_NAME: image.ref, CONTAINERD_NAME: _full_name(image.ref)} if image.ref else {}
        entries.append({"mediaType": OCI_MANIFEST, "digest": image.manifest, "size": blobs.size(image.manifest),
                        "platform": platform, **({"annotations": annotations} if annotations else {})})
        manifest = json.loads((blobs.dir / image.manifest[7:]).read_bytes())
        docker.append({"Config": f"blobs/sha256/{manifest['config']['digest'][7:]}",
                       "RepoTags": [image.ref] if image.ref else [],
                       "Layers": [f"blobs/sha256/{layer['digest'][7:]}" for layer in manifest["layers"]]})
    (root / "oci-layout").write_bytes(LAYOUT)
    (root / "index.json").write_bytes(_compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    (root / "manifest.json").write_bytes(_compact(docker))


def _full_name(ref: str) -> str:
    """containerd wants a fully qualified name: `bge:1` -> `docker.io/library/bge:1`, as docker names it."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def files(root: Path) -> list[str]:
    """The layout's files, metadata first, in the order a tar of it should carry them."""
    blobs = sorted(p.name for p in (root / "blobs" / "sha256").iterdir() if not p.name.startswith("."))
    return ["oci-layout", "index.json", "manifest.json", *(f"blobs/sha256/{b}" for b in blobs)]


