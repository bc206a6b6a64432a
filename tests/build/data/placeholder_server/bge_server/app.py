"""Test-only stand-in for the serving app: /health and /info on fastapi + uvicorn alone, so most build tests
need neither torch nor transformers (the real server is built and served by the slow wheelhouse test)."""

import os

from fastapi import FastAPI

app = FastAPI(title="bge-server-placeholder")


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.get("/info")
def info() -> dict:
    return {"model_id": os.environ.get("BGE_MODEL_ID", ""), "revision": os.environ.get("BGE_MODEL_REVISION", "")}
