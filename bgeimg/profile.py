"""Profiles: the schema, loading built-in and user profiles, `extends`, project config, `--set` overrides.

A profile is resolved in layers, later ones winning key by key:

    profile chain (extends, root first) -> project config (bgeimg.yaml) -> --set key.path=value

Every leaf remembers which layer set it, so a validation error names the file (or the --set) it came from,
the key path, what is allowed, and on a typo the closest key.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bgeimg import resources
from bgeimg.errors import ProfileError

# ---------------------------------------------------------------------------------------------------------
# Value grammars. Anything that reaches a Dockerfile or a shell line must match one of these, so a value can
# never carry a newline, a quote or `$(...)` into the rendered context.

# docker/distribution reference grammar (simplified, no uppercase in repository path).
_IMAGE_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?/)?"  # optional registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # :tag
    r"(?:@sha256:[a-f0-9]{64})?$"  # @digest
)
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9._/-]+)?$")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/+-]*)?$")
_HF_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_PLATFORM_RE = re.compile(r"^linux/(amd64|arm64|arm/v7|ppc64le|s390x)$")
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
        model_id, _, revision = value[len("hf://") :].partition("@")
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
    max_batch_size: int = Field(32, ge=1, le=4096)
    max_length: int | None = Field(None, ge=1, le=131072)
    healthcheck_interval: int = Field(15, ge=1, le=3600)
    start_period: int = Field(120, ge=1, le=3600)  # Docker refuses 0


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

    @field_validator("warm_imports")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        return [_check(m, _MODULE_RE, "Python module name (dotted identifiers)") for m in v]

    @field_validator("warm_architectures")
    @classmethod
    def _archs(cls, v: list[str]) -> list[str]:
        return [_check(a, _ARCH_RE, "model type as in config.json (e.g. bert, xlm-roberta)") for a in v]

    @field_validator("remove_packages")
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
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    requirements: list[str]
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
        return None if v is None else _check(v, _IMAGE_RE, "image reference (name[:tag][@sha256:digest])")

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
            _check(p, _PLATFORM_RE, "platform (linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le, linux/s390x)")
        return v

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, v: list[str]) -> list[str]:
        for line in v:
            if not isinstance(line, str) or any(c in line for c in "\r\n\\"):
                raise ValueError(f"{line!r} is not a single requirement")
            try:
                Requirement(line)
            except InvalidRequirement as exc:
                raise ValueError(f"{line!r} is not a valid requirement (PEP 508): {exc}") from None
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


# ---------------------------------------------------------------------------------------------------------
# Project config (bgeimg.yaml): a few project keys; every other key overrides the profile.


class ProjectConfig(_Strict):
    """The project keys of bgeimg.yaml. Profile keys in the same file become `overrides`."""

    profile: str = "cpu-slim"
    profiles_dir: str | None = None
    registry: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, Any] = Field(default_factory=dict)
    path: Path | None = None

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        return None if v is None else _check(v, _HOST_RE, "registry (host[:port][/namespace])")


PROJECT_KEYS = ("profile", "profiles_dir", "registry", "tags")
CONFIG_FILE = "bgeimg.yaml"


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> ProjectConfig:
    """Read the project config: `path` when given (must exist), else ./bgeimg.yaml when present."""
    if path is None:
        found = (cwd or Path.cwd()) / CONFIG_FILE
        if not found.is_file():
            return ProjectConfig()
        path = found
    elif not path.is_file():
        raise ProfileError(f"{path}: config file not found", "give an existing file to --config")
    raw = _read_yaml(path)
    project = {k: raw.pop(k) for k in PROJECT_KEYS if k in raw}
    base = path.parent
    if isinstance(project.get("profiles_dir"), str):
        project["profiles_dir"] = str((base / project["profiles_dir"]).resolve())
    _resolve_relative(raw, base)
    try:
        return ProjectConfig(**project, overrides=raw, path=path)
    except ValidationError as exc:
        raise _located(exc, {(): (0, str(path))}, ProjectConfig) from None


def _resolve_relative(raw: dict[str, Any], base: Path) -> None:
    # Paths in a file are relative to that file, not to wherever the command runs.
    for key in ("template", "app_dir"):
        if isinstance(raw.get(key), str):
            raw[key] = str((base / raw[key]).resolve())
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        model["path"] = str((base / model["path"]).resolve())
    elif isinstance(model, str) and model != "none" and not model.startswith("hf://"):
        raw["model"] = str((base / model).resolve())


# ---------------------------------------------------------------------------------------------------------
# Loading and resolving


@dataclass
class Layer:
    """One source of values: a profile file, the project config, or the --set list."""

    source: str
    values: dict[str, Any]


@dataclass
class Resolved:
    """A validated profile plus where each value came from (for `profiles show` and error messages)."""

    profile: Profile
    chain: list[str] = field(default_factory=list)
    config: ProjectConfig | None = None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ProfileError(f"{path}{where}: {problem}", "fix the YAML syntax") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def search_dirs(extra: list[Path] | None = None) -> list[Path]:
    """User profile directories first (they may shadow built-ins), then the built-in profiles."""
    return [*(extra or []), resources.profiles_dir()]


def available(dirs: list[Path]) -> dict[str, Path]:
    """Profile name (and alias) -> file. Files starting with `_` are shared bases, not listed."""
    found: dict[str, Path] = {}
    for d in reversed(dirs):  # built-ins first so user dirs override
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.yaml")):
            found[f.stem] = f
            if not f.stem.startswith("_"):
                for alias in _aliases(f):
                    found[alias] = f
    return found


def _aliases(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError):
        return []
    aliases = data.get("aliases", []) if isinstance(data, dict) else []
    return [a for a in aliases if isinstance(a, str)]


def list_profiles(dirs: list[Path]) -> list[tuple[str, list[str], str, Path]]:
    """(name, aliases, description, file) for each listable profile."""
    rows = []
    seen: set[Path] = set()
    for name, path in sorted(available(dirs).items()):
        if name.startswith("_") or path in seen or path.stem != name:
            continue
        seen.add(path)
        data = _read_yaml(path)
        rows.append((name, list(data.get("aliases", [])), str(data.get("description", "")), path))
    return rows


def _chain(name: str, dirs: list[Path]) -> list[Layer]:
    """The profile and its `extends` ancestors, root first."""
    table = available(dirs)
    layers: list[Layer] = []
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            raise ProfileError(f"profile {name!r}: extends loops: {' -> '.join([*seen, current])}")
        path = table.get(current)
        if path is None:
            choices = sorted(k for k in table if not k.startswith("_"))
            close = difflib.get_close_matches(current, choices, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose one of: {', '.join(choices)}"
            where = f" (extended by {seen[-1]!r})" if seen else ""
            raise ProfileError(f"unknown profile {current!r}{where}", hint)
        seen.append(current)
        data = _read_yaml(path)
        parent = data.pop("extends", None)
        if parent is not None and not isinstance(parent, str):
            raise ProfileError(f"{path}: extends: expected a profile name, got {parent!r}")
        data.setdefault("name", path.stem)  # an alias resolves to the profile's own name
        layers.append(Layer(str(path), data))
        current = parent
    layers.reverse()
    # `name` and `aliases` belong to the profile asked for, not inherited.
    for layer in layers[:-1]:
        layer.values.pop("name", None)
        layer.values.pop("aliases", None)
    return layers


def parse_set(items: list[str]) -> Layer:
    """`--set a.b=c` items -> one layer. Values are YAML scalars: 9000 is an int, [a,b] a list, true a bool."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ProfileError(f"--set {item!r}: expected key.path=value", "for example --set server.port=9000")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        target = values
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ProfileError(f"--set {item!r}: {part} was already given a value")
            target = nxt
        target[parts[-1]] = value
    return Layer("--set", values)


