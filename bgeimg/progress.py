"""How long operations (push, bundle save/load) report bytes as they go, without knowing who shows them: the CLI
passes a meter that draws bars on a terminal or prints plain lines; the default shows nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol


class Meter(Protocol):
    def start(self, key: str, description: str, total: int | None) -> None: ...

    def advance(self, key: str, n: int) -> None: ...

    def finish(self, key: str, ok: bool = True) -> None: ...


class Silent:
    """A meter that shows nothing."""

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def finish(self, key: str, ok: bool = True) -> None:
        pass


@contextlib.contextmanager
def step(meter: Meter, key: str, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A metered step: yields `advance(n)`; the meter hears whether it ended well (a failure is the error's line)."""
    meter.start(key, description, total)
    ok = False
    try:
        yield lambda n: meter.advance(key, n)
        ok = True
    finally:
        meter.finish(key, ok)
