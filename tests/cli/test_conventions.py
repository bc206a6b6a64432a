"""What users of docker, buildx and huggingface_hub expect of a CLI: every --help renders, shell completion,
-q/-v on any command, --json on read commands, and the config's JSON schema for editors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import typer
import yaml

from bgeimg.cli.app import app

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bgeimg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def _paths(command, prefix: tuple[str, ...] = ()):
    yield prefix
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            yield from _paths(sub, (*prefix, name))


def test_every_help_page_renders() -> None:
    root = typer.main.get_command(app)
    paths = list(_paths(root))
    assert ("push",) in paths and ("bundle", "load") in paths and ("profiles", "schema") in paths
    for path in paths:
        result = bgeimg(*path, "--help")
        assert result.returncode == 0, (path, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr and "Usage: bgeimg" in result.stdout, path
    assert "[/NAMESPACE]" in bgeimg("push", "--help").stdout  # rich must not eat it as markup


def test_shell_completion_script_and_answers() -> None:
    script = bgeimg("--show-completion", "bash")
    assert script.returncode == 0 and "_BGEIMG_COMPLETE=complete_bash" in script.stdout
    answers = bgeimg(env={"_BGEIMG_COMPLETE": "complete_bash", "COMP_WORDS": "bgeimg pro", "COMP_CWORD": "1"})
    assert answers.stdout.split() == ["promote", "profiles"]


def test_quiet_and_verbose_work_after_the_command_too() -> None:
    loud = bgeimg("render", "-p", "cpu-slim", "-o", "/nonexistent-parent/x/y")
    quiet = bgeimg("render", "-q", "-p", "cpu-slim", "--set", "server.port=9000")
    assert quiet.returncode == 0 and "EXPOSE 9000" in quiet.stdout and quiet.stderr == ""
    assert loud.returncode != 0 and loud.stderr.startswith("error:")  # errors still print under any level
    verbose = bgeimg("-v", "profiles", "show", "cpu-slim")
    assert verbose.returncode == 0 and yaml.safe_load(verbose.stdout)["name"] == "cpu-slim"


def test_profiles_list_json_and_schema_validate_the_shipped_files() -> None:
    listed = json.loads(bgeimg("profiles", "list", "--json").stdout)
    names = {p["name"] for p in listed}
    assert {"cpu-slim", "cuda-runtime", "external-model"} <= names
    assert next(p for p in listed if p["name"] == "cuda-runtime")["aliases"] == ["gpu"]
    schema = json.loads(bgeimg("profiles", "schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for p in listed:  # every shipped profile file and example config is valid against it
        validator.validate(yaml.safe_load(open(p["file"])))
    for config in ("examples/minilm/bgeimg.yaml",):
        validator.validate(yaml.safe_load(open(os.path.join(ROOT, config))))
    errors = list(validator.iter_errors({"server": {"port": "eighty"}, "platfroms": []}))
    assert {e.validator for e in errors} >= {"type", "additionalProperties"}  # a typo and a wrong type are caught
