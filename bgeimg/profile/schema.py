"""Profile schema: the value grammars every rendered value must match, and the pydantic models of a profile."""

from __future__ import annotations

import re
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bgeimg.oci.platform import PLATFORM_RE
from bgeimg.oci.reference import InvalidReference, check_reference
from bgeimg.profile.cuda import DEFAULT as DEFAULT_CUDA
from bgeimg.profile.cuda import FLAVOURS, flavour

# ---------------------------------------------------------------------------------------------------------
# Value grammars. Anything that reaches a Dockerfile or a shell line must match one of these, so a value can
# never carry a newline, a quote or `$(...)` into the rendered context.

_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9._/-]+)?$")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/+-]*)?$")
_HF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")

_LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?$")
_PRUNE_RE = re.compile(r"^[A-Za-z0-9_.*-]+(?:/[A-Za-z0-9_.*-]+)*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DIST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SAFE_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f\"\\$`]*$")


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid {what}")
    return value


def _no_credentials(url: str) -> str:
    if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise ValueError("URL carries credentials; pass them as a build secret, never in a profile")
    return url


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_model_ref(value: Any) -> Any:
    """`hf://org/name@rev`, `none` or a directory path -> the mapping form of `model:`; mappings pass through."""
    if not isinstance(value, str):
        return value
    if value == "none":
        return {"source": "none"}
    if value.startswith("hf://"):
        model_id, at, revision = value[len("hf://") :].partition("@")
        if at and not revision:  # `hf://org/name@` is a typo, never "main"
            from bgeimg.errors import ProfileError

            raise ProfileError(f"model {value!r} has an empty revision after '@'",
                               f"give hf://{model_id}@main or a commit, or drop the '@'")
        return {"source": "hf", "id": model_id, "revision": revision or "main"}
    return {"source": "path", "path": value}


class ModelSpec(_Strict):
    """Where the weights come from. Written in YAML as a mapping or as a string:
    `hf://BAAI/bge-m3@<revision>`, a local directory path, or `none` (weights supplied at run time)."""

    source: Literal["hf", "path", "none"] = "none"
    id: str | None = None
    revision: str = "main"
    path: str | None = None
    task: Literal["embed", "rerank"] = "embed"

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return parse_model_ref(value)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        return None if v is None else _check(v, _HF_ID_RE, "Hugging Face model id (org/name)")

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str) -> str:
        return _check(v, _REVISION_RE, "model revision (branch, tag or commit sha)")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _check(v, _SAFE_TEXT_RE, "path")

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.source == "hf" and not self.id:
            raise ValueError("source 'hf' needs an id such as BAAI/bge-m3")
        if self.source == "path" and not self.path:
            raise ValueError("source 'path' needs a path to a local model directory")
        return self


