"""`bgeimg analyze --advise`: bloat inside layers, which dive cannot see, with the fix for each finding.

dive finds bytes that a later layer hides. Most of a fat Python image is visible and useless instead: a
wheelhouse copied in, pip's cache, tests, headers, symbol tables, a second copy of the weights, packages the
server never imports. Every rule below reads the final filesystem (plus what the layer scan saw inside files:
ELF section tables, Python imports, small scripts) and claims each file at most once, so the bytes add up.

The floor is what the image would weigh with every finding fixed: the base image, plus the rest minus the
findings. Findings in the base image's own layers are listed apart (change the base to lose them) and count in
the floor: the base is a choice, not bloat this build added.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from bgeimg.analyze.layers import LAZY
from bgeimg.analyze.rehearse import Rehearsal
from bgeimg.analyze.report import MODEL_EXT, ImageReport

MIN_BYTES = 1 << 20  # a finding smaller than this is noise, not advice
SHOW_PATHS = 8

SITE_RX = re.compile(r"^(.*/(?:site|dist)-packages)/")
WEIGHT_RX = re.compile(r"(^|/)(pytorch_model|model|tf_model|flax_model|rust_model|diffusion_pytorch_model)"
                       r"([-.][^/]*)?\.(bin|h5|msgpack|ot|ckpt|pt|pth)$")
HEADER_EXT = (".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl")
BUILD_TOOL_DIRS = ("/usr/lib/gcc/", "/usr/libexec/gcc/", "/usr/share/cmake", "/usr/lib/llvm-")
BUILD_TOOL_RX = re.compile(r"^/usr/(local/)?bin/((\w+-linux-gnu-)?(gcc|g\+\+|cc|c\+\+|cpp|gfortran|as|ld|ld\.bfd|"
                           r"ld\.gold|make|cmake|ninja|clang|clang\+\+)(-[\d.]+)?)$")
DOC_DIRS = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/", "/usr/share/i18n/")
APT_RX = re.compile(r"^/var/(lib/apt/lists/[^/]+$|cache/apt/.+\.(bin|deb)$)")
CACHE_RX = re.compile(r"/\.cache/(pip|uv|huggingface/xet|huggingface/hub/\.locks)/")
TORCH_TEST_RX = re.compile(r"-packages/torch/(test/|bin/(\w*Test\w*|test_\w+|protoc[\w.-]*)$|lib/lib\w*_test\.so$)")
DOWNLOAD_CLIENTS = {"hf_xet"}  # what huggingface_hub's snapshot_download imports beyond the hub client itself
# a CUDA wheel's libraries: site-packages/nvidia/<part>/lib/libX.so.N (cu13: nvidia/cu13/lib/)
WHEEL_CUDA_LIB_RX = re.compile(r"-packages/nvidia/(?:[^/]+/)*lib/(lib[\w+-]+)\.so(\.\d+)?[^/]*$")
SHARED_LIB_RX = re.compile(r"/(lib[\w+-]+)\.so(\.\d+)?[^/]*$")
PYC_RX = re.compile(r"^(.*)/__pycache__/([^/.]+)\.([\w-]+?)(\.opt-\d)?\.pyc$")


@dataclass
class Finding:
    kind: str  # stable id: wheelhouse, pip-cache, tests, headers, ...
    title: str
    bytes: int  # what the fix saves
    files: int
    paths: list[str]  # the biggest directories or files, biggest first
    fix: str  # the profile setting and the Dockerfile change that remove it
    layers: list[int] = field(default_factory=list)
    deliberate: str | None = None  # why a bgeimg image keeps it on purpose (docs/slimming.md)


@dataclass
class Advice:
    ref: str
    size: int
    base_size: int
    floor: int
    ratio: float
    findings: list[Finding]  # in the layers this image added
    base_findings: list[Finding]  # in the base image's layers: informational, counted in the floor
    entry_modules: list[str]  # where the import graph starts ([] when the entry point is not Python)
    notes: list[str] = field(default_factory=list)
    rehearsal: dict | None = None  # the rehearsed start the findings used: image, modules (a count), ready, seconds

    @property
    def actionable(self) -> list[Finding]:
        return [f for f in self.findings if not f.deliberate]

    def to_json(self) -> dict:
        return {**asdict(self), "actionable": len(self.actionable)}


# ---- helpers -------------------------------------------------------------------------------------------------------

class _Claims:
    """Which rule took which file: a file counts once, for the first rule that matches it."""

    def __init__(self, live: dict[str, tuple[int, int]]):
        self.live = live
        self.taken: set[str] = set()

    def take(self, paths) -> list[tuple[str, int, int]]:
        out = []
        for p in paths:
            if p in self.taken or p not in self.live:
                continue
            self.taken.add(p)
            layer, size = self.live[p]
            out.append((p, layer, size))
        return out


def _group(items: list[tuple[str, int, int]], key) -> list[str]:
    sizes: dict[str, int] = defaultdict(int)
    for path, _, size in items:
        sizes[key(path)] += size
    return [p for p, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:SHOW_PATHS]]


def _finding(kind, title, items, fix, key=posixpath.dirname) -> Finding | None:
    if not items:
        return None
    return Finding(kind=kind, title=title, bytes=sum(s for _, _, s in items), files=len(items),
                   paths=_group(items, key), fix=fix, layers=sorted({layer for _, layer, _ in items}))


def _site_rel(path: str) -> str | None:
    m = SITE_RX.match(path)
    return path[m.end():] if m else None


# ---- the Python import graph ---------------------------------------------------------------------------------------

def _module_index(live, roots: list[str]) -> dict[str, str]:
    """Module name -> its file, for every .py / extension module under the import roots."""
    index: dict[str, str] = {}
    for root in sorted(roots, key=len, reverse=True):  # /opt/app before /, deeper roots first
        prefix = root.rstrip("/") + "/"
        for path in live:
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):]
            if rel.endswith(".py"):
                name = rel[:-3].replace("/", ".")
                if name.endswith(".__init__"):
                    name = name[: -len(".__init__")]
            elif rel.endswith(".so") and "/" not in rel.rpartition(".")[0].split(".")[0][-1:]:
                stem, _, _ = rel.rpartition("/")[2].partition(".")
                name = (rel.rpartition("/")[0].replace("/", ".") + "." + stem).lstrip(".")
            else:
                continue
            if "-" in name or " " in name or "__pycache__" in name:
                continue
            index.setdefault(name, path)
    return index


def _entry_modules(cfg: dict, live, texts: dict[str, bytes], workdir: str) -> tuple[list[str], list[str]]:
    """Modules and script files the image's ENTRYPOINT/CMD start, reading shell entry scripts one level deep."""
    words = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if len(words) >= 2 and words[0] in ("/bin/sh", "sh", "/bin/bash", "bash") and words[1] == "-c":
        words = words[:1] + shlex.split(words[2]) if len(words) > 2 else words
    modules, scripts = [], []

    def scan_words(ws: list[str], depth: int) -> None:
        for i, w in enumerate(ws):
            prev = ws[i - 1] if i else ""
            if prev == "-m" and re.fullmatch(r"[\w.]+", w):
                modules.append(w)
            elif re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*(\(\))?", w):  # uvicorn / gunicorn app:object
                modules.append(w.split(":")[0])
            elif w.endswith(".py"):
                path = w if w.startswith("/") else posixpath.normpath(posixpath.join(workdir or "/", w))
                if path in live:
                    scripts.append(path)
            elif depth == 0 and w.startswith("/") and w in texts:
                text = texts[w].decode("utf-8", "replace").replace("\\\n", " ")  # join continued lines
                for line in text.splitlines():
                    line = line.strip()
                    if line and not line.startswith("#"):
                        try:  # a line shlex cannot split (an odd quote) is skipped, not the rest of the script
                            scan_words(shlex.split(line, comments=True), 1)
                        except ValueError:
                            continue
            elif re.fullmatch(r"(/\S*/)?(uvicorn|gunicorn|hypercorn|fastapi|flask)", w):
                modules.append(posixpath.basename(w))

    scan_words(words, 0)
    return list(dict.fromkeys(modules)), list(dict.fromkeys(scripts))


