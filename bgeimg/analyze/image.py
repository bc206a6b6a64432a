"""What an image source reads, as plain values, and the index walk every source with an index shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from bgeimg.analyze.errors import AnalyzeInputError
from bgeimg.analyze.layers import LayerScan
from bgeimg.oci.mediatypes import INDEX_TYPES, is_attestation
from bgeimg.oci.platform import host_platform, platform_matches, platform_str


@dataclass
class LayerData:
    """One layer: ids, compressed size where the source knows it, and its scan (None when not read)."""

    diff_id: str | None = None
    digest: str | None = None
    compressed_size: int | None = None
    media_type: str | None = None
    scan: LayerScan | None = None


@dataclass
class ImageData:
    """What a source read: enough to build the report without going back to the source."""

    ref: str
    source: str  # engine | archive | oci | registry
    platform: str
    config: dict
    config_digest: str | None = None
    manifest_digest: str | None = None
    layers: list[LayerData] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_platform(config: dict, want: str | None, what: str) -> str:
    have = platform_str(config)
    if want and not platform_matches(have, want):
        raise AnalyzeInputError(f"{what} is {have}, not {want}", "drop --platform or pick the image for that platform")
    return have


# ---- OCI index resolution (shared by layout directories, OCI archives and registries) ----------------------------

def pick_manifest(index: dict, read_json, want: str | None, what: str) -> tuple[dict, dict]:
    """Walk an index (and nested indexes) down to one image manifest descriptor for the wanted platform.
    Returns (descriptor, manifest). `read_json(descriptor)` fetches a blob as parsed JSON."""
    candidates: list[dict] = []

    def walk(idx: dict, depth: int) -> None:
        if depth > 8:
            raise AnalyzeInputError(f"{what}: indexes nested more than 8 deep")
        for desc in idx.get("manifests") or []:
            if not isinstance(desc, dict) or "digest" not in desc:
                raise AnalyzeInputError(f"{what}: malformed index (a manifest entry has no digest)")
            if is_attestation(desc):
                continue
            if desc.get("mediaType") in INDEX_TYPES:
                walk(read_json(desc), depth + 1)
            else:
                candidates.append(desc)

    walk(index, 0)
    if not candidates:
        raise AnalyzeInputError(f"{what}: the index lists no image manifest")
    with_platform = [d for d in candidates if d.get("platform")]
    if want:
        chosen = [d for d in with_platform if platform_matches(platform_str(d["platform"]), want)]
        if not chosen and len(candidates) == 1 and not with_platform:
            chosen = candidates  # no platform in the index: the config decides (checked by the caller)
    elif len(candidates) == 1:
        chosen = candidates
    else:
        chosen = [d for d in with_platform if platform_matches(platform_str(d["platform"]), host_platform())]
    if not chosen:
        avail = ", ".join(sorted({platform_str(d["platform"]) for d in with_platform})) or "none named"
        raise AnalyzeInputError(f"{what} has no image for {want or host_platform()} (it has: {avail})",
                                "pick one with --platform")
    desc = chosen[0]
    manifest = read_json(desc)
    if manifest.get("mediaType") in INDEX_TYPES or "layers" not in manifest or "config" not in manifest:
        raise AnalyzeInputError(f"{what}: malformed manifest {desc['digest']} (no config or layers)")
    return desc, manifest
