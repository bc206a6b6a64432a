"""Image sources: an image in the local engine, a `docker save` archive, an OCI layout directory (a registry is
bgeimg.analyze.remote).

Each source yields an `ImageData`: the image config and, per layer, its ids, compressed size where known and a
`LayerScan`, from the layer cache (bgeimg.analyze.cache) when it has one. A stream (the engine's save, a compressed
archive) is read in one pass, in the order its members come: the legacy `docker save` layout puts manifest.json
last, so every layer-looking member is scanned as it passes (a few KB of paths kept per layer, no content) and
matched to the manifest at the end. A file on disk is walked header to header first, and the layers the manifest
names are then read in place (or taken from the cache).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgeimg.analyze import store
from bgeimg.analyze.cache import LayerCache
from bgeimg.analyze.errors import AnalyzeInputError, SourceUnavailable
from bgeimg.analyze.image import ImageData, LayerData, check_platform, pick_manifest
from bgeimg.analyze.layers import (
    ISAL_ERROR,
    LayerScan,
    TarCorrupt,
    Window,
    file_chunks,
    inflate,
    link_name,
    scan_layer,
    sniff,
    tar_entries,
)
from bgeimg.analyze.remote import from_blobs
from bgeimg.oci.docker import EngineUnavailable, api_client
from bgeimg.oci.platform import platform_matches, platform_str
from bgeimg.oci.reference import is_host
from bgeimg.oci.streams import CHUNK, ChunkStream
from bgeimg.oci.zstd import ZstdError

JSON_MAX = 64 << 20
TRANSPORTS = {"docker-archive": "archive", "oci-archive": "archive", "oci": "oci", "docker-daemon": "engine",
              "engine": "engine", "registry": "registry", "docker": "registry"}


def _loads(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnalyzeInputError(f"{what} is not valid JSON ({exc})") from None


# ---- archives (docker save, legacy and OCI) and the engine's save stream ----------------------------------------

@dataclass
class _ArchiveContents:
    jsons: dict[str, bytes] = field(default_factory=dict)
    layers: dict[str, LayerScan] = field(default_factory=dict)  # scanned as they streamed past
    spans: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # on disk: (offset, size, compression)
    sizes: dict[str, int] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    fd: int | None = None
    probe: bool = False
    cache: LayerCache | None = None
    cache_writes: bool = False  # the engine's save stream: its diff_ids are the engine's own
    what: str = ""

    def resolve(self, name: str) -> str:
        name = posixpath.normpath(name).lstrip("/")
        for _ in range(16):
            if name not in self.links:
                break
            name = self.links[name]
        return name

    def layer(self, key: str, diff_id: str | None) -> LayerScan | None:
        """The scan of layer member `key`: scanned already (a stream), from the cache, or read in place now."""
        if key in self.layers:
            scan = self.layers[key]
            if self.cache and self.cache_writes:
                self.cache.put_scan(diff_id, self.probe, scan)
            return scan
        if key not in self.spans:
            return None
        offset, size, compression = self.spans[key]
        cached = self.cache.get_scan(diff_id, self.probe) if self.cache else None
        if cached is not None:
            cached.compression = compression
            return cached
        assert self.fd is not None
        return scan_layer(Window(self.fd, offset, size), size=size, seekable=True,
                          what=f"layer {key} of {self.what}", probe=self.probe)


class _Bounded(io.RawIOBase):
    """The next `left` bytes of a stream, as a raw reader (so a BufferedReader over it can peek)."""

    def __init__(self, f, left: int):
        self.f, self.left = f, left

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(b)
        n = self.f.readinto(view[:min(len(view), self.left)])
        if not n:
            raise EOFError("unexpected end of data")
        self.left -= n
        return n


def _skipper(f):
    """skip(n) for a stream read front to back: into one scratch buffer, no allocation per chunk."""
    scratch = memoryview(bytearray(CHUNK))

    def skip(n: int) -> None:
        while n > 0:
            got = f.readinto(scratch[:min(n, CHUNK)])
            if not got:
                raise EOFError("unexpected end of data")
            n -= got

    return skip


def _walk_archive(fileobj, seekable: bool, what: str, total: int | None = None,
                  probe: bool = False) -> _ArchiveContents:
    """One pass over the outer tar (layers.tar_entries, as for the layers inside it). On a file on disk
    (`seekable`), layer members are noted (offset, size) and read in place with pread when the manifest names
    them; in a stream, every layer-looking member is scanned as it passes (the legacy layout puts manifest.json
    last)."""
    out = _ArchiveContents(probe=probe, what=what)
    try:
        if seekable:
            out.fd = fd = fileobj.fileno()
            f = Window(fd, 0, total if total is not None else os.fstat(fd).st_size)

            def skip(n: int) -> None:
                f.seek(n, 1)
        else:
            f, skip = fileobj, _skipper(fileobj)
        for m_name, m_link, kind, size, hdr in tar_entries(f.read, skip):
            name = posixpath.normpath(m_name).lstrip("/")
            body: Any = None
            if kind == tarfile.SYMTYPE:
                target = link_name(m_link, hdr)
                out.links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), target)).lstrip("/")
            elif kind == tarfile.LNKTYPE:
                out.links[name] = posixpath.normpath(link_name(m_link, hdr)).lstrip("/")
            elif kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                where = f.tell() if seekable else 0
                body = Window(fd, where, size) if seekable else _Bounded(f, size)
                m = body if seekable else io.BufferedReader(body, CHUNK)  # both peek
                head = m.peek(512)[:512]
                out.sizes[name] = size
                compression = sniff(head) if size else None
                if size <= JSON_MAX and (head[:1] in (b"{", b"[") or name.endswith((".json", "repositories"))):
                    out.jsons[name] = m.read()
                elif compression and seekable:
                    out.spans[name] = (where, size, compression)
                elif compression:
                    out.layers[name] = scan_layer(m, size=size, what=f"layer {name} of {what}", probe=probe)
            pad = -size & 511
            if seekable:
                f.seek(size + pad, 1) if body is None else f.seek(body.start + size + pad)
            else:
                skip((body.left if body is not None else size) + pad)
        if seekable and f.tell() > f.end:
            raise TarCorrupt("unexpected end of data")
    except AnalyzeInputError:
        raise
    except (EOFError, OSError, ValueError, zlib.error, ISAL_ERROR, ZstdError) as exc:
        raise AnalyzeInputError(f"{what} is truncated or corrupt ({exc})",
                                "re-create it, e.g. `docker save -o FILE IMAGE`") from None
    return out


def _from_contents(c: _ArchiveContents, ref: str, source: str, want: str | None, what: str) -> ImageData:
    # A containerd store's `docker save` has both: manifest.json lists the host's platform only, index.json them all
    if "manifest.json" in c.jsons and not (want and "index.json" in c.jsons):
        entries = _loads(c.jsons["manifest.json"], f"manifest.json of {what}")
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict) \
                or "Config" not in entries[0] or not isinstance(entries[0].get("Layers"), list):
            raise AnalyzeInputError(f"{what}: malformed manifest.json (expected a list of {{Config, Layers}})")
        warnings = []
        entry = entries[0]
        if want and len(entries) > 1:  # a multi-platform save: one entry per image, pick by its config
            for e in entries:
                cfg = c.jsons.get(c.resolve(e.get("Config", "")))
                if cfg and platform_matches(platform_str(_loads(cfg, what)), want):
                    entry = e
                    break
        if len(entries) > 1:
            warnings.append(f"{what} holds {len(entries)} images; analysed {', '.join(entry.get('RepoTags') or [])}")
        cfg_name = c.resolve(entry["Config"])
        if cfg_name not in c.jsons and source == "engine":  # the engine sent a manifest for content it lacks
            raise AnalyzeInputError(f"{what}: the engine exported no config or layers for it (a containerd image "
                                    "store can keep an image whose content it discarded after unpacking)",
                                    f"pull it again with `docker pull {ref}`, or analyze it from its registry "
                                    f"with `bgeimg analyze registry:{ref}`")
        if cfg_name not in c.jsons:
            raise AnalyzeInputError(f"{what}: config {entry['Config']} named in manifest.json is missing (truncated?)")
        config = _loads(c.jsons[cfg_name], f"config of {what}")
        platform = check_platform(config, want, what)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        layers = []
        for i, lname in enumerate(entry["Layers"]):
            key = c.resolve(lname)
            scan = c.layer(key, diff_ids[i] if i < len(diff_ids) else None)
            if scan is None:
                raise AnalyzeInputError(f"{what}: layer {lname} named in manifest.json is missing or unreadable")
            digest = "sha256:" + key.rsplit("/", 1)[1] if key.startswith("blobs/sha256/") else None
            layers.append(LayerData(diff_id=diff_ids[i] if i < len(diff_ids) else None, digest=digest,
                                    compressed_size=c.sizes[key] if scan.compression != "none" else None,
                                    scan=scan))
        cfg_digest = "sha256:" + hashlib.sha256(c.jsons[cfg_name]).hexdigest()
        if c.cache:
            c.cache.put_config(c.jsons[cfg_name])
        return ImageData(ref=ref, source=source, platform=platform, config=config, config_digest=cfg_digest,
                         layers=layers, warnings=warnings)
    if "index.json" in c.jsons:  # an OCI image layout in a tar (buildx --output type=oci)
        def read_json(desc: dict):
            key = _blob_key(desc, what)
            if key not in c.jsons:
                raise AnalyzeInputError(f"{what}: blob {desc['digest']} is missing")
            return _loads(c.jsons[key], f"blob {desc['digest']} of {what}")

        def layer(desc: dict, diff_id: str | None) -> LayerScan:
            scan = c.layer(_blob_key(desc, what), diff_id)
            if scan is None:
                raise AnalyzeInputError(f"{what}: layer blob {desc['digest']} is missing or not a layer")
            return scan

        return _from_oci(_loads(c.jsons["index.json"], f"index.json of {what}"), read_json, layer, ref, source,
                         want, what)
    raise AnalyzeInputError(f"{what} has no manifest.json or index.json: not a `docker save` or OCI archive "
                            "(or it is truncated)")


def _blob_key(desc: dict, what: str) -> str:
    digest = desc.get("digest", "")
    alg, _, hexpart = digest.partition(":")
    if not hexpart or "/" in digest or ".." in digest:
        raise AnalyzeInputError(f"{what}: malformed descriptor digest {digest!r}")
    return f"blobs/{alg}/{hexpart}"


def _from_oci(index: dict, read_json, layer_scan, ref: str, source: str, want: str | None, what: str) -> ImageData:
    if not isinstance(index, dict):
        raise AnalyzeInputError(f"{what}: malformed index.json")
    desc, manifest = pick_manifest(index, read_json, want, what)
    config = read_json(manifest["config"])
    platform = check_platform(config, want, what)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers = []
    for i, ld in enumerate(manifest["layers"]):
        scan = layer_scan(ld, diff_ids[i] if i < len(diff_ids) else None) if layer_scan else None
        compressed = ld.get("size") if scan is None or scan.compression != "none" else None
        layers.append(LayerData(diff_id=diff_ids[i] if i < len(diff_ids) else None, digest=ld.get("digest"),
                                compressed_size=compressed, media_type=ld.get("mediaType"), scan=scan))
    return ImageData(ref=ref, source=source, platform=platform, config=config,
                     config_digest=manifest["config"].get("digest"), manifest_digest=desc.get("digest"),
                     layers=layers)


def from_archive(path: Path, want: str | None = None, probe: bool = False,
                 cache: LayerCache | None = None) -> ImageData:
    what = f"archive {path}"
    try:
        raw = open(path, "rb", buffering=CHUNK)  # noqa: SIM115
    except OSError as exc:
        raise AnalyzeInputError(f"cannot read {path}: {exc.strerror}") from None
    with raw:
        kind = sniff(raw.peek(512)[:512])  # type: ignore[attr-defined]  # buffered: open() with buffering=CHUNK
        if kind is None:
            raise AnalyzeInputError(f"{path} is not an image archive",
                                    "expected a tar from `docker save`, an OCI layout directory or an image name")
        if kind == "none":
            contents = _walk_archive(raw, True, what, total=path.stat().st_size, probe=probe)
        else:  # `docker save | gzip` (or zstd): read it as one stream
            stream = io.BufferedReader(ChunkStream(inflate(file_chunks(raw), kind)), CHUNK)
            contents = _walk_archive(stream, False, what, probe=probe)
        contents.cache = cache  # read, never written: see bgeimg.analyze.cache
        return _from_contents(contents, str(path), "archive", want, what)


def from_oci_dir(path: Path, want: str | None = None, probe: bool = False,
                 cache: LayerCache | None = None) -> ImageData:
    what = f"OCI layout {path}"

    def blob(desc: dict) -> Path:
        p = path / _blob_key(desc, what)
        if not p.is_file():
            raise AnalyzeInputError(f"{what}: blob {desc['digest']} is missing")
        return p

    def read_json(desc: dict):
        return _loads(blob(desc).read_bytes(), f"blob {desc['digest']} of {what}")

    def layer(desc: dict, diff_id: str | None) -> LayerScan:
        p = blob(desc)
        with open(p, "rb", buffering=0) as f:
            cached = cache.get_scan(diff_id, probe) if cache else None
            if cached is not None:
                cached.compression = sniff(os.pread(f.fileno(), 512, 0)) or "none"
                return cached
            return scan_layer(Window(f.fileno(), 0, p.stat().st_size), size=p.stat().st_size, seekable=True,
                              what=f"layer {desc['digest']} of {what}", probe=probe)

    index = _loads((path / "index.json").read_bytes(), f"index.json of {what}")
    return _from_oci(index, read_json, layer, str(path), "oci", want, what)


def engine_inspect(api, ref: str) -> dict | None:
    """The engine's inspect of `ref`, or None when it has no such image."""
    import docker

    try:
        return api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code in (400, 404):
            return None
        raise SourceUnavailable(f"the Docker engine failed to inspect {ref}: {exc.explanation}") from None


