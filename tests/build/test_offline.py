"""Mirrors, a CA bundle for the build only, and wheelhouse builds: what they redirect reaches the build, and
nothing of them reaches the final image (its ENV, its files, its history)."""

from __future__ import annotations

import pytest
from buildhelp import TINY, build_with_report, run_and_probe

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"  # the proxy's CA: containers reach PyPI over https only with it


def _build_inputs_in(docker_api, image: str) -> set[str]:
    """Paths that look like build-only inputs (a CA bundle, wheels, /tmp/build) in an image."""
    container = docker_api.create_container(
        image, entrypoint=["sh", "-c"], user="0",
        command=["find / -xdev \\( -name 'ca-bundle.crt' -o -name '*.whl' -o -path '/tmp/build*' \\) -print"])["Id"]
    try:
        docker_api.start(container)
        docker_api.wait(container, timeout=120)
        return set(docker_api.logs(container, stderr=False).decode().split())
    finally:
        docker_api.remove_container(container, force=True)


def _leftovers(docker_api, image: str, base: str = "python:3.11-slim") -> set[str]:
    """Build-only inputs the build added: what the image has beyond its base (Debian's own python-wheels)."""
    return _build_inputs_in(docker_api, image) - _build_inputs_in(docker_api, base)


@pytest.mark.engine
@pytest.mark.parametrize("backend", ["engine", "buildkit"])
def test_mirrors_and_ca_bundle_for_the_build_only(backend, tmp_path, docker_api, registry, image_name):
    context = tmp_path / "context"
    report = build_with_report(
        tmp_path, "-p", "external-model", "--engine", backend, "-t", f"{image_name}:m",
        "--set", f"requirements=[{','.join(TINY)}]", "--registry-mirror", registry,
        "--pip-index-url", "https://pypi.org/simple", "--ca-bundle", HOST_CA, "--context", str(context))
    dockerfile = (context / "Dockerfile").read_text()
    assert f"FROM {registry}/library/python:3.11-slim AS builder" in dockerfile
    assert f"FROM {registry}/library/python:3.11-slim AS runtime" in dockerfile
    # The build really reached the index through the CA (pip downloaded fastapi), yet the image keeps none of it.
    pip_step = next(s for s in report["platforms"][0]["steps"] if "pip install" in s["name"])
    assert "--cert /tmp/build/ca-bundle.crt" in pip_step["name"]
    image = report["platforms"][0]["image_id"]
    config = docker_api.inspect_image(image)["Config"]
    assert not [e for e in config["Env"] if e.startswith(("PIP_", "REQUESTS_CA", "SSL_CERT"))]
    history = " ".join(h.get("CreatedBy") or "" for h in docker_api.history(image))
    assert "pypi.org" not in history and "ca-bundle" not in history
    assert _leftovers(docker_api, image) == set()
    if backend == "buildkit":  # BuildKit takes the bundle as a secret: it is not even in the context
        assert not (context / "ca-bundle.crt").exists()


@pytest.mark.engine
@pytest.mark.slow
def test_real_cpu_slim_stack_from_a_wheelhouse(tmp_path, docker_api, wheelhouse_factory, minilm_dir, image_name):
    from bgeimg.profile import resolve

    requirements = resolve("cpu-slim").profile.requirements  # torch, transformers, fastapi, uvicorn as shipped
    wheels = wheelhouse_factory(requirements, "linux/amd64")
    assert any(w.name.startswith("torch-") and "+cpu" in w.name for w in wheels.glob("*.whl"))
    report = build_with_report(
        tmp_path, "-p", "cpu-slim", "--engine", "buildkit", "-t", f"{image_name}:torch", "--wheelhouse", str(wheels),
        "--set", f"model={minilm_dir}", "--set", "server.healthcheck_interval=2")
    image = report["platforms"][0]["tags"][0]
    torch_version = next(r.split("==")[1] for r in requirements if r.startswith("torch=="))
    health, (versions,) = run_and_probe(docker_api, image, "linux/amd64", [
        ["python", "-c", "import torch, transformers; print(torch.__version__, transformers.__version__)"]])
    assert health == "healthy"
    assert versions.startswith(f"{torch_version}+cpu ")
    assert _leftovers(docker_api, image) == set()
    wheel_bytes = sum(w.stat().st_size for w in wheels.glob("*.whl"))
    assert report["platforms"][0]["size"] > wheel_bytes  # sanity: the stack is installed, not just referenced
