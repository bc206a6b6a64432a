"""What a build looks like in the terminal: a live panel while it runs, a summary table when it is done."""

from __future__ import annotations

import json
import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Column, Table
from rich.text import Text

from bgeimg.build.backends.base import BuildEvent, StepLog
from bgeimg.build.run import BuildReport

_LINES = 6
PROGRESS = ("auto", "plain", "quiet", "rawjson")  # buildx's --progress modes (rawjson: buildx's own stream)


class LiveView:
    """A rich Live panel: platform, current step, elapsed time, the step's last lines. Use as a context manager
    and pass `update` as the build's `on_event`. On a non-terminal console it prints one line per step."""

    def __init__(self, console: Console, verbosity: int = 0, progress: str = "auto"):
        self.console = console
        # --progress (buildx's words) over -q/-v: quiet prints nothing, plain every line, rawjson JSON lines
        self.verbosity = {"quiet": -1, "plain": 1}.get(progress, verbosity)
        self.progress = progress
        live = console.is_terminal and self.verbosity >= 0 and progress == "auto"
        self.live = Live(console=console, refresh_per_second=4, transient=True) if live else None
        self.started = time.monotonic()
        self.raw_seen = False

    def __enter__(self) -> LiveView:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def update(self, platform: str, event: BuildEvent, log: StepLog) -> None:
        if event.kind == "note":
            self.console.print(event.text, markup=False, highlight=False, soft_wrap=True)
            return
        if event.kind == "raw":  # the builder's own rawjson line (buildx): printed as it came, nothing of ours
            if self.progress == "rawjson":
                self.raw_seen = True
                print(event.text, file=self.console.file, flush=True)
            return
        if self.progress == "rawjson":  # a backend without a rawjson stream of its own: one object per event
            if event.kind != "done" and not self.raw_seen:
                print(json.dumps({"platform": platform, "kind": event.kind, "text": event.text}),
                      file=self.console.file, flush=True)
            return
        if self.verbosity < 0:
            return
        if self.verbosity > 0 and event.kind == "output":
            self.console.print(f"[dim]{platform}  {escape(event.text)}[/]", highlight=False, soft_wrap=True)
        if self.live is None:
            if event.kind == "step":  # the instruction is user text: never read as markup
                self.console.print(f"[dim]{platform}[/] {escape(event.text)}", highlight=False, soft_wrap=True)
            elif event.kind == "cached":
                self.console.print(f"[dim]{platform}   cached[/]", highlight=False)
            return
        step = log.current
        lines = (step.output if step else [])[-_LINES:]
        title = f"{platform} · {time.monotonic() - self.started:5.1f}s · step {len(log.steps)}"
        body = Group(Text(step.name if step else "starting", style="bold"),
                     *(Text(line[:200], style="dim") for line in lines))
        self.live.update(Panel(body, title=title, title_align="left"))


def summary(report: BuildReport) -> Table:
    """Per platform: image id, size, layers, time, cached steps. Tags go on their own lines (`tag_lines`)."""
    table = Table(*(Column(name, overflow="fold") for name in
                    ("platform", "image id", "size (MB)", "layers", "seconds", "cached steps")),
                  title=f"{report.profile} built with {report.engine}")
    for result in report.platforms:
        table.add_row(result.platform, result.image_id.removeprefix("sha256:")[:12], f"{result.size / 1e6:.1f}",
                      str(result.layers), f"{result.seconds:.1f}", f"{result.cached_steps}/{len(result.steps)}")
    return table


def tag_lines(report: BuildReport) -> list[str]:
    """`TAG  IMAGE-ID` per tag made; printed whole (soft-wrapped), since CI logs are narrow and a cut tag is useless."""
    if report.index is not None:  # one index under every tag, whatever its platforms
        digest = report.index["digest"].removeprefix("sha256:")[:12]
        return [f"{tag}  {digest} (index)" for tag in report.platforms[0].tags]
    return [f"{tag}  {r.image_id.removeprefix('sha256:')[:12]}" for r in report.platforms for tag in r.tags]
