"""The house rules of the package layout (README "Layout"), checked on the source: no import cycle between
modules, nothing imports the CLI, and oci/ and errors.py (the floor) import no other part of bgeimg."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "bgeimg"


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` needs pkg.mod; `from pkg import name` needs pkg (its __init__)
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_nothing_imports_upward() -> None:
    graph = _graph()
    for name, deps in graph.items():
        if not name.startswith("bgeimg.cli") and name != "bgeimg.__main__":  # `python -m bgeimg` runs the CLI
            assert not [d for d in deps if d.startswith("bgeimg.cli")], f"{name} imports the CLI"
        if name.startswith("bgeimg.oci") or name == "bgeimg.errors":
            above = [d for d in deps if not (d.startswith("bgeimg.oci") or d == "bgeimg.errors")]
            assert not above, f"{name} is on the floor but imports {above}"
