"""Two image reports side by side: totals, categories, shared layers, packages and the files that differ."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, fields

from bgeimg.analyze.report import CATEGORIES, SCHEMA_VERSION, ImageReport, asdict_value

TOP_FILES = 15


@dataclass
class Row:
    name: str
    a: int | None
    b: int | None
    diff: int | None  # b - a


@dataclass
class PackageChange:
    name: str
    version_a: str | None
    version_b: str | None
    size_a: int | None
    size_b: int | None
    diff: int


@dataclass
class Comparison:
    """IMAGE (a) against OTHER (b); every difference is b - a."""

    a: ImageReport
    b: ImageReport
    totals: list[Row]
    categories: list[Row]
    shared_layers: list[str]  # diff_ids present in both
    shared_bytes: int
    only_a_packages: list[PackageChange]
    only_b_packages: list[PackageChange]
    changed_packages: list[PackageChange]
    differing_files: list[Row] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {f.name: asdict_value(getattr(self, f.name)) for f in fields(self) if f.name not in ("a", "b")}
        out["a"] = self.a.to_json()  # not asdict: a report carries its whole filesystem off the schema
        out["b"] = self.b.to_json()
        return {"schema_version": SCHEMA_VERSION, "kind": "comparison", **out}


def _row(name, a, b) -> Row:
    return Row(name, a, b, None if a is None or b is None else b - a)


def compare(a: ImageReport, b: ImageReport) -> Comparison:
    totals = [_row("size", a.size, b.size), _row("compressed size", a.compressed_size, b.compressed_size),
              _row("layers", len(a.layers), len(b.layers))]
    if a.waste and b.waste:
        totals.append(_row("wasted", a.waste.wasted_bytes, b.waste.wasted_bytes))
    cats = [_row(c, a.categories.get(c, 0), b.categories.get(c, 0)) for c in CATEGORIES]
    ids_b = {layer.diff_id for layer in b.layers if layer.diff_id}
    shared = [layer for layer in a.layers if layer.diff_id and layer.diff_id in ids_b]
    shared_bytes = sum(layer.size or layer.compressed_size or 0 for layer in shared)

    pa = {p.name.lower().replace("_", "-"): p for p in a.packages}
    pb = {p.name.lower().replace("_", "-"): p for p in b.packages}
    only_a = [PackageChange(p.name, p.version, None, p.size, None, -p.size) for k, p in pa.items() if k not in pb]
    only_b = [PackageChange(p.name, None, p.version, None, p.size, p.size) for k, p in pb.items() if k not in pa]
    changed = [PackageChange(p.name, p.version, pb[k].version, p.size, pb[k].size, pb[k].size - p.size)
               for k, p in pa.items() if k in pb and (pb[k].size != p.size or pb[k].version != p.version)]
    for lst in (only_a, only_b, changed):
        lst.sort(key=lambda c: (-abs(c.diff), c.name))

    files = []
    fa, fb = a.final_files, b.final_files
    if fa is not None and fb is not None:
        def diffs():
            for path, size in fa.items():
                other = fb.get(path)
                if other != size:
                    yield path, size, other
            for path, size in fb.items():
                if path not in fa:
                    yield path, None, size

        top = heapq.nlargest(TOP_FILES, diffs(), key=lambda t: abs((t[2] or 0) - (t[1] or 0)))
        files = [Row(p, sa, sb, (sb or 0) - (sa or 0)) for p, sa, sb in top]
    return Comparison(a=a, b=b, totals=totals, categories=cats, shared_layers=[layer.diff_id for layer in shared if layer.diff_id],
                      shared_bytes=shared_bytes, only_a_packages=only_a, only_b_packages=only_b,
                      changed_packages=changed, differing_files=files)
