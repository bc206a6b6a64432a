"""The build path users have: Docker 26 + buildx + the containerd image store, beside Debian's Docker 20.10,
for real (tests/build/enginebed.py, `scripts/testbed.sh up --modern`).

Every backend x engine pair builds external-model for amd64 + arm64 (the tiny requirement set, the uname
template that records the machine a RUN step ran on); `auto`'s choice per engine; buildx pushing an index with
its attestations, loading a multi-platform image, falling back to per-platform builds with one note where the
builder cannot do several platforms at once; and buildx's failures, each with its exact line and exit code."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from buildhelp import PREFIX, TINY, UNAME_TEMPLATE, assert_one_line_error, run_cli

pytestmark = [pytest.mark.engine]

PLATFORMS = "linux/amd64,linux/arm64"
MACHINE = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
REQS = f"requirements=[{','.join(TINY)}]"


@pytest.fixture(scope="module")
def both_wheels(wheelhouse_factory, tmp_path_factory):
    """One wheelhouse for both platforms (pure-Python wheels plus each platform's binary ones)."""
    both = tmp_path_factory.mktemp("wheels")
    for platform in ("linux/amd64", "linux/arm64"):
        for whl in wheelhouse_factory(TINY, platform).glob("*.whl"):
            if not (both / whl.name).exists():
                (both / whl.name).hardlink_to(whl)
    return both


def _name() -> str:
    return f"{PREFIX}/m{uuid.uuid4().hex[:8]}"


def _build(engine, tmp_path, *args, buildx=True, expect=0):
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    proc = run_cli("build", "-p", "external-model", "--set", REQS, "--set", f"template={UNAME_TEMPLATE}",
                   "--context", str(tmp_path / "context"), "--report", str(report), *args,
                   env={**engine.env(buildx=buildx), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    if expect == 0:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc, json.loads(report.read_text())
    return proc, None


def _arch_of_run(engine, image: str, platform: str) -> str:
    """What `uname -m` printed during the build of `image`'s `platform` variant (the uname template's file)."""
    return engine.docker("run", "--rm", "--platform", platform, "--entrypoint", "cat", image,
                         "/etc/bgeimg-build-arch").stdout.strip()


def _cleanup(engine, name: str) -> None:
    refs = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}", name, check=False).stdout.split()
    if refs:
        engine.docker("rmi", "-f", *refs, check=False)


# ---- auto's choice on each engine ---------------------------------------------------------------------------

AUTO = [("docker20", False, "buildkit"), ("docker20", True, "buildx"), ("docker26", True, "buildx"),
        ("docker26", False, "engine")]


@pytest.mark.parametrize("engine_name,plugin,expected", AUTO,
                         ids=[f"{e}-{'buildx' if p else 'noplugin'}" for e, p, _ in AUTO])
def test_auto_picks_per_engine(engine_name, plugin, expected, request):
    """Debian 12's client: buildkit; any client with the plugin: buildx; Docker 26's client without the plugin
    cannot BuildKit at all (`docker build` then needs buildx), so the Engine API."""
    engine = request.getfixturevalue(engine_name)
    code = "from bgeimg.build import select; c = select.select('auto'); print(c.engine.name, '|', c.reason)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **engine.env(buildx=plugin)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" | ")[0] == expected


# ---- every backend x engine: external-model for amd64 + arm64 ----------------------------------------------

PAIRS = [(e, b) for e in ("docker20", "docker26") for b in ("engine", "buildkit", "buildx")]


@pytest.mark.parametrize("engine_name,backend", PAIRS, ids=[f"{e}-{b}" for e, b in PAIRS])
def test_external_model_amd64_and_arm64(engine_name, backend, request, tmp_path, both_wheels):
    engine = request.getfixturevalue(engine_name)
    name = _name()
    if backend == "engine" and engine.containerd_store:
        # the classic builder loses intermediate images on a foreign platform there: refused before any work,
        # while the host platform still builds
        proc, _ = _build(engine, tmp_path, "--engine", backend, "--platform", PLATFORMS,
                         "--wheelhouse", str(both_wheels), "-t", f"{name}:1", expect=2)
        assert assert_one_line_error(proc, 2) == (
            "error: the Engine API's classic builder cannot build linux/arm64 reliably on this engine's containerd "
            "image store (use --engine buildx or --engine buildkit (BuildKit is this engine's default builder))")
        try:
            _, report = _build(engine, tmp_path, "--engine", backend, "--platform", "linux/amd64",
                               "--wheelhouse", str(both_wheels), "-t", f"{name}:1")
            assert [r["architecture"] for r in report["platforms"]] == ["amd64"]
            assert _arch_of_run(engine, f"{name}:1-amd64", "linux/amd64") == MACHINE["linux/amd64"]
        finally:
            _cleanup(engine, name)
        return
    try:
        proc, report = _build(engine, tmp_path, "--engine", backend, "--platform", PLATFORMS,
                              "--wheelhouse", str(both_wheels), "-t", f"{name}:1")
        assert report["engine"] == backend
        assert [r["platform"] for r in report["platforms"]] == ["linux/amd64", "linux/arm64"]
        assert "Learn more" not in proc.stderr
        for row in report["platforms"]:
            assert row["architecture"] == row["platform"].split("/")[1]
            assert row["size"] > 10_000_000 and row["layers"] >= 5
        if backend == "buildx" and engine.containerd_store:
            # one call, one multi-platform local image under the plain tag, with its index in the report
            assert report["notes"] == [] and report["index"]["digest"].startswith("sha256:")
            assert {r["digest"] for r in report["platforms"]} == {r["image_id"] for r in report["platforms"]}
            for platform in ("linux/amd64", "linux/arm64"):
                assert _arch_of_run(engine, f"{name}:1", platform) == MACHINE[platform]
        else:
            if backend == "buildx":  # the docker driver on a classic store: one platform per call, said once
                assert report["notes"] == [
                    "buildx builder default (docker driver) on a classic image store builds one platform per call: "
                    "building linux/amd64, linux/arm64 in turn, each loaded as NAME:TAG-ARCH"]
                assert proc.stderr.count("builds one platform per call") == 1
            for platform in ("linux/amd64", "linux/arm64"):
                tag = f"{name}:1-{platform.split('/')[1]}"
                assert _arch_of_run(engine, tag, platform) == MACHINE[platform]
    finally:
        _cleanup(engine, name)


# ---- buildx --push: an index with its attestations, read back into the report --------------------------------


def _registry_index(registry: str, repo: str, ref: str) -> tuple[str, dict]:
    from bgeimg.oci.registry import RegistryClient

    manifest = RegistryClient(registry).get_manifest(repo, ref)
    return manifest.digest, manifest.json


@pytest.mark.registry
@pytest.mark.parametrize("engine_name", ["docker26", "docker20"])
def test_buildx_push_reports_the_index(engine_name, request, tmp_path, both_wheels, registry):
    """Docker 26: one call pushes the index (two images, two provenance attestations). Docker 20.10's docker
    driver cannot: each platform is built in turn and the index assembled as `bgeimg push` does, said in one line."""
    engine = request.getfixturevalue(engine_name)
    repo = f"{PREFIX}/push{uuid.uuid4().hex[:8]}"
    image = f"{registry}/{repo}:2"
    try:
        proc, report = _build(engine, tmp_path, "--engine", "buildx", "--platform", PLATFORMS, "--push",
                              "--wheelhouse", str(both_wheels), "-t", image, "-t", f"{registry}/{repo}:latest")
        assert "Learn more" not in proc.stderr
        digest, index = _registry_index(registry, repo, "2")
        assert _registry_index(registry, repo, "latest")[0] == digest  # every -t names the same index
        assert report["index"]["digest"] == digest
        entries = {f"{d['platform']['os']}/{d['platform']['architecture']}": d["digest"]
                   for d in index["manifests"] if d["platform"]["os"] != "unknown"}
        rows = {r["platform"]: r for r in report["platforms"]}
        assert set(rows) == {"linux/amd64", "linux/arm64"}
        for platform, row in rows.items():
            assert row["digest"] == entries[platform]
            assert row["architecture"] == platform.split("/")[1]
            assert row["size"] > 10_000_000 and row["layers"] >= 5  # not the 0.0 MB / 0 layers of before
        attestations = report["index"]["attestations"]
        if engine.containerd_store:
            assert report["notes"] == []
            assert sorted(a["describes"] for a in attestations) == sorted(entries.values())
            assert all("https://slsa.dev/provenance/v0.2" in a["kinds"] for a in attestations)
        else:
            assert report["notes"] == [
                "buildx builder default (docker driver) on a classic image store builds one platform per call: "
                "building linux/amd64, linux/arm64 in turn, and assembling the index as bgeimg push does"]
            assert attestations == []
    finally:
        _cleanup(engine, f"{registry}/{repo}")


# ---- buildx's failures: one line each, the right exit code ---------------------------------------------------


def test_buildx_base_image_not_found(docker26, tmp_path, both_wheels, registry):
    proc, _ = _build(docker26, tmp_path, "--engine", "buildx", "--platform", PLATFORMS, "--set",
                     "base_image=python:3.99-slim", "--registry-mirror", registry, "--wheelhouse", str(both_wheels),
                     "-t", f"{_name()}:x", expect=2)
    line = assert_one_line_error(proc, 2)
    assert line.startswith(f"error: base image {registry}/library/python:3.99-slim not found "
                           f"(through the mirror {registry}): ")


@pytest.mark.parametrize("progress", ["plain", "rawjson"])
def test_buildx_missing_wheel(docker26, tmp_path, wheelhouse_factory, progress):
    # a wheelhouse for amd64 only: arm64's pydantic-core wheel is missing (the same line from either stream)
    proc, _ = _build(docker26, tmp_path, "--engine", "buildx", "--platform", PLATFORMS, "--progress", progress,
                     "--wheelhouse", str(wheelhouse_factory(TINY, "linux/amd64")), "-t", f"{_name()}:x", expect=2)
    line = assert_one_line_error(proc, 2)
    assert line.startswith("error: the wheelhouse has no wheel for pydantic-core")
    assert "(linux/arm64)" in line and "pip download --only-binary=:all:" in line


def test_progress_rawjson_is_buildx_own_stream(docker26, tmp_path, both_wheels):
    """--progress rawjson prints buildx's SolveStatus lines as they came, and the report still counts the steps
    and cached steps those lines describe."""
    name = _name()
    try:
        proc, report = _build(docker26, tmp_path, "--engine", "buildx", "--platform", "linux/amd64", "--progress",
                              "rawjson", "--wheelhouse", str(both_wheels), "-t", f"{name}:1")
        decoder, text, statuses = json.JSONDecoder(), proc.stderr, []
        while "{" in text:  # buildx's objects, indented over several lines, one after another
            status, end = decoder.raw_decode(text, text.index("{"))
            statuses.append(status)
            text = text[end:]
        assert statuses and all(set(st) <= {"vertexes", "statuses", "logs", "warnings"} for st in statuses)
        names, cached = {}, set()
        for st in statuses:
            for v in st.get("vertexes") or []:
                if not v["name"].startswith(("[internal]", "[auth]")):
                    names[v["digest"]] = v["name"]
                    if v.get("cached"):
                        cached.add(v["digest"])
        steps = report["platforms"][0]["steps"]  # buildx's, then bgeimg's load of the reproducible OCI archive
        assert [s["name"] for s in steps] == [*names.values(), f"load {name}:1-amd64", f"tag {name}:1"]
        assert sum(s["cached"] for s in steps) == len(cached)
    finally:
        _cleanup(docker26, name)


def test_buildx_platform_not_served(docker26, tmp_path):
    proc, _ = _build(docker26, tmp_path, "--engine", "buildx", "--platform", "linux/amd64,linux/ppc64le",
                     "-t", f"{_name()}:x", expect=2)
    line = assert_one_line_error(proc, 2)
    assert line.startswith("error: buildx builder default (docker driver) does not serve linux/ppc64le; "
                           "it serves linux/amd64, ")
    assert "tonistiigi/binfmt --install ppc64le" in line


def test_buildx_registry_refused(docker26, tmp_path, both_wheels):
    closed = "127.0.0.1:5999"  # nothing listens there
    proc, _ = _build(docker26, tmp_path, "--engine", "buildx", "--platform", "linux/amd64", "--push",
                     "--wheelhouse", str(both_wheels), "-t", f"{closed}/{PREFIX}/refused:1", expect=3)
    line = assert_one_line_error(proc, 3)
    assert line.startswith(f"error: registry {closed} refused the push of {closed}/{PREFIX}/refused:1")
    assert "connection refused" in line and f"docker login {closed}" in line


def test_buildx_builder_not_found(docker26, tmp_path):
    proc, _ = _build(docker26, tmp_path, "--builder", "no-such-builder", "-t", f"{_name()}:x", expect=2)
    line = assert_one_line_error(proc, 2)
    assert line.startswith("error: buildx builder 'no-such-builder' not found (")
    assert "buildx ls" in line and "buildx create --name no-such-builder" in line


# ---- --builder NAME: a named builder (here: a docker context on the Docker 26 engine) -------------------------


@pytest.mark.registry
def test_named_builder_serves_its_platforms(docker26, tmp_path, both_wheels, registry):
    config = tmp_path / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    plugin = next(p for p in (os.path.join(docker26.env(buildx=True)["DOCKER_CONFIG"], "cli-plugins", "docker-buildx"),)
                  if os.path.exists(p))
    (config / "cli-plugins" / "docker-buildx").symlink_to(os.path.realpath(plugin))
    env = {**os.environ, **docker26.env(buildx=True), "DOCKER_CONFIG": str(config)}
    subprocess.run([docker26.cli, "context", "create", "bgeimg-t26", "--docker", f"host={docker26.host}"],
                   check=True, capture_output=True, env=env)
    repo = f"{PREFIX}/builder{uuid.uuid4().hex[:8]}"
    report = tmp_path / "r.json"
    proc = run_cli("build", "-p", "external-model", "--set", REQS, "--set", f"template={UNAME_TEMPLATE}",
                   "--builder", "bgeimg-t26", "--platform", PLATFORMS, "--push", "--wheelhouse", str(both_wheels),
                   "-t", f"{registry}/{repo}:1", "--context", str(tmp_path / "ctx"), "--report", str(report),
                   env={**env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["engine"] == "buildx" and data["notes"] == []
    assert [r["architecture"] for r in data["platforms"]] == ["amd64", "arm64"]
    assert data["index"]["digest"] == _registry_index(registry, repo, "1")[0]


# ---- --secret: the token reaches its RUN step and nothing else ------------------------------------------------

SECRET_TEMPLATE = UNAME_TEMPLATE.with_name("secret.Dockerfile.j2")


def _contains(blob: bytes, needle: bytes) -> bool:
    import gzip
    import zlib

    if needle in blob:
        return True
    if blob[:2] == b"\x1f\x8b":
        try:
            return needle in gzip.decompress(blob)
        except (OSError, EOFError, zlib.error):
            return False
    return False


def test_secret_never_stays_in_image_history_labels_or_cache(docker26, tmp_path, both_wheels):
    token = f"hf_{uuid.uuid4().hex}"
    (tmp_path / "token").write_text(token)
    cache = tmp_path / "cache"
    name = _name()
    report = tmp_path / "r.json"
    try:
        proc = run_cli("build", "-p", "external-model", "--set", REQS, "--set", f"template={SECRET_TEMPLATE}",
                       "--engine", "buildx", "--platform", "linux/amd64", "--wheelhouse", str(both_wheels),
                       "--secret", f"id=hf_token,src={tmp_path / 'token'}", "--progress", "plain",
                       "--no-cache",  # a secret is not part of the cache key: an earlier run's step would be reused
                       "--cache-to", f"type=local,dest={cache},mode=max", "-t", f"{name}:1",
                       "--context", str(tmp_path / "ctx"), "--report", str(report),
                       env={**docker26.env(buildx=True), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"token bytes: {len(token)}" in proc.stderr  # the step did read it
        assert token not in proc.stderr + proc.stdout + report.read_text()
        inspect = docker26.docker("image", "inspect", f"{name}:1").stdout
        history = docker26.docker("history", "--no-trunc", f"{name}:1").stdout
        assert token not in inspect and token not in history
        saved = tmp_path / "image.tar"
        docker26.docker("save", "-o", str(saved), f"{name}:1")
        import tarfile

        with tarfile.open(saved) as tar:
            for member in tar:
                if member.isfile():
                    assert not _contains(tar.extractfile(member).read(), token.encode()), member.name
        blobs = list((cache / "blobs" / "sha256").iterdir())
        assert len(blobs) > 5  # the cache export holds the builder stage's layers (mode=max)
        for blob in blobs:
            assert not _contains(blob.read_bytes(), token.encode()), blob.name
    finally:
        _cleanup(docker26, name)


# ---- doctor: the engine version, image store, buildx and its builders ------------------------------------------


@pytest.mark.parametrize("engine_name,version,store", [("docker20", "20.10", "classic"), ("docker26", "26.1", "containerd")])
def test_doctor_reports_engine_store_buildx_and_builders(engine_name, version, store, request):
    engine = request.getfixturevalue(engine_name)
    proc = run_cli("doctor", "-p", "external-model", "--platform", PLATFORMS, env=engine.env(buildx=True))
    lines = proc.stdout.splitlines()
    assert any(ln.startswith(f"pass  engine: Docker {version}") for ln in lines), proc.stdout
    assert f"pass  image store: {store}" in "\n".join(lines)
    assert any(ln.startswith("pass  buildx: github.com/docker/buildx 0.13.1") for ln in lines)
    builder = next(ln for ln in lines if ln.startswith("pass  builder default: driver docker; platforms "))
    assert "linux/amd64" in builder and "linux/arm64" in builder
    multi = [ln for ln in lines if "multi-platform:" in ln]
    if store == "classic":
        assert multi and multi[0].startswith("warn  multi-platform: builder default (docker driver) on a classic")
    else:
        assert multi == []


# ---- push, promote and analyze of a multi-platform image on the modern engine -----------------------------------


@pytest.mark.registry
def test_push_promote_analyze_a_multi_platform_image(docker26, tmp_path, both_wheels, registry):
    """Built with --load into the containerd store: `bgeimg push` sends the index as it is (images and attestation
    manifests), `promote` retags it by digest keeping the index bytes, `analyze` picks the platform asked for
    from the store's OCI layout."""
    from bgeimg.oci.registry import RegistryClient

    name = _name()
    repo = f"{PREFIX}/rel{uuid.uuid4().hex[:8]}"
    env = docker26.env(buildx=True)
    try:
        _, report = _build(docker26, tmp_path, "--engine", "buildx", "--platform", PLATFORMS,
                           "--wheelhouse", str(both_wheels), "-t", f"{name}:1")
        proc = run_cli("push", f"{name}:1", "--registry", registry, "--repo", repo, "--tag", "rc", "--scheme", "none",
                       "--json", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        client = RegistryClient(registry)
        pushed = client.get_manifest(repo, "rc")
        assert pushed.digest == report["index"]["digest"]  # the very index the build made
        kinds = [d["platform"]["architecture"] for d in pushed.json["manifests"]]
        assert sorted(kinds) == ["amd64", "arm64", "unknown", "unknown"]

        proc = run_cli("promote", f"{registry}/{repo}@{pushed.digest}", "--tag", "stable", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        promoted = client.get_manifest(repo, "stable")
        assert promoted.raw == pushed.raw
        for desc in promoted.json["manifests"]:  # attestations kept, by digest
            assert client.head_manifest(repo, desc["digest"]) == desc["digest"]

        for platform, arch in (("linux/arm64", "arm64"), ("linux/amd64", "amd64")):
            proc = run_cli("analyze", f"{name}:1", "--source", "engine", "--platform", platform, "--json", env=env)
            assert proc.returncode == 0, proc.stderr[-2000:]
            data = json.loads(proc.stdout)
            assert data["platform"] == platform, data.get("platform")
            row = next(r for r in report["platforms"] if r["platform"] == platform)
            assert data["manifest_digest"] == row["digest"]
            assert arch in platform
    finally:
        _cleanup(docker26, name)


def test_analyze_an_image_whose_content_the_store_discarded(docker26, tmp_path):
    """A containerd store can list an image whose blobs are gone (content discarded after unpacking): its
    `docker save` holds manifests but no config or layers. One line that says so and what to do, exit 2."""
    from enginebed import TESTBED_CACHE

    content_store = TESTBED_CACHE / "docker26/data/containerd/daemon/io.containerd.content.v1.content"
    ctr = [str(TESTBED_CACHE / "docker26" / "root" / "usr" / "bin" / "ctr"),
           "-a", "/var/run/bgeimg-docker26/exec/containerd/containerd.sock", "-n", "moby"]
    name = _name()
    try:
        docker26.docker("buildx", "build", "--load", "-t", f"{name}:1", "-", input="FROM python:3.11-slim\n"
                        f"RUN echo {uuid.uuid4().hex} > /unique\n")
        top = docker26.docker("image", "inspect", "--format", "{{.Id}}", f"{name}:1").stdout.strip()
        index = json.loads(subprocess.run([*ctr, "content", "get", top], capture_output=True, check=True).stdout)
        own = index["manifests"][0]["digest"]  # this image's manifest; its last layer is the RUN's, its own
        manifest = json.loads(subprocess.run([*ctr, "content", "get", own], capture_output=True, check=True).stdout)
        gone = [manifest["config"]["digest"], manifest["layers"][-1]["digest"]]
        subprocess.run([*ctr, "content", "rm", *gone], check=True, capture_output=True)
        # containerd deletes the files at its next garbage collection; analyze reads them while they are there
        for digest in gone:
            (content_store / "blobs" / "sha256" / digest.partition(":")[2]).unlink(missing_ok=True)
        proc = run_cli("analyze", f"{name}:1", "--source", "engine", "--no-cache", env=docker26.env(buildx=True))
        line = assert_one_line_error(proc, 2)
        assert line == (f"error: image {name}:1: the engine exported no config or layers for it (a containerd image "
                        "store can keep an image whose content it discarded after unpacking) (pull it again with "
                        f"`docker pull {name}:1`, or analyze it from its registry with `bgeimg analyze "
                        f"registry:{name}:1`)")
    finally:
        _cleanup(docker26, name)


def test_analyze_reads_the_containerd_content_store_as_the_export_does(docker26, monkeypatch):
    """On a containerd image store, analyze reads the blobs from the content store (bgeimg.analyze.store), checked
    by digest and diff_id, instead of the engine's slow export: the same report in every figure, and the export
    taken when a blob is not there."""
    import dataclasses

    from bgeimg.analyze import sources, store
    from bgeimg.analyze.report import build_report
    from bgeimg.oci.docker import api_client

    name = _name()
    try:
        docker26.docker("buildx", "build", "--load", "-t", f"{name}:1", "-", input="FROM python:3.11-slim\n"
                        f"RUN echo {uuid.uuid4().hex} > /unique && mkdir /opt/d && echo a > /opt/d/a\n"
                        "RUN rm -rf /opt/d /etc/os-release && ln -s /unique /opt/link\n")
        for key, value in docker26.env(buildx=True).items():
            monkeypatch.setenv(key, value)
        found = store.store_root(api_client())
        assert found is not None and found[0] == "content", found
        monkeypatch.setenv("BGEIMG_ENGINE_STORE", "0")
        exported = sources.from_engine(f"{name}:1", cache=None)
        monkeypatch.setenv("BGEIMG_ENGINE_STORE", "1")
        stored = sources.from_engine(f"{name}:1", cache=None)
        assert stored.config == exported.config and len(stored.layers) == len(exported.layers) >= 3
        for a, b in zip(stored.layers, exported.layers):
            assert (a.diff_id, a.digest, a.compressed_size) == (b.diff_id, b.digest, b.compressed_size)
            # the store's scan also proved its diff_id (tar_digest), as from a registry; the export's did not
            assert dataclasses.replace(a.scan, tar_digest=None) == b.scan and a.scan.tar_digest == a.diff_id
        assert "/opt/d" in stored.layers[-1].scan.whiteouts and "/opt/link" in stored.layers[-1].scan.symlinks
        ours, theirs = build_report(stored).to_json(), build_report(exported).to_json()
        assert ours.pop("manifest_digest").startswith("sha256:") and theirs.pop("manifest_digest") is None
        assert ours == theirs  # and the store knows which manifest of the index it read
        # a blob the store does not have: StoreUnreadable, so from_engine exports
        content = store.ContentStore(found[1])
        with pytest.raises(store.StoreUnreadable, match="blob sha256:0{64}"):
            content.get_blob("", "sha256:" + "0" * 64)
    finally:
        _cleanup(docker26, name)


# ---- reproducible images and the registry cache (Docker 26) -----------------------------------------------------


@pytest.mark.slow
def test_two_cold_builds_give_the_same_digest_per_platform(docker26, tmp_path, wheelhouse_factory):
    """SOURCE_DATE_EPOCH + rewrite-timestamp: every step run again (--no-cache), the same manifest per platform.
    The same tag both times: it is the version label, part of the config. prometheus_client is pure Python and
    among the server's imports, so the bytecode step writes .pyc on both platforms."""
    wheels = wheelhouse_factory(["prometheus_client"], "linux/amd64")
    name = _name()
    digests = []
    try:
        for run in range(2):
            proc, report = _build(docker26, tmp_path / f"run{run}", "--engine", "buildx", "--platform", PLATFORMS,
                                  "--no-cache", "--wheelhouse", str(wheels), "--set", "requirements=[prometheus_client]",
                                  "--progress", "plain", "-t", f"{name}:1")
            assert report["labels"]["io.bgeimg.source-date-epoch"].isdigit()
            assert all(not s["cached"] for r in report["platforms"] for s in r["steps"] if " RUN " in f" {s['name']}")
            compiled = re.findall(r"compiled (\d+) imported modules", proc.stdout + proc.stderr)
            assert len(compiled) == 2 and all(int(n) > 0 for n in compiled)
            digests.append({r["platform"]: r["digest"] for r in report["platforms"]})
            if run == 0:
                _cleanup(docker26, name)
        assert digests[0] == digests[1] and len(digests[0]) == 2
        created = docker26.docker("image", "inspect", "--format", "{{.Created}}", f"{name}:1").stdout.strip()
        epoch = int(report["labels"]["io.bgeimg.source-date-epoch"])
        assert created.startswith(datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
        # not the day of the build: a build tomorrow writes the same /etc/shadow
        shadow = docker26.docker("run", "--rm", "--user", "0", "--entrypoint", "grep", f"{name}:1", "^bge:",
                                 "/etc/shadow").stdout
        assert shadow.startswith("bge:!:3652:"), shadow
    finally:
        _cleanup(docker26, name)


@pytest.mark.registry
def test_registry_cache_round_trip(docker26, tmp_path, both_wheels, registry):
    """--cache-to type=registry exports every step of the build (mode=max) to the registry; with the records that
    build made pruned from the builder, a build with --cache-from of it takes every step from the registry's cache.
    A nonce in the first RUN of each stage (a template's own builder step, the user's uid) gives every step of
    this build a key of its own: its records go, nothing to hit locally is left, the other tests' cache stays."""
    from bgeimg.build import builders
    from bgeimg.oci.registry import RegistryClient

    env = {**os.environ, **docker26.env(buildx=True)}
    cache_repo = f"{PREFIX}/cache{uuid.uuid4().hex[:8]}"
    ref = f"type=registry,ref={registry}/{cache_repo}:buildcache"
    nonce = uuid.uuid4().int % 40000
    template = tmp_path / "nonce.Dockerfile.j2"
    template.write_text('{% extends "Dockerfile.j2" %}\n{% block builder_system %}\n'
                        f'RUN echo {nonce} > /etc/bgeimg-cache-nonce\n{{% endblock %}}\n')
    unique = ("--set", f"template={template}", "--set", f"user.uid={20000 + nonce}",
              "--set", "slim.strip_symbols=false")
    name = _name()
    try:
        before = builders.cache_records(docker26.cli, env)
        _, first = _build(docker26, tmp_path / "a", "--engine", "buildx", "--platform", "linux/amd64", *unique,
                          "--wheelhouse", str(both_wheels), "--cache-to", f"{ref},mode=max", "-t", f"{name}:1")
        assert not [s for s in first["platforms"][0]["steps"] if s["cached"] and " RUN " in f" {s['name']}"]
        cache = RegistryClient(registry).get_manifest(cache_repo, "buildcache").json
        layers = cache.get("layers") or cache.get("manifests") or []  # a manifest, or (BuildKit 0.13) an index
        assert len(layers) >= first["platforms"][0]["layers"]  # the builder stage's layers too (mode=max)
        assert any("buildkit" in (x.get("mediaType") or "") for x in [cache.get("config") or {}, *layers])
        made = {k: v for k, v in builders.cache_records(docker26.cli, env).items() if k not in before}
        assert made
        left = builders.prune_records(docker26.cli, made, env)
        assert not left, left
        _, second = _build(docker26, tmp_path / "b", "--engine", "buildx", "--platform", "linux/amd64", *unique,
                           "--wheelhouse", str(both_wheels), "--cache-from", ref, "-t", f"{name}:1")
        steps = [s for s in second["platforms"][0]["steps"] if not s["name"].startswith(("load ", "push ", "tag "))]
        # Every step but the base image's resolution (a FROM is looked up, not cached). The last one is the
        # exporter's: it fetches that layer from the imported cache, and buildx's plain printer then sometimes
        # shows it DONE instead of CACHED (once in five runs here); the equal digest below says what it held.
        last = re.compile(r"\[(?:\S+ )?runtime (\d+)/\1\] ")
        rerun = [s["name"] for s in steps if not s["cached"] and not re.search(r"\] FROM ", s["name"])
                 and not last.search(s["name"])]
        assert not rerun, rerun
        assert sum(" RUN " in f" {s['name']}" for s in steps) >= 5
        assert second["platforms"][0]["digest"] == first["platforms"][0]["digest"]
    finally:
        _cleanup(docker26, name)
