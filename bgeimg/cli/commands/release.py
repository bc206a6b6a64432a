"""`bgeimg push`, `promote` and `tags`: the release steps, through the registry API."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bgeimg.cli.options import ConfigOpt, JsonOpt
from bgeimg.cli.output import emit_json, line, out, say


def push(
    image: List[str] = typer.Argument(..., help="Local image (its -amd64/-arm64 siblings from `bgeimg build` are "
                                      "found), or one local image per platform."),
    registry: Optional[str] = typer.Option(None, "--registry", "-r", help="HOST[:PORT]\\[/NAMESPACE] (default: the "
                                           "config's `registry`, else $BGE_REGISTRY_URL)."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Repository name (default: the local image's name)."),
    scheme: Optional[List[str]] = typer.Option(None, "--scheme", help="semver, commit or timestamp. Repeatable."),
    version: Optional[str] = typer.Option(None, "--version", help="Version for semver (default: git tag vX.Y.Z)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="An extra literal tag. Repeatable."),
    latest: Optional[str] = typer.Option(None, "--latest", help="auto (stable semver only), always or never."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Put before every tag, e.g. cpu-."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Put after every tag, e.g. -cuda12."),
    long_commit: bool = typer.Option(False, "--long-commit", help="sha-<40 hex> instead of sha-<7>."),
    allow_dirty: bool = typer.Option(False, "--allow-dirty", help="Allow a dirty work tree (tag marked -dirty)."),
    mirror: Optional[List[str]] = typer.Option(None, "--mirror", help="Also push to this registry. Repeatable."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Only these platforms; all must exist locally."),
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Push the image for every platform under the tags your scheme gives, to the registry and each mirror."""
    from bgeimg import profile as profiles
    from bgeimg.release import push as pushing

    cfg = profiles.load_config(config)
    request = pushing.ReleaseRequest(
        images=list(image), registry=registry, repo=repo, mirrors=list(mirror or []),
        schemes=tuple(scheme) if scheme else None, version=version, extra_tags=tuple(tag or ()), latest=latest,
        prefix=prefix, suffix=suffix, long_commit=long_commit, allow_dirty=allow_dirty,
        platforms=platform.split(",") if platform else None)
    results = pushing.release(request, config_registry=cfg.registry, config_tags=cfg.tags,
                              project_dir=cfg.path.parent if cfg.path else Path.cwd(),
                              progress=None if json_out else say)
    if json_out:
        emit_json(results)
    else:
        table = Table("registry", "repository", "digest", "tags", "platforms", "uploaded")
        for r in results:
            table.add_row(escape(r.registry), escape(r.repository),
                          escape(r.digest) if r.digest else f"[red]failed: {escape(r.error or '')}[/]",
                          escape(" ".join(r.tags)), " ".join(r.platforms),
                          f"{r.stats.blob_bytes_uploaded} B in {r.stats.blobs_uploaded} blobs "
                          f"({r.stats.blobs_skipped} already there)")
        out.print(table)
    pushing.check_results(results)


def promote(
    source: str = typer.Argument(..., help="REGISTRY/REPO@sha256:... (or :TAG) to promote; a rollback is a promote "
                                 "of the previous digest."),
    tag: str = typer.Option(..., "--tag", "-t", help="The tag to point at it, e.g. stable."),
    to: Optional[str] = typer.Option(None, "--to", help="Another repository in the same registry (blobs mounted)."),
    json_out: JsonOpt = False,
) -> None:
    """Point a tag at an existing image by digest, through the registry API (no layers pulled or pushed)."""
    from bgeimg.release import promote as promoting

    result = promoting.promote_ref(source, tag, to)
    if json_out:
        emit_json(result)
    else:
        line(f"{result.reference} -> {result.digest}" + (f" ({result.mounted} blobs mounted)" if result.mounted
                                                        else ""))


def tags(
    repository: str = typer.Argument(..., help="REGISTRY/REPO, e.g. 127.0.0.1:5000/bge-m3."),
    json_out: JsonOpt = False,
) -> None:
    """List a repository's tags with their digests, platforms and creation labels."""
    from bgeimg.release import promote as promoting

    rows = promoting.list_repository(repository)
    if json_out:
        emit_json(rows)
        return
    table = Table("tag", "digest", "platforms", "created")
    for r in rows:
        table.add_row(escape(r.tag), r.digest, " ".join(r.platforms), escape(r.created or ""))
    out.print(table)