def _reachable(entry: list[str], scripts: list[str], index: dict[str, str], imports: dict[str, frozenset[str]]) \
        -> set[str]:
    """Modules reachable from the entry points, counting every import statement anywhere in a file and, for a
    package that loads submodules lazily (transformers' _LazyModule, a module __getattr__), all of its
    submodules: an over-estimate, so a package it calls unused really is never imported."""
    by_parent: dict[str, list[str]] = defaultdict(list)
    for name in index:
        by_parent[name.rpartition(".")[0]].append(name)
    seen: set[str] = set()
    todo: list[tuple[str, str | None]] = [(m, None) for m in entry] + [("", s) for s in scripts]

    def visit(name: str) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            todo.append((".".join(parts[:i]), None))

    while todo:
        name, script = todo.pop()
        if script is None:
            if name in seen or name not in index:
                continue
            seen.add(name)
            path = index[name]
        else:
            path = script
        found = imports.get(path, frozenset())
        package = name if path.endswith("/__init__.py") else name.rpartition(".")[0]
        for target in found:
            if target == LAZY:
                stack = [name]
                while stack:
                    for child in by_parent.get(stack.pop(), ()):
                        todo.append((child, None))
                        stack.append(child)
                continue
            if target.startswith("."):
                level = len(target) - len(target.lstrip("."))
                base = package.split(".") if package else []
                base = base[: len(base) - (level - 1)] if level > 1 else base
                rest = target.lstrip(".")
                target = ".".join([*base, rest] if rest else base)
            if target:
                visit(target)
    return seen


