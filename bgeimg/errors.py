"""One exception class per kind of user mistake or outside failure.

Each carries the single line the user sees; the CLI prints it and exits with `exit_code` in one place
(`bgeimg.cli.app.main`). Exit codes: 1 a check failed (a size gate, a doctor check), 2 bad input, 3 an outside
system (engine, registry, network) failed.
"""

from __future__ import annotations


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
