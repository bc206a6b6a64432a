"""The one Docker Engine API client and the docker CLI, found the way the docker CLI finds its engine:
$DOCKER_HOST (with DOCKER_TLS_VERIFY / DOCKER_CERT_PATH), else the docker context ($DOCKER_CONTEXT, else the
config's `currentContext`), else the local socket."""

from __future__ import annotations

import os
import shutil
from typing import Any

from bgeimg.errors import OutsideError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _docker_cli() -> str:
    # BGEIMG_DOCKER_CLI overrides; else the `docker` on PATH, as a user's shell would run it.
    return os.environ.get("BGEIMG_DOCKER_CLI") or shutil.which("docker") or "/usr/bin/docker"


DOCKER_CLI = _docker_cli()


class EngineUnavailable(OutsideError):
    """No Docker engine answers, or the backend asked for does not exist here."""


def client_kwargs() -> dict[str, Any]:
    """docker-py's `base_url`/`tls` for the engine the environment names (DOCKER_HOST, then the context)."""
    import docker

    if os.environ.get("DOCKER_HOST"):
        return docker.utils.kwargs_from_env()
    from_context = getattr(docker.ContextAPI, "kwargs_from_context", None)  # docker-py >= 7.2
    kwargs: dict[str, Any] = {}
    if from_context is not None:
        try:
            kwargs = from_context()
        except docker.errors.DockerException:
            kwargs = {}
    kwargs.setdefault("base_url", DEFAULT_DOCKER_HOST)
    return kwargs


def docker_host() -> str:
    """The engine address every Engine API call goes to (for messages and the local-or-remote decision)."""
    try:
        return str(client_kwargs()["base_url"])
    except Exception:  # a malformed context or environment: api_client() reports it
        return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def one_line(text: str) -> str:
    return " ".join(text.split())[:400]


def api_client(timeout: int = 900):
    """docker-py's APIClient for the engine the environment names; a clear error when nothing answers."""
    import docker

    host = docker_host()
    try:
        client = docker.APIClient(timeout=timeout, **client_kwargs())
        client.ping()
    except Exception as exc:  # docker-py raises several kinds for a dead socket, a refused port, bad TLS
        reason = one_line(str(exc))[:160]
        raise EngineUnavailable(
            f"no Docker engine answers at {host} ({reason})",
            "start dockerd (scripts/testbed.sh up on the test bed), or point DOCKER_HOST (or `docker context use`) "
            "at a running engine, e.g. export DOCKER_HOST=unix:///var/run/docker.sock",
        ) from None
    return client


def export_stream(docker_api, refs: list[str]):
    """`docker save REFS...` as a readable stream (urllib3's response: read(n), close()), never whole in memory.
    Several references in one save carry each shared layer once. Closing it early stops the engine's export."""
    url = docker_api._url("/images/get")
    resp = docker_api._get(url, params={"names": refs}, stream=True)
    docker_api._raise_for_status(resp)
    sock = docker_api._get_raw_response_socket(resp)
    docker_api._disable_socket_timeout(sock)  # a large export can pause longer than the API timeout
    resp.raw.decode_content = False
    return resp.raw
