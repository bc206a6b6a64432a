"""Where the shipped templates and profiles are: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    # In a wheel, pyproject's force-include puts them under bgeimg/_data/; in a checkout (and an editable
    # install) they sit beside the package.
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bgeimg installation is incomplete: no {name}/ directory near {_PKG}")


def templates_dir() -> Path:
    return _find("templates")


def profiles_dir() -> Path:
    return _find("profiles")
