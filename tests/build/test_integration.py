"""The foundation end to end on the real test bed: render cpu-slim with a tiny requirement set, build it through
docker-py's Engine API with the base pulled through the registry mirror, and check the image."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.context import assemble as context
from bgeimg.context.render import RenderOptions

TINY = ["fastapi==0.163.2", "uvicorn==0.54.0"]


def build(docker_api, directory: Path, tag: str, platform: str = "linux/amd64") -> list[dict]:
    events = list(docker_api.build(path=str(directory), tag=tag, decode=True, rm=True, forcerm=True,
                                   platform=platform, pull=False))
    errors = [e for e in events if "error" in e or "errorDetail" in e]
    assert not errors, "".join(e.get("stream", "") for e in events[-20:]) + json.dumps(errors)
    return events


@pytest.mark.engine
def test_cpu_slim_builds_through_the_mirror_and_runs_as_non_root(docker_api, docker_client, registry, minilm_dir,
                                                                 wheelhouse_factory, tmp_path: Path) -> None:
    # The base is not in the engine yet: remove it so the build must pull `python:3.11-slim` via the mirror.
    try:
        docker_api.remove_image("python:3.11-slim")
    except Exception:
        pass
    resolved = profiles.resolve("cpu-slim", sets=[f"requirements={json.dumps(TINY)}", f"model={minilm_dir}"])
    ctx = context.prepare(resolved.profile, tmp_path / "ctx", RenderOptions(wheelhouse=True),
                          wheelhouse=wheelhouse_factory(TINY, "linux/amd64"))
    tag = f"bgeimg-test-foundation/cpu-slim:{uuid.uuid4().hex[:8]}"
    try:
        events = build(docker_api, ctx.directory, tag)
        # the base was pulled during the build, through the mirror (Docker Hub is unreachable here)
        assert any("library/python" in e.get("status", "") or "library/python" in e.get("id", "") or
                   e.get("status", "").startswith("Digest: sha256:") for e in events), events[:8]
        info = docker_api.inspect_image(tag)
        labels = info["Config"]["Labels"]
        assert labels["io.bgeimg.profile"] == "cpu-slim"
        assert labels["io.bgeimg.model.source"] == "path"
        assert labels["org.opencontainers.image.title"] == "bge-cpu-slim"
        assert info["Config"]["User"] == "10001:10001"
        assert info["Config"]["Healthcheck"]["Test"][-1] == "/opt/app/healthcheck.py"
        assert not any(e.startswith(("PIP_", "HF_TOKEN")) for e in info["Config"]["Env"])

        out = docker_client.containers.run(tag, ["sh", "-c", "id -u; id -g; ls /opt/model; ls /tmp/build 2>&1 || true;"
                                                 " python -c 'import fastapi, uvicorn; print(\"ok\")';"
                                                 " find /opt/venv -name '*.pyc' | wc -l; find /opt/venv -name '*.py' | wc -l;"
                                                 " ls /opt/venv/lib/python3*/site-packages/fastapi/__pycache__"], remove=True).decode()
        lines = out.split()
        assert lines[0] == "10001" and lines[1] == "10001"
        assert "model.safetensors" in out and "config.json" in out
        assert "ok" in lines
        # bytecode `imported`: the modules a start imports are compiled in the builder, not the whole venv
        pyc, py = (int(n) for n in lines[lines.index("ok") + 1:lines.index("ok") + 3])
        assert 0 < pyc < py and any(n.startswith("applications.cpython-311") for n in lines), (pyc, py)
        assert "wheels" not in out  # /tmp/build (wheels, requirements) never reaches the runtime stage
    finally:
        try:
            docker_api.remove_image(tag, force=True)
        except Exception:
            pass
