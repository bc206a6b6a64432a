"""Which device serves: BGE_DEVICE=cuda | cpu | auto, and never a silent fallback.

`cuda` with no usable GPU raises DeviceUnavailable carrying one line that says why and what to do (the loader
logs it and /health stays 503); `auto` falls back to the CPU and keeps that line as the reason /info shows.
The driver check comes first: a GPU image's CUDA needs a minimum driver (BGE_MIN_DRIVER, set by the
Dockerfile from the profile's `cuda:` flavour), and torch alone would only say "no CUDA".
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

DRIVER_FILE = "/proc/driver/nvidia/version"
# A test double: a file written like /proc/driver/nvidia/version, read instead of it (and instead of
# nvidia-smi), so the driver checks run on a machine without a GPU.
DRIVER_FILE_DOUBLE = "BGE_TEST_DOUBLE_DRIVER_FILE"
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  ..." / "... Open Kernel Module for x86_64  580.65.06"
_DRIVER_RX = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)")
CHOICES = ("cuda", "cpu", "auto")


class DeviceUnavailable(RuntimeError):
    """BGE_DEVICE=cuda and no usable GPU; the message is the one line the log and /health show."""


@dataclass(frozen=True)
class Choice:
    device: str  # "cuda" | "cpu"
    reason: str | None = None  # why not cuda, when auto fell back


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def driver_version() -> str | None:
    """The host's NVIDIA driver version: the kernel module's file, else nvidia-smi; None when neither answers."""
    double = os.environ.get(DRIVER_FILE_DOUBLE)
    try:
        with open(double or DRIVER_FILE, encoding="utf-8", errors="replace") as f:
            m = _DRIVER_RX.search(f.read())
            if m:
                return m.group(1)
    except OSError:
        pass
    if double or not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out[0] if out and re.fullmatch(r"\d+(?:\.\d+)+", out[0]) else None


def _gpu_nodes() -> bool:
    # The NVIDIA container runtime adds /dev/nvidia0.. (and nvidiactl) only when the container gets a GPU.
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def torch_probe() -> str | None:
    """None when torch can use a GPU, else why not."""
    import torch

    if not torch.version.cuda:
        return f"this torch ({torch.__version__}) is built without CUDA: build the image with a cuda: profile (gpu)"
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    try:
        torch.cuda.init()
    except Exception as exc:  # torch's own reason (e.g. "Found no NVIDIA driver on your system")
        return f"CUDA does not initialise: {str(exc).splitlines()[0]}"
    return "CUDA does not initialise: torch sees no GPU"


def why_not_cuda(probe: Callable[[], str | None] = torch_probe) -> str | None:
    """None when a GPU can serve, else one line: what is wrong and how to fix it."""
    driver = driver_version()
    needed = os.environ.get("BGE_MIN_DRIVER", "")
    cuda = os.environ.get("BGE_CUDA_VERSION", "")
    if driver is None and (os.environ.get(DRIVER_FILE_DOUBLE) or not _gpu_nodes()):
        return ("no GPU visible: start the container with --gpus all (the NVIDIA Container Toolkit must be "
                "installed on the host: bgeimg doctor -p gpu checks it)")
    if driver and re.fullmatch(r"\d+(?:\.\d+)+", needed) and _version(driver) < _version(needed):
        return (f"the NVIDIA driver {driver} is older than {needed}, which this image's CUDA {cuda or '?'} needs: "
                f"upgrade the host driver to >= {needed}, or build with an older cuda: flavour")
    if not os.environ.get(DRIVER_FILE_DOUBLE) and not _gpu_nodes():
        return "no GPU visible: start the container with --gpus all"
    return probe()


def resolve(requested: str, probe: Callable[[], str | None] = torch_probe) -> Choice:
    """The device to serve from for BGE_DEVICE=`requested`; DeviceUnavailable for cuda without a usable GPU."""
    if requested not in CHOICES:
        raise ValueError(f"BGE_DEVICE={requested!r} is not one of {', '.join(CHOICES)}")
    if requested == "cpu":
        return Choice("cpu")
    reason = why_not_cuda(probe)
    if reason is None:
        return Choice("cuda")
    if requested == "cuda":
        raise DeviceUnavailable(f"BGE_DEVICE=cuda: {reason}")
    print(f"bge-server: BGE_DEVICE=auto: serving from the CPU: {reason}", flush=True)
    return Choice("cpu", reason)
