"""Which Python modules an image's entry point starts, read from its shell entry script (advise's static pass)."""

from __future__ import annotations

from pathlib import Path

from bgeimg.analyze.advise import _entry_modules

ENTRYPOINT = Path(__file__).resolve().parents[2] / "templates" / "entrypoint.sh"


def test_the_shipped_entrypoint_is_followed_past_lines_shlex_cannot_split() -> None:
    text = ENTRYPOINT.read_bytes()
    assert b'" \\\n' in text  # it has continued echo lines, which shlex cannot split one physical line at a time
    cfg = {"Entrypoint": ["/usr/local/bin/bgeimg-entrypoint"], "Cmd": None}
    modules, _ = _entry_modules(cfg, live={}, texts={"/usr/local/bin/bgeimg-entrypoint": text}, workdir="/opt/app")
    assert {"bge_server.serve", "bge_server.app", "uvicorn"} <= set(modules)


def test_an_unsplittable_line_skips_only_itself() -> None:
    script = b"#!/bin/sh\necho \"it's fine' \nexec python -m my_server.main\n"
    cfg = {"Entrypoint": ["/entry"], "Cmd": None}
    modules, _ = _entry_modules(cfg, live={}, texts={"/entry": script}, workdir="/")
    assert modules == ["my_server.main"]