def engine_has(api, ref: str) -> bool:
    return engine_inspect(api, ref) is not None


def _from_engine_cache(api, ref: str, info: dict, want: str | None, probe: bool,
                       cache: LayerCache) -> ImageData | None:
    """The image from the cache alone, when every layer was seen: no `docker save`. The config is the cached one
    when this image was read before; otherwise (a relabelled or re-tagged build on cached layers) it is rebuilt
    from the inspect and the engine's history (`_engine_config`)."""
    diff_ids = (info.get("RootFS") or {}).get("Layers") or []
    if not all(cache.has_scan(d, probe) for d in diff_ids):
        return None
    scans = [cache.get_scan(d, probe) for d in diff_ids]
    if any(scan is None for scan in scans):
        return None
    raw = cache.get_config(info.get("Id"))
    config = _loads(raw, f"config of image {ref}") if raw is not None else \
        _engine_config(api, info, [scan.size for scan in scans if scan is not None])
    if config is None or (config.get("rootfs") or {}).get("diff_ids") != diff_ids:
        return None
    return ImageData(ref=ref, source="engine", platform=check_platform(config, want, f"image {ref}"), config=config,
                     config_digest=info["Id"], layers=[LayerData(diff_id=d, scan=scan)
                                                       for d, scan in zip(diff_ids, scans)])


