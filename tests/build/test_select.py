"""`--engine auto` picks buildx, then BuildKit `docker build`, then the Engine API, and says which and why."""

from __future__ import annotations

import pytest
from buildhelp import TINY, run_cli


@pytest.mark.engine
@pytest.mark.parametrize("client,expected", [
    ("/usr/bin/docker", "engine: buildkit (auto: no buildx plugin; `/usr/bin/docker build` speaks BuildKit)"),
    ("/nonexistent/docker", "engine: engine (auto: neither buildx nor a BuildKit docker client; using the Engine API)"),
])
def test_auto_choice_is_said(client, expected, tmp_path, tiny_wheels, image_name):
    proc = run_cli("build", "-p", "external-model", "--set", f"requirements=[{','.join(TINY)}]",
                   "--wheelhouse", str(tiny_wheels()), "-t", f"{image_name}:auto", env={"BGEIMG_DOCKER_CLI": client})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stderr
    assert f"{image_name}:auto-amd64" in proc.stdout  # the summary table names the images built
