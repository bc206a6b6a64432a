"""`bgeimg doctor`: can this machine build, push and serve the given profile? One line per check, with the fix.

Each check is a small function returning a `Check`; `required` says whether the profile needs it, and only a
failed required check makes the exit code non-zero. Secrets are never printed: login state is a user name or
the name of a credential helper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bgeimg.errors import BgeimgError
from bgeimg.profile import Profile


class DoctorFailed(BgeimgError):
    """Something the profile needs is missing (exit 1: a check failed)."""

    exit_code = 1


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def engine_checks() -> tuple[list[Check], dict | None]:
    """Engine reachable (Docker or Podman's Docker-compatible API), its API version; `docker info` for later."""
    from bgeimg.oci.docker import api_client, docker_host

    try:
        client = api_client(timeout=20)
    except BgeimgError as exc:
        return [Check("engine", False, exc.message, exc.hint or "")], None
    version = client.version()
    names = [c.get("Name", "") for c in version.get("Components", [])]
    kind = "Podman" if any("podman" in n.lower() for n in names) or "podman" in str(
        version.get("Platform", {})).lower() else "Docker"
    checks = [Check("engine", True, f"{kind} {version.get('Version', '?')} at {docker_host()}"),
              Check("api version", True, f"{version.get('ApiVersion', '?')} (min {version.get('MinAPIVersion', '?')})")]
    return checks, client.info()


def builder_checks(platforms: list[str]) -> list[Check]:
    from bgeimg.build.backends.buildkit import BuildKitEngine
    from bgeimg.build.backends.buildx import BuildxEngine

    buildx = BuildxEngine()
    multi = len(platforms) > 1
    checks = []
    version = buildx.version()
    if version:
        driver = _buildx_driver(buildx.docker)
        checks.append(Check("buildx", True, f"{version}; builder driver {driver}"))
        if multi and driver == "docker":
            checks.append(Check("multi-platform", False, "the `docker` driver cannot build several platforms in one "
                                "call", "docker buildx create --use --driver docker-container (or build per platform: "
                                "--engine buildkit)", required=False))
    else:
        checks.append(Check("buildx", False, "no buildx plugin: several platforms are built one at a time",
                            "apt-get install docker-buildx (optional)", required=False))
    bk = BuildKitEngine()
    checks.append(Check("buildkit", bk.available(), f"{bk.docker} build speaks BuildKit" if bk.available() else
                        f"{bk.docker} build has no BuildKit", "install Debian's docker.io client (>= 18.09)",
                        required=False))
    return checks


def _buildx_driver(docker: str) -> str:
    try:
        out = subprocess.run([docker, "buildx", "inspect"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.strip().startswith("Driver:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def emulation_checks(platforms: list[str], binfmt_dir: Path | None = None) -> list[Check]:
    from bgeimg.build.run import check_emulation, host_platform

    checks = []
    for platform in platforms:
        if platform == host_platform():
            continue
        try:
            check_emulation(platform, binfmt_dir)
            checks.append(Check(f"emulation {platform}", True, "qemu registered with binfmt_misc"))
        except BgeimgError as exc:
            checks.append(Check(f"emulation {platform}", False, exc.message, exc.hint or ""))
    return checks


def gpu_check(profile: Profile, info: dict | None) -> list[Check]:
    if profile.device != "cuda":
        return []
    runtimes = sorted((info or {}).get("Runtimes", {}))
    ok = "nvidia" in runtimes
    # Building a CUDA image needs no GPU; running it does. Required only to run, so not for the exit code.
    return [Check("nvidia runtime", ok, f"runtimes: {', '.join(runtimes) or 'none'}",
                  "" if ok else "install nvidia-container-toolkit and run nvidia-ctk runtime configure --runtime=docker",
                  required=False)]


def registry_checks(registries: list[str], info: dict | None) -> list[Check]:
    from bgeimg.oci.registry import RegistryClient, load_credentials

    checks = []
    mirrors = [m for m in ((info or {}).get("RegistryConfig") or {}).get("Mirrors") or []]
    for reg in registries:
        host = reg.split("/", 1)[0] if "://" not in reg else reg.split("://", 1)[1].split("/", 1)[0]
        try:
            RegistryClient(host, credentials=False, retries=0, timeout=10).base_url()
            checks.append(Check(f"registry {host}", True, "answers /v2/"))
        except BgeimgError as exc:
            checks.append(Check(f"registry {host}", False, exc.message, "check the address, network and TLS "
                                "(CA in /etc/docker/certs.d/HOST/ca.crt)"))
        try:
            creds = load_credentials(host)
            login = f"logged in as {creds.username}" if creds and creds.username else (
                "token in the docker config" if creds else "no credentials (anonymous)")
            checks.append(Check(f"login {host}", True, login, "" if creds else f"docker login {host}",
                                required=False))
        except BgeimgError as exc:
            checks.append(Check(f"login {host}", False, exc.message, exc.hint or "", required=False))
    for mirror in mirrors:
        host = mirror.split("://", 1)[-1].rstrip("/")
        try:
            RegistryClient(mirror.rstrip("/"), credentials=False, retries=0, timeout=10).base_url()
            checks.append(Check(f"mirror {host}", True, "the engine's registry mirror answers /v2/"))
        except BgeimgError as exc:
            checks.append(Check(f"mirror {host}", False, exc.message, "fix registry-mirrors in daemon.json",
                                required=False))
    return checks


def disk_checks(profile: Profile, info: dict | None, workdir: Path) -> list[Check]:
    need = 20e9 if profile.device == "cuda" else 5e9  # a CUDA torch stack is several GB per copy
    checks = []
    places = [("working directory", workdir)]
    if info and info.get("DockerRootDir") and Path(info["DockerRootDir"]).exists():
        places.append(("engine data", Path(info["DockerRootDir"])))
    for label, path in places:
        free = shutil.disk_usage(path).free
        checks.append(Check(f"disk {label}", free >= need, f"{free / 1e9:.1f} GB free at {path} (need "
                            f"{need / 1e9:.0f} GB)", "free space or move DOCKER data-root / the context"))
    return checks


def hf_check(profile: Profile, endpoint: str | None = None) -> list[Check]:
    import urllib.request

    url = (endpoint or profile.mirrors.hf_endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    needed = profile.model.source == "hf"
    import urllib.error

    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/api/models?limit=1", timeout=5).close()
        return [Check("hf endpoint", True, f"{url} answers", required=needed)]
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # it answered: a mirror may not serve listings, but it is there
            return [Check("hf endpoint", True, f"{url} answers (HTTP {exc.code})", required=needed)]
        return [Check("hf endpoint", False, f"{url} answers HTTP {exc.code}", "check the mirror", required=needed)]
    except Exception as exc:  # unreachable, DNS, TLS
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return [Check("hf endpoint", False, f"{url} unreachable ({reason})",
                      "set HF_ENDPOINT or mirrors.hf_endpoint to a reachable mirror, or use a local model directory",
                      required=needed)]


def run(profile: Profile, *, platforms: list[str] | None = None, registries: list[str] | None = None,
        workdir: Path | None = None, binfmt_dir: Path | None = None) -> list[Check]:
    platforms = platforms or profile.platforms
    checks, info = engine_checks()
    if info is not None:
        checks += builder_checks(platforms)
    checks += emulation_checks(platforms, binfmt_dir)
    checks += gpu_check(profile, info)
    checks += registry_checks(registries or [], info)
    checks += disk_checks(profile, info, workdir or Path.cwd())
    checks += hf_check(profile)
    return checks


def check(checks: list[Check]) -> None:
    """Raise DoctorFailed (exit 1) naming every needed check that failed."""
    missing = [c.name for c in checks if c.required and not c.ok]
    if missing:
        raise DoctorFailed(f"{len(missing)} needed check(s) failed: {', '.join(missing)}")