def _engine_config(api, info: dict, sizes: list[int]) -> dict | None:
    """What the report reads of an image config, from the inspect (config, platform, diff_ids) and the history API
    (`created_by`, `comment`, `created` to the second). The API leaves out `empty_layer` but gives each entry's
    layer size, 0 for an empty entry (content bytes on 20.10, disk usage on a containerd store): an entry with a
    size made a layer; an image where the zero-size entries can be matched to its layers in more than one way
    (a layer with no content next to empty entries) gets None, so the caller reads the real config."""
    import docker

    try:
        items = list(reversed(api.history(info["Id"])))  # oldest first
    except docker.errors.APIError:
        return None
    flags = _layer_entries([int(h.get("Size") or 0) for h in items], sizes)
    if flags is None:
        return None
    history = []
    for h, is_layer in zip(items, flags):
        entry = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(h.get("Created") or 0))),
                 "created_by": h.get("CreatedBy") or ""}
        if h.get("Comment"):
            entry["comment"] = h["Comment"]
        if not is_layer:
            entry["empty_layer"] = True
        history.append(entry)
    config = {"architecture": info.get("Architecture"), "os": info.get("Os"), "created": info.get("Created"),
              "config": info.get("Config") or {}, "container_config": info.get("ContainerConfig") or {},
              "rootfs": {"type": "layers", "diff_ids": (info.get("RootFS") or {}).get("Layers") or []},
              "history": history}
    if info.get("Variant"):
        config["variant"] = info["Variant"]
    return config


