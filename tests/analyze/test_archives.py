"""analyze on hand-built archives: exact sizes, waste, history mapping, layouts, compression, platforms, gates."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from analyze_archives import Image, Layer, write_legacy_save, write_oci_dir, write_oci_save

from bgeimg.analyze import analyze, compare


def blob(n: int, seed: int) -> bytes:
    """n bytes that compress poorly, so compressed and uncompressed sizes differ in a checkable way."""
    return (os.urandom(n) if seed < 0 else bytes((i * 131 + seed * 7 + (i >> 7)) % 251 for i in range(n)))


def waste_image(compression=("none", "gzip", "none", "zstd")) -> Image:
    """A file written four times (overwritten three), a deleted directory, an opaque directory, a deleted
    file, a symlink."""
    return Image([
        Layer([("dir", "etc"), ("file", "etc/base.txt", blob(100, 1)), ("symlink", "etc/link", "base.txt"),
               ("dir", "data"), ("file", "data/a.bin", blob(1000, 2)),
               ("dir", "cache"), ("file", "cache/x", blob(300, 3)), ("dir", "cache/sub"),
               ("file", "cache/sub/y", blob(200, 4)),
               ("dir", "opt"), ("dir", "opt/o"), ("file", "opt/o/keep", blob(50, 5)),
               ("file", "opt/o/gone", blob(70, 6))], compression[0]),
        Layer([("file", "data/a.bin", blob(2000, 7)), ("whiteout", "cache"), ("dir", "opt/o"), ("opaque", "opt/o"),
               ("file", "opt/o/new", blob(10, 8))], compression[1]),
        Layer([("file", "data/a.bin", blob(3000, 9)), ("dir", "tmp"), ("file", "tmp/t", blob(400, 10))],
              compression[2]),
        Layer([("file", "data/a.bin", blob(4000, 11)), ("whiteout", "tmp/t")], compression[3]),
    ])


# Derived from what waste_image writes: every hidden copy.
OVERWRITTEN = 1000 + 2000 + 3000  # a.bin: three copies hidden by the fourth
DELETED_DIR = 300 + 200  # /cache, whole subtree
OPAQUE_HIDDEN = 50 + 70  # /opt/o below the opaque marker
DELETED_FILE = 400  # /tmp/t


def check_waste(report, image: Image) -> None:
    written = sum(sum(len(e[2]) for e in layer.entries if e[0] == "file") + sum(
        len(e[2]) for e in layer.entries if e[0] == "symlink") for layer in image.layers)
    wasted = OVERWRITTEN + DELETED_DIR + OPAQUE_HIDDEN + DELETED_FILE
    assert report.waste.wasted_bytes == wasted
    assert report.waste.efficiency == pytest.approx(1 - wasted / written, abs=1e-6)
    by_path = {f.path: f for f in report.waste.files}
    assert by_path["/data/a.bin"].copies == 4 and by_path["/data/a.bin"].wasted == OVERWRITTEN
    assert by_path["/data/a.bin"].total == 10000 and by_path["/data/a.bin"].removed_in is None
    assert by_path["/cache/"].wasted == DELETED_DIR and by_path["/cache/"].copies == 2
    assert by_path["/cache/"].removed_in == 1
    assert by_path["/opt/o/keep"].wasted + by_path["/opt/o/gone"].wasted == OPAQUE_HIDDEN
    assert by_path["/tmp/t"].removed_in == 3
    # dive's figure: every copy of a path seen in more than one layer (a.bin x4, /tmp/t + its whiteout)
    assert report.waste.dive_wasted_bytes == 10000 + 400
    final = report.final_files
    assert final["/data/a.bin"] == 4000 and "/opt/o/new" in final
    assert not any(p.startswith(("/cache", "/tmp/t", "/opt/o/keep", "/opt/o/gone")) for p in final)


def check_layers(report, image: Image) -> None:
    assert len(report.layers) == len(image.layers)
    for got, want in zip(report.layers, image.layers):
        assert got.size == want.size
        assert got.tar_size == len(want.tar)  # exact, counted from the decompressed stream
        assert got.diff_id == want.diff_id
        assert got.compression == want.compression
        assert got.compressed_size == (len(want.blob) if want.compression != "none" else None)
    assert report.size == sum(layer.size for layer in image.layers)


def test_legacy_save_waste_and_sizes(tmp_path):
    image = waste_image(("none", "none", "none", "none"))
    report = analyze(str(write_legacy_save(tmp_path / "legacy.tar", image)))
    assert report.source == "archive" and report.platform == "linux/amd64"
    check_layers(report, image)
    check_waste(report, image)


def test_oci_save_with_gzip_and_zstd_layers(tmp_path):
    image = waste_image(("gzip", "zstd", "none", "gzip"))
    report = analyze(str(write_oci_save(tmp_path / "oci.tar", image)))
    check_layers(report, image)
    check_waste(report, image)
    assert [layer.digest for layer in report.layers] == [layer.digest for layer in image.layers]


def test_gzipped_save_archive_is_read_as_a_stream(tmp_path):
    image = waste_image()
    plain = write_legacy_save(tmp_path / "legacy.tar", image)
    gz = tmp_path / "legacy.tar.gz"
    with open(plain, "rb") as src, __import__("gzip").open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    report = analyze(str(gz))
    check_layers(report, image)
    check_waste(report, image)


def test_empty_layer_history_maps_kth_entry_to_kth_layer(tmp_path):
    layers = [Layer([("file", f"f{i}", blob(10 * (i + 1), i))]) for i in range(3)]
    history = [
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": True},
        {"created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": True},
        {"created_by": "|1 X=2 /bin/sh -c apt-get install -y foo"},
        {"created_by": "WORKDIR /opt/app", "empty_layer": True},
        {"created_by": "COPY server/ /opt/app/ # buildkit"},
        {"created_by": "LABEL a=b", "empty_layer": True},
    ]
    report = analyze(str(write_legacy_save(tmp_path / "h.tar", Image(layers, history=history))))
    assert [layer.instruction for layer in report.layers] == [
        "ADD file:abc in /", "RUN apt-get install -y foo", "COPY server/ /opt/app/"]
    assert report.layers[0].category == "base image"  # the base image's history ends at CMD
    assert [layer.size for layer in report.layers] == [10, 20, 30]
    assert not report.warnings


def test_missing_and_mismatched_history(tmp_path):
    layers = [Layer([("file", f"f{i}", blob(5, i))]) for i in range(3)]
    none = analyze(str(write_legacy_save(tmp_path / "none.tar", Image(layers, history=[]))))
    assert [layer.instruction for layer in none.layers] == [None, None, None]
    assert any("no history" in w for w in none.warnings)
    short = analyze(str(write_legacy_save(tmp_path / "short.tar", Image(layers, history=[
        {"created_by": "/bin/sh -c echo two"}, {"created_by": "/bin/sh -c echo three"}]))))
    assert [layer.instruction for layer in short.layers] == [None, "RUN echo two", "RUN echo three"]
    assert any("matched from the last layer" in w for w in short.warnings)


def two_platforms() -> dict[str, Image]:
    amd = Image([Layer([("file", "bin/app", blob(700, 1))], "gzip"), Layer([("file", "x", blob(30, 2))], "zstd")])
    arm = Image([Layer([("file", "bin/app", blob(900, 3))], "gzip")], arch="arm64")
    return {"linux/amd64": amd, "linux/arm64": arm}


def test_two_platform_oci_index_nested_with_attestation(tmp_path):
    images = two_platforms()
    root = write_oci_dir(tmp_path / "layout", images)
    default = analyze(str(root))  # the host's platform (amd64 here)
    assert default.source == "oci" and default.platform == "linux/amd64"
    check_layers(default, images["linux/amd64"])
    arm = analyze(str(root), platform="linux/arm64")
    assert arm.platform == "linux/arm64"
    check_layers(arm, images["linux/arm64"])
    assert arm.compressed_size == len(images["linux/arm64"].layers[0].blob)
    assert arm.manifest_digest != default.manifest_digest


def test_python_distributions_from_record_and_directories(tmp_path):
    site = "opt/venv/lib/python3.11/site-packages"
    torch_files = {f"{site}/torch/__init__.py": blob(1000, 1), f"{site}/torch/lib/libtorch.so": blob(5000, 2)}
    record = "".join(f"{p[len(site) + 1:]},sha256=x,{len(d)}\n" for p, d in torch_files.items())
    record += "torch-2.0.dist-info/RECORD,,\n"
    entries = [("file", p, d) for p, d in torch_files.items()]
    entries += [("file", f"{site}/torch-2.0.dist-info/RECORD", record.encode()),
                ("file", f"{site}/torch/__pycache__/x.pyc", blob(300, 3)),  # not in RECORD: byte code made later
                ("file", f"{site}/loose/mod.py", blob(200, 4))]  # no RECORD at all
    image = Image([Layer([("file", "etc/os-release", blob(10, 0))]), Layer(entries)])
    report = analyze(str(write_legacy_save(tmp_path / "py.tar", image)))
    pk = {p.name: p for p in report.packages}
    assert pk["torch"].version == "2.0"
    assert pk["torch"].size == 1000 + 5000 + 300 + len(record.encode())
    assert pk["loose"].size == 200
    assert report.packages[0].name == "torch"
    assert report.layers[1].category == "Python dependencies"


def test_categories_of_a_bgeimg_like_image(tmp_path):
    image = Image([
        Layer([("file", "usr/lib/libc.so", blob(500, 1))]),
        Layer([("file", "usr/lib/x86_64-linux-gnu/libgomp.so", blob(300, 2)), ("file", "etc/passwd", blob(10, 3))]),
        Layer([("file", "opt/venv/lib/python3.11/site-packages/numpy/core.so", blob(800, 4))]),
        Layer([("file", "opt/model/model.safetensors", blob(900, 5)), ("file", "opt/model/config.json", b"{}")]),
        Layer([("file", "opt/app/bge_server/app.py", blob(50, 6))]),
    ], history=[
        {"created_by": "/bin/sh -c #(nop) ADD file:deadbeef in / "},
        {"created_by": "/bin/sh -c #(nop)  CMD [\"python3\"]", "empty_layer": True},
        {"created_by": "RUN /bin/sh -c apt-get update && apt-get install -y libgomp1 # buildkit"},
        {"created_by": "COPY /opt/venv /opt/venv # buildkit"},
        {"created_by": "COPY model/ /opt/model/ # buildkit"},
        {"created_by": "COPY server/ /opt/app/ # buildkit"},
    ], labels={"io.bgeimg.profile": "cpu-slim"}, env=["BGE_MODEL_DIR=/opt/model"])
    report = analyze(str(write_legacy_save(tmp_path / "cat.tar", image)))
    assert [layer.category for layer in report.layers] == [
        "base image", "system packages", "Python dependencies", "model weights", "app code"]
    assert report.categories["model weights"] == 902
    assert report.labels["io.bgeimg.profile"] == "cpu-slim"


def test_compare_two_archives(tmp_path):
    site = "opt/venv/lib/python3.11/site-packages"
    base = Layer([("file", "usr/bin/python3", blob(400, 1))])

    def venv(pkgs):
        entries = []
        for name, (ver, size) in pkgs.items():
            entries.append(("file", f"{site}/{name}/__init__.py", blob(size, 2)))
            rec = f"{name}/__init__.py,,{size}\n{name}-{ver}.dist-info/RECORD,,\n".encode()
            entries.append(("file", f"{site}/{name}-{ver}.dist-info/RECORD", rec))
        return Layer(entries)

    a = Image([base, venv({"torch": ("2.0", 7000), "scipy": ("1.0", 900)})])
    b = Image([base, venv({"torch": ("2.1", 7500), "onnx": ("1.0", 300)})])
    ra = analyze(str(write_legacy_save(tmp_path / "a.tar", a)))
    rb = analyze(str(write_legacy_save(tmp_path / "b.tar", b)))
    cmp = compare(ra, rb)
    assert cmp.shared_layers == [base.diff_id] and cmp.shared_bytes == base.size
    assert [c.name for c in cmp.only_a_packages] == ["scipy"]
    assert [c.name for c in cmp.only_b_packages] == ["onnx"]
    torch = next(c for c in cmp.changed_packages if c.name == "torch")
    assert (torch.version_a, torch.version_b) == ("2.0", "2.1")
    assert torch.diff == rb.packages[0].size - ra.packages[0].size
    size = next(r for r in cmp.totals if r.name == "size")
    assert size.diff == sum(layer.size for layer in b.layers) - sum(layer.size for layer in a.layers)
    rows = {r.name: r for r in cmp.differing_files}
    assert cmp.differing_files[0].name == f"/{site}/scipy/__init__.py" and cmp.differing_files[0].diff == -900
    assert rows[f"/{site}/torch/__init__.py"].diff == 500 and rows[f"/{site}/onnx/__init__.py"].b == 300


# ---- through the CLI: JSON schema, gates, exit codes ---------------------------------------------------------------

def test_cli_json_and_gates(tmp_path, bgeimg):
    image = waste_image()
    path = str(write_oci_save(tmp_path / "oci.tar", image))
    total = sum(layer.size for layer in image.layers)
    wasted = OVERWRITTEN + DELETED_DIR + OPAQUE_HIDDEN + DELETED_FILE
    ok = bgeimg("analyze", path, "--json", "--max-size", f"{total}B", "--max-wasted", f"{wasted}")
    assert ok.code == 0, ok.err
    doc = ok.json
    assert doc["schema_version"] == 1 and doc["kind"] == "image"
    assert doc["size"] == total and doc["waste"]["wasted_bytes"] == wasted
    assert [g["passed"] for g in doc["gates"]] == [True, True]
    assert [layer["tar_size"] for layer in doc["layers"]] == [len(layer.tar) for layer in image.layers]

    too_big = bgeimg("analyze", path, "--max-size", f"{total - 1}B", "--min-efficiency", "0.1")
    assert too_big.code == 1
    assert "max-size" in too_big.err and "min-efficiency" not in too_big.err and "Traceback" not in too_big.err
    assert "FAIL" in too_big.out and "pass" in too_big.out

    inefficient = bgeimg("analyze", path, "--min-efficiency", "99%", "--json")
    assert inefficient.code == 1 and inefficient.json["gates"][0]["passed"] is False
    assert "min-efficiency" in inefficient.err


def test_cli_compare_renders_side_by_side(tmp_path, bgeimg):
    a = write_legacy_save(tmp_path / "a.tar", waste_image(("none",) * 4))
    b = write_oci_save(tmp_path / "b.tar", Image([Layer([("file", "data/a.bin", blob(123, 1))])]))
    r = bgeimg("analyze", str(a), str(b), "--max-size", "1kB")
    assert r.code == 0, r.err
    assert "side by side" in r.out and "/data/a.bin" in r.out and "PASS" in r.out
    j = bgeimg("analyze", str(a), str(b), "--json")
    assert j.json["kind"] == "comparison" and j.json["b"]["size"] == 123


# ---- bad inputs: one line, the documented exit code, no traceback --------------------------------------------------

def one_line_error(r, code: int, *words: str) -> None:
    assert r.code == code, (r.code, r.out, r.err)
    lines = [line for line in r.err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in r.err, r.err


def test_bad_inputs(tmp_path, bgeimg):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n" * 100)
    one_line_error(bgeimg("analyze", str(text)), 2, "not an image archive")

    full = write_legacy_save(tmp_path / "full.tar", waste_image(("none",) * 4))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    one_line_error(bgeimg("analyze", str(cut)), 2, "truncated")

    for kind in ("gzip", "zstd"):  # a well-formed archive whose compressed layer stops short
        image = waste_image((kind,) * 4)
        image.layers[1].blob = image.layers[1].blob[:-20]
        cut_layer = write_oci_save(tmp_path / f"cut-{kind}.tar", image)
        one_line_error(bgeimg("analyze", str(cut_layer)), 2, "truncated or corrupt")

    one_line_error(bgeimg("analyze", str(full), "--platform", "linux/arm64"), 2, "linux/amd64", "linux/arm64")
    root = write_oci_dir(tmp_path / "layout", two_platforms())
    one_line_error(bgeimg("analyze", str(root), "--platform", "linux/s390x"), 2, "linux/amd64, linux/arm64")

    bad = tmp_path / "bad-manifest.tar"
    import io
    import tarfile  # noqa: E401
    with tarfile.open(bad, "w") as tf:
        data = b'{"not": "a list"}'
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    one_line_error(bgeimg("analyze", str(bad)), 2, "malformed manifest.json")

    broken_index = tmp_path / "broken-layout"
    shutil.copytree(root, broken_index)
    (broken_index / "index.json").write_text('{"manifests": [{"mediaType": "x"}]}')
    one_line_error(bgeimg("analyze", str(broken_index)), 2, "malformed index")

    one_line_error(bgeimg("analyze", str(tmp_path / "missing.tar")), 2, "no such file")
    one_line_error(bgeimg("analyze", str(full), "--max-size", "huge"), 2, "--max-size")


def test_engine_unknown_image(bgeimg, docker_api):
    one_line_error(bgeimg("analyze", "bgeimg-test-analyze/does-not-exist:nope"), 2, "unknown image")


def test_dive_agrees_on_a_hand_built_archive(tmp_path):
    """dive reads the same legacy archive: its wasted bytes and efficiency are our dive-style figures exactly;
    its image size omits symlink target lengths, which the engine (and bgeimg) count."""
    import json

    dive = shutil.which("dive") or str(Path(os.sys.executable).parent / "dive")
    image = waste_image(("none",) * 4)
    path = write_legacy_save(tmp_path / "legacy.tar", image)
    out = tmp_path / "dive.json"
    subprocess.run([dive, "--source", "docker-archive", "--ci", "--json", str(out), str(path)], check=True,
                   capture_output=True, env={**os.environ, "CI": "true"})
    d = json.loads(out.read_text())
    report = analyze(str(path))
    assert d["image"]["inefficientBytes"] == report.waste.dive_wasted_bytes
    assert d["image"]["efficiencyScore"] == pytest.approx(report.waste.dive_efficiency, abs=1e-6)
    symlink_bytes = len("base.txt")
    assert d["image"]["sizeBytes"] == report.size - symlink_bytes
    assert [layer["sizeBytes"] for layer in d["layer"]] == [
        layer.size - (symlink_bytes if i == 0 else 0) for i, layer in enumerate(report.layers)]
    # ours is smaller: dive counts the copy that stays and ignores the deleted directory and opaque directory
    assert report.waste.wasted_bytes != d["image"]["inefficientBytes"]


def test_plain_oci_archive_without_docker_manifest(tmp_path):
    image = waste_image(("zstd", "gzip", "gzip", "none"))
    report = analyze(str(write_oci_save(tmp_path / "oci.tar", image, docker_manifest=False)))
    check_layers(report, image)
    check_waste(report, image)
    assert report.manifest_digest is not None


@pytest.mark.parametrize("fmt", ["pax", "gnu"])
def test_long_names_links_and_special_files(tmp_path, fmt):
    import tarfile

    deep = "opt/venv/lib/python3.11/site-packages/" + "/".join(["a-rather-long-directory-name"] * 6) + "/mod.py"
    long_target = "../" * 3 + "x" * 150
    layer = Layer([("file", deep, blob(321, 1)), ("file", "usr/bin/tool", blob(1000, 2)),
                   ("hardlink", "usr/bin/tool-alias", "usr/bin/tool"), ("symlink", "usr/bin/t", "tool"),
                   ("symlink", "usr/lib/long", long_target), ("fifo", "run/pipe")],
                  fmt=tarfile.PAX_FORMAT if fmt == "pax" else tarfile.GNU_FORMAT)
    assert len(deep) > 100 and len(long_target) > 100
    report = analyze(str(write_legacy_save(tmp_path / "l.tar", Image([layer]))))
    # hard links count once (at their target), a fifo nothing, symlinks their target length: as `docker history`
    assert report.layers[0].size == 321 + 1000 + len("tool") + len(long_target)
    assert report.layers[0].symlink_bytes == len("tool") + len(long_target)
    assert report.final_files["/" + deep] == 321
    assert report.layers[0].files == 6
