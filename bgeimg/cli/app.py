"""The Typer app: which command is where, and `main()`, the one place an exception becomes a line and an exit
code. Each command lives in cli/commands/ and only parses options, calls one function and prints its result."""

from __future__ import annotations

import sys

import typer

from bgeimg import __version__
from bgeimg.cli.commands import analyze, build, export, operate, profiles, release
from bgeimg.cli.output import error, line
from bgeimg.errors import BgeimgError

app = typer.Typer(
    name="bgeimg",
    help="Build small, correct, versioned container images that serve BGE models, and prove they are small.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
profiles_app = typer.Typer(help="List and show build profiles.", no_args_is_help=True)
deploy_app = typer.Typer(help="Deployment manifests for a pushed image.", no_args_is_help=True)
bundle_app = typer.Typer(help="Carry images to a site with no network: one verified file.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
app.add_typer(deploy_app, name="deploy")
app.add_typer(bundle_app, name="bundle")

profiles_app.command("list")(profiles.profiles_list)
profiles_app.command("show")(profiles.profiles_show)
app.command("render")(profiles.render)
app.command("build")(build.build)
app.command("wheelhouse")(profiles.wheelhouse)
app.command("export")(export.export)
app.command("analyze")(analyze.analyze)
app.command("push")(release.push)
app.command("promote")(release.promote)
app.command("tags")(release.tags)
deploy_app.command("render")(operate.deploy_render)
bundle_app.command("save")(operate.bundle_save)
bundle_app.command("load")(operate.bundle_load)
app.command("doctor")(operate.doctor)


def _version(value: bool) -> None:
    if value:
        line(f"bgeimg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


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
        code = app(standalone_mode=False, prog_name="bgeimg")
        if isinstance(code, int) and code:  # click hands back an interrupted run's exit code instead of raising
            if code == 130:
                error("interrupted")
            sys.exit(code)
    except BgeimgError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        error("interrupted")
        sys.exit(130)
    except _click_errors() as exc:  # usage errors: unknown option, missing argument, bad choice
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        error(f"{exc.format_message()}{where}")
        sys.exit(getattr(exc, "exit_code", 2) or 2)
