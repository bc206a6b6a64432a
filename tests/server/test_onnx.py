"""The ONNX runtime on the host: its answers equal the torch runtime's through the same app, for the real MiniLM
(fp32 and int8), a bge-m3-shaped model (dense, sparse, ColBERT) and a cross-encoder (rerank order), both
shaped like the real ones with random weights (tests/server/onnx_models.py says why). The ONNX forms are made
by templates/export_onnx.py, the script the image's export stage runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from onnx_models import WORDS, exported, make_tiny

pytest.importorskip("onnxruntime")

TEXTS = ["BGE models turn text into vectors.", "The cat sat on the mat.", "Embeddings power semantic search.",
         "How do I bake bread?", "A recipe for baking a loaf of bread", "Quarterly tax filing deadlines " * 20]
TINY_TEXTS = ["the model is fast", "a dense vector for search", "bake the bread in the oven",
              "tax filing deadline " * 10, "cat"]
QUERY = "bake bread"
DOCS = [" ".join(WORDS[i::7][:6]) for i in range(7)] + ["bread bake recipe loaf oven"]


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def forms(tmp_path_factory, minilm_dir):
    """Checkpoints and their ONNX forms, made once for the module."""
    root = tmp_path_factory.mktemp("onnx")
    m3 = make_tiny(root / "tiny-m3", "embed")
    rr = make_tiny(root / "tiny-reranker", "rerank")
    return {
        "minilm": minilm_dir, "minilm-onnx": exported(minilm_dir, root / "minilm-onnx"),
        "minilm-int8": exported(minilm_dir, root / "minilm-int8", quantize="int8"),
        "m3": m3, "m3-onnx": exported(m3, root / "m3-onnx"),
        "rr": rr, "rr-onnx": exported(rr, root / "rr-onnx", "rerank"),
        "rr-int8": exported(rr, root / "rr-int8", "rerank", "int8"),
    }


def test_minilm_answers_equal_the_torch_runtime(make_client, forms) -> None:
    torch_client = make_client(forms["minilm"])
    onnx_client = make_client(forms["minilm-onnx"], runtime="onnx")
    info = onnx_client.get("/info").json()
    assert info["runtime"] == "onnx" and info["dtype"] == "float32" and info["dimension"] == 384
    assert info["max_length"] == 256 and info["pooling"] == "mean" and info["normalize"] is True
    expected = torch_client.post("/embed", json={"inputs": TEXTS}).json()
    got = onnx_client.post("/embed", json={"inputs": TEXTS}).json()
    cos = cosines(got, expected)
    print(f"\nMiniLM fp32 ONNX vs torch: smallest cosine {cos.min():.7f} over {len(TEXTS)} texts")
    assert cos.min() >= 0.9999
    # the same usage count and the same 4xx answers, whatever the runtime
    for path, body in [("/v1/embeddings", {"input": TEXTS[:2]}), ("/embed", {"inputs": "word " * 400, "truncate": False}),
                       ("/embed", {"inputs": ["a"], "return_sparse": True}), ("/rerank", {"query": "q", "texts": ["a"]})]:
        a, b = torch_client.post(path, json=body), onnx_client.post(path, json=body)
        assert a.status_code == b.status_code
        if a.status_code == 200:
            assert a.json()["usage"] == b.json()["usage"]
        else:
            assert a.json() == b.json()
    # one text alone or in a batch of others: the same vector (padding is masked)
    alone = onnx_client.post("/embed", json={"inputs": TEXTS[1]}).json()[0]
    assert np.abs(np.asarray(alone) - np.asarray(got[1])).max() < 1e-5


def test_sorted_sub_batches_answer_in_input_order(make_client, forms) -> None:
    """The encoder sorts a batch by length and runs its halves side by side (onnx_encoder.LANES): every answer
    must still be its own text's, as when the text is sent alone."""
    client = make_client(forms["minilm-onnx"], runtime="onnx", threads=2)
    assert client.get("/info").json()["lanes"] == 2
    texts = [TEXTS[5], "hi", TEXTS[0], "word " * 300, TEXTS[3], "a b", TEXTS[1]]  # lengths out of order
    batch = client.post("/embed", json={"inputs": texts}).json()
    alone = [client.post("/embed", json={"inputs": t}).json()[0] for t in texts]
    assert np.abs(np.asarray(batch) - np.asarray(alone)).max() < 1e-5
    m3 = make_client(forms["m3-onnx"], runtime="onnx", threads=2)
    body = {"return_sparse": True, "return_colbert": True}
    batch = m3.post("/embed", json={"inputs": TINY_TEXTS, **body}).json()
    for text, got in zip(TINY_TEXTS, batch):
        want = m3.post("/embed", json={"inputs": text, **body}).json()[0]
        assert np.abs(np.asarray(got["dense"]) - want["dense"]).max() < 1e-5 and set(got["sparse"]) == set(want["sparse"])
        assert np.asarray(got["colbert"]).shape == np.asarray(want["colbert"]).shape


