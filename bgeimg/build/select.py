"""The choice of build backend (`--engine`). Each backend is one file under build/backends/ and declares its
capabilities and its missing-tool hint; this module only knows their order.

    engine    the Docker Engine API through docker-py (classic builder)      backends/dockerapi.py
    buildkit  `DOCKER_BUILDKIT=1 docker build` (BuildKit, no buildx plugin)  backends/buildkit.py
    buildx    `docker buildx build` (several platforms, --push, cache export) backends/buildx.py

`auto` takes the first available in AUTO_ORDER: buildx, then BuildKit `docker build`, then the Engine API.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgeimg.build.backends.base import Backend
from bgeimg.build.backends.buildkit import BuildKitEngine
from bgeimg.build.backends.buildx import BuildxEngine
from bgeimg.build.backends.dockerapi import DockerApiEngine
from bgeimg.errors import BgeimgError
from bgeimg.oci.docker import EngineUnavailable, api_client

BACKENDS: dict[str, type[Backend]] = {"engine": DockerApiEngine, "buildkit": BuildKitEngine, "buildx": BuildxEngine}
AUTO_ORDER = ("buildx", "buildkit", "engine")
CHOICES = ("auto", *BACKENDS)


@dataclass
class Chosen:
    """The backend picked, and why (printed so a user knows which path built the image)."""

    engine: Backend
    reason: str


def select(name: str = "auto", builder: str | None = None) -> Chosen:
    """The backend for `--engine NAME`. Every backend needs a reachable engine, so that is checked first.
    `builder` (a buildx builder's name) asks for buildx."""
    if name not in CHOICES:
        raise BgeimgError(f"--engine {name!r} is not a backend", f"choose one of: {', '.join(CHOICES)}")
    if builder and name not in ("auto", "buildx"):
        raise BgeimgError(f"--builder needs the buildx backend (asked for --engine {name})",
                          "drop --engine, or use --engine buildx")
    api_client()  # EngineUnavailable with how to point DOCKER_HOST, before anything else
    if builder:
        name = "buildx"
    if name != "auto":
        engine = BuildxEngine(builder=builder) if name == "buildx" else BACKENDS[name]()
        if not engine.available():
            problem, hint = engine.missing
            raise EngineUnavailable(f"--engine {name} asked for, but {problem}", hint)
        return Chosen(engine, f"asked for with --engine {name}")
    for candidate in AUTO_ORDER:
        engine = BACKENDS[candidate]()
        if engine.available():
            return Chosen(engine, f"auto: {engine.auto_reason()}")
    raise EngineUnavailable("no build backend is available", BACKENDS["engine"]().missing[1])
