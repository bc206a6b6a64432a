"""The Typer app: options, help texts, exit codes and printing. No logic beyond wiring."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bgeimg import __version__
from bgeimg.errors import BgeimgError


class _Lazy:
    """A module imported on first use: `bgeimg analyze` in CI should not pay for pydantic and Jinja."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module(self._name), attr)


context = _Lazy("bgeimg.context")
profiles = _Lazy("bgeimg.profile")
rendering = _Lazy("bgeimg.render")

app = typer.Typer(
    name="bgeimg",
    help="Build small, correct, versioned container images that serve BGE models, and prove they are small.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profiles_app = typer.Typer(help="List and show build profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
deploy_app = typer.Typer(help="Deployment manifests for a pushed image.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
bundle_app = typer.Typer(help="Carry images to a site with no network: one verified file.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")

out = Console()
err = Console(stderr=True)

# Options shared by every command that resolves a profile.
ProfileOpt = typer.Option(None, "--profile", "-p", help="Profile name or alias (default: the config's, else cpu-slim).")
SetOpt = typer.Option(None, "--set", help="Override a profile value: key.path=value (YAML scalar). Repeatable.")
ConfigOpt = typer.Option(None, "--config", "-c", help="Project config file (default: ./bgeimg.yaml when present).")
ProfilesDirOpt = typer.Option(None, "--profiles-dir", help="Directory of user profiles (*.yaml). Repeatable.")
ModelOpt = typer.Option(None, "--model", "-m", help="Model to serve: hf://org/name@revision, a local directory, "
                        "or none (same as --set model=...).")


def resolve_profile(name, sets, config, profiles_dirs, model: str | None = None) -> profiles.Resolved:
    cfg = profiles.load_config(config)
    sets = list(sets or [])
    if model:
        if model.startswith("hf://") or model == "none":
            sets.append(f"model={model}")
        else:  # a directory given on the command line is relative to where the command runs
            sets += ["model.source=path", f"model.path={Path(model).resolve()}"]
    return profiles.resolve(name, config=cfg, sets=sets, profile_dirs=list(profiles_dirs or []))


def lock_path(resolved: profiles.Resolved) -> Path:
    config = resolved.config.path if resolved.config else None
    return (config.parent if config else Path.cwd()) / "bgeimg.lock"


def _version(value: bool) -> None:
    if value:
        out.print(f"bgeimg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


@profiles_app.command("list")
def profiles_list(profiles_dir: Optional[List[Path]] = ProfilesDirOpt) -> None:
    """List the profiles bgeimg knows: built-in ones and those in --profiles-dir."""
    table = Table("profile", "aliases", "description", "file")
    for name, aliases, description, path in profiles.list_profiles(profiles.search_dirs(profiles_dir or [])):
        table.add_row(name, ", ".join(aliases), description, str(path))
    out.print(table)


@profiles_app.command("show")
def profiles_show(
    name: str = typer.Argument(..., help="Profile name or alias."),
    set_: Optional[List[str]] = SetOpt,
    config: Optional[Path] = ConfigOpt,
    profiles_dir: Optional[List[Path]] = ProfilesDirOpt,
) -> None:
    """Print the fully resolved profile as YAML (after extends, project config and --set)."""
    resolved = resolve_profile(name, set_, config, profiles_dir)
    sys.stdout.write(profiles.to_yaml(resolved.profile))


@app.command()
def render(
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    config: Optional[Path] = ConfigOpt,
    profiles_dir: Optional[List[Path]] = ProfilesDirOpt,
    model: Optional[str] = ModelOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the build context here."),
    backend: str = typer.Option("classic", "--backend", help="classic (Engine API) or buildkit syntax."),
) -> None:
    """Render the build context; without -o, print the Dockerfile."""
    if backend not in ("classic", "buildkit"):
        raise BgeimgError(f"--backend {backend!r}: expected classic or buildkit")
    resolved = resolve_profile(profile, set_, config, profiles_dir, model)
    options = rendering.RenderOptions(backend=backend)
    if output is None:
        sys.stdout.write(rendering.render(resolved.profile, options).dockerfile)
        return
    from bgeimg import model as models

    context.prepare(resolved.profile, output, options, lock=models.Lock.load(lock_path(resolved)))
    err.print(f"rendered profile [bold]{resolved.profile.name}[/] into {output}")


@app.command()
def build(
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    config: Optional[Path] = ConfigOpt,
    profiles_dir: Optional[List[Path]] = ProfilesDirOpt,
    model: Optional[str] = ModelOpt,
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Image name[:tag] (default bge-PROFILE:latest); "
                                      "each platform is also tagged NAME:TAG-ARCH."),
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
    update_lock: bool = typer.Option(False, "--update-lock", help="Resolve hf:// revisions again and rewrite the lock."),
) -> None:
    """Render the profile and build its image for each platform, then print a summary (and --report JSON)."""
    from bgeimg import build as builds
    from bgeimg import buildview
    from bgeimg import engine as engines

    # Mirror flags are profile values like any other, so they are validated the same way.
    sets = list(set_ or [])
    if registry_mirror:
        sets.append(f"mirrors.registry={registry_mirror}")
    if pip_index_url:
        sets.append(f"mirrors.pip_index_url={pip_index_url}")
    resolved = resolve_profile(profile, sets, config, profiles_dir, model)
    options = builds.BuildOptions(
        image=tag or f"bge-{resolved.profile.name}:latest", engine=engine,
        platforms=platform.split(",") if platform else None, wheelhouse=wheelhouse, ca_bundle=ca_bundle,
        context_dir=context_dir, no_cache=no_cache, push=push, cache_from=list(cache_from or []),
        cache_to=list(cache_to or []), lock_file=lock or lock_path(resolved), update_lock=update_lock,
    )

    def said(chosen: engines.Chosen) -> None:
        err.print(f"engine: [bold]{chosen.engine.name}[/] ({chosen.reason})", highlight=False, soft_wrap=True)

    with buildview.LiveView(err) as view:
        result = builds.build(resolved.profile, options, on_engine=said, on_event=view.update)
    if report is not None:
        result.write(report)
    out.print(buildview.summary(result))
    for line in buildview.tag_lines(result):
        out.print(line, soft_wrap=True, highlight=False)


@app.command()
def analyze(
    image: str = typer.Argument(..., help="Image: a local engine image, a `docker save` archive, an OCI layout "
                                "directory, or registry:HOST/REPO:TAG (read without pulling)."),
    other: Optional[str] = typer.Argument(None, help="A second image to compare against IMAGE."),
    platform: Optional[str] = typer.Option(None, "--platform", help="os/arch (optionally /variant) to pick from an index."),
    source: str = typer.Option("auto", "--source", help="auto, engine, archive, oci or registry."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (schema: docs/analyze.md)."),
    max_size: Optional[str] = typer.Option(None, "--max-size", help="Fail (exit 1) above this size, e.g. 1.2GB."),
    max_wasted: Optional[str] = typer.Option(None, "--max-wasted", help="Fail (exit 1) above this waste, e.g. 10MB."),
    min_efficiency: Optional[str] = typer.Option(None, "--min-efficiency", help="Fail (exit 1) below, e.g. 0.98."),
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
    import json

    from bgeimg.analyze import analyze as analyze_image, compare, gates as gating, output

    limits = dict(
        max_size=gating.parse_size(max_size, "--max-size") if max_size else None,
        max_wasted=gating.parse_size(max_wasted, "--max-wasted") if max_wasted else None,
        min_efficiency=gating.parse_ratio(min_efficiency, "--min-efficiency") if min_efficiency else None,
        max_floor_ratio=gating.parse_floor_ratio(max_floor_ratio) if max_floor_ratio else None,
    )
    from bgeimg.analyze.rehearse import parse_mounts

    mounts = parse_mounts(rehearse_mount or [])
    rehearse = rehearse or bool(mounts)
    advise = advise or rehearse or max_floor_ratio is not None
    first = analyze_image(image, platform=platform, source=source, probe=advise and not other)
    second = analyze_image(other, platform=platform, source=source, probe=advise) if other else None
    last = second or first
    advice = None
    if advise:
        from bgeimg.analyze.advise import advise as advise_image
        from bgeimg.analyze.errors import AnalyzeInputError
        from bgeimg.analyze.rehearse import rehearse as rehearse_image

        if rehearse and last.source != "engine":
            raise AnalyzeInputError(f"--rehearse runs the image, and {last.ref} (read as {last.source}) is not one "
                                    "in the local engine", "docker load or pull it first, then give its name")
        started = rehearse_image(last.config_digest or last.ref, name=last.ref, platform=last.platform,
                                 mounts=mounts) if rehearse else None
        advice = advise_image(last, rehearsal=started)
    gates = gating.check(last, advice=advice, **limits)
    result = compare(first, second) if second else first
    if json_out:
        doc = result.to_json()
        if advice is not None:
            doc["advice"] = advice.to_json()
        doc["gates"] = [vars(g) for g in gates]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        if second:
            output.render_comparison(result, gates, out)
        else:
            output.render_report(result, gates, out)
        if advice is not None:
            output.render_advice(advice, out)
    failed = [g for g in gates if not g.passed]
    if failed:
        raise gating.GateFailed("gate failed: " + "; ".join(g.message for g in failed))


@app.command("wheelhouse")
def wheelhouse_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the wheels (one subdirectory per platform "
                                "when several are asked for)."),
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    config: Optional[Path] = ConfigOpt,
    profiles_dir: Optional[List[Path]] = ProfilesDirOpt,
    platform: Optional[str] = typer.Option(None, "--platform", help="Comma-separated (default: the profile's)."),
) -> None:
    """Download the profile's requirements as wheels for the image's platform, for `build --wheelhouse`."""
    from bgeimg import wheelhouse

    resolved = resolve_profile(profile, set_, config, profiles_dir)
    p = resolved.profile
    platforms = platform.split(",") if platform else p.platforms
    extra = [p.torch_index_url] if p.torch_index_url else []
    for plat in platforms:
        dest = output if len(platforms) == 1 else output / plat.replace("/", "-")
        made = wheelhouse.download(p.requirements, plat, dest, extra_index_urls=extra)
        out.print(f"{plat}: {len(made.wheels)} wheels in {dest}")


@app.command("push")
def push_cmd(
    image: List[str] = typer.Argument(..., help="Local image (its -amd64/-arm64 siblings from `bgeimg build` are "
                                      "found), or one local image per platform."),
    registry: Optional[str] = typer.Option(None, "--registry", "-r", help="HOST[:PORT][/NAMESPACE] (default: the "
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
    config: Optional[Path] = ConfigOpt,
    json_out: bool = typer.Option(False, "--json", help="Print what was pushed as JSON."),
) -> None:
    """Push the image for every platform under the tags your scheme gives, to the registry and each mirror."""
    import json
    from datetime import datetime, timezone

    from bgeimg import gitinfo, push as pushing, tags as tagging
    from bgeimg.engine.base import api_client

    cfg = profiles.load_config(config)
    name = repo or pushing.repository_name(image[0])
    targets = [pushing.target(r, name) for r in [pushing.resolve_registry(registry, cfg.registry), *(mirror or [])]]
    policy = tagging.policy_from_config(
        cfg.tags, schemes=tuple(scheme) if scheme else None, latest=latest, prefix=prefix, suffix=suffix,
        long_commit=long_commit or None, allow_dirty=allow_dirty, extra=tuple(tag or ()))
    project = cfg.path.parent if cfg.path else Path.cwd()
    tagset = tagging.compute_tags(policy, version=version, git=gitinfo.facts(project), now=datetime.now(timezone.utc))
    docker_api = api_client()
    platforms = platform.split(",") if platform else None
    local = pushing.platform_images(docker_api, image[0], platforms) if len(image) == 1 else list(image)
    results = pushing.push(docker_api, local, targets, tagset.tags,
                           progress=None if json_out else (lambda msg: err.print(msg, highlight=False)))
    if json_out:
        doc = [{"registry": r.registry, "repository": r.repository, "digest": r.digest, "tags": r.tags,
                "platforms": r.platforms, "error": r.error, "bytes_uploaded": r.stats.blob_bytes_uploaded,
                "blobs_uploaded": r.stats.blobs_uploaded, "blobs_skipped": r.stats.blobs_skipped} for r in results]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        table = Table("registry", "repository", "digest", "tags", "platforms", "uploaded")
        for r in results:
            table.add_row(r.registry, r.repository, r.digest or f"[red]failed: {escape(r.error or '')}[/]",
                          " ".join(r.tags), " ".join(r.platforms),
                          f"{r.stats.blob_bytes_uploaded} B in {r.stats.blobs_uploaded} blobs "
                          f"({r.stats.blobs_skipped} already there)")
        out.print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        raise pushing.PushFailed(f"push failed on {len(failed)} of {len(results)} registries: "
                                 + "; ".join(f"{r.registry}: {r.error}" for r in failed))


@app.command("promote")
def promote_cmd(
    source: str = typer.Argument(..., help="REGISTRY/REPO@sha256:... (or :TAG) to promote; a rollback is a promote "
                                 "of the previous digest."),
    tag: str = typer.Option(..., "--tag", "-t", help="The tag to point at it, e.g. stable."),
    to: Optional[str] = typer.Option(None, "--to", help="Another repository in the same registry (blobs mounted)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Point a tag at an existing image by digest, through the registry API (no layers pulled or pushed)."""
    import json

    from bgeimg import promote as promoting
    from bgeimg.reference import parse_reference
    from bgeimg.registry import RegistryClient

    ref = parse_reference(source)
    result = promoting.promote(RegistryClient(ref.registry), ref, tag, to)
    if json_out:
        sys.stdout.write(json.dumps(vars(result)) + "\n")
    else:
        out.print(f"{result.reference} -> {result.digest}" + (f" ({result.mounted} blobs mounted)" if result.mounted
                                                             else ""), highlight=False)


@app.command("tags")
def tags_cmd(
    repository: str = typer.Argument(..., help="REGISTRY/REPO, e.g. 127.0.0.1:5000/bge-m3."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List a repository's tags with their digests, platforms and creation labels."""
    import json

    from bgeimg import promote as promoting
    from bgeimg.reference import parse_reference
    from bgeimg.registry import RegistryClient

    ref = parse_reference(repository)
    rows = promoting.list_tags(RegistryClient(ref.registry), ref.repository)
    if json_out:
        sys.stdout.write(json.dumps([vars(r) for r in rows], indent=2) + "\n")
        return
    table = Table("tag", "digest", "platforms", "created")
    for r in rows:
        table.add_row(r.tag, r.digest, " ".join(r.platforms), r.created or "")
    out.print(table)


@deploy_app.command("render")
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
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    config: Optional[Path] = ConfigOpt,
    profiles_dir: Optional[List[Path]] = ProfilesDirOpt,
) -> None:
    """Kubernetes Deployment + Service + HPA, a compose file, or an nginx least_conn upstream."""
    from bgeimg import deploy

    resolved = resolve_profile(profile, set_, config, profiles_dir)
    files = deploy.render(target, resolved.profile, deploy.DeployOptions(
        image=image, replicas=replicas, name=name, namespace=namespace, allow_tag=allow_tag,
        min_replicas=min_replicas, max_replicas=max_replicas, model_claim=model_claim, backends=tuple(backend or ())))
    for file_name, text in files.items():
        if output is None:
            sys.stdout.write(text)
        else:
            output.mkdir(parents=True, exist_ok=True)
            (output / file_name).write_text(text)
            err.print(f"wrote {output / file_name}")


@bundle_app.command("save")
def bundle_save(
    image: List[str] = typer.Argument(..., help="Images to carry (their -amd64/-arm64 siblings come along)."),
    output: Path = typer.Option(..., "--output", "-o", help="The bundle file, e.g. site.tar.zst."),
) -> None:
    """Write one zstd-compressed file with the images and a manifest of sha256 checksums."""
    from bgeimg import bundle
    from bgeimg.engine.base import api_client

    for m in bundle.save(api_client(), list(image), output):
        out.print(f"{', '.join(m.refs)}: {m.size} bytes, sha256 {m.sha256[:12]}", highlight=False)
    out.print(f"wrote {output} ({output.stat().st_size} bytes)", highlight=False)


@bundle_app.command("load")
def bundle_load(
    path: Path = typer.Argument(..., help="A bundle made by `bgeimg bundle save`."),
    verify_only: bool = typer.Option(False, "--verify", help="Only check the checksums; import nothing."),
) -> None:
    """Check every checksum first, then import the images into the engine."""
    from bgeimg import bundle
    from bgeimg.engine.base import api_client

    members = bundle.verify(path) if verify_only else bundle.load(api_client(), path)
    for m in members:
        out.print(f"{'verified' if verify_only else 'loaded'} {', '.join(m.refs)}", highlight=False)


@app.command("doctor")
def doctor_cmd(
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    config: Optional[Path] = ConfigOpt,
    profiles_dir: Optional[List[Path]] = ProfilesDirOpt,
    platform: Optional[str] = typer.Option(None, "--platform", help="Platforms to check (default: the profile's)."),
    registry: Optional[List[str]] = typer.Option(None, "--registry", help="Registry to check (default: the "
                                                 "config's or $BGE_REGISTRY_URL). Repeatable."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Check that this machine can build, push and serve the profile; exit 1 when something it needs is missing."""
    import json
    import os

    from bgeimg import doctor

    resolved = resolve_profile(profile, set_, config, profiles_dir)
    cfg_registry = resolved.config.registry if resolved.config else None
    registries = list(registry or []) or [r for r in (cfg_registry, os.environ.get("BGE_REGISTRY_URL")) if r]
    checks = doctor.run(resolved.profile, platforms=platform.split(",") if platform else None, registries=registries)
    if json_out:
        sys.stdout.write(json.dumps([c.to_dict() for c in checks], indent=2) + "\n")
    else:
        for c in checks:
            mark = "[green]pass[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]warn[/]")
            fix = f"  -> {escape(c.fix)}" if not c.ok and c.fix else ""
            out.print(f"{mark}  {c.name}: {escape(c.detail)}{fix}", highlight=False, soft_wrap=True)
    missing = [c.name for c in checks if c.required and not c.ok]
    if missing:
        raise doctor.DoctorFailed(f"{len(missing)} needed check(s) failed: {', '.join(missing)}")


def _click_errors() -> tuple[type, ...]:
    """Typer >= 0.24 vendors click (typer._click); older ones use click. Catch usage errors from either."""
    import importlib

    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except ImportError:
            pass
    return tuple(found)


def main() -> None:
    """Entry point: run the app, turning every bgeimg error into one line and its exit code."""
    try:
        app(standalone_mode=False, prog_name="bgeimg")
    except BgeimgError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except _click_errors() as exc:  # usage errors: unknown option, missing argument, bad choice
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        err.print(f"[red]error:[/] {escape(exc.format_message())}{where}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2) or 2)
