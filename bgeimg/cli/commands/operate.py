"""`bgeimg deploy render`, `bundle save|load` and `doctor`: running what was built."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from bgeimg.cli.commands.profiles import resolve_profile
from bgeimg.cli.options import ConfigOpt, JsonOpt, KeyOpt, ProfileOpt, ProfilesDirOpt, SetOpt
from bgeimg.cli.output import emit_json, line, out, say
from bgeimg.cli.progress import meter
from bgeimg.oci.platform import parse_list


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
    canary: Optional[str] = typer.Option(None, "--canary", help="k8s, nginx: a candidate REGISTRY/REPO@sha256:... "
                                         "that takes --weight percent of the traffic."),
    weight: float = typer.Option(10, "--weight", help="Percent of the traffic for the canary (0-100, 2 decimals)."),
    split_key: str = typer.Option("client", "--split-key", help="nginx: what split_clients hashes: client (the "
                                  "address) or header:NAME (falls back to the address)."),
    gateway: Optional[str] = typer.Option(None, "--gateway", help="k8s canary: a Gateway API HTTPRoute on this "
                                          "Gateway splits by weight."),
    gateway_namespace: Optional[str] = typer.Option(None, "--gateway-namespace", help="The Gateway's namespace."),
    canary_backend: Optional[List[str]] = typer.Option(None, "--canary-backend",
                                                       help="nginx canary: host:port of a candidate replica. "
                                                       "Repeatable."),
    require_signature: bool = typer.Option(False, "--require-signature",
                                           help="Refuse unless every image verifies against --key (cosign)."),
    key: KeyOpt = None,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write files here instead of stdout."),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
) -> None:
    """Kubernetes Deployment + Service + HPA, a compose file, or an nginx least_conn upstream; with --canary, a
    stable and a candidate side by side."""
    from bgeimg.operate import canary as canaries
    from bgeimg.operate import deploy
    from bgeimg.release import sign

    spec = sign.key_spec(key, private=False) if require_signature else None
    resolved = resolve_profile(profile, set_, config, profiles_dir)
    options = deploy.DeployOptions(
        image=image, replicas=replicas, name=name, namespace=namespace, allow_tag=allow_tag,
        min_replicas=min_replicas, max_replicas=max_replicas, model_claim=model_claim, backends=tuple(backend or ()))
    if canary:
        plan = canaries.CanaryOptions(candidate=canary, weight=weight, split_key=split_key, gateway=gateway,
                                      gateway_namespace=gateway_namespace, backends=tuple(canary_backend or ()))
        files = canaries.render(target, resolved.profile, options, plan)
    else:
        canaries.refuse_without_canary(split_key, gateway, tuple(canary_backend or ()))
        files = deploy.render(target, resolved.profile, options)
    if spec is not None:  # after the input checks, before anything is written
        for ref in [image, *([canary] if canary else [])]:
            sign.verify_ref(ref, spec)
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
    """Write one zstd-compressed OCI layout of the images (a shared layer once) with sha256 checksums; `docker load`
    and skopeo read it too."""
    from bgeimg.oci.docker import api_client
    from bgeimg.operate import bundle

    with meter() as bytes_meter:
        members = bundle.save(api_client(), list(image), output, meter=bytes_meter)
    for m in members:
        line(f"{', '.join(m.refs)}: {m.size} bytes, sha256 {m.sha256[:12]}")
    line(f"wrote {output} ({output.stat().st_size} bytes)")


def bundle_load(
    path: Path = typer.Argument(..., help="A bundle made by `bgeimg bundle save`."),
    verify_only: bool = typer.Option(False, "--verify", help="Only check the checksums; import nothing."),
) -> None:
    """Check every checksum first, then import the images into the engine."""
    from bgeimg.oci.docker import api_client
    from bgeimg.operate import bundle

    with meter() as bytes_meter:
        members = bundle.verify(path, bytes_meter) if verify_only else bundle.load(api_client(), path, bytes_meter)
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
    checks = doctoring.run(resolved.profile, platforms=parse_list(platform),
                           registries=registries)
    if json_out:
        emit_json(checks)
    else:
        for c in checks:
            mark = "[green]pass[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]warn[/]")
            fix = f"  -> {escape(c.fix)}" if not c.ok and c.fix else ""
            out.print(f"{mark}  {escape(c.name)}: {escape(c.detail)}{fix}", soft_wrap=True)
    doctoring.check(checks)
