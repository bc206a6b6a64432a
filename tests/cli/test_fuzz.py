"""Fuzz the loaders that read user files (profiles, project config, --set values) and the bundle reader: any
input is either accepted or refused with a BgeimgError (one line), never another exception. ~20 s in all."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgeimg import profile as profiles
from bgeimg.errors import BgeimgError
from bgeimg.oci.zstd import compress as zstd_compress
from bgeimg.operate import bundle

FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["server", "port", "model", "aliases", "extends", "requirements", "labels", "platforms", "device", "env",
         "registry", "tags", "profile", "mirrors", "x"]), inner, max_size=4)), max_leaves=12)


def _yaml_text(value) -> str:
    import yaml

    return yaml.safe_dump(value)


@FAST
@given(st.one_of(st.binary(max_size=200), yaml_values.map(lambda v: _yaml_text(v).encode())))
def test_config_loader_never_crashes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bgeimg.yaml"
        path.write_bytes(data)
        try:
            cfg = profiles.load_config(path)
            profiles.resolve(None, config=cfg, sets=[], profile_dirs=[])
        except BgeimgError:
            pass


@FAST
@given(st.one_of(st.binary(max_size=200), yaml_values.map(lambda v: _yaml_text(v).encode())))
def test_user_profile_loader_never_crashes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "mine.yaml").write_bytes(data)
        profiles.list_profiles(profiles.search_dirs([Path(d)]), warn=lambda _text: None)
        try:
            profiles.resolve("mine", config=None, sets=[], profile_dirs=[Path(d)])
        except BgeimgError:
            pass


@FAST
@given(st.sampled_from(["server.port", "model", "platforms", "requirements", "env.A", "labels.a", "device"]),
       st.text(max_size=30))
def test_set_values_never_crash(key: str, value: str) -> None:
    try:
        profiles.resolve(None, config=None, sets=[f"{key}={value}"], profile_dirs=[])
    except BgeimgError:
        pass


def _bundle_bytes(manifest: bytes, cut: int | None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    data = zstd_compress(raw.getvalue())
    return data[:cut] if cut is not None else data


@FAST
@given(st.one_of(st.binary(max_size=300).map(lambda b: (b, None)),
                 st.tuples(yaml_values.map(lambda v: __import__("json").dumps(
                     {"format": bundle.FORMAT, "images": v}).encode()), st.one_of(st.none(), st.integers(0, 200)))))
def test_bundle_reader_never_crashes(case) -> None:
    data, cut = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.tar.zst"
        path.write_bytes(data if cut is None and not data.startswith(b"{") else _bundle_bytes(data, cut))
        with pytest.raises(BgeimgError):
            members = bundle.verify(path)
            if not members:
                raise BgeimgError("empty")  # an empty but valid bundle is fine too
