"""The layer report: sizes, instructions, categories, top files, Python distributions and waste.

Waste is found by replaying the layers in order, as overlayfs would: a file written again in a later layer, or
deleted by a whiteout (a whole directory subtree when the whiteout names a directory, everything below a
directory marked opaque), leaves its earlier copies in the image without being visible. bgeimg's wasted bytes
are the bytes of those invisible copies (all copies minus the one that stays). dive counts every copy of a
path that occurs in more than one layer, the visible one included (wagoodman/dive#684); that figure is
reported next to ours, labelled, so the two tools can be compared.
"""

from __future__ import annotations

import csv
import heapq
import io
import posixpath
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields, is_dataclass

from bgeimg.analyze.image import ImageData

SCHEMA_VERSION = 1
CATEGORIES = ["base image", "system packages", "Python dependencies", "model weights", "app code", "other"]
TOP_FILES = 5
TOP_WASTE = 20
TOP_PACKAGES = 15

MODEL_DIRS = ("/opt/model", "/models", "/model")
MODEL_EXT = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf", ".ckpt", ".h5", ".msgpack", ".onnx_data")
APP_DIRS = ("/opt/app", "/app", "/srv", "/usr/src/app", "/workspace", "/home")
SYSTEM_DIRS = ("/usr", "/var", "/etc", "/lib", "/lib64", "/bin", "/sbin", "/opt/conda")
SYSTEM_RX = re.compile(r"\b(apt-get|apt|dpkg|apk|dnf|yum|microdnf|zypper)\b")
PIP_RX = re.compile(r"\b(pip3?|uv|poetry|conda|mamba|micromamba|pdm)\b.*\b(install|sync|create)\b|\bpython3? -m venv\b")
SITE_RX = re.compile(r"^(.*/(?:site|dist)-packages)/([^/]+)")


@dataclass
class FileSize:
    path: str
    size: int


@dataclass
class LayerReport:
    """One layer. `size` is the content size (`docker history`); `tar_size` the uncompressed tar length."""

    index: int
    diff_id: str | None
    digest: str | None
    size: int | None
    tar_size: int | None
    compressed_size: int | None
    compression: str | None
    instruction: str | None
    created: str | None
    category: str
    files: int | None
    symlink_bytes: int | None  # the part of `size` that is symlink targets (dive counts symlinks as 0)
    top_files: list[FileSize] = field(default_factory=list)


@dataclass
class Package:
    """A Python distribution in the final filesystem, sized by the files its RECORD lists (plus files under its
    top-level directories that RECORD misses, such as byte code compiled later)."""

    name: str
    version: str
    size: int
    files: int
    location: str


@dataclass
class WastedFile:
    path: str
    copies: int  # copies written, in all layers
    total: int  # bytes of all copies
    wasted: int  # bytes of the copies nobody sees
    layers: list[int]  # layers that wrote a copy
    removed_in: int | None  # layer whose whiteout deleted it (None: overwritten, the last copy stays)


@dataclass
class Waste:
    wasted_bytes: int
    efficiency: float  # 1 - wasted / all bytes written
    dive_wasted_bytes: int
    dive_efficiency: float
    files: list[WastedFile] = field(default_factory=list)


@dataclass
class ImageReport:
    """Everything `bgeimg analyze` shows for one image; `to_json()` is the stable --json schema."""

    ref: str
    source: str
    platform: str
    config_digest: str | None
    manifest_digest: str | None
    labels: dict[str, str]
    size: int | None  # sum of layer sizes (what the engine calls the image size)
    compressed_size: int | None
    layers: list[LayerReport]
    categories: dict[str, int]
    packages: list[Package]
    biggest_files: list[FileSize]  # of the final filesystem
    waste: Waste | None
    files_scanned: bool
    warnings: list[str] = field(default_factory=list)
    # Kept off the JSON schema (json=False): what compare and --advise read beyond the report.
    final_files: dict[str, int] | None = field(default=None, repr=False, metadata={"json": False})  # path -> size
    live: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, metadata={"json": False})  # path -> (layer, size)
    records: dict[str, bytes] = field(default_factory=dict, repr=False, metadata={"json": False})  # RECORD path -> text
    system: dict[str, bytes] = field(default_factory=dict, repr=False, metadata={"json": False})  # dpkg status, os-release
    distributions: list[Package] = field(default_factory=list, repr=False, metadata={"json": False})  # all, for sbom
    probes: dict[str, dict] = field(default_factory=dict, repr=False, metadata={"json": False})  # what --advise's probes saw
    base_layers: int = field(default=0, metadata={"json": False})  # how many layers come from the base image
    config: dict = field(default_factory=dict, repr=False, metadata={"json": False})  # the image config

    def to_json(self) -> dict:
        public = {f.name: asdict_value(getattr(self, f.name)) for f in fields(self) if f.metadata.get("json", True)}
        return {"schema_version": SCHEMA_VERSION, "kind": "image", **public}


