"""The layer cache: a layer read once, from any image; a second analyze of a seen image, or of a relabelled build on
seen layers, reads no layer (from the engine: no `docker save`); entries keyed by scanner and probe mode; bounded;
a broken entry is a miss."""

from __future__ import annotations

import io
import os

import pytest
from analyze_archives import Image, Layer, write_legacy_save

from bgeimg.analyze.cache import LayerCache
from bgeimg.analyze.report import build_report
from bgeimg.analyze.sources import from_archive, from_engine

BOUND = 1 << 30  # the tests' default is an empty cache (conftest); these give it room


@pytest.mark.engine
def test_engine_second_run_skips_docker_save(small_image, small_archive, docker_api, tmp_path, monkeypatch):
    import docker

    saves: list[str] = []
    real = docker.APIClient.get_image

    def counting(self, image, chunk_size=2 << 20):
        saves.append(image)
        return real(self, image, chunk_size)

    monkeypatch.setattr(docker.APIClient, "get_image", counting)
    monkeypatch.setenv("BGEIMG_ENGINE_STORE", "0")  # the cache in front of the export (the store: test_engine_store)
    root = tmp_path / "cache"
    # an archive reads the cache but never writes it (its diff_ids are not proven by a seek-over walk)
    plain = build_report(from_archive(small_archive, cache=LayerCache(root, max_bytes=BOUND))).to_json()
    assert not list(root.glob("layers/*"))
    first = build_report(from_engine(small_image, cache=LayerCache(root, max_bytes=BOUND)))
    assert len(saves) == 1 and len(list(root.glob("layers/*"))) == len(first.layers)
    cache = LayerCache(root, max_bytes=BOUND)
    second = build_report(from_engine(small_image, cache=cache))
    assert len(saves) == 1 and cache.hits == len(first.layers)  # the inspect and the cache: no save
    assert second.to_json() == first.to_json()
    cached_archive = LayerCache(root, max_bytes=BOUND)
    from_archive_again = build_report(from_archive(small_archive, cache=cached_archive)).to_json()
    assert cached_archive.hits == len(first.layers) and from_archive_again == plain
    # a relabelled build on the same layers: its config was never seen, and still no save (inspect + history)
    relabel = f"bgeimg-test-analyze/relabel:{os.urandom(4).hex()}"
    for chunk in docker_api.build(fileobj=io.BytesIO(f"FROM {small_image}\nLABEL relabel={relabel}\n".encode()),
                                  tag=relabel, rm=True, decode=True):
        assert "error" not in chunk, chunk
    try:
        cache = LayerCache(root, max_bytes=BOUND)
        fast = build_report(from_engine(relabel, cache=cache)).to_json()
        assert len(saves) == 1 and cache.hits == len(first.layers)
        full = build_report(from_engine(relabel)).to_json()  # no cache: the save, the real config
        assert len(saves) == 2
        for doc in (fast, full):  # the history API gives entry times to the second
            for la in doc["layers"]:
                la["created"] = la["created"][:19]
        assert fast == full and fast["labels"]["relabel"] == relabel
        assert [la["diff_id"] for la in fast["layers"]] == [la.diff_id for la in first.layers]
    finally:
        docker_api.remove_image(relabel)
    # --advise scans are kept apart: the engine is asked again
    build_report(from_engine(small_image, probe=True, cache=LayerCache(root, max_bytes=BOUND)))
    assert len(saves) == 3


def scan_of(tmp_path, n: int):
    image = Image([Layer([("file", f"opt/f{n}-{i}", os.urandom(100 + i)) for i in range(50)])])
    data = from_archive(write_legacy_save(tmp_path / f"img{n}.tar", image))
    return image.layers[0].diff_id, data.layers[0].scan


def test_round_trip_scanner_key_and_broken_entries(tmp_path):
    diff_id, scan = scan_of(tmp_path, 0)
    scan.records["/x.dist-info/RECORD"] = bytes(range(256))
    scan.py_imports["/a.py"] = frozenset({"os", "json"})
    scan.files["/odd-\udcff-name"] = 3
    cache = LayerCache(tmp_path / "c", max_bytes=BOUND)
    cache.put_scan(diff_id, False, scan)
    got = cache.get_scan(diff_id, False)
    assert got == scan  # every field, bytes and undecodable names included
    assert cache.get_scan(diff_id, True) is None  # probe scans are a different entry
    other = LayerCache(tmp_path / "c", max_bytes=BOUND)
    other.scanner = "changed"
    assert other.get_scan(diff_id, False) is None  # a changed scanner never reads old results
    (entry,) = (tmp_path / "c" / "layers").iterdir()
    entry.write_bytes(b"not zlib")
    assert cache.get_scan(diff_id, False) is None and not entry.exists()  # broken: a miss, and removed
    cache.put_config(b'{"a": 1}')
    digest = "sha256:" + __import__("hashlib").sha256(b'{"a": 1}').hexdigest()
    assert cache.get_config(digest) == b'{"a": 1}'
    (tmp_path / "c" / "configs" / digest[7:]).write_bytes(b'{"a": 2}')
    assert cache.get_config(digest) is None  # checked against its digest on every read


def test_size_bound_drops_least_recently_used(tmp_path):
    scans = [scan_of(tmp_path, n) for n in range(3)]
    probe = LayerCache(tmp_path / "p", max_bytes=BOUND)
    probe.put_scan(*scans[0][:1], False, scans[0][1])
    one = next((tmp_path / "p" / "layers").iterdir()).stat().st_size
    cache = LayerCache(tmp_path / "c", max_bytes=int(one * 2.5))
    for i, (diff_id, scan) in enumerate(scans[:2]):
        cache.put_scan(diff_id, False, scan)
        os.utime(next(p for p in (tmp_path / "c" / "layers").iterdir() if p.name.endswith(diff_id[7:])),
                 (1000 + i, 1000 + i))
    assert cache.get_scan(scans[0][0], False) is not None  # used now: the most recent
    cache.put_scan(scans[2][0], False, scans[2][1])  # over the bound: the least recently used goes
    assert cache.has_scan(scans[0][0], False) and cache.has_scan(scans[2][0], False)
    assert not cache.has_scan(scans[1][0], False)


@pytest.mark.parametrize(("entries", "layers", "flags"), [
    ([5, 0, 7], [5, 0, 7], [True, True, True]),  # a layer with no content, no empty entry to mistake it for
    ([3, 0], [3], [True, False]),
    ([8192, 0, 190], [3, 120], [True, False, True]),  # a containerd store: disk usage, not content bytes
    ([5, 0, 0, 7], [5, 0, 7], None),  # which zero-size entry made the empty layer: unknown -> the save
    ([5, 0], [5, 0, 7], None),  # fewer entries than layers (stripped history): the save
    ([], [], []),
])
def test_history_entries_matched_to_layers(entries, layers, flags):
    from bgeimg.analyze.sources import _layer_entries

    assert _layer_entries(entries, layers) == flags
