"""What a multi-platform build produced, read back from where it went: a registry (`--push`) or the engine's
containerd image store (`--load`). Gives the build report its per-platform manifest digest, size and layer count,
and the index digest with the attestation manifests it holds.

Sizes here are the manifest's: config plus layer blobs as stored (compressed), since that is all a registry or an
OCI layout knows without unpacking.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Callable

from bgeimg.oci.mediatypes import INDEX_TYPES, is_attestation
from bgeimg.oci.platform import platform_str as platform_of

_SMALL = 4 << 20  # manifests, indexes and configs are far below this; layers are skipped


@dataclass
class PlatformManifest:
    """One platform's image manifest in an index."""

    platform: str
    digest: str
    size: int  # config + layers as stored (compressed)
    layers: int
    architecture: str


@dataclass
class Attestation:
    """An attestation manifest (provenance, SBOM) and the image manifest it describes."""

    digest: str
    describes: str
    kinds: list[str] = field(default_factory=list)  # in-toto predicate types of its layers


@dataclass
class IndexInfo:
    digest: str
    media_type: str
    images: list[PlatformManifest]
    attestations: list[Attestation]


def describe(digest: str, media_type: str, doc: dict, read_json: Callable[[str], dict],
             read_config: Callable[[str], dict] | None = None) -> IndexInfo:
    """The index (or single manifest) `doc` with digest `digest`; `read_json(digest)` fetches a manifest,
    `read_config(digest)` a config blob (default: read_json)."""
    read_config = read_config or read_json
    if media_type not in INDEX_TYPES and "manifests" not in doc:
        return IndexInfo(digest, media_type, [_image(digest, doc, None, read_config)], [])
    images, attestations = [], []
    for desc in doc.get("manifests") or []:
        if is_attestation(desc):
            manifest = read_json(desc["digest"])
            kinds = [(layer.get("annotations") or {}).get("in-toto.io/predicate-type", "")
                     for layer in manifest.get("layers") or []]
            attestations.append(Attestation(desc["digest"],
                                            (desc.get("annotations") or {}).get("vnd.docker.reference.digest", ""),
                                            [k for k in kinds if k]))
        else:
            images.append(_image(desc["digest"], read_json(desc["digest"]), desc.get("platform"), read_config))
    return IndexInfo(digest, media_type, images, attestations)


def _image(digest: str, manifest: dict, platform: dict | None, read_config) -> PlatformManifest:
    config = manifest.get("config") or {}
    layers = manifest.get("layers") or []
    cfg = read_config(config["digest"]) if config.get("digest") else {}
    plat = platform_of(platform) if platform else platform_of(cfg)
    return PlatformManifest(platform=plat, digest=digest, size=int(config.get("size") or 0) +
                            sum(int(layer.get("size") or 0) for layer in layers), layers=len(layers),
                            architecture=cfg.get("architecture", ""))


def from_registry(client, repository: str, ref: str) -> IndexInfo:
    """The index (or manifest) `repository:ref` as the registry holds it."""
    top = client.get_manifest(repository, ref)
    return describe(top.digest, top.media_type, top.json, lambda d: client.get_manifest(repository, d).json,
                    lambda d: json.loads(client.get_blob(repository, d)))


def from_engine(docker_api, ref: str) -> IndexInfo:
    """The image `ref` in a containerd image store, from the OCI layout `docker save` streams (layer blobs are
    read past, not kept)."""
    from bgeimg.oci.streams import CHUNK, ChunkStream

    stream = io.BufferedReader(ChunkStream(docker_api.get_image(ref, chunk_size=CHUNK)), CHUNK)
    blobs: dict[str, bytes] = {}
    index_json = None
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name == "index.json":
                index_json = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
            elif member.name.startswith("blobs/sha256/") and member.size <= _SMALL:
                blobs["sha256:" + member.name.rsplit("/", 1)[1]] = tar.extractfile(member).read()  # type: ignore
    if index_json is None:
        raise ValueError(f"docker save {ref} gave no OCI layout (index.json): not a containerd image store")
    top = (index_json.get("manifests") or [{}])[0]

    def read_json(digest: str) -> dict:
        return json.loads(blobs[digest])

    return describe(top["digest"], top.get("mediaType", ""), read_json(top["digest"]), read_json)
