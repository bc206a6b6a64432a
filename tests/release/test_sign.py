"""Signing and verification with the real cosign against the test bed's registry: sign, verify, a re-pointed tag,
a copied signature, another key; and the refusals that come before cosign runs."""

from __future__ import annotations

import json

import pytest
from release_images import put_image

from bgeimg.oci.mediatypes import DOCKER_LIST
from bgeimg.oci.reference import parse_reference
from bgeimg.oci.registry import RegistryClient
from bgeimg.release import sign

PASSWORD = "s3cret-pw"


@pytest.fixture
def signed(registry, repo, keys, cosign_env, monkeypatch):
    """An image in the registry, signed with our key: (client, digest)."""
    digest = put_image(registry, repo, "stable")
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    client = RegistryClient(registry)
    spec = sign.key_spec(str(keys["ours"][0]), private=True)
    checked = sign.sign(client, parse_reference(f"{registry}/{repo}@{digest}"), spec)
    assert checked.digest == digest and sorted(checked.platforms) == ["linux/amd64", "linux/arm64"]
    return client, digest


def verify(client, text, public):
    return sign.verify(client, parse_reference(text), sign.key_spec(str(public), private=False))


def test_sign_then_verify_the_index_and_every_platform(signed, registry, repo, keys) -> None:
    client, digest = signed
    tags = client.list_tags(repo)
    # one signature per manifest: the index and both platforms
    wanted = {f"sha256-{d[7:]}.sig" for d in [digest, *sign._digests(client, parse_reference(f"{registry}/{repo}:v1"))
                                                .platforms.values()]}
    assert wanted <= set(tags) and len(wanted) == 3
    checked = verify(client, f"{registry}/{repo}:v1", keys["ours"][1])
    assert checked.digest == digest and len(checked.platforms) == 2


def test_a_tag_re_pointed_to_another_digest_fails(signed, registry, repo, keys) -> None:
    client, digest = signed
    other = put_image(registry, repo, "tampered", tag="scratch")
    index = client.get_manifest(repo, other)
    client.put_manifest(repo, "v1", index.raw, DOCKER_LIST)  # the attacker moves v1
    with pytest.raises(sign.SignatureError, match=r"is not signed") as info:
        verify(client, f"{registry}/{repo}:v1", keys["ours"][1])
    assert info.value.exit_code == 1 and other in str(info.value)
    # ... and copies the real signature next to the new digest: the signed payload names the old digest
    sig = client.get_manifest(repo, f"sha256-{digest[7:]}.sig")
    client.put_manifest(repo, f"sha256-{other[7:]}.sig", sig.raw, sig.media_type)
    with pytest.raises(sign.SignatureError, match=r"is not signed by this key") as info:
        verify(client, f"{registry}/{repo}:v1", keys["ours"][1])
    assert info.value.exit_code == 1
    verify(client, f"{registry}/{repo}@{digest}", keys["ours"][1])  # the signed digest itself still verifies


def test_a_signature_from_another_key_fails(signed, registry, repo, keys) -> None:
    client, _ = signed
    with pytest.raises(sign.SignatureError, match=r"is not signed by this key") as info:
        verify(client, f"{registry}/{repo}:v1", keys["other"][1])
    assert info.value.exit_code == 1


def test_unsigned_platform_manifest_is_caught(registry, repo, keys, cosign_env, monkeypatch) -> None:
    """An index signed on its own (no --recursive) is not enough: each platform must verify too."""
    import subprocess

    digest = put_image(registry, repo, "half")
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    subprocess.run([sign.find_cosign(), "sign", "--yes", "--tlog-upload=false", "--allow-http-registry",
                    "--key", str(keys["ours"][0]), f"{registry}/{repo}@{digest}"], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)
    with pytest.raises(sign.SignatureError, match=r"linux/amd64 manifest sha256:\w+ of .* is not signed"):
        verify(RegistryClient(registry), f"{registry}/{repo}:v1", keys["ours"][1])


def test_refusals_before_cosign_runs(registry, repo, keys, cosign_env, monkeypatch, tmp_path) -> None:
    client = RegistryClient(registry)
    with pytest.raises(sign.SignInputError, match="sign by digest"):
        sign.sign(client, parse_reference(f"{registry}/{repo}:v1"), sign.KeySpec(key="k"))
    with pytest.raises(sign.SignInputError, match="no signing key.*COSIGN_KEY"):
        sign.key_spec(None, private=True)
    with pytest.raises(sign.SignInputError, match="COSIGN_PASSWORD is not set"):
        sign.key_spec(str(keys["ours"][0]), private=True)
    with pytest.raises(sign.SignInputError, match="does not exist"):
        sign.key_spec(str(tmp_path / "nope.pub"), private=False)
    monkeypatch.setenv("COSIGN_KEY", "awskms:///alias/release")  # a KMS URI is passed through untouched
    assert sign.key_spec(None, private=True).key == "awskms:///alias/release"
    monkeypatch.setenv("BGEIMG_COSIGN", str(tmp_path / "cosign"))
    with pytest.raises(sign.CosignError, match="not an executable.*apt-get install cosign") as info:
        sign.find_cosign()
    assert info.value.exit_code == 3


