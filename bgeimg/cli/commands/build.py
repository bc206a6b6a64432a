"""`bgeimg build`: render the profile and build it with the chosen backend, then print the summary."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bgeimg.cli import output
from bgeimg.cli.commands.profiles import lock_path, resolve_profile
from bgeimg.cli.options import ConfigOpt, JsonOpt, ModelOpt, ProfileOpt, ProfilesDirOpt, SetOpt
from bgeimg.cli.output import emit_json, err, line, out
from bgeimg.oci.platform import parse_list
from bgeimg.oci.reference import check_reference


def build(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
    model: ModelOpt = None,
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="Image name[:tag] (default "
                                            "bge-PROFILE:latest; repeatable: every tag names the same image); each "
                                            "platform is also tagged NAME:TAG-ARCH after the first."),
    engine: str = typer.Option("auto", "--engine", help="auto, engine (Engine API), buildkit (docker build) or buildx."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Comma-separated, e.g. linux/amd64,linux/arm64 "
                                           "(default: the profile's platforms)."),
    wheelhouse: Optional[Path] = typer.Option(None, "--wheelhouse", help="Install from these wheels, no index."),
    ca_bundle: Optional[Path] = typer.Option(None, "--ca-bundle", help="CA bundle (PEM) for the build only."),
    registry_mirror: Optional[str] = typer.Option(None, "--registry-mirror", help="Pull Docker Hub bases via HOST."),
    pip_index_url: Optional[str] = typer.Option(None, "--pip-index-url", help="pip index for the build only."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the build report as JSON here."),
    context_dir: Optional[Path] = typer.Option(None, "--context", help="Keep the build context in this directory."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Build every step again."),
    push: bool = typer.Option(False, "--push", help="Push while building (buildx only; else use bgeimg push)."),
    cache_from: Optional[List[str]] = typer.Option(None, "--cache-from", help="Cache source (repeatable)."),
    cache_to: Optional[List[str]] = typer.Option(None, "--cache-to", help="Cache export (buildx only)."),
    lock: Optional[Path] = typer.Option(None, "--lock", help="Lock file pinning hf:// models (default: bgeimg.lock "
                                        "beside the project config, or in the working directory)."),
    update_lock: bool = typer.Option(False, "--update-lock",
                                     help="Resolve hf:// revisions again and rewrite the lock."),
    json_out: JsonOpt = False,
    builder: Optional[str] = typer.Option(None, "--builder", help="buildx builder to use (docker buildx ls); "
                                          "implies --engine buildx."),
    build_arg: Optional[List[str]] = typer.Option(None, "--build-arg", help="KEY=VALUE build argument (repeatable)."),
    secret: Optional[List[str]] = typer.Option(None, "--secret", help="id=ID,src=FILE: a BuildKit secret for "
                                               "RUN --mount=type=secret (never stored in the image; repeatable)."),
    progress: str = typer.Option("auto", "--progress", help="auto, plain, quiet or rawjson (buildx's meanings)."),
    provenance: Optional[str] = typer.Option(None, "--provenance", help="buildx --provenance (e.g. false, mode=max)."),
    sbom: Optional[str] = typer.Option(None, "--sbom", help="buildx --sbom (e.g. true); needs the scanner image."),
    metadata_file: Optional[Path] = typer.Option(None, "--metadata-file", help="Write buildx's build metadata here."),
) -> None:
    """Render the profile and build its image for each platform, then print a summary (and --report JSON)."""
    from bgeimg.build import run as builds
    from bgeimg.build import view

    # Mirror flags are profile values like any other, so they are validated the same way.
    sets = list(set_ or [])
    if registry_mirror:
        sets.append(f"mirrors.registry={registry_mirror}")
    if pip_index_url:
        sets.append(f"mirrors.pip_index_url={pip_index_url}")
    resolved = resolve_profile(profile, sets, config, profiles_dir, model)
    tags = list(tag or [f"bge-{resolved.profile.name}:latest"])
    options = builds.BuildOptions(
        image=tags[0], extra_tags=tags[1:], engine=engine, builder=builder,
        build_args=builds.parse_build_args(build_arg or []), secrets=builds.parse_secrets(secret or []),
        provenance=provenance, sbom=sbom, metadata_file=metadata_file,
        source_date_epoch=builds.source_date_epoch(Path.cwd()), raw_progress=progress == "rawjson",
        platforms=parse_list(platform), wheelhouse=wheelhouse, ca_bundle=ca_bundle,
        context_dir=context_dir, no_cache=no_cache, push=push, cache_from=list(cache_from or []),
        cache_to=list(cache_to or []), lock_file=lock or lock_path(resolved), update_lock=update_lock,
    )

    check_reference(options.image)  # bad input is reported before the engine is contacted

    def said(chosen) -> None:
        if output.verbosity < 0:
            return
        err.print(f"engine: [bold]{chosen.engine.name}[/] ", end="", soft_wrap=True)
        err.print(f"({chosen.reason})", markup=False, soft_wrap=True)

    if progress not in view.PROGRESS:
        raise builds.BgeimgError(f"--progress {progress!r} is not a progress mode",
                                 f"choose one of: {', '.join(view.PROGRESS)}")
    with view.LiveView(err, output.verbosity, progress) as live:
        result = builds.build(resolved.profile, options, on_engine=said, on_event=live.update)
    if report is not None:
        result.write(report)
    if json_out:
        emit_json(result)
        return
    out.print(view.summary(result))
    for text in view.tag_lines(result):
        line(text)
