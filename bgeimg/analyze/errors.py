"""The analyze command's error kinds; exit codes come from bgeimg.errors (1 gate, 2 bad input, 3 outside)."""

from __future__ import annotations

from bgeimg.errors import BgeimgError, OutsideError


class AnalyzeInputError(BgeimgError):
    """The image argument is not something analyze can read (not an archive, truncated, unknown, wrong platform)."""


class SourceUnavailable(OutsideError):
    """The engine or registry holding the image could not be reached or failed (exit 3)."""


class GateFailed(BgeimgError):
    """A --max-size / --max-wasted / --min-efficiency gate failed (exit 1)."""

    exit_code = 1
