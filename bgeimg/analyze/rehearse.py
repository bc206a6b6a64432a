"""A rehearsed start: run an image's own entry point until it is ready, and record every Python module it imports.

Static import graphs over-count (transformers and torch load submodules lazily, so everything under them looks
reachable); a start is what a cold start really pays for. `PYTHONPROFILEIMPORTTIME=1` makes every Python process in
the container print each import it performs to stderr, with the module's full name, so any image works, not only
bgeimg's, and nothing is added to it. The container gets no network (a foreign image must not reach out; a
download-on-start image without its weights mounted fails, and says so) and is removed afterwards.

Ready is the image's own HEALTHCHECK turning healthy (polled every half second instead of its interval), or, for an
image without one, no new import for `quiet` seconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from bgeimg.analyze.errors import AnalyzeInputError, SourceUnavailable

IMPORT_RX = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([A-Za-z_][\w.]*)\s*$", re.M)
POLL = 0.5


class RehearsalFailed(SourceUnavailable):
    """The image's entry point exited, or never became ready, during a rehearsed start (exit 3)."""


@dataclass
class Rehearsal:
    """What one start of the image imported before it was ready."""

    image: str
    modules: list[str]  # full module names, sorted
    ready: str  # "healthy" (its HEALTHCHECK) or "quiet" (no new import for a while)
    seconds: float


def parse_mounts(items: list[str]) -> dict[str, str]:
    """--rehearse-mount HOST:DIR items -> {absolute host path: container dir}; the host path must exist."""
    import os

    mounts = {}
    for item in items:
        src, sep, dst = item.rpartition(":")
        if not sep or not src or not dst.startswith("/"):
            raise AnalyzeInputError(f"--rehearse-mount {item!r} is not HOST:DIR", "write it like ./models:/models")
        if not os.path.exists(src):
            raise AnalyzeInputError(f"--rehearse-mount {item!r}: {src} does not exist", "give a file or directory "
                                    "on this machine")
        mounts[os.path.abspath(src)] = dst
    return mounts


def imported_modules(log: str) -> set[str]:
    """Module names from `-X importtime` / PYTHONPROFILEIMPORTTIME output (other lines are ignored)."""
    return set(IMPORT_RX.findall(log))


def rehearse(image: str, *, name: str | None = None, platform: str | None = None, mounts: dict[str, str] | None = None,
             timeout: float = 300, quiet: float = 8.0, api=None) -> Rehearsal:
    """Start `image` (an id or reference in the local engine) once; `mounts` maps host paths to read-only
    container paths (an external-model image's weights); `name` is what messages call it."""
    import docker

    from bgeimg.oci.docker import api_client

    api = api or api_client(timeout=600)
    name = name or image
    try:
        config = api.inspect_image(image).get("Config") or {}
    except docker.errors.ImageNotFound:
        raise AnalyzeInputError(f"--rehearse runs the image, and {name} is not in the local engine",
                                "docker load or pull it first") from None
    health = (config.get("Healthcheck") or {}).get("Test")
    if health and health[0] == "NONE":
        health = None
    host = api.create_host_config(network_mode="none", binds={src: {"bind": dst, "mode": "ro"}
                                                               for src, dst in (mounts or {}).items()})
    create = dict(image=image, environment={"PYTHONPROFILEIMPORTTIME": "1"}, host_config=host,
                  labels={"io.bgeimg.rehearsal": "1"})
    if health:  # the image's own check, asked often; retries high so a slow start is not declared unhealthy
        create["healthcheck"] = {"test": health, "interval": int(POLL * 1e9), "timeout": int(10e9),
                                 "retries": 10_000, "start_period": 0}
    if platform:
        create["platform"] = platform
    try:
        container = api.create_container(**create)["Id"]
    except docker.errors.APIError as exc:
        raise SourceUnavailable(f"the Docker engine could not create a container of {name}: "
                                f"{exc.explanation}") from None
    start = time.monotonic()
    try:
        api.start(container)
        seen, changed = -1, start
        while True:
            time.sleep(POLL)
            state = api.inspect_container(container)["State"]
            log = api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")
            if not state.get("Running"):
                last = next((line for line in reversed(log.splitlines())
                             if line.strip() and not IMPORT_RX.match(line)), "no output")
                raise RehearsalFailed(f"a rehearsed start of {name} exited with code {state.get('ExitCode')} "
                                      f"before it was ready: {last.strip()[:200]}",
                                      "it runs with no network: --rehearse-mount HOST:DIR what it downloads on start, "
                                      "or drop --rehearse")
            count = log.count("import time:")
            now = time.monotonic()
            if count != seen:
                seen, changed = count, now
            if health and (state.get("Health") or {}).get("Status") == "healthy":
                ready = "healthy"
                break
            if not health and count and now - changed >= quiet:
                ready = "quiet"
                break
            if now - start > timeout:
                raise RehearsalFailed(f"a rehearsed start of {name} was not ready after {timeout:.0f} s",
                                      "check that it starts with `docker run`, or drop --rehearse")
        seconds = time.monotonic() - start
        modules = imported_modules(api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace"))
        if not modules:
            raise RehearsalFailed(f"a rehearsed start of {name} imported no Python module",
                                  "--rehearse is for images that start Python")
        return Rehearsal(image=name, modules=sorted(modules), ready=ready, seconds=round(seconds, 1))
    except docker.errors.APIError as exc:
        raise SourceUnavailable(f"the Docker engine failed during a rehearsed start of {name}: "
                                f"{exc.explanation}") from None
    finally:
        try:
            api.remove_container(container, force=True)
        except docker.errors.APIError:
            pass
