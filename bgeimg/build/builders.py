"""What a buildx builder can do: its driver, the platforms it serves, and the engine's image store.

`docker buildx inspect [NAME]` names the driver (docker, docker-container, remote, kubernetes) and the
platforms each node serves; a docker-driver builder builds several platforms in one call only when the engine
keeps images in containerd (Docker >= 24 with the containerd image store), which `docker info` tells.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from bgeimg.errors import BgeimgError, OutsideError

CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"


class BuilderNotFound(BgeimgError):
    """`--builder NAME` names no buildx builder."""


class PlatformNotServed(BgeimgError):
    """The builder asked for has no node for a platform."""


@dataclass(frozen=True)
class Builder:
    """One buildx builder as `docker buildx inspect` describes it (platforms of all its nodes)."""

    name: str
    driver: str
    platforms: tuple[str, ...]
    buildkit: str = ""

    def serves(self, platform: str) -> bool:
        """True when a node lists `platform` (linux/arm64 matches linux/arm64/v8 and the other way round)."""
        return _norm(platform) in {_norm(p) for p in self.platforms}


def _norm(platform: str) -> str:
    return platform[: -len("/v8")] if platform.endswith("arm64/v8") else platform


def parse_inspect(text: str) -> Builder:
    """The fields of `docker buildx inspect` output that decide how to build."""
    name = re.search(r"^Name:\s+(\S+)", text, re.M)
    driver = re.search(r"^Driver:\s+(\S+)", text, re.M)
    platforms: list[str] = []
    for line in re.findall(r"^Platforms:\s+(.*)$", text, re.M):
        platforms += [p.strip().rstrip("*") for p in line.split(",") if p.strip()]
    buildkit = re.search(r"^BuildKit(?: version)?:\s+(\S+)", text, re.M)
    return Builder(name=name.group(1) if name else "", driver=driver.group(1) if driver else "",
                   platforms=tuple(dict.fromkeys(platforms)), buildkit=buildkit.group(1) if buildkit else "")


def inspect(docker: str, name: str | None = None) -> Builder:
    """The builder `name` (None: the current one), bootstrapped so its nodes report their platforms."""
    cmd = [docker, "buildx", "inspect", "--bootstrap", *([name] if name else [])]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OutsideError(f"`{' '.join(cmd)}` did not answer: {exc}") from None
    if out.returncode != 0:
        text = " ".join(out.stderr.split())
        if name and re.search(r"no builder .* found|not found", text, re.I):
            raise BuilderNotFound(f"buildx builder {name!r} not found",
                                  f"`{docker} buildx ls` lists the builders; create one with "
                                  f"`{docker} buildx create --name {name} --driver docker-container`")
        raise OutsideError(f"`{' '.join(cmd)}` failed: {text[:300]}")
    return parse_inspect(out.stdout)


def image_store(info: dict) -> str:
    """`containerd` when the engine keeps images in containerd (multi-platform local images), else `classic`."""
    status = info.get("DriverStatus") or []
    return "containerd" if any(CONTAINERD_SNAPSHOTTER in (v or "") for _k, v in status) else "classic"


def builds_many_at_once(builder: Builder, store: str) -> bool:
    """Whether one `buildx build` may carry several platforms: any driver but docker, or docker on containerd."""
    return builder.driver != "docker" or store == "containerd"


# ---- the build cache, record by record (the registry-cache bench and test prune only what they made) ----


def parse_du(text: str) -> dict[str, str]:
    """`docker buildx du --verbose`: each record's id -> when it was made (its `Created at:` text)."""
    records: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("ID:"):
            current = line.split()[1]
            records[current] = ""
        elif line.startswith("Created at:") and current:
            records[current] = line.split(":", 1)[1].strip()
    return records


def cache_records(docker: str, env: dict[str, str] | None = None) -> dict[str, str]:
    out = subprocess.run([docker, "buildx", "du", "--verbose"], capture_output=True, text=True, timeout=120,
                         env=env, check=True)
    return parse_du(out.stdout)


def prune_records(docker: str, records: dict[str, str], env: dict[str, str] | None = None) -> set[str]:
    """Prune exactly `records` (id -> created), never the rest of the cache; returns the ids still there.
    The filter takes one id per call, and a record goes only once its children have: newest first, in passes."""
    left = set(records)
    for _ in range(3):
        for record in sorted(left, key=records.__getitem__, reverse=True):
            subprocess.run([docker, "buildx", "prune", "-af", "--filter", f"id={record}"], capture_output=True,
                           timeout=120, env=env)
        left &= set(cache_records(docker, env))
        if not left:
            break
    return left
