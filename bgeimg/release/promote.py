"""Promote and roll back by digest, and list tags: registry API only, no layer is pulled or pushed.

`promote REPO@sha256:... --tag stable` puts the exact manifest bytes under a new tag (so the digest is the same);
into another repository of the same registry, blobs are mounted, not copied. A rollback is a promote of the
previous digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bgeimg.errors import BgeimgError
from bgeimg.oci.mediatypes import is_attestation
from bgeimg.oci.platform import platform_str
from bgeimg.oci.reference import Reference, check_repository, check_tag, parse_reference
from bgeimg.oci.registry import RegistryClient, RegistryError


@dataclass
class Promoted:
    reference: str  # registry/repo:tag
    digest: str
    mounted: int = 0


@dataclass
class TagInfo:
    tag: str
    digest: str
    created: str | None
    platforms: list[str]


def promote(client: RegistryClient, source: Reference, tag: str, to_repository: str | None = None) -> Promoted:
    check_tag(tag)
    dest = check_repository(to_repository) if to_repository else source.repository
    top = client.get_manifest(source.repository, source.ref)
    children = [client.get_manifest(source.repository, d["digest"]) for d in top.json.get("manifests", [])]
    mounted = 0
    if dest != source.repository:
        for manifest in children or [top]:
            body = manifest.json
            for blob in [body["config"], *body.get("layers", [])]:
                if client.blob_exists(dest, blob["digest"]) is not None:
                    continue
                if not client.mount_blob(dest, blob["digest"], source.repository):
                    raise RegistryError(f"{client.host} declined to mount {blob['digest']} from {source.repository}",
                                        "promote within one repository, or push the image to the target instead")
                mounted += 1
            if manifest is not top:
                client.put_manifest(dest, manifest.digest, manifest.raw, manifest.media_type)
    digest = client.put_manifest(dest, tag, top.raw, top.media_type)
    return Promoted(reference=f"{client.host}/{dest}:{tag}", digest=digest, mounted=mounted)


def list_tags(client: RegistryClient, repository: str) -> list[TagInfo]:
    """Each tag with its digest, platforms and `org.opencontainers.image.created` (from the first platform)."""
    rows = []
    for tag in sorted(client.list_tags(repository)):
        top = client.get_manifest(repository, tag)
        manifests = [client.get_manifest(repository, d["digest"]) for d in top.json.get("manifests", [])
                     if not is_attestation(d)] or [top]
        platforms = []
        created = None
        for m in manifests:
            data = json.loads(client.get_blob(repository, m.json["config"]["digest"]))
            platforms.append(platform_str(data))
            labels = (data.get("config") or {}).get("Labels") or {}
            created = created or labels.get("org.opencontainers.image.created") or data.get("created")
        rows.append(TagInfo(tag=tag, digest=top.digest, created=created, platforms=platforms))
    return rows


def promote_ref(source: str, tag: str, to_repository: str | None = None, require_signature=None) -> Promoted:
    """`bgeimg promote SOURCE --tag TAG [--to REPO] [--require-signature]`: parse, then promote on SOURCE's
    registry. With `require_signature` (a sign.KeySpec) the source must verify first, and the digest that verified
    is what gets promoted, so a tag moved in between cannot slip through."""
    ref = parse_reference(source)
    client = RegistryClient(ref.registry)
    if require_signature is not None:
        from bgeimg.release import sign

        checked = sign.verify(client, ref, require_signature)
        ref = Reference(ref.registry, ref.repository, None, checked.digest)
    return promote(client, ref, tag, to_repository)


def list_repository(repository: str) -> list[TagInfo]:
    """`bgeimg tags REGISTRY/REPO`."""
    if "/" not in repository.strip("/"):  # `127.0.0.1:5077` alone would read as Docker Hub's library/127.0.0.1
        raise BgeimgError(f"{repository!r} names no repository", "give REGISTRY/REPO, e.g. 127.0.0.1:5000/bge-m3")
    ref = parse_reference(repository)
    return list_tags(RegistryClient(ref.registry), ref.repository)
