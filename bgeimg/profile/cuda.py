"""CUDA flavours of the gpu image: one CUDA per image, brought by the torch wheels, never by the base.

A flavour names PyTorch's wheel index for that CUDA (a mirror may replace it: `torch_index_url`) and the oldest
Linux driver the wheels' CUDA runs on. The base image carries no CUDA at all (python:3.11-slim: the wheels bring
CUDA's user-space libraries, the NVIDIA container runtime mounts the driver), so nothing is there twice.
Driver floors are NVIDIA's minor-version-compatibility minimums (CUDA 12.x: 525.60.13; CUDA 13.x: 580.65.06,
13.0's own driver); docs/server.md says why 13.0 is the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT = "13.0"


@dataclass(frozen=True)
class Flavour:
    version: str  # "13.0"
    index_url: str  # PyTorch's wheel index for it
    min_driver: str  # the oldest Linux driver its libraries run on

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def tag(self) -> str:  # cu130: PyTorch's name, also torch's local version (2.13.0+cu130)
        return "cu" + self.version.replace(".", "")


FLAVOURS = {
    "12.6": Flavour("12.6", "https://download.pytorch.org/whl/cu126", "525.60.13"),
    "12.8": Flavour("12.8", "https://download.pytorch.org/whl/cu128", "525.60.13"),
    "13.0": Flavour("13.0", "https://download.pytorch.org/whl/cu130", "580.65.06"),
}

# what names a CUDA version in wheel metadata: nvidia-cudnn-cu13, cuda-toolkit[...]==13.0.3, torch 2.13.0+cu130
_SUFFIX_RX = re.compile(r"^nvidia-[a-z0-9-]+?-cu(\d+)$")
_TOOLKIT_RX = re.compile(r"^cuda-(?:toolkit|runtime|bindings)$")
_LOCAL_RX = re.compile(r"\+cu(\d+?)(\d)$")


def flavour(version: str) -> Flavour:
    try:
        return FLAVOURS[version]
    except KeyError:
        raise ValueError(f"{version!r} is not a CUDA flavour; choose one of {', '.join(FLAVOURS)}") from None


def cuda_majors(name: str, version: str | None = None, requires: list[str] | None = None) -> dict[str, int]:
    """Every CUDA major version one distribution's metadata names: in its own name (nvidia-*-cuNN), its local
    version (+cuXYZ), and the CUDA wheels it requires. Requirement -> major, for a message that names the culprit."""
    from packaging.requirements import Requirement

    found: dict[str, int] = {}
    m = _SUFFIX_RX.match(name.lower())
    if m:
        found[name] = int(m.group(1))
    m = _LOCAL_RX.search(version or "")
    if m:
        found[f"{name}=={version}"] = int(m.group(1))
    env = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64",
           "python_version": "3.11", "python_full_version": "3.11.0", "implementation_name": "cpython",
           "os_name": "posix", "extra": ""}
    for line in requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue  # an extra or another platform's dependency
        key = f"{req.name}{req.specifier}"
        m = _SUFFIX_RX.match(req.name.lower())
        if m:
            found[key] = int(m.group(1))
        elif _TOOLKIT_RX.match(req.name.lower()):
            pinned = [s.version for s in req.specifier if s.operator in ("==", "~=", ">=")]
            if pinned:
                found[key] = int(pinned[0].split(".")[0])
    return found
