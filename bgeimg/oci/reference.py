"""Image references: parse, validate and normalise `[registry/]repository[:tag][@digest]`.

Pure functions shared by tags, registry and push. The grammar is distribution's (reference/regexp.go): a
repository is lowercase path components separated by `/`; a first component with a dot or a port, or
`localhost`, is a registry host; without one the image lives on Docker Hub (`docker.io`), where a single
component means `library/<name>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bgeimg.errors import BgeimgError

DOCKER_HUB = "docker.io"
# The host the Docker Hub API actually answers on, and the key docker login writes into config.json.
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                      r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")


class InvalidReference(BgeimgError):
    """An image reference, repository, tag or digest is malformed (bad input, exit 2)."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. `registry` is a host[:port] (docker.io for Docker Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest when given, else the tag (default `latest`)."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, check_tag(tag), None)

    def __str__(self) -> str:
        s = f"{self.registry}/{self.repository}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def is_host(component: str) -> bool:
    """True when the first path component names a registry host (as docker decides it)."""
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise InvalidReference(f"tag {tag!r} is not valid", "tags match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
    return tag


def check_digest(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest or ""):
        raise InvalidReference(f"invalid digest {digest!r}: expected sha256: followed by 64 lowercase hex digits")
    return digest


def check_repository(repo: str) -> str:
    if not repo or len(repo) > 255 or not REPO_RE.fullmatch(repo):
        hint = " (repository names are lowercase)" if repo and REPO_RE.fullmatch(repo.lower()) else ""
        raise InvalidReference(
            f"invalid repository {repo!r}: use lowercase letters, digits and separators '.', '_', '__', '-' "
            f"in components joined by '/'{hint}"
        )
    return repo


def normalise_registry(host: str) -> str:
    """`index.docker.io` and friends are all Docker Hub; strip a scheme and a trailing slash."""
    h = re.sub(r"^https?://", "", host.strip()).rstrip("/")
    if h in ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        return DOCKER_HUB
    if not _HOST_RE.fullmatch(h):
        raise InvalidReference(f"invalid registry host {host!r}: expected host[:port], e.g. ghcr.io or 127.0.0.1:5000")
    return h


def parse_reference(text: str, default_registry: str | None = None) -> Reference:
    """Parse `[registry/]repository[:tag][@digest]`.

    Without a registry host the image is on `default_registry` when given, else Docker Hub (with `library/`
    for one-component names). Raises InvalidReference naming the part that is wrong."""
    s = (text or "").strip()
    if not s:
        raise InvalidReference("empty image reference: expected [registry/]repository[:tag][@digest]")
    s = re.sub(r"^https?://", "", s)
    digest = None
    if "@" in s:
        s, digest = s.split("@", 1)
        check_digest(digest)
    tag = None
    slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > slash:
        s, tag = s[:colon], s[colon + 1:]
        check_tag(tag)
    first, _, rest = s.partition("/")
    if rest and is_host(first):
        registry, repo = normalise_registry(first), rest
    elif default_registry:
        registry, repo = normalise_registry(default_registry), s
    else:
        registry, repo = DOCKER_HUB, s
    if registry == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    check_repository(repo)
    return Reference(registry, repo, tag, digest)


def split_registry(value: str) -> tuple[str, str]:
    """`host[:port][/namespace]` (optionally with scheme) -> (host, namespace or '')."""
    v = value.strip()
    scheme = ""
    m = re.match(r"^(https?)://", v)
    if m:
        scheme, v = m.group(0), v[m.end():]
    host, _, ns = v.rstrip("/").partition("/")
    host = normalise_registry(host)
    if ns:
        check_repository(ns)
    return scheme + host, ns


def split_tag(image: str) -> tuple[str, str | None]:
    """A name as written, `name[:tag][@digest]` -> (name, tag or None); no registry normalisation, so a local
    name stays the one the engine knows (a port's colon is not a tag: `reg:5000/bge` has none)."""
    s = image.split("@", 1)[0]
    slash, colon = s.rfind("/"), s.rfind(":")
    return (s[:colon], s[colon + 1:]) if colon > slash else (s, None)


def check_reference(text: str) -> Reference:
    """`text` exactly as it will be written into a Dockerfile or a manifest: a reference with nothing around it
    (no scheme, no whitespace), parsed by the one grammar. Raises InvalidReference."""
    if not isinstance(text, str) or text != text.strip() or "://" in text or any(c.isspace() for c in text):
        raise InvalidReference(f"{text!r} is not an image reference",
                               "expected [registry/]repository[:tag][@sha256:digest]")
    return parse_reference(text)
