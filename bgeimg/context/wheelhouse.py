"""Make a wheelhouse for air-gapped builds: `pip download` of a profile's requirements for the image's
Python and platform (not the host's), so `bgeimg build --wheelhouse DIR` needs no index at all."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bgeimg.errors import BgeimgError, OutsideError

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
                         extra_index_urls: list[str] | None = None) -> list[str]:
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
    return [*cmd, *requirements]


def download(requirements: list[str], platform: str, dest: Path, *, python: str = "3.11",
             extra_index_urls: list[str] | None = None) -> Wheelhouse:
    """Download wheels for `requirements` into `dest`; one clear line when pip cannot resolve them."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = pip_download_command(requirements, platform, dest, python=python, extra_index_urls=extra_index_urls)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR:")] or result.stderr.splitlines()[-1:]
        raise OutsideError(f"pip could not download wheels for {platform}: {lines[0] if lines else 'unknown error'}",
                           "check the requirement pins and that an index is reachable")
    return Wheelhouse(directory=dest, platform=platform, wheels=sorted(p.name for p in dest.glob("*.whl")))