def asdict_value(value):
    """A field's value as plain JSON values (dataclasses and lists of them as dicts)."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [asdict_value(v) for v in value]
    return value


# ---- history -> layers -------------------------------------------------------------------------------------------

def instruction(created_by: str | None) -> str | None:
    """Turn a history `created_by` into the Dockerfile line a user wrote."""
    if not created_by:
        return None
    s = created_by.strip()
    s = re.sub(r"\s*# buildkit$", "", s)
    s = re.sub(r"^\|\d+ (\S+=\S* )*", "", s)  # classic builder: "|2 ARG1=x ARG2=y /bin/sh -c ..."
    m = re.match(r"^/bin/(?:ba)?sh -c #\(nop\)\s*(.*)$", s, re.S)
    if m:
        return m.group(1).strip()
    m = re.match(r"^(RUN )?/bin/(?:ba)?sh -c (.*)$", s, re.S)
    if m:
        return "RUN " + m.group(2).strip()
    return s


def map_history(history: list[dict], n_layers: int) -> tuple[list[dict | None], str | None]:
    """The k-th non-empty history entry made the k-th layer. When the counts differ (squashed or imported
    images, stripped history), align from the end: the layers a user built are the last ones."""
    entries: list[dict | None] = [h for h in history or [] if isinstance(h, dict) and not h.get("empty_layer")]
    if len(entries) == n_layers:
        return list(entries), None
    if not entries:
        return [None] * n_layers, "the image has no history: instructions unknown"
    note = f"history has {len(entries)} layer entries for {n_layers} layers: matched from the last layer back"
    if len(entries) > n_layers:
        return entries[-n_layers:] if n_layers else [], note
    return [None] * (n_layers - len(entries)) + entries, note


def base_layer_count(history: list[dict], n_layers: int) -> int:
    """How many leading layers came from the base image. Base images end their history with CMD or ENTRYPOINT
    (python:3.11-slim ends with CMD ["python3"]): the last such entry that still has layers after it is taken
    as the boundary. Without one, only a first layer made by `ADD file:... in /` (a rootfs) counts as base."""
    layers_before = 0
    boundary = 0
    for h in history or []:
        if not isinstance(h, dict):
            continue
        ins = instruction(h.get("created_by")) or ""
        if not h.get("empty_layer"):
            layers_before += 1
        elif re.match(r"^(CMD|ENTRYPOINT)\b", ins) and layers_before < n_layers:
            boundary = layers_before
    if boundary == 0 and history:
        first = next((h for h in history if isinstance(h, dict) and not h.get("empty_layer")), None)
        first_ins = instruction(first.get("created_by")) if first else ""
        if first_ins and re.match(r"^(ADD|COPY) (file|multi):\S+ in /\s*$", first_ins):
            boundary = 1
    return min(boundary, n_layers)


def categorise(ins: str | None, files: dict[str, int] | None, model_dir: str | None) -> str:
    """Category of a non-base layer from where its bytes are, then from its instruction."""
    model_dirs = (model_dir, *MODEL_DIRS) if model_dir else MODEL_DIRS
    if files:
        sums: defaultdict[str, int] = defaultdict(int)
        model_p = tuple(d.rstrip("/") + "/" for d in model_dirs)  # str.startswith(tuple): one call per file
        app_p = tuple(d + "/" for d in APP_DIRS)
        system_p = tuple(d + "/" for d in SYSTEM_DIRS)
        for path, size in files.items():
            if "-packages/" in path or path.startswith("/opt/venv/"):
                sums["Python dependencies"] += size
            elif path.startswith(model_p) or path.endswith(MODEL_EXT):
                sums["model weights"] += size
            elif path.startswith(app_p):
                sums["app code"] += size
            elif path.startswith(system_p):
                sums["system packages"] += size
            else:
                sums["other"] += size
        total = sum(sums.values())
        if total:
            best, best_size = max(sums.items(), key=lambda kv: kv[1])
            if best_size * 2 >= total and best in ("Python dependencies", "model weights", "app code"):
                return best
            if ins and re.match(r"^(COPY|ADD)\b", ins) and "--from" not in ins and not SYSTEM_RX.search(ins):
                return "app code"  # files the user copied in (an entrypoint in /usr/local/bin is app code too)
            if best_size * 2 >= total and not (best == "system packages" and ins and PIP_RX.search(ins)):
                return best
    text = ins or ""
    if PIP_RX.search(text) or "/opt/venv" in text or "site-packages" in text:
        return "Python dependencies"
    if any(d in text for d in model_dirs) or re.search(r"\b(huggingface|hf_hub|snapshot_download)\b", text):
        return "model weights"
    if SYSTEM_RX.search(text):
        return "system packages"
    if re.match(r"^(COPY|ADD)\b", text) and any(d in text for d in APP_DIRS):
        return "app code"
    if files and sum(files.values()) and text.startswith(("COPY", "ADD")):
        return "app code"
    return "other"


# ---- replay: final filesystem and waste ----------------------------------------------------------------------------

class _Replay:
    """The merged filesystem, layer by layer: path -> (layer, size) of the visible copy, plus a child index so a
    whiteout of a directory removes its subtree without scanning every path."""

    def __init__(self):
        self.live: dict[str, tuple[int, int]] = {}
        self.children: dict[str, set[str]] = defaultdict(set)
        self.removed: dict[str, list[tuple[int, int]]] = defaultdict(list)  # path -> hidden copies
        self.removed_in: dict[str, int] = {}
        self.removed_with: dict[str, str] = {}  # file -> the deleted directory it went with
        self.dive_nodes: dict[str, list[int]] = defaultdict(list)  # path -> sizes dive counts (multi-layer paths)

    def _link(self, path: str) -> None:
        while path != "/":
            parent = path.rpartition("/")[0] or "/"
            kids = self.children[parent]
            if path in kids:
                return
            kids.add(path)
            if parent in self.live:  # a file replaced by a directory
                self._hide(parent, None)
            path = parent

    def _hide(self, path: str, layer: int | None) -> int:
        """Hide `path` and everything under it; returns the bytes hidden."""
        hidden = 0
        is_dir = bool(self.children.get(path))
        stack = [path]
        while stack:
            p = stack.pop()
            copy = self.live.pop(p, None)
            if copy is not None:
                self.removed[p].append(copy)
                hidden += copy[1]
                if layer is not None:
                    self.removed_in[p] = layer
                    if is_dir:
                        self.removed_with[p] = path
                else:
                    self.removed_in.pop(p, None)
                    self.removed_with.pop(p, None)
            kids = self.children.pop(p, None)
            if kids:
                stack.extend(kids)
        if path != "/":
            parent_kids = self.children.get(posixpath.dirname(path))
            if parent_kids is not None:
                parent_kids.discard(path)
        return hidden

    def apply(self, index: int, scan) -> None:
        # Whiteouts and opaque markers act on the layers below only, so they go first.
        for d in scan.opaque:
            for kid in list(self.children.get(d, ())):
                self._hide(kid, index)
        for p in scan.whiteouts:
            had_children = bool(self.children.get(p))
            hidden = self._hide(p, index)
            # dive: a whiteout is a node sized like the directory it deletes (0 for a file).
            self.dive_nodes[p].append(hidden if had_children else 0)
        for d in scan.dirs:
            if d in self.live:
                self._hide(d, None)
            self._link(d)
        for path, size in scan.files.items():
            old = self.live.get(path)
            if old is not None:
                self.removed[path].append(old)
                self.removed_in.pop(path, None)
                self.removed_with.pop(path, None)
            elif self.children.get(path):  # a directory replaced by a file
                self._hide(path, None)
            self.live[path] = (index, size)
            self._link(path)
            self.dive_nodes[path].append(0 if path in scan.symlinks else size)


def _waste(replay: _Replay, written_total: int) -> Waste:
    files = []
    wasted = 0
    groups: dict[tuple[str, int], WastedFile] = {}  # a deleted directory is one entry: its whole subtree
    for path, copies in replay.removed.items():
        hidden = sum(s for _, s in copies)
        wasted += hidden
        live = replay.live.get(path)
        top = replay.removed_with.get(path)
        if top is not None and live is None:
            key = (top, replay.removed_in[path])
            g = groups.get(key)
            if g is None:
                g = groups[key] = WastedFile(path=top + "/", copies=0, total=0, wasted=0, layers=[],
                                             removed_in=key[1])
                files.append(g)
            g.copies += len(copies)
            g.total += hidden
            g.wasted += hidden
            g.layers = sorted(set(g.layers) | {layer for layer, _ in copies})
            continue
        all_copies = copies + ([live] if live else [])
        files.append(WastedFile(path=path, copies=len(all_copies), total=sum(s for _, s in all_copies),
                                wasted=hidden, layers=sorted(layer for layer, _ in all_copies),
                                removed_in=replay.removed_in.get(path) if live is None else None))
    files.sort(key=lambda f: (-f.wasted, f.path))
    # dive's figures: per path seen in >1 layer, every copy; score = sum(min copy) / sum(all copies)
    dive_wasted = 0
    dive_min = 0
    dive_all = 0
    for sizes in replay.dive_nodes.values():
        dive_all += sum(sizes)
        dive_min += min(sizes)
        if len(sizes) > 1:
            dive_wasted += sum(sizes)
    return Waste(
        wasted_bytes=wasted,
        efficiency=round(1 - wasted / written_total, 6) if written_total else 1.0,
        dive_wasted_bytes=dive_wasted,
        dive_efficiency=round(dive_min / dive_all, 6) if dive_all else 1.0,
        files=[f for f in files if f.wasted > 0][:TOP_WASTE],
    )


# ---- Python distributions ------------------------------------------------------------------------------------------

def _packages(records: dict[str, bytes], live: dict[str, tuple[int, int]]) -> list[Package]:
    """Size each distribution by the live files its RECORD lists; files under a site-packages directory that no
    RECORD lists go to the distribution owning that top-level name (else to the directory's own name)."""
    owner: dict[str, int] = {}
    dists: list[dict] = []
    top_owner: dict[tuple[str, str], int] = {}
    for rec_path, text in records.items():
        if rec_path not in live:
            continue  # the distribution was removed or upgraded in a later layer
        info_dir = posixpath.dirname(rec_path)
        site = posixpath.dirname(info_dir)
        name, _, version = posixpath.basename(info_dir).removesuffix(".dist-info").partition("-")
        idx = len(dists)
        dists.append({"name": name, "version": version, "site": site})
        for row in csv.reader(io.StringIO(text.decode("utf-8", "replace"))):
            if not row or not row[0]:
                continue
            full = posixpath.normpath(posixpath.join(site, row[0]))
            owner[full] = idx
            if full.startswith(site + "/"):
                top = full[len(site) + 1:].split("/", 1)[0]
                if not top.endswith((".dist-info", ".pth")) and top != "__pycache__":
                    top_owner.setdefault((site, top), idx)
        owner[rec_path] = idx
    sizes: defaultdict[int, int] = defaultdict(int)
    counts: defaultdict[int, int] = defaultdict(int)
    loose: defaultdict[tuple[str, str], int] = defaultdict(int)
    loose_n: defaultdict[tuple[str, str], int] = defaultdict(int)
    for path, (_, size) in live.items():
        owned: int | None = owner.get(path)
        if owned is None:
            if "-packages/" not in path:
                continue
            m = SITE_RX.match(path)
            if not m:
                continue
            site, top = m.group(1), m.group(2)
            owned = top_owner.get((site, top))
            if owned is None:
                key = (site, top.removesuffix(".py"))
                loose[key] += size
                loose_n[key] += 1
                continue
        sizes[owned] += size
        counts[owned] += 1
    out = [Package(name=d["name"], version=d["version"], size=sizes[i], files=counts[i], location=d["site"])
           for i, d in enumerate(dists)]
    out += [Package(name=top, version="", size=size, files=loose_n[(site, top)], location=site)
            for (site, top), size in loose.items() if top not in ("__pycache__",) and size > 0]
    out.sort(key=lambda p: (-p.size, p.name))
    return out


# ---- the report ----------------------------------------------------------------------------------------------------

def build_report(data: ImageData) -> ImageReport:
    config = data.config or {}
    cfg = config.get("config") or config.get("container_config") or {}
    labels = dict(cfg.get("Labels") or {})
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
    model_dir = labels.get("io.bgeimg.model.dir") or env.get("BGE_MODEL_DIR")
    history, note = map_history(config.get("history") or [], len(data.layers))
    n_base = base_layer_count(config.get("history") or [], len(data.layers))
    warnings = list(data.warnings) + ([note] if note else [])
    scanned = all(layer.scan is not None for layer in data.layers)

    replay = _Replay()
    records: dict[str, bytes] = {}
    system: dict[str, bytes] = {}
    probes: dict[str, dict] = {"elf_strippable": {}, "py_imports": {}, "texts": {}}  # filled by analyze --advise
    layers: list[LayerReport] = []
    written = 0
    for i, ld in enumerate(data.layers):
        scan = ld.scan
        h = history[i] if i < len(history) else None
        ins = instruction(h.get("created_by")) if h else None
        category = "base image" if i < n_base else categorise(ins, scan.files if scan else None, model_dir)
        if i == 0 and n_base == 0 and category in ("system packages", "other"):
            category = "base image"  # the first layer is some base's root filesystem unless it says otherwise
        top = []
        if scan is not None:
            replay.apply(i, scan)
            records.update(scan.records)
            system.update(scan.system)
            if scan.py_imports or scan.elf_strippable or scan.texts:
                for name, found in probes.items():  # what this layer rewrote replaces what lower layers said
                    for path in scan.files.keys() & found.keys():
                        del found[path]
                    found.update(getattr(scan, name))
            written += sum(scan.files.values())
            top = [FileSize(p, s) for p, s in heapq.nlargest(TOP_FILES, scan.files.items(), key=lambda kv: kv[1])
                   if s > 0]
        layers.append(LayerReport(
            index=i, diff_id=ld.diff_id, digest=ld.digest, size=scan.size if scan else None,
            tar_size=scan.tar_size if scan else None, compressed_size=ld.compressed_size,
            compression=scan.compression if scan else None, instruction=ins,
            created=h.get("created") if h else None, category=category, files=len(scan.files) if scan else None,
            symlink_bytes=sum(scan.files[p] for p in scan.symlinks) if scan else None, top_files=top))

    categories = {c: 0 for c in CATEGORIES}
    for layer in layers:
        size = layer.size if layer.size is not None else layer.compressed_size
        categories[layer.category] += size or 0
    size = sum(layer.size or 0 for layer in layers) if scanned else None
    known = [layer.compressed_size for layer in layers]
    compressed = sum(k or 0 for k in known) if known and all(k is not None for k in known) else None
    biggest = [FileSize(p, s) for p, (_, s) in heapq.nlargest(TOP_FILES * 2, replay.live.items(),
                                                              key=lambda kv: kv[1][1])] if scanned else []
    distributions = _packages(records, replay.live) if scanned else []
    report = ImageReport(
        ref=data.ref, source=data.source, platform=data.platform, config_digest=data.config_digest,
        manifest_digest=data.manifest_digest, labels=labels, size=size, compressed_size=compressed, layers=layers,
        categories=categories, packages=distributions[:TOP_PACKAGES * 4],
        biggest_files=biggest, waste=_waste(replay, written) if scanned else None, files_scanned=scanned,
        warnings=warnings,
        final_files={p: s for p, (_, s) in replay.live.items()} if scanned else None,
        live=replay.live, records=records, probes=probes, distributions=distributions,
        system={p: text for p, text in system.items() if p in replay.live},  # deleted or replaced later: gone
        base_layers=next((i for i, layer in enumerate(layers) if layer.category != "base image"), len(layers)),
        config=cfg)
    return report


def analyze(ref: str, platform: str | None = None, source: str | None = None, probe: bool = False,
            cache: bool = True) -> ImageReport:
    """Read IMAGE from its source and build its report; `probe` also looks inside files, for --advise; `cache`
    reuses layer scans by diff_id (bgeimg.analyze.cache)."""
    from bgeimg.analyze.cache import open_cache
    from bgeimg.analyze.sources import open_image

    return build_report(open_image(ref, platform=platform, source=source, probe=probe, cache=open_cache(cache)))
