"""CI gates: named rules with thresholds, checked against a report; a failed gate makes `analyze` exit 1."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bgeimg.analyze.errors import AnalyzeInputError, GateFailed  # noqa: F401  (re-exported for the CLI)

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "k": 10**3, "m": 10**6, "g": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str, option: str) -> int:
    """'1.2GB' -> 1200000000 (decimal units as docker prints them; KiB/MiB/GiB are binary)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in UNITS:
        raise AnalyzeInputError(f"{option} {text!r} is not a size", "write it like 1.2GB, 500MB or 10MiB")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_ratio(text: str, option: str) -> float:
    """'0.98' or '98%' -> 0.98."""
    t = (text or "").strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise AnalyzeInputError(f"{option} {text!r} is not a ratio between 0 and 1", "write it like 0.98 or 98%")
    return value


@dataclass
class Gate:
    name: str  # max-size | max-wasted | min-efficiency
    limit: float
    value: float | None
    passed: bool
    message: str


def parse_floor_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value < 1:
        raise AnalyzeInputError(f"--max-floor-ratio {text!r} is not a ratio of 1 or more", "write it like 1.05")
    return value


def check(report, max_size: int | None = None, max_wasted: int | None = None,
          min_efficiency: float | None = None, advice=None, max_floor_ratio: float | None = None) -> list[Gate]:
    from bgeimg.analyze.output import human

    gates = []
    if max_size is not None:
        size = report.size if report.size is not None else report.compressed_size
        ok = size is not None and size <= max_size
        gates.append(Gate("max-size", max_size, size, ok,
                          f"size {human(size)} {'<=' if ok else '>'} --max-size {human(max_size)}"))
    waste = report.waste
    if max_wasted is not None:
        value = waste.wasted_bytes if waste else None
        ok = value is not None and value <= max_wasted
        gates.append(Gate("max-wasted", max_wasted, value, ok,
                          f"wasted {human(value)} {'<=' if ok else '>'} --max-wasted {human(max_wasted)}"
                          if value is not None else "wasted bytes unknown (layers not read from this source)"))
    if min_efficiency is not None:
        value = waste.efficiency if waste else None
        ok = value is not None and value >= min_efficiency
        gates.append(Gate("min-efficiency", min_efficiency, value, ok,
                          f"efficiency {value:.2%} {'>=' if ok else '<'} --min-efficiency {min_efficiency:.2%}"
                          if value is not None else "efficiency unknown (layers not read from this source)"))
    if max_floor_ratio is not None and advice is not None:
        ok = advice.ratio <= max_floor_ratio
        gates.append(Gate("max-floor-ratio", max_floor_ratio, advice.ratio, ok,
                          f"ratio to floor {advice.ratio:.3f} {'<=' if ok else '>'} --max-floor-ratio "
                          f"{max_floor_ratio:.3f}" + ("" if ok else f" ({human(advice.size - advice.floor)} to "
                                                      "remove: see the findings")))
    return gates