# ---- the rules -------------------------------------------------------------------------------------------------

def _dists(records: dict[str, bytes], live) -> list[dict]:
    """Distributions still installed: name, files, top-level import names, and what rules need to know."""
    import csv
    import io

    out = []
    for rec, text in records.items():
        if rec not in live:
            continue
        info = posixpath.dirname(rec)
        site = posixpath.dirname(info)
        if not site.endswith("-packages"):
            continue  # a vendored copy's metadata (setuptools/_vendor/...): part of its vendoring package
        name = posixpath.basename(info).removesuffix(".dist-info").partition("-")[0]
        files, tops = set(), set()
        pth = plain_libs = False
        for row in csv.reader(io.StringIO(text.decode("utf-8", "replace"))):
            if not row or not row[0]:
                continue
            full = posixpath.normpath(posixpath.join(site, row[0]))
            if full in live:
                files.add(full)
            rel = full[len(site) + 1:] if full.startswith(site + "/") else ""
            top = rel.split("/", 1)[0]
            if rel.endswith(".pth"):
                pth = True
            elif rel.endswith((".py", ".so")) and not top.endswith((".dist-info", ".data", ".libs")):
                tops.add(top.removesuffix(".py").partition(".")[0] if "/" not in rel else top)
            if ".so" in rel and not re.search(r"\.(cpython-\d+\w*|abi3)[-\w]*\.so$", rel):
                plain_libs = True  # loaded by path (ctypes, RPATH), which no import graph can see
        files |= {p for p in live if p.startswith(info + "/")}
        out.append({"name": name, "site": site, "files": files, "tops": tops, "pth": pth,
                    "plain_libs": plain_libs})
    return out


@dataclass
class _Imports:
    """What the analysis knows of the server's imports: statically reachable, and (with a rehearsal) started."""

    entry: list[str]
    index: dict[str, str]  # module name -> file
    reached: set[str]  # modules reachable from the entry point
    reached_files: set[str]  # their files, and the entry scripts
    started: set[str] | None  # modules a rehearsed start imported


def _imports(report: ImageReport, notes: list[str], started: set[str] | None) -> _Imports:
    live, cfg = report.live, report.config or {}
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
    workdir = cfg.get("WorkingDir") or "/"
    sites = sorted({m.group(1) for p in live for m in [SITE_RX.match(p)] if m})
    roots = [*[p for p in env.get("PYTHONPATH", "").split(":") if p.startswith("/")], workdir, *sites]
    entry, scripts = _entry_modules(cfg, live, report.probes["texts"], workdir)
    index = _module_index(live, roots)
    if not entry and not scripts:
        if started is None:
            notes.append("the entry point starts no Python module this analysis can follow: no unused-package "
                         "check (--rehearse runs it and sees what it imports)")
        return _Imports([], index, set(), set(), started)
    index.update({k: v for k, v in _module_index(live, [posixpath.dirname(s) for s in scripts]).items()
                  if k not in index})
    reached = _reachable(entry, scripts, index, report.probes["py_imports"])
    if started is not None:  # `python -m NAME` runs NAME (or NAME.__main__) through runpy, which logs no import
        started = started | set(entry) | {f"{m}.__main__" for m in entry}
    return _Imports(entry, index, reached, {index[m] for m in reached} | set(scripts), started)


