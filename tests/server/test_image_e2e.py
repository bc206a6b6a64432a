"""End to end (slow): the real torch CPU stack from a wheelhouse and the real MiniLM weights, built with
`bgeimg.build.run` on the test bed's engine; the container must become healthy and answer like the host does."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import numpy as np
import pytest

from bgeimg import profile as profiles
from bgeimg.analyze import analyze
from bgeimg.analyze.advise import advise
from bgeimg.analyze.rehearse import rehearse
from bgeimg.build.run import BuildOptions, build

TEXTS = ["BGE models turn text into vectors.", "Quarterly tax filing deadlines"]


def wait_healthy(container, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        container.reload()
        health = container.attrs["State"].get("Health", {}).get("Status")
        if health == "healthy":
            return
        if container.status == "exited":
            break
        time.sleep(1)
    raise AssertionError(f"not healthy ({container.status}): {container.logs()[-2000:].decode(errors='replace')}")


def post(port: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def host_vectors(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)


@pytest.fixture(scope="module")
def torch_wheelhouse(wheelhouse_factory):
    return wheelhouse_factory(profiles.resolve("cpu-slim").profile.requirements, "linux/amd64")


def build_profile(name: str, sets: list[str], wheelhouse, tag: str):
    p = profiles.resolve(name, sets=["server.healthcheck_interval=2", "server.start_period=1", *sets]).profile
    return build(p, BuildOptions(image=tag, engine="engine", platforms=["linux/amd64"], wheelhouse=wheelhouse))


def check_serving(container, host_vectors) -> None:
    wait_healthy(container)
    port = container.ports["8000/tcp"][0]["HostPort"]
    body = post(port, "/v1/embeddings", {"input": TEXTS})
    for item, expected in zip(body["data"], host_vectors):
        got = np.asarray(item["embedding"])
        assert float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))) >= 0.9999


@pytest.mark.slow
@pytest.mark.engine
def test_cpu_slim_with_baked_minilm_serves_host_equal_embeddings(docker_client, minilm_dir, torch_wheelhouse,
                                                                 host_vectors) -> None:
    tag = f"bgeimg-test-server/cpu-slim:{uuid.uuid4().hex[:8]}"
    report = build_profile("cpu-slim", [f"model={minilm_dir}", "torch_index_url=null"], torch_wheelhouse, tag)
    container = docker_client.containers.run(tag, detach=True, ports={"8000/tcp": ("127.0.0.1", None)})
    try:
        check_serving(container, host_vectors)
        assert container.attrs["Config"]["User"] == "10001:10001"
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        assert env["HF_HUB_OFFLINE"] == "1" and env["BGE_MODEL_DIR"] == "/opt/model"
        # no sentence-transformers, scipy, scikit-learn, pip or setuptools in the image: the server needs none;
        # nor the packages the profile removes (slim.remove_packages), and it still answered above
        code, out = container.exec_run(["python", "-c", "import importlib.util as u; print([m for m in "
                                        "('sentence_transformers','scipy','sklearn','pip','setuptools','networkx',"
                                        "'rich','typer','pygments','fsspec','hf_xet') if u.find_spec(m)])"])
        assert out.decode().strip() == "[]"
        # the profile's prune list is gone, and the server above still answered: pruning is safe
        code, out = container.exec_run(["sh", "-c", "ls -d /opt/venv/lib/python3*/site-packages/torch/include "
                                        "/opt/venv/lib/python3*/site-packages/torch/bin/test_api 2>&1 | grep -c 'No such'; "
                                        "find /opt/venv -name '*.pyc' | wc -l"])
        missing, pycs = out.decode().split()
        # bytecode: imported compiles what a start imports (thousands of modules), not the whole venv
        assert missing == "2" and 1000 < int(pycs) < 6000, pycs
        assert report.platforms[0].size > 0
        # --advise finds nothing to fix in the image bgeimg built (symbols stripped, no tests, no caches...),
        # only what the profile keeps on purpose, and the image is at its floor
        advice = advise(analyze(tag, probe=True))
        assert advice.actionable == [], [(f.kind, f.bytes, f.paths[:3]) for f in advice.actionable]
        assert {f.kind for f in advice.findings} <= {"missing-bytecode"}
        assert advice.ratio <= 1.05 and "bge_server.app" in advice.entry_modules
        # and a real start agrees: every package it keeps is imported, every module it imports has bytecode
        rehearsed = advise(analyze(tag, probe=True), rehearsal=rehearse(tag))
        assert rehearsed.actionable == [], [(f.kind, f.bytes, f.paths[:3]) for f in rehearsed.actionable]
        assert {f.kind for f in rehearsed.findings} <= {"unused-bytecode"} and rehearsed.ratio <= 1.05
    finally:
        container.remove(force=True)
        docker_client.images.remove(tag, force=True)


@pytest.mark.slow
@pytest.mark.engine
def test_external_model_serves_a_read_only_mount_and_explains_a_missing_one(docker_client, minilm_dir,
                                                                            torch_wheelhouse, host_vectors) -> None:
    tag = f"bgeimg-test-server/external:{uuid.uuid4().hex[:8]}"
    build_profile("external-model", ["torch_index_url=null", "model.id=sentence-transformers/all-MiniLM-L6-v2"],
                  torch_wheelhouse, tag)
    try:
        container = docker_client.containers.run(tag, detach=True, ports={"8000/tcp": ("127.0.0.1", None)},
                                                 volumes={str(minilm_dir): {"bind": "/models", "mode": "ro"}})
        try:
            check_serving(container, host_vectors)
        finally:
            container.remove(force=True)
        advice = advise(analyze(tag, probe=True), rehearsal=rehearse(tag, mounts={str(minilm_dir): "/models"}))
        assert advice.actionable == [], [(f.kind, f.bytes, f.paths[:3]) for f in advice.actionable]
        assert advice.rehearsal["ready"] == "healthy" and advice.ratio <= 1.05
        # no mount and no reachable hub: one clear line and a non-zero exit, not a hang or a traceback
        container = docker_client.containers.run(tag, detach=True, environment={"HF_ENDPOINT": "http://127.0.0.1:9"})
        try:
            result = container.wait(timeout=120)
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        assert result["StatusCode"] == 1
        assert "no model in /models and downloading sentence-transformers/all-MiniLM-L6-v2@main from " \
               "http://127.0.0.1:9 failed" in logs
        assert "Traceback" not in logs
    finally:
        docker_client.images.remove(tag, force=True)
