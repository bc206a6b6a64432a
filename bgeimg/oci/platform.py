"""Platform strings (`os/arch[/variant]`): the ones bgeimg builds, the host's, and matching an index entry."""

from __future__ import annotations

import platform as _host
import re
from typing import Any

# Build platforms -> the machine name qemu's binfmt handler is registered under (and `uname -m` prints),
# and the suffix of the per-platform local tag (`NAME:TAG-arm64`).
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm/v7": "arm", "linux/ppc64le": "ppc64le",
            "linux/s390x": "s390x"}
ARCH_SUFFIX = {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm/v7": "armv7", "linux/ppc64le": "ppc64le",
               "linux/s390x": "s390x"}
PLATFORM_RE = re.compile(r"^linux/(amd64|arm64|arm/v7|ppc64le|s390x)$")


def host_platform() -> str:
    machine = _host.machine().lower()
    return next((p for p, m in MACHINES.items() if m == machine),
                {"amd64": "linux/amd64", "arm64": "linux/arm64"}.get(machine, f"linux/{machine}"))


def platform_str(p: dict[str, Any] | None) -> str:
    """`{"os": "linux", "architecture": "arm64", "variant": "v8"}` (a descriptor's platform or an image config)
    -> `linux/arm64/v8`."""
    if not p:
        return "unknown/unknown"
    s = f"{p.get('os', 'unknown')}/{p.get('architecture', 'unknown')}"
    return f"{s}/{p['variant']}" if p.get("variant") else s


def platform_matches(have: str, want: str) -> bool:
    """"linux/arm64" matches "linux/arm64/v8"; a variant asked for must match exactly."""
    return have == want or (want.count("/") == 1 and have.startswith(want + "/"))


def parse_list(value: str | None, flag: str = "--platform") -> list[str] | None:
    """A comma-separated `--platform` as given: None when the flag is absent; an empty value or an unknown
    platform is bad input (never read as "the default")."""
    from bgeimg.errors import BgeimgError

    if value is None:
        return None
    items = [p.strip() for p in value.split(",")]
    if not any(items):
        raise BgeimgError(f"{flag} is empty", "for example --platform linux/amd64,linux/arm64, or leave it out")
    for item in items:
        if not PLATFORM_RE.match(item):
            raise BgeimgError(f"unknown or unsupported platform {item!r}", f"choose from: {', '.join(MACHINES)}")
    return list(dict.fromkeys(items))
