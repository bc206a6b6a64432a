"""Byte progress for long operations on stderr: rich bars on a terminal, plain start/done lines otherwise (CI
logs, pipes), nothing with --json."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from bgeimg.cli.output import err, say
from bgeimg.progress import Meter, Silent


class Lines:
    """One line when a step has ended well, with its bytes and time (a failed step leaves only the error's line)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, tuple[str, float, int]] = {}

    def start(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            self._steps[key] = (description, time.monotonic(), 0)

    def advance(self, key: str, n: int) -> None:
        with self._lock:
            if key in self._steps:
                description, started, done = self._steps[key]
                self._steps[key] = (description, started, done + n)

    def finish(self, key: str, ok: bool = True) -> None:
        with self._lock:
            step = self._steps.pop(key, None)
        if step and ok:
            description, started, done = step
            say(f"{description}: {done:,} bytes in {time.monotonic() - started:.1f} s")


class Bars:
    """rich.progress bars, one per step, removed when the step ends."""

    def __init__(self, progress) -> None:
        self._progress = progress
        self._tasks: dict[str, object] = {}
        self._lock = threading.Lock()

    def start(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            self._tasks[key] = self._progress.add_task(description, total=total)

    def advance(self, key: str, n: int) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._progress.advance(task, n)

    def finish(self, key: str, ok: bool = True) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
        if task is not None:
            self._progress.remove_task(task)


@contextlib.contextmanager
def meter(quiet: bool = False) -> Iterator[Meter]:
    """The meter for this terminal: bars when stderr is one, lines when not, silence when `quiet` (--json)."""
    if quiet:
        yield Silent()
        return
    if not err.is_terminal:
        yield Lines()
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True) as progress:
        yield Bars(progress)
