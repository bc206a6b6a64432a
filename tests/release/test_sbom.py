"""bgeimg sbom on a real built image (the tiny requirement set, the real MiniLM weights): the Python
distributions and Debian packages are those the image holds (pip list and dpkg-query inside it), the model is its
own component, the document validates against the CycloneDX schema; push --sbom attaches it and
`sbom registry:REF` reads it back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

from bgeimg.context.model import Lock, ModelFiles
from bgeimg.profile import ModelSpec

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.slow]

TINY = ["fastapi", "uvicorn"]
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
REVISION = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
DEBIAN_DOCKER = "/usr/bin/docker"


def bgeimg(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


@pytest.fixture(scope="module")
def built(docker_api, wheelhouse_factory, minilm_dir, tmp_path_factory):
    """One small cpu-slim image (fastapi + uvicorn, pip kept so `pip list` can answer, MiniLM baked)."""
    from pathlib import Path

    tmp = tmp_path_factory.mktemp("sbom")
    name = f"bgeimg-test-sbom/t{uuid.uuid4().hex[:8]}"
    app = Path(__file__).resolve().parents[1] / "build" / "data" / "placeholder_server"
    sets = [f"requirements=[{','.join(TINY)}]", f"app_dir={app}", "slim.remove_pip=false",
            "model.source=path", f"model.path={minilm_dir}", f"model.id={MODEL_ID}", f"model.revision={REVISION}"]
    args = ["build", "-p", "cpu-slim", "--platform", "linux/amd64", "--wheelhouse", str(wheelhouse_factory(TINY)),
            "-t", f"{name}:1.0", "--context", str(tmp / "context")]
    for item in sets:
        args += ["--set", item]
    proc = bgeimg(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield f"{name}:1.0", tmp
    for tag in (f"{name}:1.0", f"{name}:1.0-amd64"):
        try:
            docker_api.remove_image(tag, force=True)
        except Exception:
            pass


def inside(image: str, *cmd: str) -> str:
    return subprocess.run([DEBIAN_DOCKER, "run", "--rm", "--entrypoint", cmd[0], image, *cmd[1:]], check=True,
                          capture_output=True, text=True, timeout=120).stdout


def components(doc: dict, prefix: str) -> dict[str, str]:
    return {c["name"]: c["version"] for c in doc["components"] if c.get("purl", "").startswith(prefix)}


def test_sbom_lists_what_the_image_holds_and_validates(built, minilm_dir) -> None:
    image, tmp = built
    # a lock pinning the model's files, written by bgeimg's own Lock: the SBOM takes the digests from it
    lock = Lock(path=tmp / "bgeimg.lock")
    files = ModelFiles(source="hf", model_id=MODEL_ID, revision=REVISION)
    for p in sorted(minilm_dir.rglob("*")):
        if p.is_file():
            files.files[p.relative_to(minilm_dir).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    lock.record(ModelSpec(source="hf", id=MODEL_ID, revision=REVISION), files)
    lock.write()

    out = tmp / "sbom.cdx.json"
    proc = bgeimg("sbom", image + "-amd64", "-o", str(out), "--lock", str(lock.path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"

    pip = {canonicalize_name(d["name"]): d["version"]
           for d in json.loads(inside(image, "/opt/venv/bin/python", "-m", "pip", "list", "--format", "json"))}
    venv = {c["name"]: c["version"] for c in doc["components"] if c.get("purl", "").startswith("pkg:pypi/")
            and any(p["name"] == "bgeimg:location" and p["value"].startswith("/opt/venv/") for p in c["properties"])}
    assert {"fastapi", "uvicorn", "starlette", "pydantic"} <= set(pip)
    assert venv == pip  # every distribution the venv's pip sees, with its version, and nothing it does not
    for c in doc["components"]:
        if c.get("purl", "").startswith("pkg:pypi/"):
            assert c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}"

    dpkg = {}
    for line in inside(image, "dpkg-query", "-W", "-f", "${db:Status-Status}\t${Package}\t${Version}\n").splitlines():
        status, package, version = line.split("\t")
        if status == "installed":
            dpkg[package] = version
    assert "libc6" in dpkg and components(doc, "pkg:deb/debian/") == dpkg

    (model,) = [c for c in doc["components"] if c["type"] == "machine-learning-model"]
    assert (model["name"], model["version"]) == (MODEL_ID, REVISION)
    in_image = {c["name"]: c.get("hashes", [{}])[0].get("content") for c in model["components"]}
    assert in_image and set(in_image) <= set(files.files)
    assert all(in_image[n] == files.files[n] for n in in_image)  # the lock's digests, per file


def test_push_sbom_attaches_and_reads_back(built, registry) -> None:
    image, tmp = built
    proc = bgeimg("push", image, "--registry", registry, "--scheme", "semver", "--version", "0.1.0", "--tag", "sbom",
                  "--sbom", "--json", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (pushed,) = json.loads(proc.stdout)
    assert list(pushed["sboms"]) == ["linux/amd64"]
    back = bgeimg("sbom", f"registry:{registry}/{pushed['repository']}:sbom")
    assert back.returncode == 0, back.stderr
    doc = json.loads(back.stdout)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(back.stdout) is None
    assert "fastapi" in components(doc, "pkg:pypi/")
    # the registry (distribution 2.8) has no referrers API: the tag fallback scheme lists the SBOM
    fallback = [t for t in subprocess.run(
        [sys.executable, "-c", f"from bgeimg.oci.registry import RegistryClient; print(RegistryClient('{registry}')"
         f".list_tags('{pushed['repository']}'))"], capture_output=True, text=True, env=os.environ).stdout.split("'")
        if t.startswith("sha256-")]
    assert len(fallback) == 1
    none = bgeimg("sbom", f"registry:{registry}/bgeimg-test/no-such-sbom-{uuid.uuid4().hex[:6]}:x")
    assert none.returncode == 2 and none.stderr.startswith("error: ")
