"""The CLI's happy paths: profiles list/show, render to stdout and to a directory, python -m bgeimg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from bgeimg.cli.app import app

runner = CliRunner()


def test_profiles_show_prints_the_resolved_profile_as_yaml() -> None:
    result = runner.invoke(app, ["profiles", "show", "gpu", "--set", "server.workers=3"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["name"] == "cuda-runtime" and data["device"] == "cuda" and data["server"]["workers"] == 3
    assert data["requirements"][0].startswith("torch==")


def test_render_writes_a_complete_deterministic_context(tmp_path: Path, minilm_dir: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = runner.invoke(app, ["render", "-p", "cpu-slim", "--set", f"model={minilm_dir}", "-o", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1]
    files = outputs[0]
    for name in ("Dockerfile", ".dockerignore", "entrypoint.sh", "requirements.txt", "server/healthcheck.py",
                 "server/bge_server/app.py", "model/config.json", "model/model.safetensors"):
        assert name in files, name
    assert not any(name.startswith("model/") and name.endswith((".md", ".gitattributes")) for name in files)
    assert (tmp_path / "a" / "entrypoint.sh").stat().st_mode & 0o111
    assert files["requirements.txt"].decode().splitlines()[0] == "torch==2.13.0"


def test_rerender_removes_stale_files(tmp_path: Path, minilm_dir: Path) -> None:
    out = tmp_path / "ctx"
    assert runner.invoke(app, ["render", "-p", "cpu-slim", "--set", f"model={minilm_dir}", "-o", str(out)]).exit_code == 0
    assert (out / "model" / "config.json").exists()
    assert runner.invoke(app, ["render", "-p", "external-model", "-o", str(out)]).exit_code == 0
    assert not (out / "model").exists()


def test_python_dash_m_and_version() -> None:
    result = subprocess.run([sys.executable, "-m", "bgeimg", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("bgeimg ")
    result = subprocess.run([sys.executable, "-m", "bgeimg", "render", "-p", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: unknown profile 'nope'")
    assert "Traceback" not in result.stderr


def test_wheelhouse_downloads_for_the_image_platform_not_the_host(tmp_path: Path) -> None:
    result = runner.invoke(app, ["wheelhouse", "-p", "cpu-slim", "--set", "requirements=[pydantic-core==2.50.4]",
                                 "--platform", "linux/arm64", "-o", str(tmp_path / "wh")])
    assert result.exit_code == 0, result.output
    wheels = [p.name for p in (tmp_path / "wh").glob("*.whl")]
    assert len(wheels) >= 1 and all("x86_64" not in w for w in wheels)
    assert any("aarch64" in w and w.startswith("pydantic_core-2.50.4") for w in wheels)


def test_wheelhouse_refuses_an_unresolvable_pin(tmp_path: Path, capsys, monkeypatch) -> None:
    from bgeimg.cli.app import main

    monkeypatch.setattr(sys, "argv", ["bgeimg", "wheelhouse", "--set", "requirements=[fastapi==0.0.999]",
                                      "--set", "torch_index_url=null", "-o", str(tmp_path / "wh")])
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: pip could not download wheels for linux/amd64: ERROR: ")
    assert "fastapi==0.0.999" in err and "Traceback" not in err


def test_model_flag_takes_a_hub_reference_or_a_directory(tmp_path: Path, minilm_dir: Path, monkeypatch) -> None:
    result = runner.invoke(app, ["profiles", "show", "cpu-slim"])
    hub = runner.invoke(app, ["render", "-p", "external-model", "--model", "hf://BAAI/bge-reranker-v2-m3@abc"])
    assert hub.exit_code == 0 and 'BGE_MODEL_ID="BAAI/bge-reranker-v2-m3"' in hub.stdout
    assert 'io.bgeimg.model.revision="abc"' in hub.stdout
    monkeypatch.chdir(minilm_dir.parent)
    local = runner.invoke(app, ["render", "-p", "cpu-slim", "--model", minilm_dir.name, "-o", str(tmp_path / "c")])
    assert local.exit_code == 0, local.output
    assert (tmp_path / "c" / "model" / "model.safetensors").exists()
    assert result.exit_code == 0
