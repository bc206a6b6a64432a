"""The one output layer: rich for people on stdout, JSON for machines, and one-line messages on stderr.

User text (image names, paths, messages) is never read as rich markup or emoji codes: `say` and `line` print it
as it is; only bgeimg's own fixed words are styled."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)
# -q (-1): results and errors only; -v (1): every build log line and each step's detail.
verbosity = 0


def set_verbosity(level: int) -> None:
    global verbosity
    verbosity = level


def jsonable(value: Any) -> Any:
    """A result as plain JSON values: its `to_json()` when it has one, a dataclass as a dict, lists item by item."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2) + "\n")


def line(text: str) -> None:
    """One line of user-facing text on stdout, printed as it is."""
    out.print(text, markup=False, soft_wrap=True)


def say(text: str) -> None:
    """Progress on stderr, printed as it is; silent under -q."""
    if verbosity >= 0:
        err.print(text, markup=False, soft_wrap=True)


def error(message: str) -> None:
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
