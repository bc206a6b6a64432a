"""A remote image, read without pulling: the manifest (an index narrowed to one platform) and the config only.

The HTTP side (auth from the docker config, bearer tokens, TLS, retries) is bgeimg.oci.registry's read API; this
module only turns its answers into an `ImageData` whose layers carry compressed sizes and no scan.
"""

from __future__ import annotations

import json

from bgeimg.analyze.errors import AnalyzeInputError
from bgeimg.analyze.image import ImageData, LayerData, check_platform, pick_manifest
from bgeimg.oci.mediatypes import INDEX_TYPES


def from_registry(ref: str, platform: str | None = None) -> ImageData:
    from bgeimg.oci import registry
    from bgeimg.oci.reference import parse_reference

    r = parse_reference(ref)
    what = f"{r.registry}/{r.repository}:{r.ref}" if not r.digest else f"{r.registry}/{r.repository}@{r.digest}"
    client = registry.RegistryClient(r.registry)

    def parsed(m) -> dict:
        try:
            body = json.loads(m.raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AnalyzeInputError(f"{what}: malformed manifest {m.digest} ({exc})") from None
        if not isinstance(body, dict):
            raise AnalyzeInputError(f"{what}: malformed manifest {m.digest} (not a JSON object)")
        return body

    top = client.get_manifest(r.repository, r.ref)
    body = parsed(top)
    manifest_digest = top.digest
    if top.media_type in INDEX_TYPES or "manifests" in body:
        desc, body = pick_manifest(body, lambda d: parsed(client.get_manifest(r.repository, d["digest"])),
                                   platform, what)
        manifest_digest = desc["digest"]
    cfg_desc = body.get("config")
    layers = body.get("layers")
    if not isinstance(cfg_desc, dict) or "digest" not in cfg_desc or not isinstance(layers, list):
        raise AnalyzeInputError(f"{what}: malformed manifest {manifest_digest} (no config or layers)",
                                "only image manifests and indexes (OCI or Docker v2) can be analysed")
    try:
        config = json.loads(client.get_blob(r.repository, cfg_desc["digest"]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnalyzeInputError(f"{what}: malformed image config ({exc})") from None
    plat = check_platform(config, platform, what)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    return ImageData(
        ref=ref, source="registry", platform=plat, config=config, config_digest=cfg_desc["digest"],
        manifest_digest=manifest_digest,
        layers=[LayerData(diff_id=diff_ids[i] if i < len(diff_ids) else None, digest=ld.get("digest"),
                          compressed_size=ld.get("size"), media_type=ld.get("mediaType"))
                for i, ld in enumerate(layers)])
