"""Atomic outputs: everything bgeimg writes under a name the user gave is made under a temporary name beside it
and renamed into place once complete, so an interrupt, a full disk or an error never leaves a half-written file
under its final name. What was made is removed on failure (SIGTERM included: it is raised as an exception)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bgeimg.errors import BgeimgError


class OutputError(BgeimgError):
    """An output path the user gave cannot be used (exit 2)."""


def check_new_dir(target: Path, *, allow_existing: bool = False) -> None:
    """Refuse a target that is a file, or a non-empty directory unless `allow_existing`."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} is a file, not a directory", "give -o a new or empty directory")
    if target.is_dir() and any(target.iterdir()) and not allow_existing:
        raise OutputError(f"{target} exists and is not empty", "give -o a new or empty directory, or remove it")
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent} does not exist", "create the parent directory first")


def check_new_file(target: Path) -> None:
    """Refuse a target that is a directory or whose directory is missing."""
    if target.is_dir():
        raise OutputError(f"{target} is a directory", "give -o a file name, e.g. site.tar.zst")
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent} does not exist", "create the directory first")


@contextlib.contextmanager
def directory(target: Path, *, allow_existing: bool = False) -> Iterator[Path]:
    """Yield a fresh `TARGET.tmp-XXXX` beside `target`; on success it replaces `target` (an empty directory, or
    with `allow_existing` one bgeimg made before), on any failure it is removed."""
    check_new_dir(target, allow_existing=allow_existing)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
    try:
        yield work
        if target.is_dir():
            old = target.with_name(f"{work.name}.old")
            target.rename(old)
            work.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@contextlib.contextmanager
def file(target: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `target` for writing; renamed onto `target` when the block completes (after
    fsync), removed when it fails."""
    check_new_file(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the mode open() would give
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: Path, text: str) -> Path:
    with file(target) as fh:
        fh.write(text)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