Origin = dict[tuple[str, ...], tuple[int, str]]  # key path -> (layer index, source name)


def _merge(layers: list[Layer]) -> tuple[dict[str, Any], Origin]:
    """Deep-merge mappings (lists and scalars replace), recording which layer set each key path."""
    merged: dict[str, Any] = {}
    origin: Origin = {}

    def walk(dst: dict[str, Any], src: dict[str, Any], prefix: tuple[str, ...], source: tuple[int, str]) -> None:
        for key, value in src.items():
            path = (*prefix, str(key))
            if isinstance(value, dict) and isinstance(dst.get(key), dict):
                walk(dst[key], value, path, source)
            else:
                dst[key] = _copy(value)
                origin[path] = source
                if isinstance(value, dict):
                    for sub in _leaf_paths(value, path):
                        origin[sub] = source

    for index, layer in enumerate(layers):
        values = dict(layer.values)
        if "model" in values:  # so `--set model.revision=x` refines `model: hf://...` instead of replacing it
            values["model"] = parse_model_ref(values["model"])
        walk(merged, values, (), (index, layer.source))
    return merged, origin


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _leaf_paths(value: dict[str, Any], prefix: tuple[str, ...]):
    for k, v in value.items():
        yield (*prefix, str(k))
        if isinstance(v, dict):
            yield from _leaf_paths(v, (*prefix, str(k)))


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model whose fields live at `loc` (for typo suggestions)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return None
        ann = current.model_fields[part].annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return current


