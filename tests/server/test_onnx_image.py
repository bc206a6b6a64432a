"""End to end (slow): the ONNX runtime's images, built with `bgeimg.build` from wheelhouses on the test bed's
engine with the real MiniLM weights. onnx-cpu exports them in its builder stage; onnx-external serves the ONNX
form `bgeimg export` made on the host (mounted), downloads a repository's onnx/ form on start when nothing is
mounted (the real huggingface_hub against the local hub double), refuses a torch-only mount and a corrupted graph
with one line and exit 1; its arm64 build answers like the amd64 one under qemu."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from onnx_models import exported
from test_image_e2e import TEXTS, check_serving, post, wait_healthy

from bgeimg import profile as profiles
from bgeimg.analyze import analyze
from bgeimg.analyze.advise import advise
from bgeimg.analyze.rehearse import rehearse
from bgeimg.build.run import BuildOptions, build

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "context"))
from fake_hub import FakeHub, FakeRepo  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.engine]
MINILM_ID = "model.id=sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def host_vectors(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)


@pytest.fixture(scope="module")
def onnx_form(tmp_path_factory, minilm_dir):
    return exported(minilm_dir, tmp_path_factory.mktemp("onnx-image") / "minilm-onnx")


def build_onnx(name: str, sets: list[str], wheelhouse_factory, tag: str, platform: str = "linux/amd64"):
    p = profiles.resolve(name, sets=["server.healthcheck_interval=2", "server.start_period=1", "torch_index_url=null",
                                     f"platforms=[{platform}]", *sets]).profile
    wheels = wheelhouse_factory(p.requirements + (p.export_requirements if p.model.source != "none" else []),
                                platform)
    return build(p, BuildOptions(image=tag, engine="auto", platforms=[platform], wheelhouse=wheels))


@pytest.fixture
def hold(docker_client):
    """Keep a created (never started) container of each image: the shared engine's `image prune -a` by another
    session must not take an image from under a running test."""
    held = []

    def holder(tag: str) -> None:
        held.append(docker_client.containers.create(tag, command=["true"]))

    yield holder
    for container in held:
        container.remove(force=True)


def no_torch(container) -> None:
    code, out = container.exec_run(["python", "-c", "import importlib.util as u; print([m for m in ('torch', "
                                    "'transformers','onnx','sympy','google.protobuf','pip','huggingface_hub') "
                                    "if u.find_spec(m)])"])
    assert out.decode().strip() == "[]", out


def test_onnx_cpu_exports_in_the_builder_and_serves_host_equal_embeddings(docker_client, minilm_dir, hold,
                                                                          wheelhouse_factory, host_vectors) -> None:
    tag = f"bgeimg-test-onnx/cpu:{uuid.uuid4().hex[:8]}"
    report = build_onnx("onnx-cpu", [f"model={minilm_dir}"], wheelhouse_factory, tag)
    hold(tag)
    container = docker_client.containers.run(tag, detach=True, ports={"8000/tcp": ("127.0.0.1", None)})
    try:
        check_serving(container, host_vectors)
        port = container.ports["8000/tcp"][0]["HostPort"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=10) as response:
            info = json.loads(response.read())
        assert info["runtime"] == "onnx" and info["dtype"] == "float32" and info["dimension"] == 384
        no_torch(container)  # torch, transformers and onnx stayed in the export stage
        code, out = container.exec_run(["cat", "/opt/model/onnx_export.json"])
        assert b'"source": "torch.onnx export"' in out
        rehearsed = advise(analyze(tag, probe=True), rehearsal=rehearse(tag))
        assert rehearsed.actionable == [], [(f.kind, f.bytes, f.paths[:3]) for f in rehearsed.actionable]
        assert rehearsed.ratio <= 1.05 and rehearsed.rehearsal["ready"] == "healthy"
        assert report.platforms[0].size < 450e6
    finally:
        container.remove(force=True)
        docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def external_image(docker_client, wheelhouse_factory):
    """onnx-external built once for the tests below, held by a created container (see `hold`)."""
    tag = f"bgeimg-test-onnx/external:{uuid.uuid4().hex[:8]}"
    build_onnx("onnx-external", [MINILM_ID], wheelhouse_factory, tag)
    holder = docker_client.containers.create(tag, command=["true"])
    yield tag
    holder.remove(force=True)
    for name in (tag, f"{tag}-amd64"):
        docker_client.images.remove(name, force=True)


def test_onnx_external_serves_a_mounted_onnx_form_and_refuses_what_it_cannot_serve(
        docker_client, external_image, minilm_dir, onnx_form, host_vectors, tmp_path) -> None:
    tag = external_image
    mount = {str(onnx_form): {"bind": "/models", "mode": "ro"}}
    container = docker_client.containers.run(tag, detach=True, ports={"8000/tcp": ("127.0.0.1", None)},
                                             volumes=mount)
    try:
        check_serving(container, host_vectors)
    finally:
        container.remove(force=True)
    advice = advise(analyze(tag, probe=True), rehearsal=rehearse(tag, mounts={str(onnx_form): "/models"}))
    assert advice.actionable == [], [(f.kind, f.bytes, f.paths[:3]) for f in advice.actionable]
    assert advice.rehearsal["ready"] == "healthy" and advice.ratio <= 1.05
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in onnx_form.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.onnx").write_bytes((onnx_form / "model.onnx").read_bytes()[:100_000])
    cases = [(minilm_dir, "holds a torch checkpoint but no ONNX form (model.onnx); make it with `bgeimg export"),
             (broken, "/models/model.onnx is not a usable ONNX graph")]
    for directory, needle in cases:
        container = docker_client.containers.run(tag, detach=True,
                                                 volumes={str(directory): {"bind": "/models", "mode": "ro"}})
        try:
            result = container.wait(timeout=120)
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status")
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        assert result["StatusCode"] == 1 and needle in logs and "Traceback" not in logs, logs
        assert health != "healthy"
        assert len([line for line in logs.splitlines() if line.startswith("bgeimg:")]) == 1, logs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_onnx_external_without_a_mount_downloads_the_repository_onnx_form_on_start(
        docker_client, external_image, minilm_dir, onnx_form, host_vectors, tmp_path) -> None:
    """A hub repository laid out as BAAI's are (the checkpoint at the top, its ONNX graph in onnx/), served by the
    hub double; the container (host network, so the double's 127.0.0.1 is reachable) downloads the pinned
    revision's ONNX form with the real huggingface_hub, and nothing else, then answers like the host."""
    repo = tmp_path / "repo"
    shutil.copytree(minilm_dir, repo, copy_function=os.link)  # hard links: no 90 MB copy
    (repo / "onnx").mkdir()
    os.link(onnx_form / "model.onnx", repo / "onnx" / "model.onnx")
    commit = "3" * 40
    hub = FakeHub(repos={"sentence-transformers/all-MiniLM-L6-v2": FakeRepo(repo, commit)}).start()
    port = free_port()
    try:
        container = docker_client.containers.run(external_image, detach=True, network_mode="host",
                                                 environment={"HF_ENDPOINT": hub.url, "BGE_PORT": str(port)})
        try:
            wait_healthy(container)
            body = post(str(port), "/v1/embeddings", {"input": TEXTS})
            for item, expected in zip(body["data"], host_vectors):
                got = np.asarray(item["embedding"])
                assert float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))) >= 0.9999
            code, out = container.exec_run(["find", "/models", "-type", "f", "-not", "-path", "*/.cache/*"])
            files = {Path(p).relative_to("/models").as_posix() for p in out.decode().split()}
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
    finally:
        hub.stop()
    assert "bgeimg: downloading sentence-transformers/all-MiniLM-L6-v2@main (its ONNX form) into /models" in logs
    assert "onnx/model.onnx" in files and "tokenizer.json" in files and "1_Pooling/config.json" in files, files
    assert not {f for f in files if f.endswith((".safetensors", ".bin", ".txt", ".md"))}, files  # the ONNX form only
    served = [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]
    assert any(p.endswith("/onnx/model.onnx") for p in served) and not any("safetensors" in p for p in served), served


