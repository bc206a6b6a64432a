"""Make a wheelhouse for air-gapped builds: `pip download` of a profile's requirements for the image's
Python and platform (not the host's), so `bgeimg build --wheelhouse DIR` needs no index at all."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bgeimg.errors import BgeimgError, OutsideError, redact

# manylinux tags a glibc-based image (Debian bookworm: glibc 2.36) can install, newest first.
PLATFORM_TAGS = {
    "linux/amd64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux/arm64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
}


@dataclass
class Wheelhouse:
    """A directory of wheels for one platform."""

    directory: Path
    platform: str
    wheels: list[str]


def pip_download_command(requirements: list[str], platform: str, dest: Path, *, python: str = "3.11",
                         extra_index_urls: list[str] | None = None, find_links: Path | None = None) -> list[str]:
    if platform not in PLATFORM_TAGS:
        raise BgeimgError(f"no wheel platform tags known for {platform}",
                          f"choose one of: {', '.join(PLATFORM_TAGS)}")
    abi = "cp" + python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
           "-d", str(dest)]
    for tag in PLATFORM_TAGS[platform]:
        cmd += ["--platform", tag]
    cmd += ["--platform", "any"]
    for url in extra_index_urls or []:
        cmd += ["--extra-index-url", url]
    if find_links is not None:  # wheels already downloaded there are copied, not fetched again
        cmd += ["--find-links", str(find_links)]
    return [*cmd, *requirements]


def download(requirements: list[str], platform: str, dest: Path, *, python: str = "3.11",
             extra_index_urls: list[str] | None = None) -> Wheelhouse:
    """Download wheels for `requirements` into `dest`; one clear line when pip cannot resolve them.

    pip downloads into a temporary directory beside `dest` (reusing the wheels already in `dest`), and the wheels
    are moved in only when it succeeded: a failed or interrupted download leaves `dest` as it was."""
    from bgeimg import atomic

    if dest.exists() and not dest.is_dir():
        atomic.check_new_dir(dest)  # refused with one line
    dest.parent.mkdir(parents=True, exist_ok=True)  # one subdirectory per platform goes under -o
    work = Path(tempfile.mkdtemp(prefix=f"{dest.name}.tmp-", dir=dest.parent))
    made = not dest.exists()
    try:
        cmd = pip_download_command(requirements, platform, work, python=python, extra_index_urls=extra_index_urls,
                                   find_links=dest if dest.is_dir() else None)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR:")] or \
                result.stderr.splitlines()[-1:]
            raise OutsideError(f"pip could not download wheels for {platform}: "
                               f"{redact(lines[0]) if lines else 'unknown error'}",
                               "check the requirement pins and that an index is reachable")
        dest.mkdir(exist_ok=True)
        for whl in work.iterdir():
            whl.replace(dest / whl.name)
    except BaseException:
        if made:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Wheelhouse(directory=dest, platform=platform, wheels=sorted(p.name for p in dest.glob("*.whl")))
