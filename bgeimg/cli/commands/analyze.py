"""`bgeimg analyze`: options into an AnalyzeRequest, one call, and the report printed (rich or JSON)."""

from __future__ import annotations

from typing import List, Optional

import typer

from bgeimg.cli.options import JsonOpt
from bgeimg.cli.output import emit_json, out


def analyze(
    image: str = typer.Argument(..., help="Image: a local engine image, a `docker save` archive, an OCI layout "
                                "directory, or registry:HOST/REPO:TAG (streamed, without pulling)."),
    other: Optional[str] = typer.Argument(None, help="A second image to compare against IMAGE."),
    platform: Optional[str] = typer.Option(None, "--platform", help="os/arch (optionally /variant) to pick from an index."),
    source: str = typer.Option("auto", "--source", help="auto, engine, archive, oci or registry."),
    json_out: JsonOpt = False,
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Fail (exit 1) above this size, e.g. 1.2GB."),
    max_wasted: Optional[str] = typer.Option(None, "--max-wasted", help="Fail (exit 1) above this waste, e.g. 10MB."),
    min_efficiency: Optional[str] = typer.Option(None, "--min-efficiency", help="Fail (exit 1) below, e.g. 0.98."),
    max_user_wasted_percent: Optional[str] = typer.Option(
        None, "--max-user-wasted-percent", help="Fail (exit 1) when wasted bytes are more than this share of the "
        "bytes above the first layer (dive's userWastedPercent, with bgeimg's waste), e.g. 0.1 or 10%."),
    ci_config: Optional[str] = typer.Option(None, "--ci-config", help="A dive rules file (lowestEfficiency, "
                                            "highestWastedBytes, highestUserWastedPercent), evaluated as dive "
                                            "does. Default: ./.dive-ci when present."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Read every layer, ignoring the layer cache "
                                  "(~/.cache/bgeimg, or $BGEIMG_CACHE_DIR)."),
    advise: bool = typer.Option(False, "--advise", help="Find bloat inside the layers (caches, wheels, tests, "
                                "headers, symbols, duplicate weights, unused packages) with a fix for each, and "
                                "the image's floor."),
    max_floor_ratio: Optional[str] = typer.Option(None, "--max-floor-ratio", help="Fail (exit 1) when the image "
                                                  "is more than this times its floor, e.g. 1.05 (implies --advise)."),
    rehearse: bool = typer.Option(False, "--rehearse", help="Run the image once (no network) until it is ready and "
                                  "use what it imports: packages and bytecode a start never uses (implies --advise; "
                                  "an image in the local engine)."),
    rehearse_mount: Optional[List[str]] = typer.Option(None, "--rehearse-mount", help="HOST:DIR mounted read-only "
                                                       "for the rehearsed start, e.g. the weights of an "
                                                       "external-model image (repeatable; implies --rehearse)."),
) -> None:
    """Where the bytes are, what is wasted, and how two images differ. Gates and --advise apply to the last image
    given. Exit codes: 0 ok, 1 a gate failed, 2 bad input, 3 engine or registry failure."""
    from bgeimg.analyze import output
    from bgeimg.analyze.run import AnalyzeRequest, run

    analysis = run(AnalyzeRequest(
        image=image, other=other, platform=platform, source=source, max_size=max_size, max_wasted=max_wasted,
        min_efficiency=min_efficiency, max_floor_ratio=max_floor_ratio,
        max_user_wasted_percent=max_user_wasted_percent, ci_config=ci_config, advise=advise, rehearse=rehearse,
        rehearse_mounts=list(rehearse_mount or []), cache=not no_cache))
    if json_out:
        emit_json(analysis)
    else:
        if other:
            output.render_comparison(analysis.result, analysis.gates, out)
        else:
            output.render_report(analysis.result, analysis.gates, out)
        if analysis.advice is not None:
            output.render_advice(analysis.advice, out)
    analysis.check()
