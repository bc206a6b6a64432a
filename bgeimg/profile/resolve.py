"""Loading and resolving profiles: the project config, built-in and user profiles, `extends`, `--set`."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from bgeimg import resources
from bgeimg.errors import ProfileError
from bgeimg.profile.schema import _HOST_RE, Profile, _check, _Strict, parse_model_ref

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
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from None
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
            raise ProfileError(f"--profiles-dir {d}: no such directory", "give a directory of *.yaml profiles")
        for f in sorted(d.glob("*.yaml")):
            found[f.stem] = f
            if not f.stem.startswith("_"):
                for alias in _aliases(f):
                    found[alias] = f
    return found


def _aliases(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return []
    aliases = data.get("aliases", []) if isinstance(data, dict) else []
    return [a for a in aliases if isinstance(a, str)] if isinstance(aliases, list) else []


def list_profiles(dirs: list[Path], warn: Callable[[str], None] | None = None) -> list[tuple[str, list[str], str, Path]]:
    """(name, aliases, description, file) for each listable profile; a broken file is skipped with a warning,
    so one bad user profile does not hide the others."""
    rows = []
    seen: set[Path] = set()
    for name, path in sorted(available(dirs).items()):
        if name.startswith("_") or path in seen or path.stem != name:
            continue
        seen.add(path)
        try:
            data = _read_yaml(path)
            aliases = data.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise ProfileError(f"{path}: aliases: expected a list of names, got {aliases!r}"[:200])
        except ProfileError as exc:
            if warn is not None:
                warn(str(exc))
            continue
        rows.append((name, list(aliases), str(data.get("description", "")), path))
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
    runtime = _runtime_layer(layers, config, sets)
    if runtime is not None:
        layers.append(runtime)
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


RUNTIME_DEFAULTS = {"onnx": "_onnx"}  # runtime -> the shared file its defaults live in


def _runtime_layer(chain: list[Layer], config: ProjectConfig, sets: list[str] | None) -> Layer | None:
    """The runtime's own defaults (requirements, export stage, slimming) for a profile whose runtime is not the
    torch stack _base.yaml describes: applied over the profile chain, under the project config and --set, so
    `--set runtime=onnx` switches any profile and a user's own keys still win."""
    layers = [*chain, Layer("config", config.overrides), parse_set(sets or [])]
    runtime = _merge(layers)[0].get("runtime", "torch")
    name = RUNTIME_DEFAULTS.get(runtime) if isinstance(runtime, str) else None
    if name is None:
        return None
    path = resources.profiles_dir() / f"{name}.yaml"
    return Layer(str(path), _read_yaml(path))


def to_yaml(profile: Profile) -> str:
    """The resolved profile as YAML (stable key order, no Python tags)."""
    data = profile.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def json_schema() -> dict[str, Any]:
    """One JSON schema for bgeimg.yaml and profile files (editors complete and check both): every profile key
    optional (a file sets only what it changes), plus `extends` (profile files) and the project keys."""
    schema = Profile.model_json_schema()
    schema.pop("required", None)
    props = schema["properties"]
    props.pop("name", None)  # a profile's name is its file name
    # `model:` also takes the short form (parse_model_ref): hf://org/name@revision, a directory, or none
    props["model"] = {"anyOf": [{"type": "string", "description": "hf://org/name@revision, a local directory, or "
                                 "none"}, props["model"]]}
    props["extends"] = {"type": "string", "description": "the profile this one builds on"}
    props["profile"] = {"type": "string", "description": "bgeimg.yaml: the default profile"}
    props["profiles_dir"] = {"type": "string", "description": "bgeimg.yaml: a directory of your own profiles"}
    props["registry"] = {"type": "string", "description": "bgeimg.yaml: where push goes, HOST[:PORT][/NAMESPACE]"}
    props["tags"] = {"type": "object", "description": "bgeimg.yaml: tag rules (scheme(s), prefix, suffix, latest, "
                     "onlatest, long_commit, timestamp_format, timezone, major_zero, edge_branch)"}
    schema["title"] = "bgeimg project config and profile"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
