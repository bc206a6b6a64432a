"""The live build panel and the summary, rendered on a real (in-memory) terminal console."""

from __future__ import annotations

import io

from rich.console import Console

from bgeimg.build.backends.base import Step, StepLog
from bgeimg.build.run import BuildReport, PlatformResult
from bgeimg.build.view import LiveView, summary, tag_lines


def _terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=100, color_system=None), buffer


def test_live_panel_shows_current_step_and_its_last_lines():
    console, _ = _terminal()
    log = StepLog()
    view = LiveView(console)
    with view:
        view.update("linux/arm64", log.step("[builder 4/5] RUN pip install -r requirements.txt"), log)
        for i in range(10):
            view.update("linux/arm64", log.output(f"Collecting package-{i}"), log)
        rendered = Console(file=io.StringIO(), width=100, color_system=None)
        rendered.print(view.live.renderable)
        text = rendered.file.getvalue()
    assert "linux/arm64" in text and "step 1" in text
    assert "RUN pip install -r requirements.txt" in text
    assert "Collecting package-9" in text and "Collecting package-4" in text
    assert "Collecting package-3" not in text  # only the last lines are kept on screen


def test_plain_console_prints_one_line_per_step():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=100)
    log = StepLog()
    with LiveView(console) as view:
        view.update("linux/amd64", log.step("COPY server/ /opt/app/"), log)
        view.update("linux/amd64", log.output("noise"), log)
        view.update("linux/amd64", log.cached(), log)
    assert buffer.getvalue().splitlines() == ["linux/amd64 COPY server/ /opt/app/", "linux/amd64   cached"]


def test_summary_lists_every_tag_whole():
    long_name = "registry.example.com:5000/team/very/long/path/bge-m3-reranker"
    results = [PlatformResult(platform="linux/amd64", image_id="sha256:" + "a" * 64,
                              tags=[f"{long_name}:1.0-amd64", f"{long_name}:1.0"], size=1_151_000_000, layers=9,
                              architecture="amd64", seconds=58.3, steps=[Step("RUN x", cached=True), Step("COPY y")])]
    report = BuildReport("cpu-slim", "buildkit", "auto", f"{long_name}:1.0", {}, results)
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(summary(report))
    out = buffer.getvalue()
    assert "1151.0" in out and "1/2" in out and "aaaaaaaaaaaa" in out
    assert tag_lines(report) == [f"{long_name}:1.0-amd64  aaaaaaaaaaaa", f"{long_name}:1.0  aaaaaaaaaaaa"]
