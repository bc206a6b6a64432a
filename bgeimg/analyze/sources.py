"""Image sources: an image in the local engine, a `docker save` archive, an OCI layout directory, a registry.

Each source yields an `ImageData`: the image config and, per layer, its ids, compressed size where known and a
`LayerScan` (None for a registry image, whose layers are not downloaded). Archives are read in one pass, in the
order their members come: the legacy `docker save` layout puts manifest.json last, so every layer-looking member
is scanned as it passes (a few KB of paths kept per layer, no content) and matched to the manifest at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.analyze.errors import AnalyzeInputError, SourceUnavailable
from bgeimg.analyze.image import ImageData, LayerData, check_platform, pick_manifest
from bgeimg.analyze.layers import CHUNK, ChunkStream, LayerScan, Window, _decompressor, scan_layer, sniff
from bgeimg.oci.docker import EngineUnavailable, api_client
from bgeimg.oci.platform import platform_matches, platform_str
from bgeimg.oci.reference import is_host

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
    layers: dict[str, LayerScan] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        name = posixpath.normpath(name).lstrip("/")
        for _ in range(16):
            if name not in self.links:
                break
            name = self.links[name]
        return name


def _walk_archive(fileobj, seekable: bool, what: str, total: int | None = None) -> _ArchiveContents:
    """One pass over the outer tar. On a file on disk (`seekable`), members are read in place with pread."""
    out = _ArchiveContents()
    fd = fileobj.fileno() if seekable else None
    try:
        tf = tarfile.open(fileobj=fileobj, mode="r:" if seekable else "r|", bufsize=CHUNK)
        while True:
            ti = tf.next()
            if ti is None:
                break
            tf.members.clear()
            name = posixpath.normpath(ti.name).lstrip("/")
            if ti.issym():
                out.links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), ti.linkname)).lstrip("/")
            elif ti.islnk():
                out.links[name] = posixpath.normpath(ti.linkname).lstrip("/")
            elif ti.isreg():
                f = Window(fd, ti.offset_data, ti.size) if seekable else tf.extractfile(ti)
                head = f.peek(512)[:512]
                out.sizes[name] = ti.size
                if ti.size <= JSON_MAX and (head[:1] in (b"{", b"[") or name.endswith((".json", "repositories"))):
                    out.jsons[name] = f.read()
                elif ti.size and sniff(head):
                    out.layers[name] = scan_layer(f, size=ti.size, seekable=seekable, what=f"layer {name} of {what}")
        if seekable and total is not None and tf.offset > total:
            raise tarfile.ReadError("unexpected end of data")
    except AnalyzeInputError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise AnalyzeInputError(f"{what} is truncated or corrupt ({exc})",
                                "re-create it, e.g. `docker save -o FILE IMAGE`") from None
    return out


def _from_contents(c: _ArchiveContents, ref: str, source: str, want: str | None, what: str) -> ImageData:
    if "manifest.json" in c.jsons:
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
        if cfg_name not in c.jsons:
            raise AnalyzeInputError(f"{what}: config {entry['Config']} named in manifest.json is missing (truncated?)")
        config = _loads(c.jsons[cfg_name], f"config of {what}")
        platform = check_platform(config, want, what)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        layers = []
        for i, lname in enumerate(entry["Layers"]):
            key = c.resolve(lname)
            scan = c.layers.get(key)
            if scan is None:
                raise AnalyzeInputError(f"{what}: layer {lname} named in manifest.json is missing or unreadable")
            digest = "sha256:" + key.rsplit("/", 1)[1] if key.startswith("blobs/sha256/") else None
            layers.append(LayerData(diff_id=diff_ids[i] if i < len(diff_ids) else None, digest=digest,
                                    compressed_size=c.sizes[key] if scan.compression != "none" else None,
                                    scan=scan))
        cfg_digest = "sha256:" + hashlib.sha256(c.jsons[cfg_name]).hexdigest()
        return ImageData(ref=ref, source=source, platform=platform, config=config, config_digest=cfg_digest,
                         layers=layers, warnings=warnings)
    if "index.json" in c.jsons:  # an OCI image layout in a tar (buildx --output type=oci)
        def read_json(desc: dict):
            key = _blob_key(desc, what)
            if key not in c.jsons:
                raise AnalyzeInputError(f"{what}: blob {desc['digest']} is missing")
            return _loads(c.jsons[key], f"blob {desc['digest']} of {what}")

        def layer(desc: dict) -> LayerScan:
            key = _blob_key(desc, what)
            if key not in c.layers:
                raise AnalyzeInputError(f"{what}: layer blob {desc['digest']} is missing or not a layer")
            return c.layers[key]

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
        scan = layer_scan(ld) if layer_scan else None
        compressed = ld.get("size") if scan is None or scan.compression != "none" else None
        layers.append(LayerData(diff_id=diff_ids[i] if i < len(diff_ids) else None, digest=ld.get("digest"),
                                compressed_size=compressed, media_type=ld.get("mediaType"), scan=scan))
    return ImageData(ref=ref, source=source, platform=platform, config=config,
                     config_digest=manifest["config"].get("digest"), manifest_digest=desc.get("digest"),
                     layers=layers)


def from_archive(path: Path, want: str | None = None) -> ImageData:
    what = f"archive {path}"
    try:
        raw = open(path, "rb", buffering=CHUNK)
    except OSError as exc:
        raise AnalyzeInputError(f"cannot read {path}: {exc.strerror}") from None
    with raw:
        kind = sniff(raw.peek(512)[:512])
        if kind is None:
            raise AnalyzeInputError(f"{path} is not an image archive",
                                    "expected a tar from `docker save`, an OCI layout directory or an image name")
        if kind == "none":
            contents = _walk_archive(raw, True, what, total=path.stat().st_size)
        else:  # `docker save | gzip` (or zstd): read it as one stream
            stream = io.BufferedReader(_RawReader(_decompressor(raw, kind)), CHUNK)
            contents = _walk_archive(stream, False, what)
    return _from_contents(contents, str(path), "archive", want, what)


class _RawReader(io.RawIOBase):
    def __init__(self, f):
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)


def from_oci_dir(path: Path, want: str | None = None) -> ImageData:
    what = f"OCI layout {path}"

    def blob(desc: dict) -> Path:
        p = path / _blob_key(desc, what)
        if not p.is_file():
            raise AnalyzeInputError(f"{what}: blob {desc['digest']} is missing")
        return p

    def read_json(desc: dict):
        return _loads(blob(desc).read_bytes(), f"blob {desc['digest']} of {what}")

    def layer(desc: dict) -> LayerScan:
        p = blob(desc)
        with open(p, "rb", buffering=0) as f:
            return scan_layer(Window(f.fileno(), 0, p.stat().st_size), size=p.stat().st_size, seekable=True,
                              what=f"layer {desc['digest']} of {what}")

    index = _loads((path / "index.json").read_bytes(), f"index.json of {what}")
    return _from_oci(index, read_json, layer, str(path), "oci", want, what)


def engine_has(api, ref: str) -> bool:
    import docker

    try:
        api.inspect_image(ref)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code in (400, 404):
            return False
        raise SourceUnavailable(f"the Docker engine failed to inspect {ref}: {exc.explanation}") from None


def from_engine(ref: str, want: str | None = None, api=None) -> ImageData:
    """Stream `docker save` of one image from the engine and scan it as it arrives (never all in memory)."""
    import docker

    api = api or api_client(timeout=600)
    if not engine_has(api, ref):
        raise AnalyzeInputError(f"unknown image {ref}: not in the local engine",
                                "check `docker images`, or read it from a registry with registry:REF")
    try:
        stream = io.BufferedReader(ChunkStream(api.get_image(ref, chunk_size=CHUNK)), CHUNK)
        contents = _walk_archive(stream, False, f"image {ref} from the engine")
    except docker.errors.APIError as exc:
        raise SourceUnavailable(f"the Docker engine failed to export {ref}: {exc.explanation}") from None
    data = _from_contents(contents, ref, "engine", want, f"image {ref}")
    return data


# ---- choosing the source -----------------------------------------------------------------------------------------

def _looks_remote(ref: str) -> bool:
    return "/" in ref and is_host(ref.split("/", 1)[0])


def open_image(ref: str, platform: str | None = None, source: str | None = None) -> ImageData:
    """Read IMAGE from wherever it is. `source` forces one (engine|archive|oci|registry); a `transport:` prefix
    (docker-archive:, oci:, docker-daemon:, registry:, docker://) does the same."""
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
        return from_oci_dir(path, platform)
    if source == "archive":
        if not path.is_file():
            raise AnalyzeInputError(f"no such file: {ref}")
        return from_archive(path, platform)
    if source == "registry":
        from bgeimg.analyze.remote import from_registry

        return from_registry(ref, platform)
    if source == "engine":
        return from_engine(ref, platform)
    # auto, not a path: the local engine first, then a registry when the name carries a registry host
    try:
        api = api_client(timeout=600)
    except EngineUnavailable:
        if _looks_remote(ref):
            from bgeimg.analyze.remote import from_registry

            return from_registry(ref, platform)
        raise
    if engine_has(api, ref):
        return from_engine(ref, platform, api=api)
    if _looks_remote(ref):
        from bgeimg.analyze.remote import from_registry

        return from_registry(ref, platform)
    raise AnalyzeInputError(f"unknown image {ref}: not a file, and not in the local engine",
                            "check the name, or read it from a registry with registry:REF")
