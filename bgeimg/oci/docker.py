"""The one Docker Engine API client: docker-py's low-level client, configured from the environment the way the
docker CLI is (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), checked with a ping."""

from __future__ import annotations

import os

from bgeimg.errors import OutsideError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DOCKER_CLI = os.environ.get("BGEIMG_DOCKER_CLI", "/usr/bin/docker")  # Debian's 20.10 client has BuildKit


class EngineUnavailable(OutsideError):
    """No Docker engine answers, or the backend asked for does not exist here."""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def one_line(text: str) -> str:
    return " ".join(text.split())[:400]


def api_client(timeout: int = 900):
    """docker-py's APIClient for the engine the environment names; a clear error when nothing answers."""
    import docker

    host = docker_host()
    try:
        kwargs = docker.utils.kwargs_from_env()
        kwargs.setdefault("base_url", host)
        client = docker.APIClient(timeout=timeout, **kwargs)
        client.ping()
    except Exception as exc:  # docker-py raises several kinds for a dead socket, a refused port, bad TLS
        reason = one_line(str(exc))[:160]
        raise EngineUnavailable(
            f"no Docker engine answers at {host} ({reason})",
            "start dockerd (scripts/testbed.sh up on the test bed), or point DOCKER_HOST at a running engine, "
            "e.g. export DOCKER_HOST=unix:///var/run/docker.sock",
        ) from None
    return client
