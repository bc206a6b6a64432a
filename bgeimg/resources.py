"""Where the shipped templates and profiles are (inside the wheel, or at the top of a source checkout), and the
user's cache directory."""

from __future__ import annotations

import os
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


def cache_dir() -> Path:
    """bgeimg's cache (analyze's layer scans, push's layer map): $BGEIMG_CACHE_DIR, else $XDG_CACHE_HOME/bgeimg,
    else ~/.cache/bgeimg."""
    env = os.environ.get("BGEIMG_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bgeimg"
