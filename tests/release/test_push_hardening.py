"""Issue 17 on real engines and registries: two pushes of one image at once both succeed; SIGINT and SIGTERM
during `push` and `bundle save` exit 130 / 143 with one line and leave no temporary directory, no partial
output and no tag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pushhelp import has_manifest, manifest

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.slow]


def start(args: list[str], tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp)}  # so "no temporary directory left" can be checked exactly
    # SIGINT as a terminal's Ctrl-C delivers it: a shell without job control starts background jobs with SIGINT
    # ignored, and pytest run that way would hand the ignoring on
    return subprocess.Popen([sys.executable, "-m", "bgeimg", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_two_concurrent_pushes_of_one_image_both_succeed(docker_api, tiny_image, own_registry, tmp_path) -> None:
    image = tiny_image(platforms=("linux/amd64",), payload_kb=2048)
    repo = image.split(":")[0]
    reg = own_registry()
    args = ["push", image, "--registry", reg.host, "--scheme", "none", "--tag", "c1", "--tag", "c2", "--json"]
    procs = [start(args, tmp_path) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    digests = {json.loads(out)[0]["digest"] for out, _ in results}
    assert len(digests) == 1
    assert manifest(reg.host, repo, "c1")[0] == manifest(reg.host, repo, "c2")[0] == digests.pop()


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    """Read stderr until a progress line containing `word` shows the command is mid-way."""
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        text = proc.stderr.readline()
        if not text:
            raise AssertionError(f"the command ended before {word!r}")
        if word in text:
            return
    raise AssertionError(f"no {word!r} within {timeout} s")


def _wait_for_temp(tmp: Path, timeout: float = 60) -> None:
    """Until the command has made its temporary directory (its export has begun)."""
    deadline = time.monotonic() + timeout
    while not any(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


# SIGINT during the export, SIGTERM mid-upload.
@pytest.mark.parametrize(("sig", "code", "first"), [
    (signal.SIGINT, 130, "error: interrupted; temporary files removed"),
    (signal.SIGTERM, 143, "error: terminated (SIGTERM); temporary files removed"),
])
def test_a_signal_during_push_leaves_no_tag_and_no_temp_dir(sig, code, first, docker_api, tiny_image, own_registry,
                                                              tmp_path) -> None:
    image = tiny_image(platforms=("linux/amd64",), payload_kb=4096)
    repo = image.split(":")[0]
    reg = own_registry()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = start(["push", image, "--registry", reg.host, "--scheme", "none", "--tag", "sig"], tmp)
    if sig == signal.SIGINT:
        _wait_for_temp(tmp)
    else:
        _wait_for(proc, " upload ")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    # one error line, that one; an upload already in flight may still log its line as it ends
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [first] and "Traceback" not in err
    assert list(tmp.iterdir()) == []
    assert not has_manifest(reg.host, repo, "sig")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_bundle_save_leaves_nothing(sig, code, docker_api, tiny_image, tmp_path) -> None:
    image = tiny_image(platforms=("linux/amd64",), payload_kb=16384)
    tmp = tmp_path / "tmp"
    out = tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    proc = start(["bundle", "save", image, "-o", str(out / "site.tar.zst")], tmp)
    _wait_for_temp(tmp)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp.iterdir()) == [] and list(out.iterdir()) == []
