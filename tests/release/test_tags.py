"""Tag schemes and rules: unit tests plus hypothesis properties (every tag produced is a valid tag)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgeimg.oci.reference import InvalidReference
from bgeimg.release.tags import (
    TAG_RE,
    GitFacts,
    TagError,
    TagPolicy,
    compute_tags,
    oci_labels,
    parse_semver,
    policy_from_config,
)

SHA = "3f2a9c1d5e6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f"
NOW = datetime(2026, 11, 22, 9, 30, 5, tzinfo=timezone.utc)


def tags_for(version=None, git=GitFacts(), **policy) -> list[str]:
    return compute_tags(TagPolicy(**policy), version=version, git=git, now=NOW).tags


def test_semver_stable_gives_full_minor_major_and_latest() -> None:
    assert tags_for("1.4.2") == ["1.4.2", "1.4", "1", "latest"]
    assert tags_for("v1.4.2") == ["1.4.2", "1.4", "1", "latest"]


def test_prerelease_gives_only_its_full_version() -> None:
    assert tags_for("2.0.0-rc.1") == ["2.0.0-rc.1"]
    assert tags_for("2.0.0-rc.1", latest="always") == ["2.0.0-rc.1", "latest"]


def test_build_metadata_is_dropped_from_tags_but_kept_in_the_version() -> None:
    result = compute_tags(TagPolicy(), version="1.4.2+build.5")
    assert result.tags == ["1.4.2", "1.4", "1", "latest"] and result.version == "1.4.2+build.5"


def test_zero_major_gives_no_bare_zero_unless_asked() -> None:
    assert tags_for("0.3.1") == ["0.3.1", "0.3", "latest"]
    assert tags_for("0.3.1", major_zero=True) == ["0.3.1", "0.3", "0", "latest"]


def test_version_from_the_git_tag() -> None:
    assert tags_for(git=GitFacts(commit=SHA, tag="v3.1.0")) == ["3.1.0", "3.1", "3", "latest"]


@pytest.mark.parametrize(("version", "rule"), [
    ("1.4", "rule 2: three dot-separated"),
    ("01.4.2", "rule 2: numbers must not include leading zeroes"),
    ("1.4.2-rc.01", "rule 9"),
    ("1.4.2-rc..1", "rules 9-10"),
    ("latest", "rule 2"),
])
def test_invalid_versions_name_the_rule(version: str, rule: str) -> None:
    with pytest.raises(TagError) as info:
        parse_semver(version)
    assert rule in str(info.value) and repr(version) in str(info.value)


def test_commit_scheme_short_long_and_dirty() -> None:
    clean = GitFacts(commit=SHA)
    assert tags_for(git=clean, schemes=("commit",)) == ["sha-3f2a9c1"]
    assert tags_for(git=clean, schemes=("commit",), long_commit=True) == [f"sha-{SHA}"]
    dirty = GitFacts(commit=SHA, dirty=True)
    with pytest.raises(TagError, match="uncommitted changes"):
        tags_for(git=dirty, schemes=("commit",))
    assert tags_for(git=dirty, schemes=("commit",), allow_dirty=True) == ["sha-3f2a9c1-dirty"]
    with pytest.raises(TagError, match="needs a git repository"):
        tags_for(schemes=("commit",))


def test_timestamp_scheme_format_and_zone() -> None:
    assert tags_for(schemes=("timestamp",)) == ["20261122-093005"]
    assert tags_for(schemes=("timestamp",), timezone="Asia/Shanghai", timestamp_format="%Y%m%d%H%M") == ["202611221730"]
    with pytest.raises(TagError, match="time zone 'Mars/Base' is unknown"):
        tags_for(schemes=("timestamp",), timezone="Mars/Base")
    with pytest.raises(TagError, match="not a valid tag"):
        tags_for(schemes=("timestamp",), timestamp_format="%Y/%m/%d")


def test_several_schemes_prefix_suffix_and_latest_once() -> None:
    got = tags_for("1.4.2", GitFacts(commit=SHA), schemes=("semver", "commit", "timestamp"), prefix="cpu-",
                   suffix="-cuda12")
    assert got == ["cpu-1.4.2-cuda12", "cpu-1.4-cuda12", "cpu-1-cuda12", "cpu-sha-3f2a9c1-cuda12",
                   "cpu-20261122-093005-cuda12", "latest"]  # metadata-action: latest bare unless onlatest
    assert tags_for("1.4.2", prefix="cpu-", on_latest=True)[-1] == "cpu-latest"
    assert tags_for(git=GitFacts(commit=SHA), schemes=("commit",), latest="never") == ["sha-3f2a9c1"]
    assert "latest" not in tags_for(git=GitFacts(commit=SHA), schemes=("commit",))  # auto needs a stable version


def test_invalid_options_are_refused() -> None:
    with pytest.raises(TagError, match="unknown tag scheme 'calver'"):
        tags_for("1.0.0", schemes=("calver",))
    with pytest.raises(InvalidReference, match="tag '-bad' is not valid"):
        tags_for(schemes=(), extra=("-bad",))
    with pytest.raises(TagError, match="semver scheme needs a version"):
        tags_for()
    with pytest.raises(TagError, match="tags.sheme: unknown key"):
        policy_from_config({"sheme": "semver"})
    with pytest.raises(TagError, match="latest policy 'sometimes'"):
        policy_from_config({"latest": "sometimes"})


def test_policy_from_config_with_flag_overrides() -> None:
    p = policy_from_config({"scheme": ["semver", "commit"], "prefix": "cpu-"}, latest="never")
    assert p.schemes == ("semver", "commit") and p.prefix == "cpu-" and p.latest == "never"


def test_oci_labels() -> None:
    labels = oci_labels(created=NOW, version="1.4.2", revision=SHA, source="https://git.example/bge")
    assert labels == {"org.opencontainers.image.created": "2026-11-22T09:30:05Z",
                      "org.opencontainers.image.version": "1.4.2", "org.opencontainers.image.revision": SHA,
                      "org.opencontainers.image.source": "https://git.example/bge"}


numbers = st.integers(min_value=0, max_value=10**6)
idents = st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True).filter(lambda s: not (s.isdigit() and s.startswith("0")
                                                                                     and len(s) > 1))


@given(numbers, numbers, numbers, st.none() | st.lists(idents, min_size=1, max_size=3),
       st.none() | st.lists(idents, min_size=1, max_size=3), st.sampled_from(["", "cpu-", "x_"]),
       st.sampled_from(["", "-cuda12", ".gpu"]), st.sampled_from(["auto", "always", "never"]))
def test_every_semver_gives_valid_tags(major, minor, patch, pre, build, prefix, suffix, latest) -> None:
    version = f"{major}.{minor}.{patch}" + (f"-{'.'.join(pre)}" if pre else "") + (f"+{'.'.join(build)}" if build else "")
    result = compute_tags(TagPolicy(prefix=prefix, suffix=suffix, latest=latest), version=version)
    assert result.tags and all(TAG_RE.match(t) for t in result.tags)
    assert ("latest" in result.tags) == (latest == "always" or (latest == "auto" and not pre))
    assert len(result.tags) == len(set(result.tags))


@given(st.text(max_size=40))
def test_arbitrary_versions_are_tags_or_clear_refusals(text: str) -> None:
    try:
        result = compute_tags(TagPolicy(), version=text)
    except TagError as exc:
        assert "version" in str(exc) or "tag" in str(exc)
    else:
        assert all(TAG_RE.match(t) for t in result.tags)


def test_a_trailing_newline_is_not_a_valid_tag_or_repository() -> None:
    from bgeimg.oci.reference import check_repository, check_tag

    with pytest.raises(InvalidReference):  # one grammar, one error, whoever checks the tag
        compute_tags(TagPolicy(schemes=(), extra=("latest\n",)))
    with pytest.raises(InvalidReference):
        check_tag("latest\n")
    with pytest.raises(InvalidReference):
        check_repository("bge-m3\n")


def test_ref_edge_and_pr_schemes_follow_metadata_action() -> None:
    on_main = GitFacts(commit=SHA, branch="main")
    assert tags_for(git=on_main, schemes=("ref", "edge", "pr")) == ["main", "edge"]
    feature = GitFacts(commit=SHA, branch="feature/Fancy_x")
    assert tags_for(git=feature, schemes=("ref", "edge")) == ["feature-Fancy_x"]
    assert tags_for(git=GitFacts(commit=SHA, tag="v1.4.2", branch="main"), schemes=("ref",)) == ["v1.4.2"]
    assert tags_for(git=GitFacts(commit=SHA, pr="42"), schemes=("pr",)) == ["pr-42"]
    with pytest.raises(TagError, match="give no tag for this build"):
        tags_for(git=GitFacts(commit=SHA), schemes=("pr",))
    with pytest.raises(TagError, match="needs a branch or a tag"):
        tags_for(git=GitFacts(commit=SHA), schemes=("ref",))


def test_ci_ref_reads_github_and_gitlab() -> None:
    from bgeimg.release.gitinfo import ci_ref

    assert ci_ref({"GITHUB_REF": "refs/pull/7/merge"}) == (None, "7")
    assert ci_ref({"GITHUB_REF": "refs/heads/release/2.x"}) == ("release/2.x", None)
    assert ci_ref({"CI_COMMIT_BRANCH": "main", "CI_MERGE_REQUEST_IID": "12"}) == ("main", "12")
    assert ci_ref({}) == (None, None)
