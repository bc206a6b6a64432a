"""Facts from the project's git checkout: HEAD commit, dirty state, an exact tag, the origin URL (no secrets)."""

from __future__ import annotations

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
    return GitFacts(commit=commit, dirty=bool(status), tag=tag or None)


def origin_url(project_dir: Path) -> str | None:
    """`remote.origin.url` with any user:password@ removed, for the source label."""
    url = _git(project_dir, "remote", "get-url", "origin")
    return re.sub(r"//[^/@]+@", "//", url) if url else None
