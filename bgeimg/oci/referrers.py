"""OCI referrers (image-spec / distribution-spec 1.1): an artifact (an SBOM) attached to an image by `subject`.

A registry with the referrers API indexes a manifest that has a `subject` itself and says so with an `OCI-Subject`
header on the PUT. One without it (distribution 2.8, Debian's docker-registry) gets the spec's tag fallback
scheme: an image index under the tag `sha256-<hex of the subject digest>` lists the referrers, and the client
that attaches updates it. Reading asks `/v2/<repo>/referrers/<digest>` first and falls back to that tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from bgeimg.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from bgeimg.oci.registry import Manifest, NotFoundError, RegistryClient, sha256_digest

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


@dataclass(frozen=True)
class Attached:
    digest: str  # the artifact manifest's digest
    fallback_tag: str | None  # the tag-scheme index it was listed in (None: the registry indexes referrers)


def fallback_tag(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    return f"{alg}-{hexpart}"


def attach(client: RegistryClient, repo: str, subject: Manifest, artifact_type: str, data: bytes,
           annotations: dict[str, str] | None = None) -> Attached:
    """Upload `data` as a one-layer artifact whose subject is `subject`; list it in the fallback index when the
    registry does not index referrers itself."""
    for blob in (EMPTY, data):
        if client.blob_exists(repo, sha256_digest(blob)) is None:
            client.upload_blob(repo, sha256_digest(blob), blob)
    notes = {"org.opencontainers.image.created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             **(annotations or {})}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY), "size": len(EMPTY)},
        "layers": [{"mediaType": artifact_type, "digest": sha256_digest(data), "size": len(data)}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": notes,
    }, separators=(",", ":")).encode()
    digest, headers = client.put_manifest_with_headers(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
    if headers.get("OCI-Subject") == subject.digest:
        return Attached(digest=digest, fallback_tag=None)
    tag = fallback_tag(subject.digest)
    try:
        index = client.get_manifest(repo, tag).json
    except NotFoundError:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    entries = [d for d in index.get("manifests", []) if d.get("digest") != digest]
    entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                    "artifactType": artifact_type, "annotations": notes})
    index["manifests"] = entries
    client.put_manifest(repo, tag, json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)
    return Attached(digest=digest, fallback_tag=tag)


def referrers(client: RegistryClient, repo: str, digest: str, artifact_type: str | None = None) -> list[dict]:
    """Descriptors of the artifacts that name `digest` as their subject, oldest first."""
    found = client.get_referrers(repo, digest)
    if found is None:  # no referrers API: the tag fallback scheme
        try:
            found = client.get_manifest(repo, fallback_tag(digest)).json.get("manifests", [])
        except NotFoundError:
            found = []
    return [d for d in found if artifact_type is None or d.get("artifactType") == artifact_type]
