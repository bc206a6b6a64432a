"""The push layer cache on its own: entries survive a reload, two writers merge, a damaged file is ignored."""

from __future__ import annotations

from bgeimg.release.layercache import Compressed, LayerCache

DIFF = "sha256:" + "d" * 64
DIGEST = "sha256:" + "c" * 64


def test_round_trip_merge_and_damage(tmp_path) -> None:
    a, b = LayerCache(tmp_path), LayerCache(tmp_path)
    a.record(DIFF, Compressed(DIGEST, 10, 30, "gzip x"))
    a.found(DIGEST, "reg:5000", "one")
    a.save()
    b.record(DIFF, Compressed("sha256:" + "e" * 64, 11, 30, "gzip y"))
    b.found(DIGEST, "reg:5000", "two")
    b.save()  # b never saw a's entries: they are merged, not overwritten
    c = LayerCache(tmp_path)
    assert [e.compression for e in c.lookup(DIFF, "gzip x")] == ["gzip x", "gzip y"]
    assert set(c.seen_in(DIGEST)) == {"reg:5000/one", "reg:5000/two"} and c.diff_size(DIFF) == 30
    c.forget(DIGEST, "reg:5000", "one")
    c.save()
    assert LayerCache(tmp_path).seen_in(DIGEST) == ["reg:5000/two"]
    (tmp_path / "push" / "layers.json").write_text("{not json")
    assert LayerCache(tmp_path).lookup(DIFF, "gzip x") == []  # a hint only: a damaged file means no hints