def _layer_entries(entry_sizes: list[int], layer_sizes: list[int]) -> list[bool] | None:
    """Which history entries made a layer, given each entry's size (0 when empty) and each layer's content size in
    order: the only assignment that fits, or None when there is none or more than one."""
    if not entry_sizes:
        return [] if not layer_sizes else None
    m, n = len(entry_sizes), len(layer_sizes)
    ways = [[0] * (n + 2) for _ in range(m + 2)]  # ways[i][k]: fits of entries i.. to layers k.. (capped at 2)
    ways[m][n] = 1
    for i in range(m - 1, -1, -1):
        for k in range(n, -1, -1):
            fits = k < n and (entry_sizes[i] > 0 or layer_sizes[k] == 0)
            layer = ways[i + 1][k + 1] if fits else 0
            ways[i][k] = min(2, layer + (ways[i + 1][k] if entry_sizes[i] == 0 else 0))
    if ways[0][0] != 1:
        return None
    flags, k = [], 0
    for i, size in enumerate(entry_sizes):
        is_layer = k < n and (size > 0 or layer_sizes[k] == 0) and ways[i + 1][k + 1] == 1
        flags.append(is_layer)
        k += is_layer
    return flags


def _from_engine_store(root: Path, ref: str, info: dict, want: str | None, probe: bool,
                       cache: LayerCache | None) -> ImageData:
    """The image from the engine's own store (bgeimg.analyze.store): the config and every layer not in the cache,
    each checked to be the one the inspect names; the same scans as the export's, without the export."""
    raw = store.read_config(root, info["Id"])
    config = _loads(raw, f"config of image {ref}")
    platform = check_platform(config, want, f"image {ref}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if diff_ids != ((info.get("RootFS") or {}).get("Layers") or []):
        raise store.StoreUnreadable("the config's layers are not the inspect's")
    layers = []
    for chain_id, diff_id in zip(store.chain_ids(diff_ids), diff_ids):
        scan = cache.get_scan(diff_id, probe) if cache else None
        if scan is None:
            scan = store.scan_stored_layer(root, chain_id, diff_id, probe, f"layer {diff_id} of image {ref}")
        layers.append(LayerData(diff_id=diff_id, scan=scan))
    if cache:  # written once every layer was read: an image the store could not give leaves no entries
        for layer in layers:
            if layer.scan is not None:
                cache.put_scan(layer.diff_id, probe, layer.scan)
        cache.put_config(raw)
    return ImageData(ref=ref, source="engine", platform=platform, config=config, config_digest=info["Id"],
                     layers=layers)


def from_engine(ref: str, want: str | None = None, api=None, probe: bool = False, cache: LayerCache | None = None,
                info: dict | None = None) -> ImageData:
    """Stream `docker save` of one image from the engine and scan it as it arrives (never all in memory); or,
    when the cache holds its config and every layer, read nothing but the inspect."""
    import docker

    api = api or api_client(timeout=600)
    info = info or engine_inspect(api, ref)
    if info is None:
        raise AnalyzeInputError(f"unknown image {ref}: not in the local engine",
                                "check `docker images`, or read it from a registry with registry:REF")
    if cache:
        cached = _from_engine_cache(api, ref, info, want, probe, cache)
        if cached is not None:
            return cached
    found = store.store_root(api) if os.environ.get("BGEIMG_ENGINE_STORE", "1") != "0" else None
    if found is not None:
        kind, root = found
        try:
            if kind == "content":
                return from_blobs(store.ContentStore(root), "", info["Id"], ref, "engine", f"image {ref}", want,
                                  probe, cache)
            return _from_engine_store(root, ref, info, want, probe, cache)
        except (store.StoreUnreadable, SourceUnavailable):
            pass  # not the layout expected, or changed while read: the export reads what the engine has
    try:
        # the image by its ID, not its name: the tag could move between the inspect and the save
        stream = io.BufferedReader(ChunkStream(api.get_image(info["Id"], chunk_size=CHUNK)), CHUNK)
        contents = _walk_archive(stream, False, f"image {ref} from the engine", probe=probe)
    except docker.errors.APIError as exc:
        raise SourceUnavailable(f"the Docker engine failed to export {ref}: {exc.explanation}") from None
    contents.cache, contents.cache_writes = cache, True
    data = _from_contents(contents, ref, "engine", want, f"image {ref}")
    return data


# ---- choosing the source -----------------------------------------------------------------------------------------

def _looks_remote(ref: str) -> bool:
    return "/" in ref and is_host(ref.split("/", 1)[0])


def open_image(ref: str, platform: str | None = None, source: str | None = None, probe: bool = False,
               cache: LayerCache | None = None) -> ImageData:
    """Read IMAGE from wherever it is. `source` forces one (engine|archive|oci|registry); a `transport:` prefix
    (docker-archive:, oci:, docker-daemon:, registry:, docker://) does the same. `cache` holds layer scans by
    diff_id (bgeimg.analyze.cache); None reads every layer."""
    from bgeimg.analyze.remote import from_registry

    head, sep, rest = ref.partition(":")
    if sep and head in TRANSPORTS and source in (None, "auto"):
        source, ref = TRANSPORTS[head], rest.removeprefix("//")
    if source not in (None, "auto", "engine", "archive", "oci", "registry"):
        raise AnalyzeInputError(f"--source {source!r}: expected auto, engine, archive, oci or registry")
    path = Path(ref)
    if source in (None, "auto"):
        if path.is_dir():
            source = "oci"
        elif path.exists():
            source = "archive"
        elif ref.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst")) or ref.startswith(("/", "./", "../")):
            raise AnalyzeInputError(f"no such file: {ref}")
        else:
            source = None
    if source == "oci":
        if not (path / "index.json").is_file():
            raise AnalyzeInputError(f"{ref} is not an OCI image layout (no index.json)",
                                    "pass a `docker save` archive file or an OCI layout directory")
        return from_oci_dir(path, platform, probe, cache)
    if source == "archive":
        if not path.is_file():
            raise AnalyzeInputError(f"no such file: {ref}")
        return from_archive(path, platform, probe, cache)
    if source == "registry":
        return from_registry(ref, platform, probe, cache)
    if source == "engine":
        return from_engine(ref, platform, probe=probe, cache=cache)
    # auto, not a path: the local engine first, then a registry when the name carries a registry host
    try:
        api = api_client(timeout=600)
    except EngineUnavailable:
        if _looks_remote(ref):
            return from_registry(ref, platform, probe, cache)
        raise
    info = engine_inspect(api, ref)
    if info is not None:
        return from_engine(ref, platform, api=api, probe=probe, cache=cache, info=info)
    if _looks_remote(ref):
        return from_registry(ref, platform, probe, cache)
    raise AnalyzeInputError(f"unknown image {ref}: not a file, and not in the local engine",
                            "check the name, or read it from a registry with registry:REF")
