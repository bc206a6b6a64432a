"""Render a resolved profile into a build context: Dockerfile, .dockerignore, entrypoint, server app, requirements.

Rendering is pure and deterministic: the same profile and options give byte-identical files. Values that vary
per build (created time, git commit, version) are not rendered; the build step passes them as labels.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from bgeimg import __version__, resources
from bgeimg.errors import RenderError
from bgeimg.profile import Profile, cuda

Backend = Literal["classic", "buildkit"]

LABEL_PREFIX = "io.bgeimg"
MODEL_DIR_BAKED = "/opt/model"
MODEL_DIR_MOUNTED = "/models"
TEMPLATE = "Dockerfile.j2"
EXPORT_SCRIPT = "export_onnx.py"  # the builder-stage ONNX export, also run on the host by `bgeimg export`


@dataclass(frozen=True)
class RenderOptions:
    """How the context will be built. `backend` decides whether BuildKit-only syntax may be used."""

    backend: Backend = "classic"
    wheelhouse: bool = False  # install from context wheels/ with no index; the wheels never reach the runtime stage
    ca_bundle: bool = False  # a CA bundle for the build only (ca-bundle.crt in the context, or a BuildKit secret)


@dataclass
class RenderedContext:
    """The files of a build context, relative path -> bytes (mode 0755 for the entrypoint)."""

    profile: Profile
    options: RenderOptions
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def dockerfile(self) -> str:
        return self.files["Dockerfile"].decode()

    def write(self, directory: Path) -> Path:
        """Write the files into `directory` (created if needed); files bgeimg does not own are left alone."""
        directory.mkdir(parents=True, exist_ok=True)
        for rel, data in sorted(self.files.items()):
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o755 if rel in EXECUTABLES else 0o644)
        return directory


EXECUTABLES = {"entrypoint.sh"}


def _single_lines(value: object) -> None:
    # Defence in depth behind profile validation: every value the template gets is one line, so no value can
    # start a new Dockerfile instruction. (Template text itself, e.g. a user's {{ super() }}, may span lines.)
    if isinstance(value, dict):
        for v in value.values():
            _single_lines(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _single_lines(v)
    elif isinstance(value, str) and ("\n" in value or "\r" in value):
        raise RenderError(f"refusing to render a value containing a line break: {value[:40]!r}")


def environment(user_template: Path | None = None) -> SandboxedEnvironment:
    """The Jinja environment: sandboxed, strict about undefined names, no HTML autoescape."""
    search = [str(resources.templates_dir())]
    if user_template is not None:
        search.insert(0, str(user_template.parent))
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sh"] = shlex.quote
    return env


def _quoted(key: str, value: str) -> str:
    # Profile validation already refused quotes, '$', backslashes and control characters in these values.
    return f'{key}="{value}"'


def template_values(profile: Profile, options: RenderOptions) -> dict[str, object]:
    """Everything the template reads, as plain values."""
    buildkit = options.backend == "buildkit"
    model = profile.model
    baked = model.source != "none"
    model_dir = MODEL_DIR_BAKED if baked else MODEL_DIR_MOUNTED

    pip_args: list[str] = []
    pip_mounts: list[str] = []
    builder_copies: list[tuple[str, str]] = []
    if not buildkit:
        pip_args.append("--no-cache-dir")
    else:
        pip_mounts.append("--mount=type=cache,target=/root/.cache/pip")
    if options.wheelhouse:
        pip_args += ["--no-index", "--find-links", "/tmp/build/wheels"]
        if buildkit:
            pip_mounts.append("--mount=type=bind,source=wheels,target=/tmp/build/wheels")
        else:
            builder_copies.append(("wheels/", "/tmp/build/wheels/"))
    elif profile.torch_index:
        pip_args += ["--extra-index-url", profile.torch_index]
    if options.ca_bundle:
        pip_args += ["--cert", "/tmp/build/ca-bundle.crt"]
        if buildkit:
            pip_mounts.append("--mount=type=secret,id=ca_bundle,target=/tmp/build/ca-bundle.crt")
        else:
            builder_copies.append(("ca-bundle.crt", "/tmp/build/ca-bundle.crt"))

    build_args: list[tuple[str, str]] = []
    mirrors = profile.mirrors
    if mirrors.pip_index_url and not options.wheelhouse:
        build_args.append(("PIP_INDEX_URL", mirrors.pip_index_url))
    if mirrors.pip_extra_index_urls and not options.wheelhouse:
        build_args.append(("PIP_EXTRA_INDEX_URL", " ".join(mirrors.pip_extra_index_urls)))
    if mirrors.pip_trusted_hosts:
        build_args.append(("PIP_TRUSTED_HOST", " ".join(mirrors.pip_trusted_hosts)))
    build_args = [(k, shlex.quote(v)) for k, v in build_args]

    site = "/opt/venv/lib/python3*/site-packages"
    slim: list[str] = []
    if profile.slim.remove_tests:
        slim.append(f"find {site} -depth -type d -name tests -exec rm -rf {{}} +")
    for path in profile.slim.prune:
        slim.append(f"rm -rf {site}/{path}")
    removed = [*profile.slim.remove_packages, *(profile.slim.download_packages if baked else [])]
    if removed:
        slim.append("pip uninstall --yes --quiet " + " ".join(removed))
    if profile.slim.remove_pip:
        slim.append("pip uninstall --yes --quiet pip setuptools")
    if profile.slim.strip_symbols:
        # Only files that carry a symbol table are rewritten; the dynamic symbols the loader needs stay.
        # auditwheel's vendored libraries (*.libs/) are left alone: patchelf moved their segments, strip breaks them.
        slim.append("find /opt/venv -type f -name '*.so*' -not -path '*.libs/*' -exec sh -c 'for f; do "
                    "if readelf -S \"$f\" 2>/dev/null | grep -q \"[.]symtab\"; then strip --strip-unneeded \"$f\"; fi; "
                    "done' sh {} +")
    # pip compiled bytecode with timestamps while installing: drop it either way, so the layer is reproducible.
    slim.append("find /opt/venv -depth \\( -name __pycache__ -o -name '*.pyc' \\) -exec rm -rf {} +")
    slim_copies: list[tuple[str, str]] = []  # after the install, so a change to them keeps the install cached
    if profile.slim.bytecode == "imported":
        slim_copies.append(("compile_imported.py", "/tmp/build/compile_imported.py"))
        modules = list(profile.slim.warm_imports)
        rehearse = ""
        if profile.slim.warm_architectures:
            rehearse = "--rehearse " + ",".join(profile.slim.warm_architectures) + " "
        slim.append("SOURCE_DATE_EPOCH=0 python /tmp/build/compile_imported.py " + rehearse
                    + " ".join(modules or ["bge_server"]))
    if profile.slim.bytecode == "compile":
        # Hash-based .pyc never go stale in an immutable venv and do not embed build times (reproducible).
        # Test-only modules are skipped: torch ships some that only newer Pythons can compile.
        slim.append("SOURCE_DATE_EPOCH=0 python -m compileall -q -j 0 --invalidation-mode unchecked-hash "
                    "-x '/testing/_internal/' /opt/venv/lib")

    env = {
        "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": "/opt/app",
        "BGE_MODEL_DIR": model_dir,
        "BGE_MODEL_BAKED": "1" if baked else "0",
        "BGE_MODEL_ID": model.id or "",
        "BGE_MODEL_REVISION": model.revision,
        "BGE_TASK": model.task,
        "BGE_RUNTIME": profile.runtime,
        "BGE_DEVICE": profile.device,
        "BGE_PORT": str(profile.server.port),
        "BGE_WORKERS": str(profile.server.workers),
        "BGE_MAX_BATCH_SIZE": str(profile.server.max_batch_size),
        "BGE_MAX_BATCH_TOKENS": str(profile.server.max_batch_tokens),
        "BGE_MAX_QUEUE": str(profile.server.max_queue),
        "BGE_GRACE_SECONDS": str(profile.server.grace_seconds),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    flavour = cuda.flavour(profile.cuda) if profile.cuda else None
    if flavour:
        # the server's driver check reads these (bge_server/device.py); the NVIDIA container runtime mounts the
        # driver's compute libraries and nvidia-smi for these capabilities
        env["BGE_CUDA_VERSION"] = flavour.version
        env["BGE_MIN_DRIVER"] = flavour.min_driver
        env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
    if profile.server.max_length:
        env["BGE_MAX_LENGTH"] = str(profile.server.max_length)
    if baked:
        env["HF_HUB_OFFLINE"] = "1"  # baked weights: never reach for the network at run time
    env.update(profile.env)

    labels = {
        "org.opencontainers.image.title": f"bge-{profile.name}",
        "org.opencontainers.image.description": profile.description or f"BGE server, profile {profile.name}",
        f"{LABEL_PREFIX}.version": __version__,
        f"{LABEL_PREFIX}.profile": profile.name,
        f"{LABEL_PREFIX}.device": profile.device,
        f"{LABEL_PREFIX}.runtime": profile.runtime,
        f"{LABEL_PREFIX}.model.source": model.source,
        f"{LABEL_PREFIX}.model.id": model.id or "",
        f"{LABEL_PREFIX}.model.revision": model.revision,
        f"{LABEL_PREFIX}.model.task": model.task,
        # analyze --advise reads this: missing bytecode is a choice, not an oversight
        f"{LABEL_PREFIX}.slim.bytecode": profile.slim.bytecode,
    }
    if profile.runtime == "onnx":
        labels[f"{LABEL_PREFIX}.onnx.quantize"] = profile.slim.quantize
    if not baked and profile.slim.download_packages:  # kept for the download on start: analyze --advise reads it
        labels[f"{LABEL_PREFIX}.slim.download_packages"] = ",".join(profile.slim.download_packages)
    if flavour:  # for doctor, deploy render and whoever runs the image: the CUDA it needs, the driver floor
        labels[f"{LABEL_PREFIX}.cuda.version"] = flavour.version
        labels[f"{LABEL_PREFIX}.cuda.min_driver"] = flavour.min_driver
    labels.update(profile.labels)

    return {
        "bgeimg_version": __version__,
        "profile_name": profile.name,
        "backend": options.backend,
        "builder_base": profile.builder_base,
        "runtime_base": profile.runtime_base,
        "apt_python": profile.python == "apt",
        "apt_packages": profile.apt_packages,
        "build_args": build_args,
        "builder_copies": builder_copies,
        "pip_mounts": pip_mounts,
        "pip_args": [shlex.quote(a) for a in pip_args],
        "slim_commands": slim,
        "slim_copies": slim_copies,
        "strip_symbols": profile.slim.strip_symbols,
        "runtime_env": [_quoted(k, v) for k, v in env.items()],
        "model_baked": baked,
        # runtime onnx with baked weights: a builder stage with torch exports the checkpoint to ONNX
        "export_stage": baked and profile.runtime == "onnx",
        "export_args": f"--task {model.task} --quantize {profile.slim.quantize}",
        "model_dir": model_dir,
        "user": profile.user.name,
        "uid": profile.user.uid,
        "port": profile.server.port,
        "health_interval": profile.server.healthcheck_interval,
        "start_period": profile.server.start_period,
        "labels": [_quoted(k, v) for k, v in labels.items()],
    }


def render_dockerfile(profile: Profile, options: RenderOptions = RenderOptions()) -> str:
    user_template = Path(profile.template) if profile.template else None
    if user_template is not None and not user_template.is_file():
        raise RenderError(f"template {user_template} not found", "fix `template:` in the profile or config")
    env = environment(user_template)
    name = user_template.name if user_template else TEMPLATE
    values = template_values(profile, options)
    _single_lines(values)
    try:
        return env.get_template(name).render(**values)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name!r} not found (from {name})") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{name}: {exc.message}", "templates may only use the values bgeimg provides") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise RenderError(f"{name}: unsafe template operation: {exc}") from None


def _tree(root: Path, prefix: str) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


def render(profile: Profile, options: RenderOptions = RenderOptions()) -> RenderedContext:
    """Render every file of the build context except model weights and wheels (see bgeimg.context.assemble)."""
    templates = resources.templates_dir()
    ctx = RenderedContext(profile=profile, options=options)
    ctx.files["Dockerfile"] = render_dockerfile(profile, options).encode()
    ctx.files[".dockerignore"] = (templates / "dockerignore").read_bytes()
    ctx.files["entrypoint.sh"] = (templates / "entrypoint.sh").read_bytes()
    if profile.slim.bytecode == "imported":
        ctx.files["compile_imported.py"] = (templates / "compile_imported.py").read_bytes()
    if profile.runtime == "onnx" and profile.model.source != "none":
        ctx.files[EXPORT_SCRIPT] = (templates / EXPORT_SCRIPT).read_bytes()
        ctx.files["export-requirements.txt"] = "".join(f"{r}\n" for r in profile.export_requirements).encode()
    ctx.files["requirements.txt"] = "".join(f"{r}\n" for r in profile.requirements).encode()
    if profile.app_dir:
        app = Path(profile.app_dir)
        if not app.is_dir():
            raise RenderError(f"app_dir {app} is not a directory", "fix `app_dir:` in the profile or config")
        ctx.files.update(_tree(app, "server"))
        if "server/healthcheck.py" not in ctx.files:
            ctx.files["server/healthcheck.py"] = (templates / "server" / "healthcheck.py").read_bytes()
    else:
        ctx.files.update(_tree(templates / "server", "server"))
    return ctx


def clean_output_dir(directory: Path) -> None:
    """Remove a previous render's files so a re-render leaves no stale ones behind."""
    for name in ("Dockerfile", ".dockerignore", "entrypoint.sh", "requirements.txt", "compile_imported.py",
                 EXPORT_SCRIPT, "export-requirements.txt"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "server", ignore_errors=True)