def test_minilm_int8_stays_close(make_client, forms) -> None:
    manifest = json.loads((forms["minilm-int8"] / "onnx_export.json").read_text())
    torch_client = make_client(forms["minilm"])
    int8_client = make_client(forms["minilm-int8"], runtime="onnx")
    assert int8_client.get("/info").json()["dtype"] == "int8"
    cos = cosines(int8_client.post("/embed", json={"inputs": TEXTS}).json(),
                  torch_client.post("/embed", json={"inputs": TEXTS}).json())
    size = (forms["minilm-int8"] / "model.onnx").stat().st_size / (forms["minilm-onnx"] / "model.onnx").stat().st_size
    print(f"\nMiniLM int8 ({manifest['int8_scope']}) vs torch: smallest cosine {cos.min():.5f}; graph {size:.2f}x fp32")
    assert cos.min() >= 0.99 and size < 0.6


def test_bge_m3_shaped_dense_sparse_and_colbert_equal(make_client, forms) -> None:
    torch_client = make_client(forms["m3"])
    onnx_client = make_client(forms["m3-onnx"], runtime="onnx")
    info = onnx_client.get("/info").json()
    assert info["sparse"] and info["colbert"] and info["pooling"] == "cls" and info["max_length"] == 64
    body = {"inputs": TINY_TEXTS, "return_sparse": True, "return_colbert": True}
    expected, got = torch_client.post("/embed", json=body).json(), onnx_client.post("/embed", json=body).json()
    worst = {"dense": 1.0, "sparse": 0.0, "colbert": 0.0}
    for e, g in zip(expected, got):
        worst["dense"] = min(worst["dense"], float(cosines(g["dense"], e["dense"])))
        assert set(g["sparse"]) == set(e["sparse"])
        worst["sparse"] = max([worst["sparse"], *(abs(g["sparse"][k] - e["sparse"][k]) for k in e["sparse"])])
        assert np.asarray(g["colbert"]).shape == np.asarray(e["colbert"]).shape
        worst["colbert"] = max(worst["colbert"], float(np.abs(np.asarray(g["colbert"]) - e["colbert"]).max()))
    assert sum(len(e["sparse"]) for e in expected) > 10  # the comparison saw real weights
    print(f"\nbge-m3-shaped (random weights) ONNX vs torch: dense cosine {worst['dense']:.7f}, sparse max diff "
          f"{worst['sparse']:.2e}, ColBERT max diff {worst['colbert']:.2e}")
    assert worst["dense"] >= 0.9999 and worst["sparse"] <= 1e-4 and worst["colbert"] <= 1e-4


def test_rerank_order_identical_and_int8_top1(make_client, forms) -> None:
    body = {"query": QUERY, "texts": DOCS, "raw_scores": True}
    expected = make_client(forms["rr"], task="rerank").post("/rerank", json=body).json()
    got = make_client(forms["rr-onnx"], task="rerank", runtime="onnx").post("/rerank", json=body).json()
    int8 = make_client(forms["rr-int8"], task="rerank", runtime="onnx").post("/rerank", json=body).json()
    diff = max(abs(a["score"] - b["score"]) for a, b in zip(sorted(expected, key=lambda r: r["index"]),
                                                            sorted(got, key=lambda r: r["index"])))
    print(f"\ncross-encoder (random weights) over {len(DOCS)} texts: fp32 order identical "
          f"{[r['index'] for r in got] == [r['index'] for r in expected]}, largest logit diff {diff:.2e}; "
          f"int8 top-1 identical {int8[0]['index'] == expected[0]['index']}")
    assert [r["index"] for r in got] == [r["index"] for r in expected] and diff < 1e-4
    assert int8[0]["index"] == expected[0]["index"]


