"""How many CPUs this container may use: its cgroup CPU quota, not the host's core count.

A container limited to 2 CPUs on a 64-core host that runs 64 intra-op threads spends its quota in a few
milliseconds and is throttled for the rest of each period; threads = the quota (rounded up), at most the CPUs
the process may run on.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _v2_quota(root: Path, rel: str) -> float | None:
    """The smallest cpu.max quota from this process's cgroup up to the root (a parent's limit binds too)."""
    best = None
    path = root / rel.lstrip("/")
    while True:
        try:
            quota, period = (path / "cpu.max").read_text().split()[:2]
            if quota != "max":
                value = int(quota) / int(period)
                best = value if best is None else min(best, value)
        except (OSError, ValueError):
            pass
        if path == root or root not in path.parents:
            return best
        path = path.parent


def _v1_quota(root: Path, rel: str) -> float | None:
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for base in (root / name / rel.lstrip("/"), root / name):
            try:
                quota = int((base / "cpu.cfs_quota_us").read_text())
                period = int((base / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            return quota / period if quota > 0 and period > 0 else None
    return None


def cgroup_quota(root: Path = CGROUP, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs the cgroup allows (e.g. 1.5), or None when there is no quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    v2 = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), None)
    v1 = next((line.split(":", 2)[2] for line in lines
               if line.split(":")[1:2] and "cpu" in line.split(":")[1].split(",")), None)
    if (root / "cgroup.controllers").exists():
        return _v2_quota(root, v2 or "/")
    return _v1_quota(root, v1 or "/")


def cpu_threads() -> tuple[int, str]:
    """(threads, where the number came from) for the runtime's intra-op pool."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None and math.ceil(quota) < usable:
        return max(1, math.ceil(quota)), f"cgroup quota {quota:g} CPUs"
    return max(1, usable), f"{usable} usable CPUs, no lower cgroup quota"
