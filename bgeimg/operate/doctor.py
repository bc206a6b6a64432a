"""`bgeimg doctor`: can this machine build, push and serve the given profile? One line per check, with the fix.

Each check is a small function returning a `Check`; `required` says whether the profile needs it, and only a
failed required check makes the exit code non-zero. Secrets are never printed: login state is a user name or
the name of a credential helper.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bgeimg.errors import BgeimgError, redact
from bgeimg.oci.reference import split_registry
from bgeimg.profile import Profile, cuda


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


def builder_checks(platforms: list[str], info: dict | None = None) -> list[Check]:
    """The image store, buildx and each builder (driver, platforms), and whether several platforms go in one call."""
    from bgeimg.build import builders
    from bgeimg.build.backends.buildkit import BuildKitEngine
    from bgeimg.build.backends.buildx import BuildxEngine

    store = builders.image_store(info or {})
    checks = [Check("image store", True, f"{store}" + (" (containerd snapshotter: multi-platform local images)"
                                                       if store == "containerd" else " (one platform per local image)"))]
    buildx = BuildxEngine()
    multi = len(platforms) > 1
    version = buildx.version()
    if version:
        checks.append(Check("buildx", True, version))
        for builder in _builders(buildx.docker):
            checks.append(Check(f"builder {builder.name}", True,
                                f"driver {builder.driver}; platforms {', '.join(builder.platforms) or 'unknown'}",
                                required=False))
        try:
            current = builders.inspect(buildx.docker)
        except BgeimgError:
            current = None
        if multi and current is not None and not builders.builds_many_at_once(current, store):
            checks.append(Check("multi-platform", False, f"builder {current.name} (docker driver) on a classic image "
                                "store builds one platform per call (bgeimg builds them in turn)",
                                "turn on the containerd image store (daemon.json features.containerd-snapshotter), "
                                "or docker buildx create --use --driver docker-container", required=False))
    else:
        checks.append(Check("buildx", False, "no buildx plugin: several platforms are built one at a time",
                            "apt-get install docker-buildx (optional)", required=False))
    bk = BuildKitEngine()
    checks.append(Check("buildkit", bk.available(), f"{bk.docker} build speaks BuildKit" if bk.available() else
                        f"{bk.docker} build has no BuildKit", "install Debian's docker.io client (>= 18.09)",
                        required=False))
    return checks


def _builders(docker: str) -> list:
    """Every buildx builder `docker buildx ls` names, inspected (name, driver, platforms)."""
    from bgeimg.build import builders

    try:
        out = subprocess.run([docker, "buildx", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for name in dict.fromkeys(n.strip().rstrip("*").strip() for n in out.splitlines() if n.strip()):
        try:
            found.append(builders.inspect(docker, name))
        except BgeimgError:
            continue
    return found


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
                  required=False), driver_check(profile)]


def host_driver() -> tuple[str | None, str]:
    """(driver version, what was seen) from nvidia-smi on this host."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None, "nvidia-smi not found: no NVIDIA driver on this host"
    try:
        run = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi did not answer ({type(exc).__name__})"
    versions = run.stdout.split()
    if run.returncode != 0 or not versions or not re.fullmatch(r"\d+(?:\.\d+)+", versions[0]):
        why = (run.stderr or run.stdout).strip().splitlines()
        return None, f"nvidia-smi failed: {why[0] if why else f'exit {run.returncode}'}"
    return versions[0], f"driver {versions[0]}"


def driver_check(profile: Profile) -> Check:
    """The host's driver against the oldest one the image's CUDA runs on (the io.bgeimg.cuda.min_driver label)."""
    flavour = cuda.flavour(profile.cuda or cuda.DEFAULT)
    need = f">= {flavour.min_driver} for CUDA {flavour.version}"
    older = [f for f in cuda.FLAVOURS.values() if _version(f.min_driver) < _version(flavour.min_driver)]
    alternative = f", or build for it with --set cuda={older[-1].version}" if older else ""
    version, seen = host_driver()
    if version is None:
        return Check("nvidia driver", False, f"{seen} (the image needs {need})",
                     f"install the NVIDIA driver {flavour.min_driver} or newer (on a GPU host)", required=False)
    if _version(version) < _version(flavour.min_driver):
        return Check("nvidia driver", False, f"{seen} is older than the image needs ({need})",
                     f"upgrade the NVIDIA driver to {flavour.min_driver} or newer{alternative}", required=False)
    return Check("nvidia driver", True, f"{seen} ({need})", required=False)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def registry_checks(registries: list[str], info: dict | None) -> list[Check]:
    from bgeimg.oci.registry import RegistryClient

    checks = []
    mirrors = [m for m in ((info or {}).get("RegistryConfig") or {}).get("Mirrors") or []]
    for reg in registries:
        try:  # the one registry grammar; a malformed address (or one carrying a password) is never contacted
            host = split_registry(reg)[0]
        except BgeimgError as exc:
            checks.append(Check(f"registry {redact(reg)}", False, redact(exc.message),
                                "give HOST[:PORT][/NAMESPACE], e.g. ghcr.io/team; log in with docker login"))
            continue
        try:
            RegistryClient(host, credentials=False, retries=0, timeout=10).base_url()
            checks.append(Check(f"registry {host}", True, "answers /v2/"))
        except BgeimgError as exc:
            checks.append(Check(f"registry {host}", False, redact(exc.message), "check the address, network and TLS "
                                "(CA in /etc/docker/certs.d/HOST/ca.crt)"))
            continue
        checks.append(_login_check(host))
    for mirror in mirrors:
        host = mirror.split("://", 1)[-1].rstrip("/")
        try:
            RegistryClient(mirror.rstrip("/"), credentials=False, retries=0, timeout=10).base_url()
            checks.append(Check(f"mirror {host}", True, "the engine's registry mirror answers /v2/"))
        except BgeimgError as exc:
            checks.append(Check(f"mirror {host}", False, exc.message, "fix registry-mirrors in daemon.json",
                                required=False))
    return checks


def _login_check(host: str) -> Check:
    """The login is verified, not just read: an authenticated /v2/ request (a token request where the registry
    asks for one) must succeed before it passes."""
    from bgeimg.oci.registry import RegistryClient, load_credentials

    try:
        creds = load_credentials(host)
        if not creds:
            return Check(f"login {host}", True, "no credentials (anonymous)", f"docker login {host}", required=False)
        who = f"as {creds.username}" if creds.username else "with a token from the docker config"
        RegistryClient(host, credentials=creds, retries=0, timeout=10).ping()
        return Check(f"login {host}", True, f"logged in {who} (the registry accepted it)", required=False)
    except BgeimgError as exc:
        return Check(f"login {host}", False, redact(exc.message), exc.hint or f"docker login {host}", required=False)


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
        checks += builder_checks(platforms, info)
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
