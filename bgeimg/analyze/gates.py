"""CI gates: named rules with thresholds, checked against a report; a failed gate makes `analyze` exit 1.

bgeimg's own gates (--max-size, --max-wasted, --min-efficiency, --max-user-wasted-percent) use bgeimg's figures.
A dive rules file (`.dive-ci`) is evaluated as dive evaluates it, with dive's figures (reported as dive_* in the
JSON, equal to dive's), dive's defaults for a rule the file leaves out and dive's comparisons, so a dive CI gate
moves over unchanged and passes or fails where dive did.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from bgeimg.analyze.errors import AnalyzeInputError, GateFailed  # noqa: F401  (re-exported for the CLI)

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
         "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}  # dive's .dive-ci sizes (go-humanize) too


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
    name: str  # max-size | max-wasted | min-efficiency | max-user-wasted-percent | max-floor-ratio | dive-ci:RULE
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


# ---- dive's rules file -----------------------------------------------------------------------------------------

DIVE_CI = ".dive-ci"
DIVE_DEFAULTS = {"lowestEfficiency": "0.9", "highestWastedBytes": "disabled", "highestUserWastedPercent": "0.1"}


@dataclass
class DiveRules:
    """The three rules of a `.dive-ci` file; None: disabled."""

    path: str
    lowest_efficiency: float | None
    highest_wasted_bytes: int | None
    highest_user_wasted_percent: float | None


def load_dive_ci(path: str | None) -> DiveRules | None:
    """Read `path` (--ci-config), else ./.dive-ci when there is one; None when neither."""
    import yaml

    if path is None:
        if not Path(DIVE_CI).is_file():
            return None
        path = DIVE_CI
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AnalyzeInputError(f"cannot read --ci-config {path}: {exc.strerror}",
                                "give a dive rules file (rules: lowestEfficiency, highestWastedBytes, "
                                "highestUserWastedPercent)") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise AnalyzeInputError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") \
            from None
    known = ", ".join(DIVE_DEFAULTS)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or set(doc) - {"rules"} or not isinstance(doc.get("rules") or {}, dict):
        raise AnalyzeInputError(f"{path}: expected a `rules:` mapping and nothing else", f"rules: {known}")
    rules = doc.get("rules") or {}
    for key in rules:
        if key not in DIVE_DEFAULTS:
            raise AnalyzeInputError(f"{path}: unknown rule {key!r}", f"dive knows {known}")
    values = {k: str(rules[k]).strip() if rules.get(k) is not None else v for k, v in DIVE_DEFAULTS.items()}

    def ratio(key: str) -> float | None:
        text = values[key]
        if text == "disabled":
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 <= value <= 1:
            raise AnalyzeInputError(f"{path}: {key} {text!r} is not a ratio between 0 and 1",
                                    "write it like 0.95, or disabled")
        return value

    wasted = values["highestWastedBytes"]
    return DiveRules(path, ratio("lowestEfficiency"),
                     None if wasted == "disabled" else parse_size(wasted, f"{path}: highestWastedBytes"),
                     ratio("highestUserWastedPercent"))


def _user_size(report, dive: bool) -> int:
    """What dive calls the bytes the user added: every layer but the first (dive sizes omit symlink targets)."""
    return sum((la.size or 0) - ((la.symlink_bytes or 0) if dive else 0) for la in report.layers[1:])


def _user_percent(wasted: int, user: int) -> float:
    return wasted / user if user else (math.inf if wasted else 0.0)  # dive: NaN (passes) or +Inf (fails)


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value  # JSON has no infinity


def dive_gates(report, rules: DiveRules) -> list[Gate]:
    """dive's verdicts, with dive's figures and comparisons (runtime/ci rules of wagoodman/dive)."""
    from bgeimg.analyze.output import human

    waste = report.waste
    src = rules.path
    gates = []
    if rules.lowest_efficiency is not None:
        limit = rules.lowest_efficiency
        value = waste.dive_efficiency if waste else None
        ok = value is not None and not limit > value
        gates.append(Gate("dive-ci:lowestEfficiency", limit, value, ok,
                          f"{src} lowestEfficiency: dive efficiency {value:.2%} {'>=' if ok else '<'} {limit:.2%}"
                          if value is not None else f"{src} lowestEfficiency: efficiency unknown"))
    if rules.highest_wasted_bytes is not None:
        limit_b = rules.highest_wasted_bytes
        value_b = waste.dive_wasted_bytes if waste else None
        ok = value_b is not None and not value_b > limit_b
        gates.append(Gate("dive-ci:highestWastedBytes", limit_b, value_b, ok,
                          f"{src} highestWastedBytes: dive wasted {human(value_b)} {'<=' if ok else '>'} "
                          f"{human(limit_b)}" if value_b is not None else f"{src} highestWastedBytes: wasted unknown"))
    if rules.highest_user_wasted_percent is not None:
        limit = rules.highest_user_wasted_percent
        value = _user_percent(waste.dive_wasted_bytes, _user_size(report, dive=True)) if waste else None
        ok = value is not None and not limit < value
        gates.append(Gate("dive-ci:highestUserWastedPercent", limit, _finite(value), ok,
                          f"{src} highestUserWastedPercent: dive wasted / user bytes {value:.2%} "
                          f"{'<=' if ok else '>'} {limit:.2%}" if value is not None
                          else f"{src} highestUserWastedPercent: wasted unknown"))
    return gates


def check(report, max_size: int | None = None, max_wasted: int | None = None,
          min_efficiency: float | None = None, advice=None, max_floor_ratio: float | None = None,
          max_user_wasted_percent: float | None = None, dive_rules: DiveRules | None = None) -> list[Gate]:
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
    if max_user_wasted_percent is not None:
        value = _user_percent(waste.wasted_bytes, _user_size(report, dive=False)) if waste else None
        ok = value is not None and value <= max_user_wasted_percent
        gates.append(Gate("max-user-wasted-percent", max_user_wasted_percent, _finite(value), ok,
                          f"wasted / user bytes {value:.2%} {'<=' if ok else '>'} --max-user-wasted-percent "
                          f"{max_user_wasted_percent:.2%}" if value is not None
                          else "wasted bytes unknown (layers not read from this source)"))
    if max_floor_ratio is not None and advice is not None:
        ok = advice.ratio <= max_floor_ratio
        gates.append(Gate("max-floor-ratio", max_floor_ratio, advice.ratio, ok,
                          f"ratio to floor {advice.ratio:.3f} {'<=' if ok else '>'} --max-floor-ratio "
                          f"{max_floor_ratio:.3f}" + ("" if ok else f" ({human(advice.size - advice.floor)} to "
                                                      "remove: see the findings")))
    if dive_rules is not None:
        gates += dive_gates(report, dive_rules)
    return gates
