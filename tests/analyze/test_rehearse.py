"""`bgeimg analyze --rehearse`: a real start of a real image shows what static import graphs cannot.

The planted image's entry point imports `usedpkg` (and its 1.2 MB `big` module, which has no bytecode) and then
waits; `lazypkg` and `usedpkg.extra` are imported only inside a function, so the static graph reaches them and
counts them as needed, while a start never imports them. Their sizes are known, so each finding is checked to the
byte, and the findings that need a rehearsal must be absent without one.
"""

from __future__ import annotations

import pytest
from analyze_images import build_planted, dist

from bgeimg.analyze import analyze
from bgeimg.analyze.advise import advise
from bgeimg.analyze.rehearse import imported_modules, rehearse

SITE = "/opt/venv/lib/python3.11/site-packages"
PLATFORM = "linux/amd64"


APP = b"""import time
import usedpkg


def later():  # a request might call this; a start never does
    import lazypkg
    import usedpkg.extra
    return lazypkg, usedpkg.extra


open("/tmp/ready", "w").close()
time.sleep(600)
"""


def planted() -> dict[str, bytes]:
    used = dist("usedpkg", {
        "usedpkg/__init__.py": b"from . import big\n",
        "usedpkg/big.py": b"# " + b"s" * 1_200_000 + b"\nVALUE = 1\n",
        "usedpkg/extra.py": b"VALUE = 2\n",
        "usedpkg/__pycache__/extra.cpython-311.pyc": b"p" * 1_150_000,
    })
    lazy = dist("lazypkg", {"lazypkg/__init__.py": b"VALUE = 3\n", "lazypkg/data.bin": b"x" * 1_300_000})
    files = {f"{SITE[1:]}/{k}": v for k, v in {**used, **lazy}.items()}
    files["opt/app/app.py"] = APP
    return files


def dockerfile(health: str) -> str:
    return f"""FROM python:3.11-slim
COPY opt/ /opt/
WORKDIR /opt/app
ENV PYTHONPATH=/opt/app:{SITE} PYTHONDONTWRITEBYTECODE=1
{health}
CMD ["python3", "-m", "app"]
"""


@pytest.fixture(scope="module")
def images(docker_api):
    files = planted()
    exits = dockerfile("").replace('CMD ["python3", "-m", "app"]',
                                   'CMD ["python3", "-c", "raise SystemExit(\'no weights in /models\')"]')
    tags = {
        "healthcheck": build_planted(docker_api, "rehearse", dockerfile("HEALTHCHECK --interval=30s CMD test -f "
                                                                        "/tmp/ready"), files, PLATFORM),
        "none": build_planted(docker_api, "rehearse", dockerfile(""), files, PLATFORM),
        "exits": build_planted(docker_api, "rehearse", exits, files, PLATFORM),
    }
    yield tags, files
    for tag in tags.values():
        docker_api.remove_image(tag, force=True)


def leftover_containers(docker_api, tag: str) -> list:
    """Rehearsal containers of this test's image (others may run on a shared engine at the same time)."""
    return docker_api.containers(all=True, filters={"label": "io.bgeimg.rehearsal", "ancestor": tag})


@pytest.mark.engine
def test_a_rehearsed_start_finds_what_the_static_graph_keeps_to_the_byte(images, docker_api) -> None:
    tags, files = images
    report = analyze(tags["healthcheck"], platform=PLATFORM, probe=True)
    static = advise(report)
    assert not {"unimported-packages", "unused-bytecode"} & {f.kind for f in static.findings}

    # the image's own HEALTHCHECK says when it is ready, asked every half second instead of every 30 s
    started = rehearse(tags["healthcheck"], platform=PLATFORM)
    assert started.ready == "healthy" and started.seconds < 25
    assert {"usedpkg", "usedpkg.big"} <= set(started.modules)  # app runs as __main__: runpy logs no import
    assert not {"lazypkg", "usedpkg.extra"} & set(started.modules)
    assert leftover_containers(docker_api, tags["healthcheck"]) == []

    advice = advise(report, rehearsal=started)
    found = {f.kind: f for f in advice.findings}
    lazy = sum(len(v) for k, v in files.items() if "/lazypkg" in k)
    assert found["unimported-packages"].bytes == lazy and "lazypkg" in found["unimported-packages"].title
    assert "usedpkg" not in found["unimported-packages"].title
    assert found["unused-bytecode"].bytes == 1_150_000 and found["unused-bytecode"].files == 1
    missing = found["missing-bytecode"]  # usedpkg/big.py and usedpkg/__init__.py, both imported, no .pyc
    assert missing.files == 2 and "rehearsed start" in missing.title and not missing.deliberate
    assert advice.floor == static.floor - lazy - 1_150_000
    assert advice.rehearsal["modules"] == len(started.modules) and advice.rehearsal["ready"] == "healthy"


@pytest.mark.engine
def test_without_a_healthcheck_ready_is_when_imports_stop(images) -> None:
    tags, _ = images
    started = rehearse(tags["none"], platform=PLATFORM, quiet=3)
    assert started.ready == "quiet" and "usedpkg.big" in started.modules and "lazypkg" not in started.modules


@pytest.mark.engine
def test_rehearse_cli_and_its_bad_inputs(bgeimg, images, docker_api, small_archive) -> None:
    tags, _ = images
    run = bgeimg("analyze", tags["healthcheck"], "--platform", PLATFORM, "--rehearse", "--json")
    assert run.code == 0, run.err
    kinds = {f["kind"] for f in run.json["advice"]["findings"]}
    assert {"unimported-packages", "unused-bytecode"} <= kinds and run.json["advice"]["rehearsal"]["modules"] > 10

    # the entry point exits before it is ready: one line with its last words, exit 3, no container left
    run = bgeimg("analyze", tags["exits"], "--platform", PLATFORM, "--rehearse")
    assert run.code == 3 and run.err.count("\n") == 1 and "Traceback" not in run.err
    assert "exited with code 1 before it was ready: no weights in /models" in run.err
    assert "--rehearse-mount" in run.err and tags["exits"] in run.err
    assert leftover_containers(docker_api, tags["exits"]) == []

    # an archive cannot be run; a mount must name something that exists
    run = bgeimg("analyze", str(small_archive), "--rehearse")
    assert run.code == 2 and run.err.count("\n") == 1 and "not one in the local engine" in run.err
    run = bgeimg("analyze", tags["healthcheck"], "--rehearse-mount", "/nonexistent/models:/models")
    assert run.code == 2 and run.err.count("\n") == 1 and "/nonexistent/models does not exist" in run.err
    run = bgeimg("analyze", tags["healthcheck"], "--rehearse-mount", "models")
    assert run.code == 2 and "is not HOST:DIR" in run.err


def test_import_lines_are_read_and_everything_else_ignored() -> None:
    log = ("import time: self [us] | cumulative | imported package\n"
           "import time:       245 |       2624 |     torch._native.ops\n"
           "INFO:     Uvicorn running on http://0.0.0.0:8000\n"
           "import time:        12 |         12 | app\n"
           "import time: not a number | x | y\n")
    assert imported_modules(log) == {"torch._native.ops", "app"}
