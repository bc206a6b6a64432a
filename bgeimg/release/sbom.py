"""A CycloneDX SBOM of an image from what `bgeimg analyze` already reads: no second image reader.

    analyze's report --> Python distributions (dist-info RECORDs in the final filesystem, pkg:pypi purls)
                     --> Debian packages (the image's dpkg status, pkg:deb purls with the os-release distro)
                     --> the model (labels io.bgeimg.model.*; file digests from bgeimg.lock) as its own component
    --> cyclonedx-python-lib builds and serialises the document (CycloneDX 1.6 JSON).

`push --sbom` attaches the document to the pushed digest as an OCI referrer (bgeimg.oci.referrers: the referrers
API, or the tag fallback scheme on registries without it); `bgeimg sbom registry:REF` reads the newest back.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from bgeimg.analyze.report import MODEL_DIRS, ImageReport
from bgeimg.errors import BgeimgError
from bgeimg.oci.platform import platform_str
from bgeimg.oci.reference import parse_reference
from bgeimg.oci.registry import RegistryClient

MEDIA_TYPE = "application/vnd.cyclonedx+json"
LABEL = "io.bgeimg.model"


class SbomError(BgeimgError):
    """Bad SBOM input: an image without files to list, a registry image without an SBOM (exit 2)."""


def _bom_ref(kind: str, *parts: str) -> str:
    return f"{kind}:" + "/".join(parts)


def dpkg_packages(status: bytes) -> list[dict[str, str]]:
    """The installed packages of a dpkg status file (or a status.d entry): Package, Version, Architecture,
    Source. Half-removed packages (`deinstall ok config-files`) are not in the image in any useful sense."""
    packages = []
    for para in status.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for ln in para.splitlines():
            if ln[:1] in (" ", "\t") and key:
                continue  # a continuation line (Description, Conffiles)
            key, sep, value = ln.partition(":")
            if sep:
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Version") and \
                fields.get("Status", "install ok installed").endswith(" installed"):
            packages.append(fields)
    return packages


def os_release(report: ImageReport) -> dict[str, str]:
    text = report.system.get("/etc/os-release") or report.system.get("/usr/lib/os-release") or b""
    out = {}
    for ln in text.decode("utf-8", "replace").splitlines():
        key, sep, value = ln.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def _locked_files(lock_path: Path | None, model_id: str, revision: str) -> dict[str, dict] | None:
    if lock_path is None or not lock_path.is_file():
        return None
    from bgeimg.context.model import Lock

    for entry in Lock.load(lock_path).models.values():
        if entry.model_id == model_id and entry.commit == revision:
            return entry.files
    return None


def build(report: ImageReport, lock_path: Path | None = None):
    """The cyclonedx Bom of an analysed image (its filesystem must have been scanned)."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL
    from packaging.utils import canonicalize_name

    from bgeimg import __version__

    if not report.files_scanned:
        raise SbomError(f"{report.ref}: the layers were not read, so there is nothing to list",
                        "pull the image or give a `docker save` archive; registry:REF reads an attached SBOM")
    bom = Bom()
    digest = report.manifest_digest or report.config_digest or ""
    bom.metadata.component = Component(
        type=ComponentType.CONTAINER, name=report.ref, version=digest, bom_ref=_bom_ref("image", digest or report.ref),
        properties=[Property(name="bgeimg:platform", value=report.platform)])
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="bgeimg", version=__version__))

    seen: set[str] = set()
    for dist in report.distributions:
        if not dist.version:
            continue  # files under site-packages that no dist-info owns: not a distribution
        name = canonicalize_name(dist.name)
        ref = _bom_ref("pypi", name, dist.version, dist.location)
        if ref in seen:
            continue
        seen.add(ref)
        bom.components.add(Component(
            type=ComponentType.LIBRARY, name=name, version=dist.version, bom_ref=ref,
            purl=PackageURL(type="pypi", name=name, version=dist.version),
            properties=[Property(name="bgeimg:location", value=dist.location)]))

    release = os_release(report)
    distro = release.get("ID", "debian")
    qual_distro = f"{distro}-{release['VERSION_ID']}" if release.get("VERSION_ID") else None
    for path, text in sorted(report.system.items()):
        if not (path == "/var/lib/dpkg/status" or posixpath.dirname(path) == "/var/lib/dpkg/status.d"):
            continue
        for pkg in dpkg_packages(text):
            arch = pkg.get("Architecture", "")
            qualifiers = {k: v for k, v in (("arch", arch), ("distro", qual_distro)) if v}
            ref = _bom_ref("deb", pkg["Package"], pkg["Version"], arch)
            if ref in seen:
                continue
            seen.add(ref)
            props = [Property(name="bgeimg:source", value=pkg["Source"])] if pkg.get("Source") else []
            bom.components.add(Component(
                type=ComponentType.LIBRARY, name=pkg["Package"], version=pkg["Version"], bom_ref=ref,
                purl=PackageURL(type="deb", namespace=distro, name=pkg["Package"], version=pkg["Version"],
                                qualifiers=qualifiers),
                properties=props))

    model = _model_component(report, lock_path)
    if model is not None:
        bom.components.add(model)
    bom.register_dependency(bom.metadata.component, list(bom.components))  # the image holds all of them
    return bom


