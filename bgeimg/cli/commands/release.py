"""`bgeimg push`, `promote` and `tags`: the release steps, through the registry API."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bgeimg.cli.options import ConfigOpt, JsonOpt, KeyOpt
from bgeimg.cli.output import emit_json, line, out, say
from bgeimg.cli.progress import meter
from bgeimg.oci.platform import parse_list


def push(
    image: List[str] = typer.Argument(..., help="Local image (its -amd64/-arm64 siblings from `bgeimg build` are "
                                      "found), or one local image per platform."),
    registry: Optional[str] = typer.Option(None, "--registry", "-r", help="HOST[:PORT]\\[/NAMESPACE] (default: the "
                                           "config's `registry`, else $BGE_REGISTRY_URL)."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Repository name (default: the local image's name)."),
    scheme: Optional[List[str]] = typer.Option(None, "--scheme", help="semver, commit, timestamp, or none "
                                               "(only the --tag values). Repeatable."),
    version: Optional[str] = typer.Option(None, "--version", help="Version for semver (default: git tag vX.Y.Z)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="An extra literal tag. Repeatable."),
    latest: Optional[str] = typer.Option(None, "--latest", help="auto (stable semver only), always or never."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Put before every tag, e.g. cpu-."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Put after every tag, e.g. -cuda12."),
    long_commit: bool = typer.Option(False, "--long-commit", help="sha-<40 hex> instead of sha-<7>."),
    allow_dirty: bool = typer.Option(False, "--allow-dirty", help="Allow a dirty work tree (tag marked -dirty)."),
    mirror: Optional[List[str]] = typer.Option(None, "--mirror", help="Also push to this registry. Repeatable."),
    platform: Optional[str] = typer.Option(None, "--platform", help="Only these platforms; all must exist locally."),
    sign_: bool = typer.Option(False, "--sign", help="Sign what was pushed (index and every platform) with cosign."),
    key: KeyOpt = None,
    sbom: bool = typer.Option(False, "--sbom", help="Attach a CycloneDX SBOM of the image to the pushed digest."),
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Push the image for every platform under the tags your scheme gives, to the registry and each mirror."""
    from bgeimg import profile as profiles
    from bgeimg.release import push as pushing
    from bgeimg.release import sign

    spec = sign.key_spec(key, private=True) if sign_ else None  # a missing key is refused before anything moves

    cfg = profiles.load_config(config)
    request = pushing.ReleaseRequest(
        images=list(image), registry=registry, repo=repo, mirrors=list(mirror or []),
        schemes=tuple(scheme) if scheme else None, version=version, extra_tags=tuple(tag or ()), latest=latest,
        prefix=prefix, suffix=suffix, long_commit=long_commit, allow_dirty=allow_dirty,
        platforms=parse_list(platform), sign=spec, sbom=sbom)
    with meter(quiet=json_out) as bytes_meter:
        results = pushing.release(request, config_registry=cfg.registry, config_tags=cfg.tags,
                                  project_dir=cfg.path.parent if cfg.path else Path.cwd(),
                                  progress=None if json_out else say, meter=bytes_meter)
    if json_out:
        emit_json(results)
    else:
        table = Table("registry", "repository", "digest", "tags", "platforms", "uploaded")
        for r in results:
            table.add_row(escape(r.registry), escape(r.repository),
                          escape(r.digest) if r.digest else f"[red]failed: {escape(r.error or '')}[/]",
                          escape(" ".join(r.tags)), " ".join(r.platforms),
                          f"{r.stats.blob_bytes_uploaded} B in {r.stats.blobs_uploaded} blobs "
                          f"({r.stats.blobs_skipped} already there)")
        out.print(table)
    pushing.check_results(results)


