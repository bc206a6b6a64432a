"""How long operations (push, bundle save/load) report bytes as they go, without knowing who shows them: the CLI
passes a meter that draws bars on a terminal or prints plain lines; the default shows nothing."""

from __future__ import annotations

from typing import Protocol


class Meter(Protocol):
    def start(self, key: str, description: str, total: int | None) -> None: ...

    def advance(self, key: str, n: int) -> None: ...

    def finish(self, key: str) -> None: ...


class Silent:
    """A meter that shows nothing."""

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def finish(self, key: str) -> None:
        pass