def test_a_repository_onnx_folder_is_used_when_it_fits(tmp_path, forms) -> None:
    from bgeimg.context.model import wanted

    repo = tmp_path / "repo"
    shutil.copytree(forms["minilm"], repo)
    (repo / "onnx").mkdir()
    shutil.copy(forms["minilm-onnx"] / "model.onnx", repo / "onnx" / "model.onnx")
    (repo / "onnx" / "model_quantized.onnx").write_bytes(b"another variant")
    names = wanted([p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()], onnx=True)
    assert "onnx/model.onnx" in names and "onnx/model_quantized.onnx" not in names
    assert "onnx/model.onnx" not in wanted(names)  # the torch runtime leaves it behind, as before
    manifest = exported(repo, tmp_path / "out")
    assert manifest and json.loads((tmp_path / "out" / "onnx_export.json").read_text())["source"] == \
        "repository onnx/model.onnx"


def test_unusable_model_directories_say_what_to_do(tmp_path, forms) -> None:
    from bge_server.encoder import ModelUnusable, Settings
    from bge_server.onnx_encoder import OnnxEncoder

    with pytest.raises(ModelUnusable, match="holds a torch checkpoint but no ONNX form.*bgeimg export"):
        OnnxEncoder(Settings(model_dir=forms["minilm"], runtime="onnx"))
    broken = tmp_path / "broken"
    shutil.copytree(forms["minilm-onnx"], broken)
    (broken / "model.onnx").write_bytes((broken / "model.onnx").read_bytes()[:4096])
    with pytest.raises(ModelUnusable, match="is not a usable ONNX graph"):
        OnnxEncoder(Settings(model_dir=broken, runtime="onnx"))


def test_an_architecture_that_cannot_be_exported_is_refused_first(tmp_path) -> None:
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2"}')
    done = subprocess.run([sys.executable, "-m", "bgeimg", "export", str(gpt), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model type 'gpt2'" in done.stderr and "cannot be exported to ONNX" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    from bgeimg import profile as profiles
    from bgeimg.context.assemble import prepare
    from bgeimg.errors import ModelError

    profile = profiles.resolve("onnx-cpu", sets=["model.source=path", f"model.path={gpt}"]).profile
    with pytest.raises(ModelError, match="use runtime: torch") as caught:
        prepare(profile, tmp_path / "context")
    assert caught.value.exit_code == 2 and not (tmp_path / "context" / "Dockerfile").exists()


def test_any_profile_switches_runtime_and_the_onnx_venv_has_no_torch() -> None:
    from bgeimg import profile as profiles
    from bgeimg.errors import ProfileError

    switched = profiles.resolve("cpu-slim", sets=["runtime=onnx"]).profile
    shipped = profiles.resolve("onnx-cpu").profile
    assert switched.requirements == shipped.requirements
    # the same slimming, except that onnx-cpu strips its bytecode for its size target (docs/slimming.md)
    assert shipped.slim.bytecode == "strip" and switched.slim.bytecode == "imported"
    assert switched.slim.model_copy(update={"bytecode": "strip"}) == shipped.slim
    names = {r.split("=")[0].lower() for r in shipped.requirements}
    assert names == {"onnxruntime", "tokenizers", "numpy", "fastapi", "uvicorn", "prometheus_client"}
    assert {"torch", "transformers"} <= {r.split("=")[0] for r in shipped.export_requirements}
    # a user's own keys still win over the runtime's defaults
    assert profiles.resolve("onnx-cpu", sets=["slim.quantize=int8"]).profile.slim.quantize == "int8"
    with pytest.raises(ProfileError, match="CPU only"):
        profiles.resolve("cuda-runtime", sets=["runtime=onnx"])
