"""analyze reading the engine's own store (bgeimg.analyze.store) instead of `docker save`: the same scans, field
for field, as the export of the same real image, on a Dockerfile with every tar feature a layer can carry; and
the export taken whenever the store is not what it should be."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
from analyze_images import build_planted, dist

from bgeimg.analyze import sources, store
from bgeimg.analyze.report import build_report

pytestmark = pytest.mark.engine

SITE = "/opt/venv/lib/python3.11/site-packages"
LONG = "d" * 60 + "/" + "f" * 120  # over ustar's 100 bytes: a PAX or GNU long-name record in the tar
DOCKERFILE = f"""FROM python:3.11-slim
COPY pkg/ {SITE}/
RUN mkdir -p /opt/keep /opt/gone && echo a > /opt/keep/a && echo b > /opt/gone/b && head -c 70000 /bin/ls > /opt/x
RUN rm -rf /opt/gone && rm -rf /opt/keep && mkdir /opt/keep && echo new > /opt/keep/c \\
 && ln /opt/x /opt/x.hard && ln -s /opt/x /opt/x.sym && mkdir -p /opt/$(dirname {LONG}) && echo long > /opt/{LONG} \\
 && touch "$(printf '/opt/odd-\\377-name')" && mkfifo /opt/fifo
RUN echo '#!/bin/sh' > /usr/local/bin/entrypoint.sh && echo 'import json, numpy' > /opt/app.py
LABEL io.bgeimg.test=engine-store
"""


@pytest.fixture(scope="module")
def store_image(docker_api) -> str:
    files = {f"pkg/{k}": v for k, v in dist("storepkg", {"storepkg/__init__.py": b"import os\n"}).items()}
    return build_planted(docker_api, "store", DOCKERFILE, files)


def _read(ref: str, monkeypatch, use_store: bool, probe: bool):
    monkeypatch.setenv("BGEIMG_ENGINE_STORE", "1" if use_store else "0")
    return sources.from_engine(ref, probe=probe, cache=None)


@pytest.mark.parametrize("probe", [False, True], ids=["plain", "advise"])
def test_the_store_gives_the_exports_scans_field_for_field(docker_api, store_image, monkeypatch, probe):
    found = store.store_root(docker_api)
    assert found is not None and found[0] == "classic", "the test bed's Docker 20.10: an overlay2 store read here"
    root = found[1]
    exported = _read(store_image, monkeypatch, False, probe)
    stored = _read(store_image, monkeypatch, True, probe)
    assert stored.config == exported.config and stored.config_digest == exported.config_digest
    assert len(stored.layers) == len(exported.layers) >= 4
    info = docker_api.inspect_image(store_image)
    chains = store.chain_ids(info["RootFS"]["Layers"])
    for chain, a, b in zip(chains, stored.layers, exported.layers):
        direct = store.scan_stored_layer(root, chain, a.diff_id, probe, "layer")  # the store itself, no cache
        assert dataclasses.asdict(direct) == dataclasses.asdict(b.scan), a.diff_id
        assert dataclasses.asdict(a.scan) == dataclasses.asdict(b.scan), a.diff_id
    # the features the Dockerfile planted are there, so the equality above covered them
    top = exported.layers[-2].scan
    assert "/opt/gone" in top.whiteouts and "/opt/keep" in top.opaque
    assert top.files["/opt/x.hard"] == 0 and "/opt/x.sym" in top.symlinks
    assert "/opt/" + LONG in top.files and "/opt/odd-\udcff-name" in top.files and top.files["/opt/fifo"] == 0
    assert any(p.endswith("storepkg-1.0.dist-info/RECORD") for p in exported.layers[-4].scan.records)
    if probe:
        assert "/opt/app.py" in exported.layers[-1].scan.py_imports
    assert build_report(stored).to_json() == build_report(exported).to_json()


def _copy_store(root: Path, dest: Path, image_id: str, chains: list[str]) -> Path:
    """The records of one image copied out of the engine's store (its files left where they are, by symlink)."""
    algo, _, hexd = image_id.partition(":")
    cfg = dest / "image/overlay2/imagedb/content" / algo
    cfg.mkdir(parents=True)
    shutil.copy(root / "image/overlay2/imagedb/content" / algo / hexd, cfg / hexd)
    (dest / "overlay2").mkdir()
    for chain in chains:
        meta = root / "image/overlay2/layerdb/sha256" / chain.partition(":")[2]
        shutil.copytree(meta, dest / "image/overlay2/layerdb/sha256" / meta.name)
        cache_id = (meta / "cache-id").read_text().strip()
        (dest / "overlay2" / cache_id).mkdir(exist_ok=True)
        (dest / "overlay2" / cache_id / "diff").symlink_to(root / "overlay2" / cache_id / "diff")
    return dest