def _package_fix(names: list[str], proof: str = "") -> str:
    pip = [n for n in names if n.lower() in ("pip", "setuptools", "wheel")]
    rest = [n for n in names if n not in pip]
    fix = []
    if rest:
        fix.append(f"slim.remove_packages: [{', '.join(rest)}]{proof} (or drop what requires them from the "
                   "requirements)")
    if pip:
        fix.append("slim.remove_pip: true")
    fix.append("Dockerfile: `pip uninstall -y NAME...` in the builder stage, before the venv is copied")
    return "; ".join(fix)


def _unused_packages(report: ImageReport, claims: _Claims, imports: _Imports) -> list[Finding]:
    """Distributions none of whose modules the entry point can reach (certain), then, with a rehearsal, those none
    of whose modules a start imported (likely: a request may still import one, which a test must rule out)."""
    if not imports.entry and imports.started is None:
        return []
    reached_tops = {m.split(".")[0] for m in imports.reached}
    started_tops = {m.split(".")[0] for m in imports.started or ()}
    unused, unstarted = [], []
    for d in _dists(report.records, report.live):
        # a .pth file runs at every start (setuptools' only installs a distutils shim, which no server needs)
        pth = d["pth"] and d["name"].lower() != "setuptools"
        if not d["tops"] or pth or d["plain_libs"]:
            continue
        if imports.entry and not d["tops"] & reached_tops:
            unused.append(d)
        elif imports.started is not None and not d["tops"] & started_tops:
            unstarted.append(d)
    # a bgeimg image without baked weights downloads them on start when none are mounted: a path a rehearsal
    # with the weights mounted does not take, and the hub's download client is all it adds
    # (and the image may name more: the ONNX runtime's hub client is imported by the download alone)
    downloads = report.labels.get("io.bgeimg.model.source") == "none"
    declared = {n.strip().lower().replace("-", "_")
                for n in report.labels.get("io.bgeimg.slim.download_packages", "").split(",") if n.strip()}
    kept = [d for d in unstarted
            if downloads and d["name"].lower().replace("-", "_") in DOWNLOAD_CLIENTS | declared]
    out = []
    for kind, title, dists, proof in (
            ("unused-packages", "packages the server never imports", unused, ""),
            ("unimported-packages", "packages a rehearsed start never imports",
             [d for d in unstarted if d not in kept], " once a request against the slimmed image works"),
            ("download-packages", "packages only the download-on-start path imports", kept, "")):
        items = claims.take(sorted(p for d in dists for p in d["files"]))
        if items:
            names = sorted(d["name"] for d in dists)
            owner = {p: f"{d['site']}/{sorted(d['tops'])[0]}" for d in dists for p in d["files"]}
            found = _finding(kind, f"{title} ({', '.join(names)})", items, _package_fix(names, proof),
                             key=owner.get)
            if found is not None:
                out.append(found)
    return out


