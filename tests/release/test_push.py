"""bgeimg push / promote / tags against real registries: the test bed's and registries of the tests' own."""

from __future__ import annotations

import json
import os

import pytest
from pushhelp import bgeimg, config_of, has_manifest, manifest

pytestmark = [pytest.mark.engine, pytest.mark.registry]


def pushed(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_platforms_under_one_tag_as_an_index(docker_api, registry, tiny_image) -> None:
    image = tiny_image()
    repo = image.split(":")[0]
    doc = pushed(bgeimg("push", image, "--registry", registry, "--scheme", "semver", "--version", "1.2.3", "--json"))
    assert doc[0]["tags"] == ["1.2.3", "1.2", "1", "latest"]
    digest, index = manifest(registry, repo, "1.2.3")
    assert digest == doc[0]["digest"]
    assert index["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    # what was released, on the index (the image's own label says what it was built as)
    assert index["annotations"]["org.opencontainers.image.version"] == "1.2.3"
    archs = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert set(archs) == {"amd64", "arm64"}
    for arch, child in archs.items():
        assert config_of(registry, repo, child)["architecture"] == arch
    for tag in ("1.2", "1", "latest"):
        assert manifest(registry, repo, tag)[0] == digest
    # a second push of the same image sends no layer bytes
    again = pushed(bgeimg("push", image, "--registry", registry, "--tag", "again", "--scheme", "semver",
                          "--version", "1.2.3", "--json"))
    assert again[0]["bytes_uploaded"] == 0 and again[0]["blobs_skipped"] >= 4 and again[0]["digest"] == digest


def test_push_to_a_mirror_too_and_a_dead_mirror_does_not_undo_the_others(docker_api, registry, tiny_image,
                                                                          own_registry) -> None:
    image = tiny_image(platforms=("linux/amd64",))
    repo = image.split(":")[0]
    second = own_registry()
    doc = pushed(bgeimg("push", image, "--registry", registry, "--mirror", second.host, "--tag", "m1", "--scheme",
                        "commit", "--allow-dirty", "--json"))
    assert [d["registry"] for d in doc] == [registry, second.host]
    assert doc[0]["digest"] == doc[1]["digest"] == manifest(second.host, repo, "m1")[0]
    dead = bgeimg("push", image, "--registry", registry, "--mirror", "127.0.0.1:9", "--tag", "m2", "--scheme",
                  "commit", "--allow-dirty")
    assert dead.returncode == 3
    last = dead.stderr.strip().splitlines()[-1]
    assert last.startswith("error: push failed on 1 of 2 registries: 127.0.0.1:9: ") and "Traceback" not in dead.stderr
    assert has_manifest(registry, repo, "m2")


def test_missing_platform_pushes_nothing(docker_api, registry, tiny_image) -> None:
    image = tiny_image(platforms=("linux/amd64",))
    result = bgeimg("push", image, "--registry", registry, "--platform", "linux/amd64,linux/arm64", "--tag", "x",
                    "--scheme", "commit", "--allow-dirty")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: no local image of {image} for linux/arm64 (build it first: bgeimg build "
                                     f"--platform linux/amd64,linux/arm64 --tag {image})")
    assert not has_manifest(registry, image.split(":")[0], "x")


def test_promote_rollback_and_tags(docker_api, registry, tiny_image) -> None:
    first = tiny_image(platforms=("linux/amd64",))
    repo = first.split(":")[0]
    d1 = pushed(bgeimg("push", first, "--registry", registry, "--scheme", "semver", "--version", "1.0.0",
                       "--json"))[0]["digest"]
    docker_api.remove_image(f"{first}-amd64", force=True)
    second = tiny_image(platforms=("linux/amd64",))  # same name, new content
    d2 = pushed(bgeimg("push", second, "--registry", registry, "--scheme", "semver", "--version", "1.1.0",
                       "--json"))[0]["digest"]
    assert d1 != d2
    for digest in (d2, d1):  # promote the new one, then roll back to the old one
        result = bgeimg("promote", f"{registry}/{repo}@{digest}", "--tag", "stable", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["digest"] == digest == manifest(registry, repo, "stable")[0]
    other = f"{repo}-prod"
    result = bgeimg("promote", f"{registry}/{repo}:1.1.0", "--tag", "live", "--to", other, "--json")
    promoted = json.loads(result.stdout)
    assert promoted["digest"] == d2 and promoted["mounted"] >= 2  # config + layers mounted, not uploaded
    assert config_of(registry, other, manifest(registry, other, "live")[1]["manifests"][0]["digest"])
    listing = json.loads(bgeimg("tags", f"{registry}/{repo}", "--json").stdout)
    by_tag = {row["tag"]: row for row in listing}
    assert by_tag["stable"]["digest"] == d1 and by_tag["latest"]["digest"] == d2
    assert by_tag["1.0.0"]["created"] == "2026-11-22T00:00:00Z" and by_tag["1.0.0"]["platforms"] == ["linux/amd64"]


def test_auth_and_tls_registry(docker_api, tiny_image, own_registry, docker_config, monkeypatch, tmp_path) -> None:
    secure = own_registry(tls=True, user="ci", password="s3cret-pass")
    certs = tmp_path / "certs.d" / secure.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(secure.ca.read_bytes())
    env = {**os.environ, "BGEIMG_CERTS_D": str(tmp_path / "certs.d")}
    image = tiny_image(platforms=("linux/amd64",))
    docker_config(secure.host, "ci", "wrong-pass")
    bad = bgeimg("push", image, "--registry", secure.host, "--tag", "t", "--scheme", "commit", "--allow-dirty", env=env)
    assert bad.returncode == 3 and "wrong-pass" not in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr and bad.stderr.strip().splitlines()[-1].startswith("error: push failed")
    docker_config(secure.host, "ci", "s3cret-pass")
    good = bgeimg("push", image, "--registry", secure.host, "--tag", "t", "--scheme", "commit", "--allow-dirty",
                  "--json", env=env)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)[0]["tags"][-1] == "t" and "s3cret-pass" not in good.stdout + good.stderr
    no_ca = bgeimg("push", image, "--registry", secure.host, "--tag", "u", "--scheme", "commit", "--allow-dirty",
                   env={**env, "BGEIMG_CERTS_D": str(tmp_path / "none")})
    assert no_ca.returncode == 3 and "Traceback" not in no_ca.stderr


def test_registry_stopped_mid_push_leaves_no_tag_and_a_retry_completes(docker_api, tiny_image, own_registry,
                                                                       cut_proxy) -> None:
    backend = own_registry()
    image = tiny_image(platforms=("linux/amd64",), payload_kb=3000)
    proxy = cut_proxy(backend.port, cut_after=400_000)  # dies while the 3 MB layer is on its way
    repo = image.split(":")[0]
    first = bgeimg("push", image, "--registry", proxy.host, "--tag", "v1", "--scheme", "commit", "--allow-dirty")
    assert first.returncode == 3
    assert first.stderr.strip().splitlines()[-1].startswith(f"error: push failed on 1 of 1 registries: {proxy.host}")
    assert "Traceback" not in first.stderr
    assert not has_manifest(backend.host, repo, "v1")  # no tag pointing at a partial image
    proxy.restore()  # the registry is back
    again = bgeimg("push", image, "--registry", proxy.host, "--tag", "v1", "--scheme", "commit", "--allow-dirty",
                   "--json")
    assert again.returncode == 0, again.stderr
    assert manifest(backend.host, repo, "v1")[0] == json.loads(again.stdout)[0]["digest"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--tag", "x"], "error: no registry to push to (pass --registry HOST[/NAMESPACE], set `registry:` in bgeimg.yaml, "
                     "or export BGE_REGISTRY_URL)"),
    (["--registry", "127.0.0.1:5000", "--scheme", "calver"], "error: unknown tag scheme 'calver' (choose from semver, "
                                                             "commit, timestamp, ref, edge, pr or none)"),
    (["--registry", "127.0.0.1:5000", "--version", "1.2"], "error: version '1.2' is not semver: it needs "
     "MAJOR.MINOR.PATCH, e.g. 1.4.2 (semver 2.0.0 rule 2: three dot-separated non-negative integers)"),
    (["--registry", "127.0.0.1:5000", "--tag", "bad tag"], "error: tag 'bad tag' is not valid (tags match "
                                                            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"),
])
def test_bad_push_input(args, expected, monkeypatch, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BGE_REGISTRY_URL"}
    result = bgeimg("push", "nothing-here:1", *args, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == expected


def test_unknown_local_image(registry) -> None:
    result = bgeimg("push", "bgeimg-test-push/absent:1", "--registry", registry, "--tag", "x", "--scheme", "commit",
                    "--allow-dirty")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no local image bgeimg-test-push/absent:1")
