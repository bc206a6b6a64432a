"""One exception class per kind of user mistake or outside failure.

Each carries the single line the user sees; the CLI prints it and exits with `exit_code` in one place
(`bgeimg.cli.app.main`). Exit codes: 1 a check failed (a size gate, a doctor check), 2 bad input, 3 an outside
system (engine, registry, network) failed.
"""

from __future__ import annotations

import re


class BgeimgError(Exception):
    """Base class: `str(err)` is the one line shown to the user."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ProfileError(BgeimgError):
    """A profile, project config or --set value is missing, malformed or invalid."""


class RenderError(BgeimgError):
    """A template is missing or cannot be rendered with the resolved profile."""


class ModelError(BgeimgError):
    """A model source cannot be resolved or its files are missing."""


class OutsideError(BgeimgError):
    """Something outside bgeimg (engine, registry, network) failed."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `finally:` cleans up on the way out (exit 143 instead of 130)."""

    exit_code = 143


# `scheme://user:pw@` anywhere, or `user:pw@host` at the start of a value; never an image's `@sha256:` digest.
_USERINFO = re.compile(r"(?P<lead>://|^|(?<=[\s'\"(]))[^/\s@'\"():]+(:[^/\s@'\"()]*)?@(?!sha256:)(?=[\w\[.-])")


def redact(text: str) -> str:
    """`text` with the userinfo of every URL or registry in it replaced by `***`: the one redaction used by every
    message that shows a URL or a registry, so a password given in one is never printed back."""
    def hide(m: re.Match) -> str:
        # After `://` any userinfo is a secret; at the start of a bare value only `user:password@` is.
        return m.group("lead") + "***@" if m.group("lead") == "://" or m.group(2) is not None else m.group(0)

    return _USERINFO.sub(hide, text)