def test_onnx_external_arm64_under_qemu_answers_like_amd64(docker_client, external_image, onnx_form,
                                                          wheelhouse_factory, hold) -> None:
    """arm64 under the test bed's qemu-aarch64 (QEMU 10: bookworm's 7.2 crashes in onnxruntime's aarch64 wheel)."""
    answers = {}
    name = f"bgeimg-test-onnx/external:{uuid.uuid4().hex[:8]}"
    build_onnx("onnx-external", [MINILM_ID], wheelhouse_factory, name, "linux/arm64")
    arm = f"{name}-arm64"  # a foreign platform's image gets only its arch-suffixed tag
    hold(arm)
    try:
        for platform, tag in (("linux/amd64", external_image), ("linux/arm64", arm)):
            container = docker_client.containers.run(tag, detach=True, platform=platform,
                                                     ports={"8000/tcp": ("127.0.0.1", None)},
                                                     volumes={str(onnx_form): {"bind": "/models", "mode": "ro"}})
            try:
                wait_healthy(container, timeout=600)
                code, out = container.exec_run(["uname", "-m"])
                assert out.decode().strip() == ("aarch64" if platform.endswith("arm64") else "x86_64")
                answers[platform] = np.asarray(post(container.ports["8000/tcp"][0]["HostPort"], "/embed",
                                                    {"inputs": TEXTS[:1]})[0])
            finally:
                container.remove(force=True)
    finally:
        docker_client.images.remove(arm, force=True)
    diff = float(np.abs(answers["linux/arm64"] - answers["linux/amd64"]).max())
    print(f"\narm64 (qemu) vs amd64 embedding: largest difference {diff:.2e}")
    assert diff <= 1e-4