def _located(exc: ValidationError, origin: Origin, schema: type[BaseModel]) -> ProfileError:
    """Turn pydantic's first error into one line: `source: key.path: what is wrong (hint)`."""
    err = exc.errors()[0]
    # Drop pydantic's internal step names (e.g. function-after[...]) from the location.
    loc = tuple(str(p) for p in err["loc"] if "[" not in str(p))
    # The latest layer that set this key, one of its parents, or (for a whole-object check) one of its children.
    related = [o for path, o in origin.items() if path == loc[: len(path)] or path[: len(loc)] == loc]
    source = max(related)[1] if related else "profile"
    key = ".".join(loc) or "(top level)"
    hint = None
    if err["type"] == "extra_forbidden":
        parent = _model_at(schema, tuple(loc[:-1]))
        choices = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(loc[-1], choices, n=1)
        msg = f"unknown key {loc[-1]!r}"
        hint = f"did you mean {close[0]!r}?" if close else (f"allowed keys: {', '.join(choices)}" if choices else None)
    elif err["type"] == "literal_error":
        msg = f"{err['input']!r} is not allowed; expected {err['ctx']['expected']}"
    elif err["type"] == "missing":
        msg = "is required"
    elif err["type"] == "value_error":
        msg = str(err["ctx"]["error"])
    else:
        msg = f"{err['msg']} (got {err['input']!r})"
    return ProfileError(f"{source}: {key}: {msg}", hint)


def resolve(
    name: str | None = None,
    *,
    config: ProjectConfig | None = None,
    sets: list[str] | None = None,
    profile_dirs: list[Path] | None = None,
) -> Resolved:
    """Resolve a profile by name (or the config's), apply config and --set overrides, and validate."""
    config = config or ProjectConfig()
    dirs = list(profile_dirs or [])
    if config.profiles_dir:
        dirs.append(Path(config.profiles_dir))
    chosen = name or config.profile
    layers = _chain(chosen, search_dirs(dirs))
    if config.overrides:
        layers.append(Layer(str(config.path or CONFIG_FILE), config.overrides))
    if sets:
        layers.append(parse_set(sets))
    merged, origin = _merge(layers)
    # A set-layer key names its exact --set item in errors.
    for path, (index, source) in list(origin.items()):
        if source == "--set":
            origin[path] = (index, f"--set {'.'.join(path)}")
    try:
        profile = Profile(**merged)
    except ValidationError as exc:
        raise _located(exc, origin, Profile) from None
    except TypeError as exc:  # a non-mapping where a mapping belongs
        raise ProfileError(f"{layers[-1].source}: {exc}") from None
    return Resolved(profile=profile, chain=[layer.source for layer in layers], config=config)


def to_yaml(profile: Profile) -> str:
    """The resolved profile as YAML (stable key order, no Python tags)."""
    data = profile.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
