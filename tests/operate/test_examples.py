"""The examples are real: CI files parse, and every `bgeimg ...` line in them uses only subcommands and flags
the CLI defines (read from the Typer app itself); the example projects resolve to valid profiles."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
import yaml

from bgeimg import profile as profiles
from bgeimg.cli.app import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CI_FILES = sorted((EXAMPLES / "ci").glob("*.yml"))


def command_lines(node) -> list[str]:
    """Every string in the YAML that runs bgeimg (GitHub `run:` values, GitLab script lists)."""
    found = []
    if isinstance(node, dict):
        for value in node.values():
            found += command_lines(value)
    elif isinstance(node, list):
        for value in node:
            found += command_lines(value)
    elif isinstance(node, str):
        found += [line.strip() for line in node.splitlines() if line.strip().startswith("bgeimg ")]
    return found


def check_against_cli(line: str) -> None:
    line = re.sub(r"\$\{\{[^}]*\}\}", "X", line).split(">", 1)[0]
    tokens = shlex.split(line)[1:]
    command = typer.main.get_command(app)  # typer may vendor click: duck-type groups by `.commands`
    while hasattr(command, "commands") and tokens and not tokens[0].startswith("-"):
        name = tokens.pop(0)
        assert name in command.commands, f"`{line}`: no bgeimg subcommand {name!r}"
        command = command.commands[name]
    assert not hasattr(command, "commands"), f"`{line}` stops at a group"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for token in tokens:
        if token.startswith("-"):
            flag = token.split("=", 1)[0]
            assert flag in options, f"`{line}`: {command.name} has no option {flag} (it has {sorted(options)})"


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_ci_files_parse_and_use_only_real_flags(path: Path) -> None:
    lines = command_lines(yaml.safe_load(path.read_text()))
    assert len(lines) >= 3, "the CI example should build, gate and push"
    for line in lines:
        check_against_cli(line)
    text = " ".join(lines)
    assert "--platform linux/amd64,linux/arm64" in text and "--max-size" in text
    assert "--scheme semver" in text and "--scheme commit" in text


def test_the_checker_catches_a_made_up_flag() -> None:
    with pytest.raises(AssertionError, match="no option --turbo"):
        check_against_cli("bgeimg build --turbo")
    with pytest.raises(AssertionError, match="no bgeimg subcommand 'deploy-all'"):
        check_against_cli("bgeimg deploy-all")


@pytest.mark.parametrize("project", ["bge-m3", "bge-reranker-v2-m3", "minilm"])
def test_example_projects_resolve(project: str) -> None:
    config = profiles.load_config(EXAMPLES / project / "bgeimg.yaml")
    resolved = profiles.resolve(config=config)
    assert resolved.profile.model.id
    if project == "bge-reranker-v2-m3":
        assert resolved.profile.model.task == "rerank" and resolved.profile.model.source == "none"