def _bytecode(report: ImageReport, claims: _Claims, imports: _Imports, in_scope) -> list[Finding]:
    live = report.live
    by_source: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for p in live:
        m = PYC_RX.match(p)
        if m:
            by_source[f"{m.group(1)}/{m.group(2)}.py"].append((m.group(3), p))
    tags: dict[str, int] = defaultdict(int)
    for entries in by_source.values():
        for tag, _ in entries:
            tags[tag] += 1
    main_tag = max(tags, key=lambda t: tags[t]) if tags else None
    extra = []
    for entries in by_source.values():
        keep = next((p for t, p in entries if t == main_tag and ".opt-" not in p), None)
        extra += [p for _, p in entries if p != keep]
    out = []
    dup = _finding("duplicate-bytecode", "bytecode for another Python or optimisation level, next to the one used",
                   claims.take(sorted(extra)),
                   "compile once, for the interpreter the image runs (`python -m compileall` without -o); delete "
                   "__pycache__ left by another Python")
    if dup:
        out.append(dup)
    if imports.started is not None:
        # a start reads these files: bytecode for them saves compiling; bytecode for the rest is weight
        wanted = {imports.index[m] for m in imports.started if m in imports.index}
        unused = [p for source, entries in by_source.items() if source in live and source not in wanted
                  for _, p in entries if in_scope(p) and "-packages/" in p]
        f = _finding("unused-bytecode", "bytecode of modules a rehearsed start never imports",
                     claims.take(sorted(unused)),
                     "slim.bytecode: imported (compile what a start imports, nothing else); Dockerfile: "
                     "`pip install --no-compile`, then compile only the modules a start imports",
                     key=lambda p: p.split("-packages/")[0] + "-packages/" + p.split("-packages/")[1].split("/")[0])
        if f:
            out.append(f)
    else:
        wanted = imports.reached_files
    skipped = "/testing/_internal/" if report.labels.get("io.bgeimg.slim.bytecode") == "compile" else None
    missing = [p for p in wanted if p.endswith(".py") and "-packages/" in p and not by_source.get(p)
               and not (skipped and skipped in p)]  # bgeimg's compileall skips these on purpose
    source = sum(live[p][1] for p in missing)
    if source >= MIN_BYTES:
        evidence = "a rehearsed start imports" if imports.started is not None else "the server may import"
        out.append(Finding(
            kind="missing-bytecode",
            title=f"{len(missing)} modules {evidence} have no bytecode: each cold start compiles them",
            bytes=0, files=len(missing), paths=_group([(p, 0, live[p][1]) for p in missing],
                                                     lambda p: p.split("-packages/")[-1].split("/")[0]),
            fix="slim.bytecode: compile (everything) or imported (what a start imports); Dockerfile: "
                "`python -m compileall --invalidation-mode unchecked-hash` in the builder stage",
            layers=sorted({live[p][0] for p in missing})))
    return out


def _weights(live, claims: _Claims) -> list[Finding]:
    by_dir: dict[str, list[str]] = defaultdict(list)
    for p in live:
        if p.endswith(MODEL_EXT) or WEIGHT_RX.search(p):
            by_dir[posixpath.dirname(p)].append(p)
    dup_format, unused_onnx = [], []
    for d, files in by_dir.items():
        if any(f.endswith(".safetensors") for f in files):
            dup_format += [f for f in files if not f.endswith(".safetensors") and WEIGHT_RX.search(f)]
        parent = posixpath.dirname(d)
        if posixpath.basename(d) in ("onnx", "openvino") and f"{parent}/config.json" in live and any(
                f.endswith(".safetensors") for f in by_dir.get(parent, ())):
            unused_onnx += [p for p in live if p.startswith(d + "/")]
    out = []
    for kind, title, items in (
            ("duplicate-weights", "a second weight format beside model.safetensors (the runtime loads safetensors)",
             claims.take(sorted(dup_format))),
            ("unused-onnx", "ONNX/OpenVINO exports the transformers runtime never loads", claims.take(sorted(unused_onnx)))):
        f = _finding(kind, title, items, "download only what the runtime loads (bgeimg's `model: hf://...` "
                     "does; huggingface_hub: `allow_patterns=['*.safetensors', '*.json', '*.txt', '*.model']`) or "
                     "delete them before the COPY")
        if f:
            out.append(f)
    # the same weight file twice (name and size), e.g. once in ~/.cache/huggingface and once in the model dir
    seen: dict[tuple[str, int], str] = {}
    copies = []
    for p in sorted(p for files in by_dir.values() for p in files):
        size = live[p][1]
        if size < MIN_BYTES or p in claims.taken:
            continue
        key = (posixpath.basename(p), size)
        if key in seen:
            copies.append(p if "/.cache/" in p or "/.cache/" not in seen[key] else seen[key])
            if copies[-1] == seen[key]:
                seen[key] = p
        else:
            seen[key] = p
    f = _finding("weight-copies", "the same weight file twice", claims.take(copies),
                 "keep one copy: download straight into the model dir (`local_dir=`), not through ~/.cache")
    if f:
        out.append(f)
    return out


