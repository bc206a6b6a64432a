"""Tag schemes (semver, commit, timestamp), the `latest` policy, and OCI labels. Pure functions.

One place decides `latest` (`compute_tags`), as docker/metadata-action does; the same values become the
`org.opencontainers.image.*` labels at build time (`oci_labels`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from bgeimg.errors import BgeimgError
from bgeimg.oci.reference import TAG_RE, check_tag

SCHEMES = ("semver", "commit", "timestamp", "ref", "edge", "pr")
LatestPolicy = Literal["auto", "always", "never"]

_SEMVER_RE = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


class TagError(BgeimgError):
    """A version, tag or tag option is invalid (bad input, exit 2)."""


@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: str | None = None
    build: str | None = None

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return core + (f"-{self.prerelease}" if self.prerelease else "") + (f"+{self.build}" if self.build else "")


def parse_semver(text: str) -> SemVer:
    """`1.4.2`, `v1.4.2`, `2.0.0-rc.1`, `1.4.2+build.5`; anything else is refused with the rule it breaks."""
    m = _SEMVER_RE.fullmatch(text.strip())
    if m:
        pre = m.group("pre")
        if pre:
            for ident in pre.split("."):
                if ident.isdigit() and len(ident) > 1 and ident.startswith("0"):
                    raise TagError(f"version {text!r}: pre-release identifier {ident!r} has a leading zero",
                                   "semver 2.0.0 rule 9: numeric identifiers must not include leading zeroes")
        return SemVer(int(m.group("major")), int(m.group("minor")), int(m.group("patch")), pre, m.group("build"))
    core = text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise TagError(f"version {text!r} is not semver: it needs MAJOR.MINOR.PATCH, e.g. 1.4.2",
                       "semver 2.0.0 rule 2: three dot-separated non-negative integers")
    if any(len(p) > 1 and p.startswith("0") for p in parts):
        raise TagError(f"version {text!r}: a number has a leading zero",
                       "semver 2.0.0 rule 2: numbers must not include leading zeroes")
    raise TagError(f"version {text!r}: malformed pre-release or build metadata",
                   "semver 2.0.0 rules 9-10: dot-separated [0-9A-Za-z-] identifiers after '-' or '+'")


@dataclass(frozen=True)
class GitFacts:
    """What the tag schemes need from git (see bgeimg.release.gitinfo)."""

    commit: str | None = None
    dirty: bool = False
    tag: str | None = None  # an exact tag on HEAD, e.g. v1.4.2
    branch: str | None = None  # the branch being built (CI's ref name, else git's), None when detached
    pr: str | None = None  # the pull/merge request number CI builds, if any


@dataclass(frozen=True)
class TagPolicy:
    """What tags a push gets. From the project config's `tags:` and the push flags."""

    schemes: tuple[str, ...] = ("semver",)
    prefix: str = ""
    suffix: str = ""
    latest: LatestPolicy = "auto"
    long_commit: bool = False
    timestamp_format: str = "%Y%m%d-%H%M%S"
    timezone: str = "UTC"
    major_zero: bool = False  # 0.x versions give a bare `0` tag only when asked
    allow_dirty: bool = False
    extra: tuple[str, ...] = ()  # literal tags given with --tag
    on_latest: bool = False  # put prefix/suffix on `latest` too (docker/metadata-action's `onlatest`)
    edge_branch: str = "main"  # the branch whose builds get the `edge` tag


@dataclass
class TagSet:
    """The tags computed for one push, and the version they carry (for the version label)."""

    tags: list[str] = field(default_factory=list)
    version: str | None = None
    latest: bool = False


def semver_tags(version: SemVer, *, major_zero: bool = False) -> list[str]:
    """1.4.2 -> 1.4.2, 1.4, 1. A pre-release gets only its full version. Build metadata is dropped: `+` is not
    allowed in a tag, and semver ignores build metadata when comparing versions anyway."""
    full = f"{version.major}.{version.minor}.{version.patch}"
    if version.prerelease:
        return [f"{full}-{version.prerelease}"]
    tags = [full, f"{version.major}.{version.minor}"]
    if version.major > 0 or major_zero:
        tags.append(str(version.major))
    return tags


def commit_tags(git: GitFacts, *, long: bool = False, allow_dirty: bool = False) -> list[str]:
    if not git.commit:
        raise TagError("the commit scheme needs a git repository with at least one commit",
                       "run in the project's git checkout, or use --scheme semver/timestamp")
    if git.dirty and not allow_dirty:
        raise TagError("the git work tree has uncommitted changes, so a commit tag would not say what was built",
                       "commit first, or pass --allow-dirty (the tag then ends in -dirty)")
    tag = f"sha-{git.commit if long else git.commit[:7]}"
    return [f"{tag}-dirty" if git.dirty else tag]


