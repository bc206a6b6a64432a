"""gitinfo against a real git repository made in a temp dir."""

from __future__ import annotations

import subprocess

from bgeimg.release import gitinfo
from bgeimg.release.tags import GitFacts


def git(d, *a):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *a], cwd=d, check=True, capture_output=True)


def test_commit_dirty_tag_and_origin_without_credentials(tmp_path):
    assert gitinfo.facts(tmp_path) == GitFacts()  # not a work tree: empty values, no error
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("1")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "one")
    facts = gitinfo.facts(tmp_path)
    assert facts.commit and len(facts.commit) == 40 and not facts.dirty and facts.tag is None
    git(tmp_path, "tag", "v1.4.2")
    git(tmp_path, "remote", "add", "origin", "https://user:tok@example.com/x.git")
    (tmp_path / "f").write_text("2")
    (tmp_path / "untracked").write_text("x")  # untracked files do not change what is built
    facts = gitinfo.facts(tmp_path)
    assert facts.tag == "v1.4.2" and facts.dirty
    assert gitinfo.origin_url(tmp_path) == "https://example.com/x.git"