def _rules(report: ImageReport, claims: _Claims, in_scope) -> list[Finding]:
    """Path rules, in the order they claim files."""
    live, elf = report.live, report.probes["elf_strippable"]
    paths = [p for p in live if in_scope(p)]
    tests = set()
    for p in paths:
        rel = _site_rel(p)
        if rel and ("/tests/" in f"/{rel}"):
            tests.add(p)
    table = [
        ("wheelhouse", "wheels copied into the image", [p for p in paths if p.endswith(".whl")],
         "install from a build-time mount, not a COPY: `RUN --mount=type=bind,source=wheels,target=/wheels pip "
         "install --no-index --find-links /wheels ...` (bgeimg build --wheelhouse DIR does)", posixpath.dirname),
        ("caches", "pip / uv / Hugging Face caches", [p for p in paths if CACHE_RX.search(p)],
         "`pip install --no-cache-dir` or `RUN --mount=type=cache,target=/root/.cache/pip` (bgeimg does both); "
         "`uv --no-cache`; delete ~/.cache/huggingface/xet after a download",
         lambda p: p[: CACHE_RX.search(p).end()]),  # type: ignore[union-attr]  # only paths it matched
        ("torch-test-binaries", "torch's C++ test binaries and protoc", [p for p in paths if TORCH_TEST_RX.search(p)],
         "slim.prune: [torch/test, \"torch/bin/*Test\", \"torch/bin/test_*\", \"torch/bin/protoc*\", "
         "\"torch/lib/lib*_test.so\"] (bgeimg's default)", posixpath.dirname),
        ("tests", "tests/ folders of installed packages", sorted(tests),
         "slim.remove_tests: true; Dockerfile: `find $SITE -depth -type d -name tests -exec rm -rf {} +` in the "
         "builder stage", lambda p: p[: p.index("/tests/") + 7]),
        ("headers", "C/C++ headers", [p for p in paths if p.endswith(HEADER_EXT)],
         "slim.prune: [<package>/include, ...] (bgeimg prunes torch/include); headers only matter when compiling",
         lambda p: p.split("/include/")[0] + "/include/" if "/include/" in p else posixpath.dirname(p)),
        ("static-libraries", "static libraries (*.a)", [p for p in paths if p.endswith(".a")],
         "slim.prune the *.a files; they are only linked at build time", posixpath.dirname),
        ("build-tools", "compilers and build tools in the final stage",
         [p for p in paths if p.startswith(BUILD_TOOL_DIRS) or BUILD_TOOL_RX.match(p)],
         "install build-essential in a builder stage and copy only the venv (bgeimg's two stages); never in the "
         "runtime stage", lambda p: p if p.startswith("/usr/bin/") or p.startswith("/usr/local/bin/")
         else "/".join(p.split("/")[:4]) + "/"),
        ("docs", "documentation, man pages and locales", [p for p in paths if p.startswith(DOC_DIRS)],
         "in the RUN that installs packages: `rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/locale/*`, or "
         "dpkg path-exclude rules in /etc/dpkg/dpkg.cfg.d/", lambda p: "/".join(p.split("/")[:4]) + "/"),
        ("apt-lists", "apt package lists and downloaded .deb files", [p for p in paths if APT_RX.match(p)],
         "end the RUN that calls apt-get install with `&& rm -rf /var/lib/apt/lists/*`", posixpath.dirname),
        ("symbols", "symbol tables and debug info in shared libraries",
         [p for p in paths if p in elf and ".libs/" not in p],
         "slim.strip_symbols: true; Dockerfile: `strip --strip-unneeded` on the .so files in the builder stage "
         "(binutils there only; leave auditwheel's *.libs/ alone)", None),
    ]
    out = []
    for kind, title, matched, fix, key in table:
        items = claims.take(matched)
        if kind == "symbols":  # only the symbol tables go, not the files
            items = [(p, layer, elf[p]) for p, layer, _ in items]
            claims.taken.difference_update(p for p, _, _ in items)
            key = lambda p: p  # noqa: E731
        f = _finding(kind, title, items, fix, key)
        if f:
            out.append(f)
    return out