def promote(
    source: str = typer.Argument(..., help="REGISTRY/REPO@sha256:... (or :TAG) to promote; a rollback is a promote "
                                 "of the previous digest."),
    tag: str = typer.Option(..., "--tag", "-t", help="The tag to point at it, e.g. stable."),
    to: Optional[str] = typer.Option(None, "--to", help="Another repository in the same registry (blobs mounted)."),
    require_signature: bool = typer.Option(False, "--require-signature",
                                           help="Refuse unless the source verifies against --key (cosign)."),
    key: KeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Point a tag at an existing image by digest, through the registry API (no layers pulled or pushed)."""
    from bgeimg.release import promote as promoting
    from bgeimg.release import sign

    spec = sign.key_spec(key, private=False) if require_signature else None
    result = promoting.promote_ref(source, tag, to, require_signature=spec)
    if json_out:
        emit_json(result)
    else:
        line(f"{result.reference} -> {result.digest}" + (f" ({result.mounted} blobs mounted)" if result.mounted
                                                        else ""))


def tags(
    repository: str = typer.Argument(..., help="REGISTRY/REPO, e.g. 127.0.0.1:5000/bge-m3."),
    json_out: JsonOpt = False,
) -> None:
    """List a repository's tags with their digests, platforms and creation labels."""
    from bgeimg.release import promote as promoting

    rows = promoting.list_repository(repository)
    if json_out:
        emit_json(rows)
        return
    table = Table("tag", "digest", "platforms", "created")
    for r in rows:
        table.add_row(escape(r.tag), r.digest, " ".join(r.platforms), escape(r.created or ""))
    out.print(table)


def sign_image(
    image: str = typer.Argument(..., help="REGISTRY/REPO@sha256:... (what `bgeimg push` printed)."),
    key: KeyOpt = None,
    keyless: bool = typer.Option(False, "--keyless", help="Sign with the CI's OIDC identity (Fulcio + Rekor: "
                                 "needs the public Sigstore services)."),
    tlog: Optional[bool] = typer.Option(None, "--tlog/--no-tlog", help="Upload to the Rekor transparency log "
                                        "(default: only keyless)."),
    json_out: JsonOpt = False,
) -> None:
    """Sign an image's index and every platform manifest with cosign."""
    from bgeimg.release import sign

    checked = sign.sign_ref(image, sign.key_spec(key, keyless=keyless, tlog=tlog, private=True))
    if json_out:
        emit_json(checked)
        return
    line(f"signed {checked.reference}" + (f" and {len(checked.platforms)} platform manifests ("
                                          f"{', '.join(checked.platforms)})" if checked.platforms else ""))


def verify_image(
    image: str = typer.Argument(..., help="REGISTRY/REPO:TAG or @sha256:...; a tag is resolved to its digest first."),
    key: KeyOpt = None,
    identity: Optional[str] = typer.Option(None, "--certificate-identity", help="Keyless: the signer's identity."),
    issuer: Optional[str] = typer.Option(None, "--certificate-oidc-issuer", help="Keyless: the identity's issuer."),
    tlog: Optional[bool] = typer.Option(None, "--tlog/--no-tlog", help="Check the Rekor transparency log "
                                        "(default: only keyless)."),
    json_out: JsonOpt = False,
) -> None:
    """Verify the signatures of an image's index and every platform manifest; exit 1 when one is missing or foreign."""
    from bgeimg.release import sign

    keyless = bool(identity or issuer) and not key
    checked = sign.verify_ref(image, sign.key_spec(key, keyless=keyless, identity=identity, issuer=issuer, tlog=tlog,
                                                   private=False))
    if json_out:
        emit_json(checked)
        return
    line(f"verified {checked.reference}" + (f" and {len(checked.platforms)} platform manifests"
                                            if checked.platforms else ""))


def sbom(
    image: str = typer.Argument(..., help="A local image, `docker save` archive or OCI layout; registry:REF reads "
                                "the SBOM `push --sbom` attached."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (e.g. sbom.cdx.json) instead "
                                          "of stdout."),
    platform: Optional[str] = typer.Option(None, "--platform", help="The platform's image of a multi-platform one."),
    lock: Optional[Path] = typer.Option(None, "--lock", help="bgeimg.lock with the model's file digests "
                                        "(default: ./bgeimg.lock when present)."),
) -> None:
    """A CycloneDX SBOM: every Python distribution and Debian package in the image, and the model."""
    import sys

    from bgeimg.release import sbom as sboms

    if image.startswith("registry:"):
        text = sboms.fetch(image.removeprefix("registry:").removeprefix("//"), platform)
    else:
        text = sboms.of_image(image, platform, lock or Path("bgeimg.lock"))
    if output is None:
        sys.stdout.write(text + "\n")
        return
    output.write_text(text + "\n")
    say(f"wrote {output}")
