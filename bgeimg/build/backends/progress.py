"""Reading BuildKit's `--progress=plain` output (shared by `docker build` with BuildKit and `docker buildx`), and
buildx's `--progress=rawjson`.

plain: each vertex is `#N [stage i/n] INSTRUCTION`; its lines follow as `#N 1.234 text`, and it ends with
`#N CACHED`, `#N DONE 1.2s` or `#N ERROR: message`. Lines without `#` are the client's own final words.
rawjson: one SolveStatus object a line: `vertexes` (digest, name, cached, error) and `logs` (vertex, base64 data).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator

from bgeimg.build.backends.base import BuildError, BuildEvent, Step, StepLog

_VERTEX_RE = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
_OUTPUT_RE = re.compile(r"^#(\d+) \d+(?:\.\d+)? (.*)$")
_HINT_RE = re.compile(r"^(Learn more at |Switch to a different driver|View build details: )")
_STATE_RE = re.compile(r"^#(\d+) (CACHED|DONE [\d.]+s|ERROR: .*)$")


class PlainProgress:
    """Folds plain-progress lines into a StepLog; `errors` collects what the build said went wrong."""

    def __init__(self, log: StepLog) -> None:
        self.log = log
        self.vertices: dict[str, Step] = {}
        self.errors: list[str] = []

    def feed(self, line: str) -> Iterator[BuildEvent]:
        line = line.rstrip("\r\n")
        match = _VERTEX_RE.match(line)
        if match:
            vid, name = match.groups()
            if name.startswith("[internal]") or name.startswith("[auth]"):
                return
            if vid not in self.vertices:
                yield self.log.step(name)
                self.vertices[vid] = self.log.current  # type: ignore[assignment]
            return
        match = _STATE_RE.match(line)
        if match:
            vid, state = match.groups()
            step = self.vertices.get(vid)
            if state == "CACHED" and step is not None:
                yield self.log.cached(step)
            elif state.startswith("ERROR: "):
                self.errors.append(state[len("ERROR: "):])
                if step is not None:
                    step.failed = True
            return
        match = _OUTPUT_RE.match(line)
        if match:
            vid, text = match.groups()
            step = self.vertices.get(vid)
            if step is not None:
                yield self.log.output(text, step)
            return
        if line.startswith("#") or not line.strip() or line.startswith("------") or line.startswith(" > "):
            return
        if _HINT_RE.match(line.strip()):
            return  # buildx's advice lines after an ERROR ("Learn more at ..."): never the message itself
        # The client's final error ("failed to solve ...", "error: ..."), or a warning.
        self.errors.append(line.strip())
        self.log.tail = (self.log.tail + [line.strip()])[-12:]


class RawJsonProgress(PlainProgress):
    """buildx's rawjson stream folded into the same StepLog; each status object is also passed on as it came (a
    `raw` event), so `bgeimg build --progress rawjson` prints buildx's own stream. buildx indents its objects over
    several lines: they are gathered until they parse. Other lines: as plain's (the client's final error)."""

    def __init__(self, log: StepLog) -> None:
        super().__init__(log)
        self.pending = ""

    def feed(self, line: str) -> Iterator[BuildEvent]:
        if not self.pending and not line.startswith("{"):
            yield from super().feed(line)
            return
        self.pending += line
        if not line.rstrip().endswith("}"):
            return  # an object still coming
        try:
            status = json.loads(self.pending)
        except ValueError:
            return  # a nested object closed, not the status
        text, self.pending = self.pending.rstrip("\r\n"), ""
        yield BuildEvent("raw", text)
        if not isinstance(status, dict):
            return
        for vertex in status.get("vertexes") or []:
            vid, name = vertex.get("digest"), vertex.get("name") or ""
            if not vid or name.startswith(("[internal]", "[auth]")):
                continue
            if vid not in self.vertices:
                yield self.log.step(name)
                self.vertices[vid] = self.log.current  # type: ignore[assignment]
            step = self.vertices[vid]
            if vertex.get("cached") and not step.cached:
                yield self.log.cached(step)
            # a platform's failure cancels its siblings: plain shows those as `#N CANCELED`, not as errors
            if vertex.get("error") and not step.failed and "context canceled" not in vertex["error"]:
                self.errors.append(vertex["error"])
                step.failed = True
        for entry in status.get("logs") or []:
            logged = self.vertices.get(entry.get("vertex"))
            if logged is None:
                continue
            data = base64.b64decode(entry.get("data") or "").decode(errors="replace")
            for piece in data.splitlines():
                if piece.strip():
                    yield self.log.output(piece, logged)


def run(cmd: list[str], log: StepLog, *, env: dict[str, str] | None = None,
        parser: type[PlainProgress] = PlainProgress) -> Iterator[BuildEvent]:
    """Run a BuildKit client command, yielding events line by line; BuildError when it exits non-zero."""
    progress = parser(log)
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
                                bufsize=1, errors="replace")
    except OSError as exc:
        raise BuildError(f"cannot run {cmd[0]}: {exc.strerror}", raw=str(exc)) from None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            yield from progress.feed(line)
    finally:
        if proc.poll() is None and proc.stdout is not None:
            proc.stdout.close()
        rc = proc.wait()
    if rc != 0:
        failed = next((s for s in reversed(log.steps) if s.failed), None) or \
            next((s for s in reversed(log.steps) if not s.cached and s.output), log.current)
        raw = progress.errors[-1] if progress.errors else f"{cmd[0]} exited with code {rc}"
        where = f" at `{failed.name}`" if failed else ""
        last = " | ".join((failed.output if failed else log.tail)[-3:])
        raise BuildError(f"build failed{where}: {raw}" + (f"; last output: {last}" if last else ""),
                         raw=raw, steps=log.steps)


def cli_args(request) -> list[str]:
    """The flags `docker build` and `docker buildx build` share, in one order (unit-tested through both)."""
    args: list[str] = []
    for tag in request.tags:
        args += ["--tag", tag]
    for key, value in request.build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    for key, value in request.labels.items():
        args += ["--label", f"{key}={value}"]
    for sid, src in request.secrets.items():
        args += ["--secret", f"id={sid},src={src}"]
    for ref in request.cache_from:
        args += ["--cache-from", ref]
    return args
