"""`bgeimg analyze` as one call: read one or two images, advise (optionally after a rehearsed start), check the
gates. The CLI parses options into an `AnalyzeRequest`, calls `run`, and prints the `Analysis` it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field

from bgeimg.analyze import gates as gating
from bgeimg.analyze.compare import Comparison, compare
from bgeimg.analyze.errors import AnalyzeInputError, GateFailed
from bgeimg.analyze.report import ImageReport, analyze


@dataclass
class AnalyzeRequest:
    """What to analyse and which checks to apply. Limits are the raw strings the user typed (parsed in `run`)."""

    image: str
    other: str | None = None
    platform: str | None = None
    source: str = "auto"
    max_size: str | None = None
    max_wasted: str | None = None
    min_efficiency: str | None = None
    max_floor_ratio: str | None = None
    max_user_wasted_percent: str | None = None
    ci_config: str | None = None  # a dive rules file; None: ./.dive-ci when there is one
    advise: bool = False
    rehearse: bool = False
    rehearse_mounts: list[str] = field(default_factory=list)
    cache: bool = True  # reuse layer scans by diff_id (bgeimg.analyze.cache)


@dataclass
class Analysis:
    """The report (or comparison), the advice on the last image when asked for, and every gate's verdict."""

    result: ImageReport | Comparison
    advice: object | None  # advise.Advice
    gates: list[gating.Gate]

    @property
    def failed(self) -> list[gating.Gate]:
        return [g for g in self.gates if not g.passed]

    def to_json(self) -> dict:
        doc = self.result.to_json()
        if self.advice is not None:
            doc["advice"] = self.advice.to_json()  # type: ignore[attr-defined]
        doc["gates"] = [vars(g) for g in self.gates]
        return doc

    def check(self) -> None:
        """Raise GateFailed (exit 1) naming every failed gate."""
        if self.failed:
            raise GateFailed("gate failed: " + "; ".join(g.message for g in self.failed))


def run(request: AnalyzeRequest) -> Analysis:
    # Every limit is parsed before any image is read: a typo fails at once.
    max_size = gating.parse_size(request.max_size, "--max-size") if request.max_size else None
    max_wasted = gating.parse_size(request.max_wasted, "--max-wasted") if request.max_wasted else None
    min_efficiency = gating.parse_ratio(request.min_efficiency, "--min-efficiency") if request.min_efficiency \
        else None
    max_floor_ratio = gating.parse_floor_ratio(request.max_floor_ratio) if request.max_floor_ratio else None
    max_user_wasted = gating.parse_ratio(request.max_user_wasted_percent, "--max-user-wasted-percent") \
        if request.max_user_wasted_percent else None
    dive_rules = gating.load_dive_ci(request.ci_config)
    from bgeimg.analyze.rehearse import parse_mounts

    mounts = parse_mounts(request.rehearse_mounts)
    rehearse = request.rehearse or bool(mounts)
    advise = request.advise or rehearse or request.max_floor_ratio is not None
    first = analyze(request.image, platform=request.platform, source=request.source,
                    probe=advise and not request.other, cache=request.cache)
    second = analyze(request.other, platform=request.platform, source=request.source, probe=advise,
                     cache=request.cache) if request.other else None
    last = second or first
    advice = None
    if advise:
        from bgeimg.analyze.advise import advise as advise_image
        from bgeimg.analyze.rehearse import rehearse as rehearse_image

        if rehearse and last.source != "engine":
            raise AnalyzeInputError(f"--rehearse runs the image, and {last.ref} (read as {last.source}) is not one "
                                    "in the local engine", "docker load or pull it first, then give its name")
        started = rehearse_image(last.config_digest or last.ref, name=last.ref, platform=last.platform,
                                 mounts=mounts) if rehearse else None
        advice = advise_image(last, rehearsal=started)
    gates = gating.check(last, advice=advice, max_size=max_size, max_wasted=max_wasted, min_efficiency=min_efficiency,
                         max_floor_ratio=max_floor_ratio, max_user_wasted_percent=max_user_wasted,
                         dive_rules=dive_rules)
    return Analysis(compare(first, second) if second else first, advice, gates)