def _model_component(report: ImageReport, lock_path: Path | None):
    """The model from the image's labels; its files (with sha256 from bgeimg.lock when it pins this revision)."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    labels = report.labels
    model_id, revision = labels.get(f"{LABEL}.id", ""), labels.get(f"{LABEL}.revision", "")
    source = labels.get(f"{LABEL}.source", "")
    if not (model_id or revision) or source == "none":
        return None
    env = dict(e.split("=", 1) for e in report.config.get("Env") or [] if "=" in e)
    model_dir = (labels.get(f"{LABEL}.dir") or env.get("BGE_MODEL_DIR") or MODEL_DIRS[0]).rstrip("/")
    locked = _locked_files(lock_path, model_id, revision)
    files = []
    for path, (_, size) in sorted(report.live.items()):
        if not path.startswith(model_dir + "/"):
            continue
        name = path[len(model_dir) + 1:]
        digest = (locked or {}).get(name, {}).get("sha256")
        files.append(Component(
            type=ComponentType.FILE, name=name, bom_ref=_bom_ref("model-file", name),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(digest))] if digest else [],
            properties=[Property(name="bgeimg:size", value=str(size))]))
    org, _, name = model_id.rpartition("/")
    purl = PackageURL(type="huggingface", namespace=org or None, name=name, version=revision) \
        if source == "hf" and name and revision else None
    props = [Property(name=f"bgeimg:model.{k}", value=labels[f"{LABEL}.{k}"]) for k in ("source", "task")
             if labels.get(f"{LABEL}.{k}")]
    props.append(Property(name="bgeimg:model.digests", value="bgeimg.lock" if locked else "not locked"))
    return Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=model_id or model_dir, version=revision or None,
                     bom_ref=_bom_ref("model", model_id or model_dir), purl=purl, properties=props,
                     components=files)


def to_json(bom) -> str:
    """CycloneDX 1.6 JSON (the tests check it against the schema cyclonedx-python-lib ships)."""
    from cyclonedx.output.json import JsonV1Dot6

    return JsonV1Dot6(bom).output_as_string(indent=2)


def of_image(image: str, platform: str | None = None, lock_path: Path | None = None) -> str:
    """`bgeimg sbom IMAGE`: analyse the image (engine, archive, OCI layout) and write its SBOM as JSON."""
    from bgeimg.analyze.report import analyze

    return to_json(build(analyze(image, platform=platform), lock_path))


def attach_all(client: RegistryClient, repo: str, index_digest: str, boms: dict[str, str]) -> dict[str, str]:
    """Attach each platform's SBOM (platform -> JSON) to that platform's manifest under the pushed index, as an
    OCI referrer; platform -> the SBOM artifact's digest."""
    from bgeimg.oci import referrers

    top = client.get_manifest(repo, index_digest)
    children = {platform_str(d.get("platform")): d["digest"] for d in top.json.get("manifests", [])} \
        if top.is_index else {next(iter(boms), ""): top.digest}
    attached = {}
    for platform, text in boms.items():
        if platform in children:
            manifest = client.get_manifest(repo, children[platform])
            attached[platform] = referrers.attach(client, repo, manifest, MEDIA_TYPE, text.encode()).digest
    return attached


def fetch(text: str, platform: str | None = None) -> str:
    """`bgeimg sbom registry:REF`: the newest SBOM attached to REF's manifest for `platform` (an index is narrowed
    to one platform as `analyze` does: the only one, else the host's)."""
    from bgeimg.oci import referrers

    ref = parse_reference(text)
    client = RegistryClient(ref.registry)
    top = client.get_manifest(ref.repository, ref.ref)
    digest = top.digest
    if top.is_index:
        from bgeimg.analyze.image import pick_manifest

        desc, _ = pick_manifest(top.json, lambda d: client.get_manifest(ref.repository, d["digest"]).json, platform,
                                f"{ref.registry}/{ref.repository}:{ref.ref}")
        digest = desc["digest"]
    found = referrers.referrers(client, ref.repository, digest, MEDIA_TYPE)
    if not found:
        raise SbomError(f"no SBOM is attached to {ref.registry}/{ref.repository}@{digest}",
                        "push it with `bgeimg push --sbom`, or write one with `bgeimg sbom IMAGE`")
    # the newest by its created annotation; among equals (one-second resolution) the one listed last
    _, newest = max(enumerate(found), key=lambda p: ((p[1].get("annotations") or {})
                                                     .get("org.opencontainers.image.created", ""), p[0]))
    manifest = client.get_manifest(ref.repository, newest["digest"]).json
    return client.get_blob(ref.repository, manifest["layers"][0]["digest"]).decode()
