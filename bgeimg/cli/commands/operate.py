"""`bgeimg deploy render`, `bundle save|load` and `doctor`: running what was built."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from bgeimg.cli.commands.profiles import resolve_profile
from bgeimg.cli.options import ConfigOpt, JsonOpt, ProfileOpt, ProfilesDirOpt, SetOpt
from bgeimg.cli.output import emit_json, line, out, say


def deploy_render(
    target: str = typer.Option(..., "--target", help="k8s, compose or nginx."),
    image: str = typer.Option(..., "--image", help="The pushed image, pinned: REGISTRY/REPO@sha256:..."),
    replicas: int = typer.Option(2, "--replicas", help="Replicas (k8s, compose) or nginx upstream servers."),
    name: Optional[str] = typer.Option(None, "--name", help="Resource name (default: from the model id)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Kubernetes namespace."),
    min_replicas: int = typer.Option(2, "--min-replicas", help="HPA minimum."),
    max_replicas: int = typer.Option(10, "--max-replicas", help="HPA maximum."),
    model_claim: Optional[str] = typer.Option(None, "--model-claim", help="external-model: PVC holding the weights."),
    backend: Optional[List[str]] = typer.Option(None, "--backend", help="nginx: host:port of a replica. Repeatable."),
    allow_tag: bool = typer.Option(False, "--allow-tag", help="Accept an image by tag (not traceable)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write files here instead of stdout."),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
) -> None:
    """Kubernetes Deployment + Service + HPA, a compose file, or an nginx least_conn upstream."""
    from bgeimg.operate import deploy

    resolved = resolve_profile(profile, set_, config, profiles_dir)
    files = deploy.render(target, resolved.profile, deploy.DeployOptions(
        image=image, replicas=replicas, name=name, namespace=namespace, allow_tag=allow_tag,
        min_replicas=min_replicas, max_replicas=max_replicas, model_claim=model_claim, backends=tuple(backend or ())))
    if output is None:
        for text in files.values():
            sys.stdout.write(text)
        return
    for written in deploy.write(files, output):
        say(f"wrote {written}")


def bundle_save(
    image: List[str] = typer.Argument(..., help="Images to carry (their -amd64/-arm64 siblings come along)."),
    output: Path = typer.Option(..., "--output", "-o", help="The bundle file, e.g. site.tar.zst."),
) -> None:
    """Write one zstd-compressed file with the images and a manifest of sha256 checksums."""
    from bgeimg.oci.docker import api_client
    from bgeimg.operate import bundle

    for m in bundle.save(api_client(), list(image), output):
        line(f"{', '.join(m.refs)}: {m.size} bytes, sha256 {m.sha256[:12]}")
    line(f"wrote {output} ({output.stat().st_size} bytes)")


def bundle_load(
    path: Path = typer.Argument(..., help="A bundle made by `bgeimg bundle save`."),
    verify_only: bool = typer.Option(False, "--verify", help="Only check the checksums; import nothing."),
) -> None:
    """Check every checksum first, then import the images into the engine."""
    from bgeimg.oci.docker import api_client
    from bgeimg.operate import bundle

    members = bundle.verify(path) if verify_only else bundle.load(api_client(), path)
    for m in members:
        line(f"{'verified' if verify_only else 'loaded'} {', '.join(m.refs)}")


def doctor(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
    platform: Optional[str] = typer.Option(None, "--platform", help="Platforms to check (default: the profile's)."),
    registry: Optional[List[str]] = typer.Option(None, "--registry", help="Registry to check (default: the "
                                                 "config's or $BGE_REGISTRY_URL). Repeatable."),
    json_out: JsonOpt = False,
) -> None:
    """Check that this machine can build, push and serve the profile; exit 1 when something it needs is missing."""
    from bgeimg.operate import doctor as doctoring
    from bgeimg.release.push import default_registry

    resolved = resolve_profile(profile, set_, config, profiles_dir)
    default = default_registry(resolved.config.registry if resolved.config else None)
    registries = list(registry or []) or ([default] if default else [])
    checks = doctoring.run(resolved.profile, platforms=platform.split(",") if platform else None,
                           registries=registries)
    if json_out:
        emit_json(checks)
    else:
        for c in checks:
            mark = "[green]pass[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]warn[/]")
            fix = f"  -> {escape(c.fix)}" if not c.ok and c.fix else ""
            out.print(f"{mark}  {escape(c.name)}: {escape(c.detail)}{fix}", soft_wrap=True)
    doctoring.check(checks)