def timestamp_tags(now: datetime, *, fmt: str = "%Y%m%d-%H%M%S", tz: str = "UTC") -> list[str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = timezone.utc if tz.upper() == "UTC" else ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise TagError(f"time zone {tz!r} is unknown", "use an IANA name such as UTC or Europe/Berlin") from None
    text = now.astimezone(zone).strftime(fmt)
    if not TAG_RE.fullmatch(text):
        raise TagError(f"timestamp format {fmt!r} gives {text!r}, which is not a valid tag",
                       "use only letters, digits, '_', '.' and '-' around the % codes, e.g. %Y%m%d-%H%M%S")
    return [text]


def sanitize_ref(name: str) -> str:
    """A branch or tag name as a docker tag, as docker/metadata-action makes it: anything outside
    [A-Za-z0-9_.-] becomes '-', a leading '.' or '-' is dropped, at most 128 characters."""
    text = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip(".-")[:128]
    if not text:
        raise TagError(f"ref {name!r} gives no valid tag", "use --tag NAME")
    return text


def ref_tags(git: GitFacts, scheme: str, edge_branch: str) -> list[str]:
    """metadata-action's type=ref (the git tag, else the branch), type=edge (on the edge branch) and type=pr."""
    if scheme == "ref":
        if git.tag:
            return [sanitize_ref(git.tag)]
        if git.branch:
            return [sanitize_ref(git.branch)]
        raise TagError("the ref scheme needs a branch or a tag (HEAD is detached and untagged)",
                       "check out a branch, or set GITHUB_REF_NAME / CI_COMMIT_REF_NAME as CI does")
    if scheme == "edge":
        return ["edge"] if git.branch == edge_branch else []
    if not git.pr:
        return []  # not a pull request build: the pr scheme adds nothing, as in metadata-action
    return [f"pr-{git.pr}"]


def compute_tags(policy: TagPolicy, *, version: str | None = None, git: GitFacts = GitFacts(),
                 now: datetime | None = None) -> TagSet:
    """All tags for a push. `latest`: auto = only with a stable semver version; always; never."""
    result = TagSet()
    extra = [check_tag(t) for t in policy.extra]  # what the user typed is checked first
    unknown = [s for s in policy.schemes if s not in (*SCHEMES, "none")]
    if unknown:
        raise TagError(f"unknown tag scheme {unknown[0]!r}", f"choose from {', '.join(SCHEMES)} or none")
    schemes = [s for s in policy.schemes if s != "none"]  # `--scheme none`: only the literal --tag values
    if not schemes and not policy.extra:
        raise TagError("no tag scheme and no --tag given", "pass --scheme semver|commit|timestamp or --tag NAME")
    stable = False
    raw: list[str] = []
    for scheme in schemes:
        if scheme == "semver":
            text = version or (git.tag if git.tag and _SEMVER_RE.fullmatch(git.tag) else None)
            if not text:
                raise TagError("the semver scheme needs a version",
                               "pass --version 1.4.2, tag the commit (git tag v1.4.2), or --scheme none to push "
                               "only the --tag values")
            parsed = parse_semver(text)
            result.version = str(parsed)
            stable = parsed.prerelease is None
            raw += semver_tags(parsed, major_zero=policy.major_zero)
        elif scheme == "commit":
            raw += commit_tags(git, long=policy.long_commit, allow_dirty=policy.allow_dirty)
        elif scheme in ("ref", "edge", "pr"):
            raw += ref_tags(git, scheme, policy.edge_branch)
        else:
            raw += timestamp_tags(now or datetime.now(timezone.utc), fmt=policy.timestamp_format, tz=policy.timezone)
    result.latest = policy.latest == "always" or (policy.latest == "auto" and stable)
    tags = [check_tag(f"{policy.prefix}{t}{policy.suffix}") for t in raw]
    if result.latest:  # bare `latest` unless on_latest, as metadata-action does
        tags.append(check_tag(f"{policy.prefix}latest{policy.suffix}" if policy.on_latest else "latest"))
    if not tags and not extra:
        raise TagError(f"the schemes {', '.join(policy.schemes)} give no tag for this build",
                       "add --scheme commit, or --tag NAME")
    tags += extra
    result.tags = list(dict.fromkeys(tags))
    return result


def policy_from_config(tags: dict, **overrides) -> TagPolicy:
    """The project config's `tags:` mapping (scheme or schemes, prefix, suffix, latest, ...) with flags on top."""
    allowed = {"scheme", "schemes", "prefix", "suffix", "latest", "long_commit", "timestamp_format", "timezone",
               "major_zero", "onlatest", "edge_branch"}
    unknown = sorted(set(tags) - allowed)
    if unknown:
        raise TagError(f"bgeimg.yaml: tags.{unknown[0]}: unknown key", f"allowed keys: {', '.join(sorted(allowed))}")
    schemes = tags.get("schemes", tags.get("scheme", ["semver"]))
    values = {
        "schemes": tuple([schemes] if isinstance(schemes, str) else schemes),
        "prefix": str(tags.get("prefix", "")),
        "suffix": str(tags.get("suffix", "")),
        "latest": tags.get("latest", "auto"),
        "long_commit": bool(tags.get("long_commit", False)),
        "timestamp_format": str(tags.get("timestamp_format", "%Y%m%d-%H%M%S")),
        "timezone": str(tags.get("timezone", "UTC")),
        "major_zero": bool(tags.get("major_zero", False)),
        "on_latest": bool(tags.get("onlatest", False)),
        "edge_branch": str(tags.get("edge_branch", "main")),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["latest"] not in ("auto", "always", "never"):
        raise TagError(f"latest policy {values['latest']!r} is not allowed", "choose auto, always or never")
    return TagPolicy(**values)


def oci_labels(*, created: datetime, version: str | None = None, revision: str | None = None,
               source: str | None = None, title: str | None = None) -> dict[str, str]:
    """The per-build `org.opencontainers.image.*` labels, from the same values the tags come from."""
    stamp = created.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    labels = {"org.opencontainers.image.created": stamp}
    for key, value in (("version", version), ("revision", revision), ("source", source), ("title", title)):
        if value:
            labels[f"org.opencontainers.image.{key}"] = value
    return labels
