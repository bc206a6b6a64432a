"""The Typer app: which command is where, and `main()`, the one place an exception becomes a line and an exit
code. Each command lives in cli/commands/ and only parses options, calls one function and prints its result."""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import traceback

import typer

from bgeimg import __version__
from bgeimg.cli.commands import analyze, build, export, operate, profiles, release
from bgeimg.cli.output import error, line, set_verbosity
from bgeimg.errors import BgeimgError, Terminated, redact

app = typer.Typer(
    name="bgeimg",
    help="Build small, correct, versioned container images that serve BGE models, and prove they are small.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
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
profiles_app.command("schema")(profiles.profiles_schema)
app.command("render")(profiles.render)
app.command("build")(build.build)
app.command("wheelhouse")(profiles.wheelhouse)
app.command("export")(export.export)
app.command("analyze")(analyze.analyze)
app.command("push")(release.push)
app.command("promote")(release.promote)
app.command("tags")(release.tags)
app.command("sign")(release.sign_image)
app.command("verify")(release.verify_image)
app.command("sbom")(release.sbom)
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
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error (or set "
                               "BGEIMG_DEBUG=1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results and errors (any command; also after it)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every build log line and step detail (any command; "
                                 "also after it)."),
) -> None:
    set_verbosity(-1 if quiet else 1 if verbose else 0)
    if debug:
        os.environ["BGEIMG_DEBUG"] = "1"


VERBOSITY_FLAGS = ("-q", "--quiet", "-v", "--verbose", "--debug")


def _lift_verbosity(argv: list[str]) -> list[str]:
    """`bgeimg build -q` means `bgeimg -q build`: the global flags work after any command (before `--`)."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    flags = [a for a in head if a in VERBOSITY_FLAGS]
    return flags + [a for a in head if a not in VERBOSITY_FLAGS] + tail


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


_signalled: list[int] = []  # typer turns any KeyboardInterrupt into exit 130; this says SIGTERM was the cause


def _on_sigterm(signum, frame) -> None:
    _signalled.append(signum)
    raise Terminated()


def _interrupted() -> None:
    if _signalled:
        error("terminated (SIGTERM); temporary files removed")
        _finish(Terminated.exit_code)
    error("interrupted; temporary files removed")
    _finish(130)


# OSError kinds: (exit code, what to do). No space or no permission is the system's (3); a path that is the wrong
# kind of thing was given by the user (2).
_OS_ERRORS = {
    errno.ENOSPC: (3, "no space left on the device", "free space and run it again"),
    errno.EDQUOT: (3, "disk quota exceeded", "free space and run it again"),
    errno.EACCES: (3, "permission denied", "check the path's owner and mode"),
    errno.EPERM: (3, "operation not permitted", "check the path's owner and mode"),
    errno.EROFS: (3, "read-only file system", "write somewhere else"),
    errno.EEXIST: (2, "already exists", "give a new path or remove it"),
    errno.ENOTDIR: (2, "not a directory", "give a directory there"),
    errno.EISDIR: (2, "is a directory", "give a file path"),
    errno.ENOENT: (2, "no such file or directory", "check the path"),
    errno.ENOTEMPTY: (2, "directory not empty", "give a new or empty directory"),
}


def _os_error(exc: OSError) -> tuple[int, str] | None:
    known = _OS_ERRORS.get(exc.errno or -1)
    if known is None:
        return None
    code, what, fix = known
    path = exc.filename if exc.filename is not None else ""
    where = f"{path}: " if path else ""
    return code, redact(f"{where}{what} ({fix})")


def _command() -> str:
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
    return "bgeimg " + " ".join(words) if words else "bgeimg"


def _finish(code: int) -> None:
    """Flush stdout, so a full disk or a closed pipe behind it fails loudly, then exit with `code` (return on 0)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(141 if not code else code)  # like a shell pipeline whose reader went away: SIGPIPE's code
    except OSError as exc:
        _quiet_stdout()
        found = _os_error(exc) or (3, str(exc))
        error(f"cannot write the output: {found[1]}")
        sys.exit(code or found[0])
    if code:
        sys.exit(code)


def _quiet_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that second flush cannot fail too.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main() -> None:
    """Entry point: run the app, turning every exception into one line and its exit code (the one place)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(args=_lift_verbosity(sys.argv[1:]), standalone_mode=False, prog_name="bgeimg")
        if isinstance(code, int) and code:  # click hands back an interrupted run's exit code instead of raising
            if code == 130:
                _interrupted()
            _finish(code)
        _finish(0)
    except BgeimgError as exc:
        error(redact(str(exc)))
        _finish(exc.exit_code)
    except typer.Exit as exc:
        _finish(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except _click_errors() as exc:  # type: ignore[misc]  # usage errors: unknown option, missing argument, bad choice
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        error(redact(f"{exc.format_message()}{where}"))
        _finish(getattr(exc, "exit_code", 2) or 2)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(141)
    except OSError as exc:
        found = _os_error(exc)
        if found is None:
            _unexpected(exc)
        else:
            error(found[1])
            _finish(found[0])
    except SystemExit as exc:
        cause = exc.__context__
        if exc.code == 1 and isinstance(cause, OSError) and cause.errno == errno.EPIPE:
            sys.exit(141)  # typer answers a closed pipe with 1, which here means "a check failed"
        raise
    except Exception as exc:  # a bug: one line, and the traceback only when asked for
        _unexpected(exc)


def _unexpected(exc: BaseException) -> None:
    if os.environ.get("BGEIMG_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    error(redact(f"{_command()} failed unexpectedly: {type(exc).__name__}: {str(exc)[:200]}")
          + " (run again with --debug or BGEIMG_DEBUG=1 to see the traceback)")
    _finish(70)
