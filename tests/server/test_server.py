"""The serving app with the real all-MiniLM-L6-v2 weights: results equal sentence-transformers' own, and every
error case answers 4xx with a JSON error."""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

TEXTS = ["BGE models turn text into vectors.", "The cat sat on the mat.", "Embeddings power semantic search."]


@pytest.fixture(scope="module")
def client(make_client, minilm_dir):
    return make_client(minilm_dir, max_batch_size=2, max_inputs=8)


@pytest.fixture(scope="module")
def reference(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_health_and_info(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["dimension"] == 384 and info["max_length"] == 256  # from sentence_bert_config.json
    assert info["pooling"] == "mean" and info["normalize"] is True and info["dtype"] == "float32"
    assert info["task"] == "embed" and info["sparse"] is False


def test_embeddings_equal_sentence_transformers(client, reference) -> None:
    expected = reference.encode(TEXTS, normalize_embeddings=False)  # the checkpoint's own Normalize module applies
    got = client.post("/embed", json={"inputs": TEXTS}).json()
    assert len(got) == 3 and len(got[0]) == 384
    for g, e in zip(got, expected):
        assert cosine(g, e) >= 0.9999
        assert np.allclose(g, e, atol=1e-4)
    # batching (max_batch_size=2) must not change results
    single = client.post("/embed", json={"inputs": TEXTS[2]}).json()
    assert cosine(single[0], got[2]) >= 0.99999


def test_openai_shape_and_base64(client, reference) -> None:
    body = client.post("/v1/embeddings", json={"input": TEXTS[:2], "model": "minilm"}).json()
    assert body["object"] == "list" and body["model"] == "minilm"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] > 4
    expected = reference.encode(TEXTS[:2])
    assert cosine(body["data"][1]["embedding"], expected[1]) >= 0.9999
    packed = client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert cosine(floats, body["data"][0]["embedding"]) >= 0.99999


def test_semantic_order_is_right(client) -> None:
    q, near, far = client.post("/embed", json={"inputs": [
        "How do I bake bread?", "A recipe for baking a loaf of bread", "Quarterly tax filing deadlines"]}).json()
    assert cosine(q, near) > cosine(q, far) + 0.2


@pytest.mark.parametrize(("path", "body", "status", "needle"), [
    ("/embed", {"inputs": []}, 422, "inputs is empty"),
    ("/embed", {"inputs": ["ok", "   "]}, 422, "input 1 is empty"),
    ("/embed", {"inputs": ["x"] * 9}, 413, "9 inputs, more than the 8 allowed"),
    ("/embed", {"inputs": "word " * 400, "truncate": False}, 413, "more than the model's 256"),
    ("/embed", {"inputs": 42}, 422, "inputs"),
    ("/embed", {"inputs": ["a"], "return_sparse": True}, 400, "no sparse head"),
    ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, 422, "encoding_format"),
    ("/rerank", {"query": "q", "texts": ["a"]}, 400, "serves a embed model; use /embed"),
])
def test_errors_are_4xx_json(client, path, body, status, needle) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status
    assert needle in response.json()["error"]


def test_overlong_input_is_truncated_when_allowed(client) -> None:
    long = client.post("/embed", json={"inputs": "word " * 400}).json()
    assert len(long[0]) == 384


def test_health_is_503_until_a_model_loads(make_client, tmp_path) -> None:
    broken = make_client(tmp_path)  # no config.json: loading fails
    response = broken.get("/health")
    assert response.status_code == 503 and response.json()["status"] == "error"
    assert broken.post("/embed", json={"inputs": "a"}).status_code == 503


@pytest.fixture(scope="module")
def tiny_reranker(minilm_dir, tmp_path_factory) -> Path:
    """A randomly initialised BertForSequenceClassification with MiniLM's tokenizer, made here with transformers:
    there are no real reranker weights on this machine; what is tested is that the server's scores are the
    checkpoint's own logits."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("reranker")
    config = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, num_labels=1, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(out)
    return out


def test_rerank_scores_are_the_checkpoint_logits(make_client, tiny_reranker) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    client = make_client(tiny_reranker, task="rerank", max_batch_size=2)
    query, texts = "what is bread made of", ["flour water yeast", "tax forms", "bread is baked dough", "cats"]
    ranked = client.post("/rerank", json={"query": query, "texts": texts, "raw_scores": True}).json()
    tok = AutoTokenizer.from_pretrained(tiny_reranker)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reranker).eval()
    with torch.no_grad():
        logits = model(**tok([query] * 4, texts, padding=True, return_tensors="pt")).logits[:, 0].tolist()
    assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -logits[i])
    for r in ranked:
        assert r["score"] == pytest.approx(logits[r["index"]], abs=1e-4)
    sig = client.post("/rerank", json={"query": query, "texts": texts, "return_text": True}).json()
    assert all(0 < r["score"] < 1 for r in sig) and sig[0]["text"] == texts[sig[0]["index"]]
    assert client.post("/embed", json={"inputs": "a"}).status_code == 400
    assert client.get("/info").json()["dimension"] is None


def test_sparse_and_colbert_heads(make_client, minilm_dir, tmp_path) -> None:
    """bge-m3's heads, loaded directly: hand-made heads of the right shape on the MiniLM body; the server's
    lexical weights and ColBERT vectors must equal the formula computed here."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = tmp_path / "m3-like"
    shutil.copytree(minilm_dir, model_dir)
    torch.manual_seed(1)
    sparse, colbert = torch.nn.Linear(384, 1), torch.nn.Linear(384, 384)
    torch.save(sparse.state_dict(), model_dir / "sparse_linear.pt")
    torch.save(colbert.state_dict(), model_dir / "colbert_linear.pt")
    client = make_client(model_dir)
    text = "sparse lexical weights"
    item = client.post("/embed", json={"inputs": [text], "return_sparse": True, "return_colbert": True}).json()[0]
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok([text], return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(model_dir)(**enc).last_hidden_state
        weights = torch.relu(sparse(hidden)).squeeze(-1)[0]
        vecs = torch.nn.functional.normalize(colbert(hidden[:, 1:]), dim=-1)[0]
    expected = {}
    for token_id, w in zip(enc["input_ids"][0].tolist(), weights.tolist()):
        if token_id not in tok.all_special_ids and w > 0:
            expected[str(token_id)] = max(expected.get(str(token_id), 0.0), w)
    assert item["sparse"].keys() == expected.keys()
    assert all(item["sparse"][k] == pytest.approx(v, abs=1e-4) for k, v in expected.items())
    assert len(item["colbert"]) == vecs.shape[0]
    assert np.allclose(item["colbert"], vecs.numpy(), atol=1e-4)
    assert len(item["dense"]) == 384