def _duplicate_libraries(live, claims: _Claims, in_base) -> list[Finding]:
    """Shared libraries of the base image (an nvidia/cuda base's CUDA) that a CUDA wheel brings again under
    site-packages/nvidia/: torch loads the wheel's copy (its RPATH), so the base's is never used."""
    wheel: dict[str, set[str]] = defaultdict(set)  # library name -> the sonames the wheels carry
    for p in live:
        m = WHEEL_CUDA_LIB_RX.search(p)
        if m and not in_base(p):
            wheel[m.group(1)].add(m.group(1) + ".so" + (m.group(2) or ""))
    twice, names, same = [], set(), set()
    for p in live:
        m = SHARED_LIB_RX.search(p)
        if m and in_base(p) and "-packages/" not in p and m.group(1) in wheel:
            twice.append(p)
            names.add(m.group(1))
            if m.group(1) + ".so" + (m.group(2) or "") in wheel[m.group(1)]:
                same.add(m.group(1))
    f = _finding("duplicate-libraries", f"shared libraries in the base image that a wheel's nvidia/ folder brings "
                 f"again ({len(names)} libraries, {len(same)} with the same soname): a second CUDA, never loaded",
                 claims.take(sorted(twice)),
                 "a base without CUDA libraries: the torch wheels bring them and the NVIDIA container runtime the "
                 "driver (bgeimg's gpu profile: python:3.11-slim and a cuda: flavour); or nvidia/cuda:X.Y.Z-base-*, "
                 "never -runtime or -cudnn next to CUDA wheels")
    return [f] if f else []


def _deliberate(findings: list[Finding], labels: dict[str, str], rehearsed: bool) -> None:
    """bgeimg images say in labels what they keep on purpose (docs/slimming.md)."""
    bytecode = labels.get("io.bgeimg.slim.bytecode")
    for f in findings:
        if f.kind == "missing-bytecode" and (bytecode == "strip" or bytecode == "imported" and not rehearsed):
            # `imported` compiled what the builder's rehearsal imported: only a rehearsed start can tell it missed one
            f.deliberate = (f"slim.bytecode={bytecode}: " + ("no bytecode, the smallest image" if bytecode == "strip"
                            else "only what a start imports is compiled; the rest stays source (size)"))
        if f.kind == "download-packages":  # only found under the io.bgeimg.model.source=none label
            f.deliberate = ("model: none (external-model): the entrypoint downloads the weights when none are "
                            "mounted, through these")
        if f.kind == "unused-bytecode" and bytecode == "compile":
            f.deliberate = "slim.bytecode=compile: every module compiled, request-time and GPU-only paths too"
        if f.kind == "unused-bytecode" and bytecode == "imported":
            f.deliberate = ("slim.bytecode=imported: the builder's rehearsal also runs a request and every "
                            "slim.warm_architectures type, so their modules are compiled too")


def advise(report: ImageReport, min_bytes: int = MIN_BYTES, rehearsal: Rehearsal | None = None) -> Advice:
    """The findings and the floor; a `rehearsal` (rehearse.py) adds what a real start shows: packages and
    bytecode it never imports, and the bytecode it misses."""
    if not report.files_scanned:
        raise ValueError("advise needs the layers' files")
    live = report.live
    n_base = report.base_layers
    claims = _Claims(live)
    notes: list[str] = []

    def in_base(p: str) -> bool:
        return live[p][0] < n_base

    imports = _imports(report, notes, set(rehearsal.modules) if rehearsal else None)
    findings = _unused_packages(report, claims, imports)
    findings += _weights({p: v for p, v in live.items() if not in_base(p)}, claims)
    findings += _rules(report, claims, lambda p: not in_base(p))
    findings += _bytecode(report, claims, imports, lambda p: not in_base(p))
    # before the base's own rules claim them: the base's copy is this build's waste once the wheels bring one
    findings += _duplicate_libraries(live, claims, in_base)
    base = _rules(report, claims, in_base)
    findings = [f for f in findings if f.bytes >= min_bytes or f.kind == "missing-bytecode"]
    base = [f for f in base if f.bytes >= min_bytes]
    _deliberate(findings, report.labels, rehearsal is not None)
    findings.sort(key=lambda f: -f.bytes)
    base.sort(key=lambda f: -f.bytes)
    size = report.size or 0
    base_size = sum(layer.size or 0 for layer in report.layers[:n_base])
    floor = size - sum(f.bytes for f in findings)
    return Advice(ref=report.ref, size=size, base_size=base_size, floor=floor,
                  ratio=round(size / floor, 4) if floor else 1.0, findings=findings, base_findings=base,
                  entry_modules=imports.entry, notes=notes,
                  rehearsal={**asdict(rehearsal), "modules": len(rehearsal.modules)} if rehearsal else None)
