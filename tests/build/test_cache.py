"""Cache-friendly layers, proved from the steps each backend reports as cached: dependencies, then model, then
app code. An app change rebuilds only the app step and what follows; a model change keeps the dependencies."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from buildhelp import TINY, build_with_report

from bgeimg import resources


def _is_from(step: dict) -> bool:
    return " FROM " in f" {step['name']}" or step["name"].startswith("FROM ")


def _per_build(step: dict) -> bool:
    # The classic builder adds labels given at build time as last steps; `created` differs every build.
    return step["name"].startswith("LABEL org.opencontainers.image.")


def _layers(steps: list[dict]) -> list[dict]:
    return [s for s in steps if not _is_from(s) and not _per_build(s)]


def _index(steps: list[dict], needle: str) -> int:
    return next(i for i, s in enumerate(steps) if needle in s["name"])


def _linked_copy(src, dst):
    # Hard links: a 90 MB model is not copied; files the test changes are replaced, never written through.
    shutil.copytree(src, dst, copy_function=os.link)


@pytest.mark.engine
@pytest.mark.parametrize("backend", ["engine", "buildkit"])
def test_only_changed_layers_rebuild(backend, tmp_path, tiny_wheels, minilm_dir, image_name):
    app, model = tmp_path / "app", tmp_path / "model"
    shutil.copytree(resources.templates_dir() / "server", app)
    _linked_copy(minilm_dir, model)
    base_args = ["-p", "cpu-slim", "--engine", backend, "--wheelhouse", str(tiny_wheels()), "-t", f"{image_name}:c",
                 "--set", f"requirements=[{','.join(TINY)}]", "--set", f"app_dir={app}",
                 "--set", "model.source=path", "--set", f"model.path={model}"]

    def build(*extra: str) -> list[dict]:
        return build_with_report(tmp_path, *base_args, *extra)["platforms"][0]["steps"]

    build()  # warm: whatever the engine already had, everything is cached from here on
    again = build()
    assert all(s["cached"] for s in _layers(again)), again

    # 1. App code only: every step before `COPY server/` is cached, it and everything after are rebuilt.
    code = app / "bge_server" / "app.py"
    code.write_text(code.read_text() + f"\n# changed {uuid.uuid4()}\n")  # a change no earlier run has cached
    steps = build()
    at = _index(steps, "COPY server/")
    before = _layers(steps[:at])
    assert before and all(s["cached"] for s in before), steps
    assert not any(s["cached"] for s in steps[at:]), steps
    assert steps[_index(steps, "pip install")]["cached"] and steps[_index(steps, "COPY model/")]["cached"]

    # 2. Model files only: the dependency install is cached, the model layer is rebuilt.
    config = model / "tokenizer_config.json"
    text = config.read_text()
    config.unlink()  # break the hard link before changing the file
    config.write_text(text.replace("{", f'{{"bgeimg_test": "{uuid.uuid4()}", ', 1))  # never seen before
    steps = build()
    assert steps[_index(steps, "pip install")]["cached"], steps
    builder = [s for s in _layers(steps) if s["name"].startswith("[builder") or s["name"].startswith("RUN python3 -m venv")]
    assert builder and all(s["cached"] for s in builder), steps
    assert not steps[_index(steps, "COPY model/")]["cached"], steps

    # 3. Model revision only (a label and an ENV value): the builder stage, dependencies included, is cached.
    steps = build("--set", f"model.revision=v{uuid.uuid4().hex[:8]}")
    assert steps[_index(steps, "pip install")]["cached"], steps
    assert steps[_index(steps, "python3 -m venv")]["cached"], steps
