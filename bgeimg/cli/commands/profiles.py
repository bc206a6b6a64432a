"""`bgeimg profiles list|show`, `render` and `wheelhouse`: the profile and context steps, no engine needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from bgeimg.cli.options import ConfigOpt, JsonOpt, ModelOpt, ProfileOpt, ProfilesDirOpt, SetOpt
from bgeimg.cli.output import emit_json, err, line, out
from bgeimg.errors import BgeimgError
from bgeimg.oci.platform import parse_list


def resolve_profile(name, sets, config, profiles_dirs, model: str | None = None):
    """The profile the options name, resolved (the one place a command turns options into a profile)."""
    from bgeimg import profile as profiles

    cfg = profiles.load_config(config)
    sets = list(sets or [])
    if model:
        if model.startswith("hf://") or model == "none":
            sets.append(f"model={model}")
        else:  # a directory given on the command line is relative to where the command runs
            sets += ["model.source=path", f"model.path={Path(model).resolve()}"]
    return profiles.resolve(name, config=cfg, sets=sets, profile_dirs=list(profiles_dirs or []))


def lock_path(resolved) -> Path:
    config = resolved.config.path if resolved.config else None
    return (config.parent if config else Path.cwd()) / "bgeimg.lock"


def profiles_list(profiles_dir: ProfilesDirOpt = None, json_out: JsonOpt = False) -> None:
    """List the profiles bgeimg knows: built-in ones and those in --profiles-dir."""
    from bgeimg import profile as profiles

    warn = lambda text: err.print(f"warning: {text} (skipped)", markup=False, soft_wrap=True)  # noqa: E731
    rows = profiles.list_profiles(profiles.search_dirs(profiles_dir or []), warn)
    if json_out:
        emit_json([{"name": n, "aliases": a, "description": d, "file": str(p)} for n, a, d, p in rows])
        return
    table = Table("profile", "aliases", "description", "file")
    for name, aliases, description, path in rows:
        table.add_row(escape(name), escape(", ".join(aliases)), escape(description), escape(str(path)))
    out.print(table)


def profiles_schema() -> None:
    """Print the JSON schema of bgeimg.yaml and profile files, for editor completion (e.g. yaml-language-server:
    `# yaml-language-server: $schema=bgeimg.schema.json`)."""
    from bgeimg import profile as profiles

    emit_json(profiles.json_schema())


def profiles_show(
    name: str = typer.Argument(..., help="Profile name or alias."),
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
) -> None:
    """Print the fully resolved profile as YAML (after extends, project config and --set)."""
    from bgeimg import profile as profiles

    resolved = resolve_profile(name, set_, config, profiles_dir)
    sys.stdout.write(profiles.to_yaml(resolved.profile))


def render(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
    model: ModelOpt = None,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the build context here."),
    backend: str = typer.Option("classic", "--backend", help="classic (Engine API) or buildkit syntax."),
) -> None:
    """Render the build context; without -o, print the Dockerfile."""
    from bgeimg import atomic
    from bgeimg.context import assemble
    from bgeimg.context import render as rendering
    from bgeimg.context.model import Lock

    if backend not in ("classic", "buildkit"):
        raise BgeimgError(f"--backend {backend!r}: expected classic or buildkit")
    resolved = resolve_profile(profile, set_, config, profiles_dir, model)
    options = rendering.RenderOptions(backend="buildkit" if backend == "buildkit" else "classic")
    if output is None:
        sys.stdout.write(rendering.render(resolved.profile, options).dockerfile)
        return
    # Made in OUTPUT.tmp-XXXX and renamed when complete; an existing non-empty directory is replaced only when it
    # is a context bgeimg rendered before.
    with atomic.directory(output, allow_existing=assemble.is_context(output)) as work:
        assemble.prepare(resolved.profile, work, options, lock=Lock.load(lock_path(resolved)))
    err.print(f"rendered profile [bold]{resolved.profile.name}[/] into ", end="")
    err.print(str(output), markup=False)


def wheelhouse(
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the wheels (one subdirectory per "
                                "platform when several are asked for)."),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
    platform: Optional[str] = typer.Option(None, "--platform", help="Comma-separated (default: the profile's)."),
) -> None:
    """Download the profile's requirements as wheels for the image's platform, for `build --wheelhouse`."""
    from bgeimg.context import wheelhouse as wheels

    p = resolve_profile(profile, set_, config, profiles_dir).profile
    platforms = parse_list(platform) or p.platforms
    extra = [p.torch_index_url] if p.torch_index_url else []
    for plat in platforms:
        dest = output if len(platforms) == 1 else output / plat.replace("/", "-")
        made = wheels.download(p.requirements, plat, dest, extra_index_urls=extra)
        line(f"{plat}: {len(made.wheels)} wheels in {dest}")
