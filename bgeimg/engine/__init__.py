"""Build backends behind one `Engine` interface, and the choice between them (`--engine`).

    engine    the Docker Engine API through docker-py (classic builder)      bgeimg/engine/dockerapi.py
    buildkit  `DOCKER_BUILDKIT=1 docker build` (BuildKit, no buildx plugin)  bgeimg/engine/buildkit.py
    buildx    `docker buildx build` (several platforms, --push, cache export) bgeimg/engine/buildx.py

`auto` picks buildx when `docker buildx version` answers, then BuildKit `docker build`, then the Engine API.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgeimg.engine.base import (
    BaseImageNotFound,
    BuildError,
    BuildEvent,
    BuildRequest,
    Engine,
    EngineUnavailable,
    ImageInfo,
    MissingWheel,
    PlatformError,
    Step,
    StepLog,
    api_client,
)
from bgeimg.engine.buildkit import BuildKitEngine
from bgeimg.engine.buildx import BuildxEngine
from bgeimg.engine.dockerapi import DockerApiEngine
from bgeimg.errors import BgeimgError

__all__ = [
    "BaseImageNotFound", "BuildError", "BuildEvent", "BuildRequest", "Engine", "EngineUnavailable", "ImageInfo",
    "MissingWheel", "PlatformError", "Step", "StepLog", "Chosen", "select", "BACKENDS",
]

BACKENDS = {"engine": DockerApiEngine, "buildkit": BuildKitEngine, "buildx": BuildxEngine}
CHOICES = ("auto", *BACKENDS)


@dataclass
class Chosen:
    """The backend picked, and why (printed so a user knows which path built the image)."""

    engine: Engine
    reason: str


def select(name: str = "auto") -> Chosen:
    """The backend for `--engine NAME`. Every backend needs a reachable engine, so that is checked first."""
    if name not in CHOICES:
        raise BgeimgError(f"--engine {name!r} is not a backend", f"choose one of: {', '.join(CHOICES)}")
    api_client()  # EngineUnavailable with how to point DOCKER_HOST, before anything else
    if name == "buildx":
        engine = BuildxEngine()
        if not engine.available():
            raise EngineUnavailable(
                f"--engine buildx asked for, but `{engine.docker} buildx version` does not answer",
                "install the docker-buildx plugin (apt-get install docker-buildx), "
                "or use --engine buildkit or --engine engine",
            )
        return Chosen(engine, "asked for with --engine buildx")
    if name == "buildkit":
        engine = BuildKitEngine()
        if not engine.available():
            raise EngineUnavailable(
                f"--engine buildkit asked for, but `{engine.docker} build` does not support BuildKit",
                "install a Docker client >= 18.09 (Debian: docker.io), or use --engine engine",
            )
        return Chosen(engine, "asked for with --engine buildkit")
    if name == "engine":
        return Chosen(DockerApiEngine(), "asked for with --engine engine")
    buildx = BuildxEngine()
    if buildx.available():
        return Chosen(buildx, "auto: `docker buildx version` answers")
    buildkit = BuildKitEngine()
    if buildkit.available():
        return Chosen(buildkit, f"auto: no buildx plugin; `{buildkit.docker} build` speaks BuildKit")
    return Chosen(DockerApiEngine(), "auto: neither buildx nor a BuildKit docker client; using the Engine API")
