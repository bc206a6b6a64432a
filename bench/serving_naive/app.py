"""The naive server of seed 002's kind: FastAPI + sentence-transformers, one model.encode per request in a sync
route (FastAPI's thread pool runs several at once), no batching across requests. Started by bench/serving.py:

    NAIVE_MODEL=DIR python -m uvicorn app:app --app-dir bench/serving_naive --port P
"""

import os

from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["NAIVE_MODEL"], device="cpu")
app = FastAPI()


class Request(BaseModel):
    input: str | list[str]
    model: str | None = None


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/v1/embeddings")
def embeddings(req: Request) -> dict:
    texts = [req.input] if isinstance(req.input, str) else req.input
    vectors = model.encode(texts, normalize_embeddings=True).tolist()
    return {"object": "list", "model": req.model or "",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}
