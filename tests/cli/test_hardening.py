"""Issue 17: bad inputs that used to slip through, each through the real entry point: the exit code, the exact
first line on stderr, no traceback, and nothing written. None of these contacts an engine or a registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bgeimg.cli.app import main
from bgeimg.errors import redact

PLATFORMS = "(choose from: linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le, linux/s390x)"

# (files to make under tmp, args, exit code, exact first line of stderr); {tmp} is the test's directory.
CASES = {
    "empty --platform": ({}, ["push", "x", "-r", "127.0.0.1:9", "--platform", ""], 2,
                         "error: --platform is empty (for example --platform linux/amd64,linux/arm64, or leave it out)"),
    "push --platform bogus": ({}, ["push", "x", "-r", "127.0.0.1:9", "--platform", "bogus"], 2,
                              f"error: unknown or unsupported platform 'bogus' {PLATFORMS}"),
    "push --platform windows": ({}, ["push", "x", "-r", "127.0.0.1:9", "--platform", "windows/amd64"], 2,
                                f"error: unknown or unsupported platform 'windows/amd64' {PLATFORMS}"),
    "doctor riscv64": ({}, ["doctor", "--platform", "linux/riscv64"], 2,
                       f"error: unknown or unsupported platform 'linux/riscv64' {PLATFORMS}"),
    "wheelhouse --platform ''": ({}, ["wheelhouse", "-o", "{tmp}/w", "--platform", ""], 2,
                                 "error: --platform is empty (for example --platform linux/amd64,linux/arm64, or "
                                 "leave it out)"),
    "port is a bool": ({}, ["render", "--set", "server.port=true"], 2,
                       "error: --set server.port: server.port: expected a number, got true"),
    "empty hf revision": ({}, ["render", "-m", "hf://BAAI/bge-m3@"], 2,
                          "error: model 'hf://BAAI/bge-m3@' has an empty revision after '@' (give "
                          "hf://BAAI/bge-m3@main or a commit, or drop the '@')"),
    "missing --profiles-dir": ({}, ["profiles", "list", "--profiles-dir", "/nonexistent"], 2,
                               "error: --profiles-dir /nonexistent: no such directory (give a directory of *.yaml "
                               "profiles)"),
    "aliases is a number": ({"p/bad.yaml": "aliases: 5\n"}, ["render", "-p", "bad", "--profiles-dir", "p"], 2,
                            "error: p/bad.yaml: aliases: Input should be a valid list (got 5)"),
    "profile not UTF-8": ({"p/latin.yaml": b"description: \xff\n"}, ["render", "-p", "latin", "--profiles-dir", "p"],
                          2, "error: p/latin.yaml: not UTF-8 text (byte 13) (save the file as UTF-8)"),
    "bad PEP 508 in one line": ({}, ["render", "--set", "requirements=[torch>=>1]"], 2,
                                "error: --set requirements: requirements: 'torch>=>1' is not a valid requirement "
                                "(PEP 508): Expected semicolon (after name with no version specifier) or end"),
    "deploy namespace": ({}, ["deploy", "render", "--target", "k8s", "--image", "bge:1", "--allow-tag",
                              "--namespace", "a b"], 2,
                         "error: namespace 'a b' is not a valid Kubernetes namespace (lowercase letters, digits, "
                         "'-', at most 63)"),
    "deploy claim": ({}, ["deploy", "render", "--target", "k8s", "--image", "bge:1", "--allow-tag",
                          "--model-claim", "Bad Claim"], 2,
                     "error: model claim 'Bad Claim' is not a valid PersistentVolumeClaim name (lowercase letters, "
                     "digits, '-' and '.', at most 253)"),
    "deploy backend port": ({}, ["deploy", "render", "--target", "nginx", "--image", "bge:1", "--allow-tag",
                                 "--backend", "h:99999"], 2,
                            "error: backend 'h:99999': the port must be 1-65535 (e.g. --backend 10.0.0.5:8000)"),
    "deploy image": ({}, ["deploy", "render", "--target", "k8s", "--image", "bad image$(id)@@x", "--allow-tag"], 2,
                     "error: 'bad image$(id)@@x' is not an image reference (expected "
                     "[registry/]repository[:tag][@sha256:digest])"),
    "deploy -o FILE": ({"f": "x"}, ["deploy", "render", "--target", "k8s", "--image", "bge:1", "--allow-tag",
                                    "-o", "f"], 2,
                       "error: f is a file, not a directory (give -o a directory for the manifests)"),
    "render -o FILE": ({"f": "x"}, ["render", "-o", "f"], 2,
                       "error: f is a file, not a directory (give -o a new or empty directory)"),
    "render -o non-empty DIR": ({"d/mine.txt": "x"}, ["render", "-o", "d"], 2,
                                "error: d exists and is not empty (give -o a new or empty directory, or remove it)"),
    "render -o missing parent": ({}, ["render", "-o", "missing/dir/x"], 2,
                                 "error: missing/dir does not exist (create the parent directory first)"),
    "wheelhouse -o FILE": ({"f": "x"}, ["wheelhouse", "-o", "f"], 2,
                           "error: f is a file, not a directory (give -o a new or empty directory)"),
    "bundle save -o missing dir": ({}, ["bundle", "save", "x", "-o", "missing/dir/x"], 2,
                                   "error: missing/dir does not exist (create the directory first)"),
    "bundle save -o DIR": ({"d/x": "x"}, ["bundle", "save", "x", "-o", "d"], 2,
                           "error: d is a directory (give -o a file name, e.g. site.tar.zst)"),
    "bundle load non-zstd": ({"b.tar.zst": "not zstd at all"}, ["bundle", "load", "--verify", "b.tar.zst"], 2,
                             "error: b.tar.zst is corrupted or truncated (ZstdError: Unable to decompress Zstandard "
                             "data: Unknown frame descriptor) (copy the bundle again and compare its sha256 with the source's)"),
    "tags without a repository": ({}, ["tags", "127.0.0.1:5077"], 2,
                                  "error: '127.0.0.1:5077' names no repository (give REGISTRY/REPO, e.g. "
                                  "127.0.0.1:5000/bge-m3)"),
    "password in --registry": ({}, ["push", "x", "-r", "https://user:s3cret@host"], 2,
                               "error: invalid registry host '***@host': expected host[:port], e.g. ghcr.io or "
                               "127.0.0.1:5000"),
    "literal tag without a version": ({}, ["push", "x", "-r", "127.0.0.1:9", "--tag", "t1"], 2,
                                      "error: the semver scheme needs a version (pass --version 1.4.2, tag the "
                                      "commit (git tag v1.4.2), or --scheme none to push only the --tag values)"),
    "emoji codes in a name stay as typed": ({}, ["render", "-p", ":smile:"], 2,
                                            "error: unknown profile ':smile:' (choose one of: cpu-slim, "
                                            "cuda-runtime, external-model, gpu, onnx-cpu, onnx-external)"),
}


def run_cli(args: list[str], capsys, monkeypatch, cwd: Path) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["bgeimg", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    files, args, code, first = CASES[case]
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data if isinstance(data, bytes) else data.encode())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    monkeypatch.setenv("BGE_REGISTRY_URL", "")
    got, out, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in args], capsys, monkeypatch, tmp_path)
    assert (got, err.splitlines()[0] if err else "") == (code, first.replace("{tmp}", str(tmp_path)))
    assert "Traceback" not in err and "s3cret" not in err + out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing may be written on bad input"


def test_profiles_list_skips_a_broken_profile_with_a_warning(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "bad.yaml").write_text("aliases: 5\n")
    (tmp_path / "mine.yaml").write_text("extends: cpu-slim\ndescription: mine\n")
    code, out, err = run_cli(["profiles", "list", "--profiles-dir", str(tmp_path)], capsys, monkeypatch, tmp_path)
    assert code == 0 and "mine" in out and "cpu-slim" in out
    assert err.strip() == f"warning: {tmp_path}/bad.yaml: aliases: expected a list of names, got 5 (skipped)"


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch) -> None:
    from bgeimg.cli.commands import profiles

    def boom(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(profiles, "resolve_profile", boom)
    code, _, err = run_cli(["render"], capsys, monkeypatch, tmp_path)
    assert code == 70 and err.strip() == ("error: bgeimg render failed unexpectedly: RuntimeError: a bug (run again "
                                          "with --debug or BGEIMG_DEBUG=1 to see the traceback)")
    code, _, err = run_cli(["--debug", "render"], capsys, monkeypatch, tmp_path)
    assert code == 70 and "Traceback" in err and "RuntimeError: a bug" in err


@pytest.mark.parametrize(("text", "shown"), [
    ("https://user:pw@host/x", "https://***@host/x"), ("user:pw@host:5000/ns", "***@host:5000/ns"),
    ("cannot reach 'https://u@h'", "cannot reach 'https://***@h'"), ("bge:1.0@sha256:ab", "bge:1.0@sha256:ab"),
    ("reg:5000/bge@sha256:ab", "reg:5000/bge@sha256:ab"), ("mail me@example.com", "mail me@example.com"),
])
def test_redact_hides_userinfo_only(text: str, shown: str) -> None:
    assert redact(text) == shown


def _bgeimg(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgeimg", *args], capture_output=True, text=True, timeout=120, **kw)


def test_full_stdout_is_exit_3_not_1() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "bgeimg", "profiles", "show", "cpu-slim"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("no space left on the device (free space and run it again)")


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 1 MiB tmpfs; skipped where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_render_onto_a_full_disk_leaves_nothing(tiny_fs: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(os.urandom(2 << 20))  # 2 MiB: cannot fit in 1 MiB
    proc = _bgeimg("render", "--set", f"model={model}", "-o", str(tiny_fs / "ctx"))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "no space left on the device" in proc.stderr
    assert list(tiny_fs.iterdir()) == [], "no half-made context, under its final name or a temporary one"


def test_json_onto_a_full_disk_is_exit_3(tiny_fs: Path) -> None:
    with open(tiny_fs / "filler", "wb", buffering=0) as filler:  # fill the disk to the last byte
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass
    with open(tiny_fs / "out.yaml", "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "bgeimg", "profiles", "show", "cpu-slim"], stdout=fh,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
