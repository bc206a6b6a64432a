"""HTTP surface of the image. Placeholder until the model/server issue lands: answers /health and /info only."""

import os

from fastapi import FastAPI

app = FastAPI(title="bge-server")


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.get("/info")
def info() -> dict:
    return {"model_id": os.environ.get("BGE_MODEL_ID", ""), "revision": os.environ.get("BGE_MODEL_REVISION", "")}