def test_a_store_that_does_not_name_the_image_is_not_read(docker_api, store_image, tmp_path):
    root = store.store_root(docker_api)[1]
    info = docker_api.inspect_image(store_image)
    diff_ids = info["RootFS"]["Layers"]
    chains = store.chain_ids(diff_ids)
    copy = _copy_store(root, tmp_path / "store", info["Id"], chains)
    # the copy reads as the store does ...
    assert sources._from_engine_store(copy, store_image, info, None, False, None).config_digest == info["Id"]
    # ... a layer record naming another diff_id, or a config that does not hash to the id, is refused
    meta = copy / "image/overlay2/layerdb/sha256" / chains[-1].partition(":")[2]
    (meta / "diff").write_text(diff_ids[0])
    with pytest.raises(store.StoreUnreadable, match="another diff_id"):
        sources._from_engine_store(copy, store_image, info, None, False, None)
    algo, _, hexd = info["Id"].partition(":")
    (copy / "image/overlay2/imagedb/content" / algo / hexd).write_bytes(b"{}")
    with pytest.raises(store.StoreUnreadable, match="does not match the image id"):
        sources._from_engine_store(copy, store_image, info, None, False, None)


def test_a_file_is_never_read_through_a_symlink_out_of_its_layer(tmp_path):
    """A record naming a file under a symlinked directory would read outside the layer: refused, so the export
    (which the engine confines) reads it instead."""
    layer = tmp_path / "diff"
    (layer / "usr").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "RECORD").write_text("x" * 10)
    (layer / "usr" / "lib").symlink_to(outside)
    record = b'{"type":1,"name":"usr/lib/RECORD","size":10,"payload":null,"position":0}\n'
    tape = store.Assembled(str(layer.resolve()), [record])
    with pytest.raises(store.StoreUnreadable, match="leaves the layer directory"):
        tape.read(10)
    (layer / "short").write_text("abc")
    tape = store.Assembled(str(layer.resolve()), [b'{"type":1,"name":"short","size":10,"payload":null}'])
    with pytest.raises(store.StoreUnreadable, match="shorter than its record"):
        tape.read(10)
    tape = store.Assembled(str(layer.resolve()), [b'{"type":2,"payload":"AAAA"}', b'{"type":1,"na'])
    with pytest.raises(store.StoreUnreadable, match="tar-split record"):  # a cut record: export, not "corrupt"
        tape.read(10)


def test_a_content_store_blob_is_checked_against_its_digest(tmp_path):
    """The containerd content store is read as a registry is: a blob whose bytes do not hash to its name is
    refused (the export then reads it), whatever the scan made of it."""
    good = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}'
    digest = "sha256:" + hashlib.sha256(good).hexdigest()
    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / digest[7:]).write_bytes(good)
    content = store.ContentStore(tmp_path)
    top = content.get_manifest("", digest)
    assert (top.digest, top.media_type, top.raw) == (digest, "application/vnd.oci.image.index.v1+json", good)
    (blobs / digest[7:]).write_bytes(good.replace(b"[]", b"[{}]"))
    with pytest.raises(store.StoreUnreadable, match="does not match its digest"):
        content.get_blob("", digest)
    with pytest.raises(store.StoreUnreadable, match="not a sha256 digest"):
        content.get_blob("", "sha256:../../etc/passwd")