class Mirrors(_Strict):
    """Redirects for pulls during the build. They reach the build as build arguments, never as ENV."""

    registry: str | None = None  # host[:port][/prefix] that serves docker.io images
    pip_index_url: str | None = None
    pip_extra_index_urls: list[str] = Field(default_factory=list)
    pip_trusted_hosts: list[str] = Field(default_factory=list)
    hf_endpoint: str | None = None

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        return None if v is None else _check(v, _HOST_RE, "registry host (host[:port][/path])")

    @field_validator("pip_index_url", "hf_endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _check(_no_credentials(v), _URL_RE, "http(s) URL")

    @field_validator("pip_extra_index_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        return [_check(_no_credentials(u), _URL_RE, "http(s) URL") for u in v]

    @field_validator("pip_trusted_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return [_check(h, _HOST_RE, "host name") for h in v]


class Server(_Strict):
    """The serving app's settings, passed to it as environment variables in the image."""

    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_batch_size: int = Field(32, ge=1, le=4096)  # texts per forward pass
    max_batch_tokens: int = Field(16384, ge=1, le=1_048_576)  # padded tokens (texts x longest) per forward pass
    max_queue: int = Field(512, ge=1, le=1_000_000)  # texts waiting; more are answered 429 at once
    grace_seconds: int = Field(20, ge=0, le=3600)  # SIGTERM: time to finish queued work before exiting
    max_length: int | None = Field(None, ge=1, le=131072)
    healthcheck_interval: int = Field(15, ge=1, le=3600)
    start_period: int = Field(120, ge=1, le=3600)  # Docker refuses 0

    @field_validator("port", "workers", "max_batch_size", "max_length", "healthcheck_interval", "start_period",
                     mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML `true` would otherwise become 1
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


class User(_Strict):
    """The non-root user the server runs as."""

    name: str = "bge"
    uid: int = Field(10001, ge=1000, le=65533)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check(v, _NAME_RE, "user name (lowercase letters, digits, '-')")


class Slim(_Strict):
    """What the builder stage removes from the virtualenv before it is copied into the runtime stage."""

    # strip every .pyc; compile all; or compile only what `warm_imports` pulls in (hash-based, reproducible)
    bytecode: Literal["strip", "compile", "imported"] = "strip"
    warm_imports: list[str] = Field(default_factory=list)  # modules the server imports, for bytecode: imported
    # model types (config.json `model_type`) whose tiny stand-ins the server loads in the builder, so `imported`
    # also compiles what loading weights imports (torch.distributed, sympy, the modeling module)
    warm_architectures: list[str] = Field(default_factory=list)
    remove_tests: bool = True
    remove_pip: bool = False
    # distributions the server never imports, uninstalled from the runtime venv (pip names)
    remove_packages: list[str] = Field(default_factory=list)
    prune: list[str] = Field(default_factory=list)  # globs relative to site-packages, e.g. torch/include
    # drop the symbol tables of shared libraries (strip --strip-unneeded; the dynamic symbols stay)
    strip_symbols: bool = False
    # what only the entrypoint's download on start uses (the hub client): removed too when the weights are baked
    download_packages: list[str] = Field(default_factory=list)
    # runtime onnx: dynamic int8 weights (onnxruntime's quantizer) or the exported fp32 graph (docs/slimming.md)
    quantize: Literal["none", "int8"] = "none"

    @field_validator("warm_imports")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        return [_check(m, _MODULE_RE, "Python module name (dotted identifiers)") for m in v]

    @field_validator("warm_architectures")
    @classmethod
    def _archs(cls, v: list[str]) -> list[str]:
        return [_check(a, _ARCH_RE, "model type as in config.json (e.g. bert, xlm-roberta)") for a in v]

    @field_validator("remove_packages", "download_packages")
    @classmethod
    def _dists(cls, v: list[str]) -> list[str]:
        return [_check(d, _DIST_RE, "distribution name as pip knows it (e.g. networkx)") for d in v]

    @field_validator("prune")
    @classmethod
    def _prune(cls, v: list[str]) -> list[str]:
        for p in v:
            _check(p, _PRUNE_RE, "prune path relative to site-packages (no '..', no spaces)")
            if ".." in p.split("/"):
                raise ValueError(f"{p!r} climbs out of site-packages")
        return v


class Profile(_Strict):
    """A fully resolved build profile: everything the renderer needs, validated."""

    name: str
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    base_image: str
    builder_image: str | None = None
    python: Literal["base", "apt"] = "base"  # base image ships python3 + venv, or install them with apt
    apt_packages: list[str] = Field(default_factory=list)
    device: Literal["cpu", "cuda"] = "cpu"
    # the CUDA flavour (cuda.py) of a device: cuda image: picks the torch wheel index and the driver floor
    cuda: str | None = Field(None, validate_default=True)
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    # torch: transformers + torch serve the checkpoint; onnx: onnxruntime serves its ONNX form, made in the
    # builder stage (export_requirements live there only). `runtime: onnx` applies profiles/_onnx.yaml.
    runtime: Literal["torch", "onnx"] = "torch"
    requirements: list[str]
    export_requirements: list[str] = Field(default_factory=list)
    torch_index_url: str | None = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    server: Server = Field(default_factory=Server)
    user: User = Field(default_factory=User)
    slim: Slim = Field(default_factory=Slim)
    mirrors: Mirrors = Field(default_factory=Mirrors)
    labels: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    template: str | None = None  # a user's Dockerfile template that `{% extends "Dockerfile.j2" %}`
    app_dir: str | None = None  # a user's server directory, copied instead of the built-in one

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check(v, _NAME_RE, "profile name (lowercase letters, digits, '-')")

    @field_validator("base_image", "builder_image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            check_reference(v)
        except InvalidReference:
            raise ValueError(f"{v!r} is not a valid image reference (name[:tag][@sha256:digest])") from None
        return v

    @field_validator("cuda", mode="before")
    @classmethod
    def _cuda(cls, v: object, info: ValidationInfo) -> str | None:
        device = info.data.get("device")
        choices = ", ".join(FLAVOURS)
        if v is None:
            if device == "cuda":
                raise ValueError(f"device cuda needs a CUDA flavour: set cuda: \"{DEFAULT_CUDA}\" (one of {choices})")
            return None
        v = f"{v}" if isinstance(v, (float, int)) and not isinstance(v, bool) else v  # YAML reads 12.8 as a number
        if not isinstance(v, str) or v not in FLAVOURS:
            raise ValueError(f"{v!r} is not a CUDA flavour; choose one of {choices} (quote it: \"12.8\")")
        if device != "cuda":
            raise ValueError("a CUDA flavour is for device: cuda images only; remove cuda: (--set cuda=null) or set "
                             "device: cuda")
        return v

    @field_validator("apt_packages")
    @classmethod
    def _apt(cls, v: list[str]) -> list[str]:
        return [_check(p, _APT_RE, "Debian package name") for p in v]

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one platform is needed, e.g. linux/amd64")
        for p in v:
            _check(p, PLATFORM_RE, "platform (linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le, linux/s390x)")
        return v

    @field_validator("requirements", "export_requirements")
    @classmethod
    def _requirements(cls, v: list[str]) -> list[str]:
        for line in v:
            if not isinstance(line, str) or any(c in line for c in "\r\n\\"):
                raise ValueError(f"{line!r} is not a single requirement")
            try:
                Requirement(line)
            except InvalidRequirement as exc:
                raise ValueError(f"{line!r} is not a valid requirement (PEP 508): "
                                 f"{str(exc).splitlines()[0]}") from None
        return v

    @field_validator("torch_index_url")
    @classmethod
    def _torch_url(cls, v: str | None) -> str | None:
        return None if v is None else _check(_no_credentials(v), _URL_RE, "http(s) URL")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            _check(k, _LABEL_KEY_RE, "label key (lowercase, dots and dashes)")
            _check(str(val), _SAFE_TEXT_RE, f"value for label {k} (no quotes, '$', backslash or control characters)")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            _check(k, _ENV_KEY_RE, "environment variable name (A-Z, 0-9, _)")
            _check(str(val), _SAFE_TEXT_RE, f"value for {k} (no quotes, '$', backslash or control characters)")
        return v

    @field_validator("template", "app_dir", "description")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else _check(v, _SAFE_TEXT_RE, "text (no quotes, '$', backslash or control characters)")

    @model_validator(mode="after")
    def _runtime_fits(self) -> Profile:
        if self.runtime == "onnx" and self.device != "cpu":
            raise ValueError("runtime onnx serves on the CPU only; use runtime: torch for device cuda")
        return self

    @property
    def torch_index(self) -> str | None:
        """The extra index torch comes from: the profile's own (e.g. a mirror), else its CUDA flavour's."""
        return self.torch_index_url or (flavour(self.cuda).index_url if self.cuda else None)

    @property
    def runtime_base(self) -> str:
        """The runtime stage's base, rewritten through the registry mirror when one is set."""
        return mirror_image(self.base_image, self.mirrors.registry)

    @property
    def builder_base(self) -> str:
        return mirror_image(self.builder_image or self.base_image, self.mirrors.registry)


def mirror_image(ref: str, mirror: str | None) -> str:
    """Rewrite a Docker Hub reference to go through `mirror`, keeping `library/` for official images.

    Images that already name another registry (a host with a dot or port, or localhost) are left alone."""
    if not mirror:
        return ref
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        if first not in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            return ref
        ref = rest
    if "/" not in ref:
        ref = f"library/{ref}"
    return f"{mirror.rstrip('/')}/{ref}"
