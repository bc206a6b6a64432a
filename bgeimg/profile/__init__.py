"""Profiles: the schema (schema.py) and how one is resolved from files, the project config and --set (resolve.py).

A profile is resolved in layers, later ones winning key by key:

    profile chain (extends, root first) -> project config (bgeimg.yaml) -> --set key.path=value

Every leaf remembers which layer set it, so a validation error names the file (or the --set) it came from,
the key path, what is allowed, and on a typo the closest key.
"""

from bgeimg.profile.resolve import (
    CONFIG_FILE,
    ProjectConfig,
    Resolved,
    available,
    json_schema,
    list_profiles,
    load_config,
    parse_set,
    resolve,
    search_dirs,
    to_yaml,
)
from bgeimg.profile.schema import Mirrors, ModelSpec, Profile, Server, Slim, User, mirror_image

__all__ = [
    "CONFIG_FILE", "Mirrors", "ModelSpec", "Profile", "ProjectConfig", "Resolved", "Server", "Slim", "User",
    "available", "json_schema", "list_profiles", "load_config", "mirror_image", "parse_set", "resolve", "search_dirs", "to_yaml",
]
