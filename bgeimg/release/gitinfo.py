"""Facts from the project's git checkout: HEAD commit, dirty state, an exact tag, the origin URL (no secrets)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from bgeimg.release.tags import GitFacts


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def facts(project_dir: Path) -> GitFacts:
    """Commit, dirty (tracked files changed; untracked files do not make a build differ), exact tag on HEAD."""
    commit = _git(project_dir, "rev-parse", "HEAD")
    if commit is None:
        return GitFacts()
    status = _git(project_dir, "status", "--porcelain", "--untracked-files=no")
    tag = _git(project_dir, "describe", "--tags", "--exact-match", "HEAD")
    branch, pr = ci_ref()
    if branch is None:
        head = _git(project_dir, "rev-parse", "--abbrev-ref", "HEAD")
        branch = head if head and head != "HEAD" else None
    return GitFacts(commit=commit, dirty=bool(status), tag=tag or None, branch=branch, pr=pr)


def ci_ref(env: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(branch, pull request number) as GitHub Actions or GitLab CI announce them (CI checks out a detached HEAD)."""
    e = os.environ if env is None else env
    pr = None
    ref = e.get("GITHUB_REF", "")
    m = re.fullmatch(r"refs/pull/(\d+)/(?:merge|head)", ref)
    if m:
        pr = m.group(1)
    pr = pr or e.get("CI_MERGE_REQUEST_IID") or None
    branch = None
    if ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/")
    branch = branch or e.get("CI_COMMIT_BRANCH") or None
    return branch, pr


def origin_url(project_dir: Path) -> str | None:
    """`remote.origin.url` with any user:password@ removed, for the source label."""
    url = _git(project_dir, "remote", "get-url", "origin")
    return re.sub(r"//[^/@]+@", "//", url) if url else None


def commit_time(project_dir: Path) -> int | None:
    """HEAD's commit time (seconds since the epoch), the default SOURCE_DATE_EPOCH of a reproducible build."""
    text = _git(project_dir, "log", "-1", "--format=%ct", "HEAD")
    return int(text) if text and text.isdigit() else None
