"""A remote image, read without pulling: the manifest (an index narrowed to one platform), the config, and each
layer streamed once from the registry into the layer scanner. No daemon and no disk copy: a layer's bytes pass
through the digest check, the decompressor and the tar walk, and only the scan is kept.

The HTTP side (auth from the docker config, bearer tokens, TLS, retries) is bgeimg.oci.registry's read API. A blob
is verified against its digest as it streams (`iter_blob`) and the uncompressed tar against the diff_id the config
names, as `docker pull` does; either mismatch is an outside failure (exit 3). Layers already in the cache
(bgeimg.analyze.cache) are not downloaded at all.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from bgeimg.analyze.cache import LayerCache
from bgeimg.analyze.errors import AnalyzeInputError, SourceUnavailable
from bgeimg.analyze.image import ImageData, LayerData, check_platform, pick_manifest
from bgeimg.analyze.layers import LayerScan, scan_chunks
from bgeimg.oci.mediatypes import INDEX_TYPES

STREAM_CHUNK = 1 << 19  # half a MB: per-thread buffers stay small (peak RSS), calls stay few
WORKERS = 3  # layers streamed at once: the network, the hashes and the inflate run outside the GIL, the tar walk in it


def media_compression(media_type: str | None) -> str:
    """A layer's compression from its media type (for a layer read from the cache, whose bytes are not seen)."""
    mt = media_type or ""
    return "zstd" if "zstd" in mt else "gzip" if "gzip" in mt else "none"


def from_registry(ref: str, platform: str | None = None, probe: bool = False,
                  cache: LayerCache | None = None) -> ImageData:
    from bgeimg.oci import registry
    from bgeimg.oci.reference import parse_reference

    r = parse_reference(ref)
    what = f"{r.registry}/{r.repository}:{r.ref}" if not r.digest else f"{r.registry}/{r.repository}@{r.digest}"
    return from_blobs(registry.RegistryClient(r.registry), r.repository, r.ref, ref, "registry", what, platform,
                      probe, cache)


def from_blobs(client, repo: str, top_ref: str, ref: str, source: str, what: str, platform: str | None,
               probe: bool, cache: LayerCache | None) -> ImageData:
    """An image from any blob store with the registry client's read calls (`get_manifest`, `get_blob`, `iter_blob`,
    each verifying digests): a registry, or a containerd content store (bgeimg.analyze.store)."""

    def parsed(m) -> dict:
        try:
            body = json.loads(m.raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AnalyzeInputError(f"{what}: malformed manifest {m.digest} ({exc})") from None
        if not isinstance(body, dict):
            raise AnalyzeInputError(f"{what}: malformed manifest {m.digest} (not a JSON object)")
        return body

    top = client.get_manifest(repo, top_ref)
    body = parsed(top)
    manifest_digest = top.digest
    if top.media_type in INDEX_TYPES or "manifests" in body:
        desc, body = pick_manifest(body, lambda d: parsed(client.get_manifest(repo, d["digest"])),
                                   platform, what)
        manifest_digest = desc["digest"]
    cfg_desc = body.get("config")
    layers = body.get("layers")
    if not isinstance(cfg_desc, dict) or "digest" not in cfg_desc or not isinstance(layers, list) \
            or not all(isinstance(ld, dict) and "digest" in ld for ld in layers):
        raise AnalyzeInputError(f"{what}: malformed manifest {manifest_digest} (no config or layers)",
                                "only image manifests and indexes (OCI or Docker v2) can be analysed")
    raw_config = (cache.get_config(cfg_desc["digest"]) if cache else None) or \
        client.get_blob(repo, cfg_desc["digest"])  # verified against the digest either way
    try:
        config = json.loads(raw_config)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnalyzeInputError(f"{what}: malformed image config ({exc})") from None
    if not isinstance(config, dict):
        raise AnalyzeInputError(f"{what}: malformed image config (not a JSON object)")
    plat = check_platform(config, platform, what)
    if cache:
        cache.put_config(raw_config)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise AnalyzeInputError(f"{what}: the config names {len(diff_ids)} diff_ids for {len(layers)} layers")

    data = [LayerData(diff_id=diff_ids[i], digest=ld["digest"], compressed_size=ld.get("size"),
                      media_type=ld.get("mediaType")) for i, ld in enumerate(layers)]
    for ld in data:
        ld.scan = cache.get_scan(ld.diff_id, probe) if cache else None
        if ld.scan is not None:
            ld.scan.compression = media_compression(ld.media_type)
    todo = [ld for ld in data if ld.scan is None]

    def stream(ld: LayerData) -> LayerScan:
        scan = _stream_layer(client, repo, ld, probe, what)
        if cache:
            cache.put_scan(ld.diff_id, probe, scan)
        return scan

    if todo:
        pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(todo)), thread_name_prefix="bgeimg-layer")
        try:
            for ld, scan in zip(todo, pool.map(stream, todo)):
                ld.scan = scan
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return ImageData(ref=ref, source=source, platform=plat, config=config, config_digest=cfg_desc["digest"],
                     manifest_digest=manifest_digest, layers=data)


def _stream_layer(client, repo: str, ld: LayerData, probe: bool, what: str) -> LayerScan:
    """One pass over a layer blob: digest checked by iter_blob when the blob ends, diff_id checked here."""
    chunks = client.iter_blob(repo, ld.digest, chunk_size=STREAM_CHUNK)
    try:
        scan = scan_chunks(chunks, what=f"layer {ld.digest} of {what}", probe=probe, digest=True)
    except AnalyzeInputError:
        for _ in chunks:  # bytes that do not match their digest explain a broken layer better: finish the check
            pass
        raise
    for _ in chunks:  # the scan stops at the end of the tar; the digest is checked when the blob ends
        pass
    if scan.tar_digest != ld.diff_id:
        raise SourceUnavailable(f"{what}: layer {ld.digest} unpacks to {scan.tar_digest}, not the diff_id "
                                f"{ld.diff_id} its config names", "the image in the registry is corrupt: push it "
                                "again")
    return scan
