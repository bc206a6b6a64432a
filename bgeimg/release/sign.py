"""Sign and verify pushed images with cosign: the index and every platform manifest, by digest.

cosign does the cryptography and writes/reads the signatures (`sha256-<digest>.sig` tags next to the image); this
module decides what to sign, finds cosign, passes keys through and turns cosign's answers into one line and an exit
code. Keys: a private/public key file, `env://VAR`, or a KMS URI (awskms://, gcpkms://, azurekms://, hashivault://,
k8s://), from `--key` or `$COSIGN_KEY`; the key password only from `$COSIGN_PASSWORD` (cosign reads it itself, we
never see or print it). Keyless signing (Fulcio certificate from the CI's OIDC identity, Rekor log) needs the public
Sigstore services; it is passed through but cannot be tested on a machine without them.

Registries spoken to over plain HTTP (a loopback registry or an `http://` one, as bgeimg.oci.registry decides) get
cosign's `--allow-http-registry --allow-insecure-registry`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from bgeimg.errors import BgeimgError, OutsideError
from bgeimg.oci.mediatypes import is_attestation
from bgeimg.oci.platform import platform_str
from bgeimg.oci.reference import Reference, parse_reference
from bgeimg.oci.registry import RegistryClient

COSIGN_ENV = "BGEIMG_COSIGN"
KEY_ENV = "COSIGN_KEY"
PASSWORD_ENV = "COSIGN_PASSWORD"
INSTALL_HINT = ("install Debian 13's cosign package (apt-get install cosign) or a release from "
                "github.com/sigstore/cosign, or point BGEIMG_COSIGN at the binary")
KMS_SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://", "env://", "pkcs11:")
# cosign's exit codes for a verification that ran and failed (sigstore/cosign cmd/cosign/errors).
_NO_SIGNATURES = 10
_NO_MATCHING = 12


class SignInputError(BgeimgError):
    """Bad signing input: a tag instead of a digest, no key, a key file that is not there (exit 2)."""


class SignatureError(BgeimgError):
    """A digest is unsigned or signed by another key: the check failed (exit 1)."""

    exit_code = 1


class CosignError(OutsideError):
    """cosign is missing, or failed for a reason other than the signature (registry, KMS) (exit 3)."""


@dataclass(frozen=True)
class KeySpec:
    """How to sign or verify: a key reference (file, env://, KMS URI) or keyless with an expected identity."""

    key: str | None = None
    keyless: bool = False
    identity: str | None = None  # keyless verify: --certificate-identity (e.g. the CI workflow's URL)
    issuer: str | None = None  # keyless verify: --certificate-oidc-issuer
    tlog: bool = False  # upload to / check against Rekor; on for keyless (it needs it), off by default with keys

    def __repr__(self) -> str:  # a key reference is not secret, but keep reprs boring all the same
        return f"KeySpec(keyless={self.keyless}, tlog={self.tlog})"


@dataclass
class Checked:
    """What was signed or verified: the top digest and each platform manifest under it."""

    reference: str  # registry/repo@digest
    digest: str
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> manifest digest


def find_cosign() -> str:
    """$BGEIMG_COSIGN, else cosign on PATH; a missing one says how to get it."""
    path = os.environ.get(COSIGN_ENV) or shutil.which("cosign")
    if not path or not os.access(path, os.X_OK):
        where = f"{COSIGN_ENV}={path} is not an executable" if os.environ.get(COSIGN_ENV) else "cosign is not on PATH"
        raise CosignError(f"{where}: signing needs cosign", INSTALL_HINT)
    return path


def key_spec(key: str | None, *, keyless: bool = False, identity: str | None = None, issuer: str | None = None,
             tlog: bool | None = None, private: bool) -> KeySpec:
    """Check the key reference now, with one line, rather than letting cosign prompt or fail deep inside."""
    key = key or os.environ.get(KEY_ENV) or None
    if keyless:
        if key:
            raise SignInputError("--keyless and a key were both given", "use one: --key FILE|URI or --keyless")
        if not private and not (identity and issuer):
            raise SignInputError("keyless verification needs the signer's identity",
                                 "pass --certificate-identity and --certificate-oidc-issuer")
        return KeySpec(keyless=True, identity=identity, issuer=issuer, tlog=True if tlog is None else tlog)
    if not key:
        which = "private key (cosign.key)" if private else "public key (cosign.pub)"
        raise SignInputError(f"no signing key: pass --key with the {which}, a KMS URI or env://VAR, "
                             f"or set {KEY_ENV}", "or --keyless in a CI with an OIDC identity")
    if not key.startswith(KMS_SCHEMES):
        if not os.path.isfile(key):
            raise SignInputError(f"key file {key} does not exist", "generate one with `cosign generate-key-pair`")
        if private and PASSWORD_ENV not in os.environ:
            raise SignInputError(f"{PASSWORD_ENV} is not set", f"export {PASSWORD_ENV} with the key's password; "
                                 "cosign would otherwise prompt for it")
    return KeySpec(key=key, tlog=bool(tlog))


def _digests(client: RegistryClient, ref: Reference) -> Checked:
    """The top digest under `ref` and, for an index, each platform manifest's digest (attestations left out)."""
    top = client.get_manifest(ref.repository, ref.ref)
    checked = Checked(reference=f"{client.host}/{ref.repository}@{top.digest}", digest=top.digest)
    if top.is_index:
        for desc in top.json.get("manifests", []):
            if not is_attestation(desc):
                checked.platforms[platform_str(desc.get("platform"))] = desc["digest"]
    return checked


def _registry_flags(client: RegistryClient) -> list[str]:
    return ["--allow-http-registry", "--allow-insecure-registry"] if client.base_url().startswith("http://") else []


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("COSIGN_YES", "true")  # never an interactive "are you sure" on a terminal
    try:
        # stdin closed: cosign must never wait for a password prompt nobody answers
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        raise CosignError(f"cosign did not finish {what} within 300 s") from None
    except OSError as exc:
        raise CosignError(f"cannot run cosign ({exc.strerror})", INSTALL_HINT) from None


def _reason(proc: subprocess.CompletedProcess) -> str:
    """cosign's own one-line reason ("Error: ..."), without secrets: the password never reaches its output, and
    an env:// key or KMS URI is a name, not a secret."""
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    text = (errors or lines or [f"exit status {proc.returncode}"])[-1].removeprefix("Error:").strip()
    password = os.environ.get(PASSWORD_ENV)
    if password:
        text = text.replace(password, "***")
    return re.sub(r"\s+", " ", text)[:300]


def sign(client: RegistryClient, ref: Reference, spec: KeySpec, cosign: str | None = None) -> Checked:
    """Sign the index (or single manifest) at `ref`'s digest and every platform manifest under it."""
    if not ref.digest:
        raise SignInputError(f"{ref} names a tag, and a tag can move: sign by digest",
                             "pass REGISTRY/REPO@sha256:... (bgeimg push prints it)")
    cosign = cosign or find_cosign()
    checked = _digests(client, ref)
    argv = [cosign, "sign", "--yes", "--recursive", f"--tlog-upload={'true' if spec.tlog else 'false'}",
            *_registry_flags(client)]
    if spec.key:
        argv += ["--key", spec.key]
    proc = _run(argv + [checked.reference], f"signing {checked.reference}")
    if proc.returncode != 0:
        raise CosignError(f"cosign could not sign {checked.reference}: {_reason(proc)}")
    return checked


def verify(client: RegistryClient, ref: Reference, spec: KeySpec, cosign: str | None = None) -> Checked:
    """Verify the digest `ref` resolves to now (a tag is resolved first) and every platform manifest under it.
    Unsigned, or signed only by another key: SignatureError (exit 1)."""
    cosign = cosign or find_cosign()
    checked = _digests(client, ref)
    argv = [cosign, "verify", *_registry_flags(client)]
    if spec.key:
        argv += ["--key", spec.key]
    else:
        argv += ["--certificate-identity", spec.identity or "", "--certificate-oidc-issuer", spec.issuer or ""]
    if not spec.tlog:
        argv.append("--insecure-ignore-tlog=true")  # key-based, private: nothing was logged to check against
    named = f" ({ref.tag})" if ref.tag and not ref.digest else ""
    for platform, digest in [("", checked.digest), *checked.platforms.items()]:
        target = f"{client.host}/{ref.repository}@{digest}"
        proc = _run(argv + [target], f"verifying {target}")
        if proc.returncode == 0:
            continue
        what = f"{target}{named}" if not platform else f"{platform} manifest {digest} of {checked.reference}"
        if proc.returncode == _NO_SIGNATURES:
            raise SignatureError(f"{what} is not signed", "sign it with `bgeimg sign` (or push --sign)")
        if proc.returncode == _NO_MATCHING:
            raise SignatureError(f"{what} is not signed by this key: {_reason(proc)}",
                                 "check --key; a re-pointed tag or a foreign signature looks like this")
        raise CosignError(f"cosign could not verify {what}: {_reason(proc)}")
    return checked



def sign_ref(text: str, spec: KeySpec) -> Checked:
    """`bgeimg sign REGISTRY/REPO@sha256:...`: parse, then sign on that registry."""
    ref = parse_reference(text)
    return sign(RegistryClient(ref.registry), ref, spec)


def verify_ref(text: str, spec: KeySpec) -> Checked:
    """`bgeimg verify REF` (and --require-signature): parse, then verify on that registry."""
    ref = parse_reference(text)
    return verify(RegistryClient(ref.registry), ref, spec)