def test_a_wrong_password_is_one_line_without_the_password(registry, repo, keys, cosign_env, monkeypatch) -> None:
    digest = put_image(registry, repo, "pw")
    monkeypatch.setenv("COSIGN_PASSWORD", "not-the-password-123")
    with pytest.raises(sign.CosignError) as info:
        sign.sign(RegistryClient(registry), parse_reference(f"{registry}/{repo}@{digest}"),
                  sign.key_spec(str(keys["ours"][0]), private=True))
    text = str(info.value)
    assert "decrypt" in text and "not-the-password-123" not in text and "\n" not in text
    assert json.dumps(text)  # plain


# ---- through the CLI: exit codes and one line

def cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    import sys

    from bgeimg.cli.app import main

    monkeypatch.setattr(sys, "argv", ["bgeimg", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_cli_sign_verify_promote_and_deploy(registry, repo, keys, cosign_env, monkeypatch, capsys) -> None:
    digest = put_image(registry, repo, "cli")
    ours_key, ours_pub = (str(p) for p in keys["ours"])
    other_pub = str(keys["other"][1])
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    code, out, err = cli(capsys, monkeypatch, "sign", f"{registry}/{repo}@{digest}", "--key", ours_key)
    assert code == 0 and f"signed {registry}/{repo}@{digest} and 2 platform manifests" in out
    assert PASSWORD not in out + err
    code, out, _ = cli(capsys, monkeypatch, "verify", f"{registry}/{repo}:v1", "--key", ours_pub)
    assert code == 0 and out.startswith(f"verified {registry}/{repo}@{digest}")
    code, _, err = cli(capsys, monkeypatch, "verify", f"{registry}/{repo}:v1", "--key", other_pub)
    assert code == 1 and err.startswith("error: ") and "is not signed by this key" in err and "\n" not in err

    # promote --require-signature: the signed digest goes to candidate; an unsigned one is refused, tag untouched
    code, out, _ = cli(capsys, monkeypatch, "promote", f"{registry}/{repo}:v1", "--tag", "candidate",
                       "--require-signature", "--key", ours_pub)
    assert code == 0 and out.strip().endswith(digest)
    unsigned = put_image(registry, repo, "unsigned", tag="next")
    code, _, err = cli(capsys, monkeypatch, "promote", f"{registry}/{repo}@{unsigned}", "--tag", "stable",
                       "--require-signature", "--key", ours_pub)
    assert code == 1 and "is not signed" in err and "\n" not in err
    assert "stable" not in RegistryClient(registry).list_tags(repo)

    # deploy render --require-signature, with a canary that is unsigned
    args = ["deploy", "render", "--target", "nginx", "--image", f"{registry}/{repo}@{digest}",
            "--require-signature", "--key", ours_pub]
    code, out, _ = cli(capsys, monkeypatch, *args)
    assert code == 0 and "least_conn;" in out
    code, out, err = cli(capsys, monkeypatch, *args, "--canary", f"{registry}/{repo}@{unsigned}")
    assert code == 1 and unsigned in err and "is not signed" in err and out == ""
    code, _, err = cli(capsys, monkeypatch, *args[:-2], "--key", other_pub)
    assert code == 1 and "not signed by this key" in err


def test_cli_refusals(registry, repo, keys, cosign_env, monkeypatch, capsys, tmp_path) -> None:
    code, _, err = cli(capsys, monkeypatch, "sign", f"{registry}/{repo}@sha256:{'a' * 64}", "--key",
                       str(keys["ours"][0]))
    assert code == 2 and err == ("error: COSIGN_PASSWORD is not set (export COSIGN_PASSWORD with the key's password; "
                                 "cosign would otherwise prompt for it)")
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    code, _, err = cli(capsys, monkeypatch, "sign", f"{registry}/{repo}:v1", "--key", str(keys["ours"][0]))
    assert code == 2 and err == (f"error: {registry}/{repo}:v1 names a tag, and a tag can move: sign by digest "
                                 "(pass REGISTRY/REPO@sha256:... (bgeimg push prints it))")
    code, _, err = cli(capsys, monkeypatch, "verify", f"{registry}/{repo}:v1")
    assert code == 2 and "no signing key" in err
    monkeypatch.setenv("BGEIMG_COSIGN", str(tmp_path / "none"))
    code, _, err = cli(capsys, monkeypatch, "sign", f"{registry}/{repo}@sha256:{'a' * 64}", "--key",
                       str(keys["ours"][0]))
    assert code == 3 and "apt-get install cosign" in err and "\n" not in err


@pytest.mark.engine
def test_push_sign_signs_what_it_pushed(docker_api, registry, tiny_image, keys, cosign_env, monkeypatch) -> None:
    import os

    from pushhelp import bgeimg

    image = tiny_image(platforms=("linux/amd64",))  # one platform: an arm64 build under qemu costs a minute
    env = {**os.environ, "COSIGN_PASSWORD": PASSWORD}
    result = bgeimg("push", image, "--registry", registry, "--scheme", "semver", "--version", "0.1.0", "--tag", "signed",
                    "--sign", "--key",
                    str(keys["ours"][0]), "--json", env=env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)[0]
    assert doc["signed"] is True and PASSWORD not in result.stdout + result.stderr
    checked = verify(RegistryClient(registry), f"{registry}/{doc['repository']}:signed", keys["ours"][1])
    assert checked.digest == doc["digest"] and list(checked.platforms) == ["linux/amd64"]
