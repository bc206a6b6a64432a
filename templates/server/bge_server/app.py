"""The HTTP surface of a bgeimg image, shaped like text-embeddings-inference's:
GET /health, GET /info, POST /embed, POST /v1/embeddings (OpenAI-compatible), POST /rerank.

Settings come from the BGE_* environment variables the Dockerfile sets. Errors are JSON
`{"error": "...", "error_type": "..."}` with a 4xx status saying what to change.
"""

from __future__ import annotations

import base64
import math
import os
import struct
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bge_server.encoder import Encoded, InputTooLong, Loader, Settings, check_lengths


def settings_from_env() -> Settings:
    max_length = os.environ.get("BGE_MAX_LENGTH")
    return Settings(
        model_dir=Path(os.environ.get("BGE_MODEL_DIR", "/opt/model")),
        task=os.environ.get("BGE_TASK", "embed"),
        device=os.environ.get("BGE_DEVICE", "cpu"),
        runtime=os.environ.get("BGE_RUNTIME", "torch"),
        max_batch_size=int(os.environ.get("BGE_MAX_BATCH_SIZE", "32")),
        max_length=int(max_length) if max_length else None,
        max_inputs=int(os.environ.get("BGE_MAX_INPUTS", "256")),
    )


class EmbedRequest(BaseModel):
    inputs: Union[str, list[str]]
    normalize: bool | None = None
    truncate: bool = True
    return_sparse: bool = False
    return_colbert: bool = False


class OpenAIRequest(BaseModel):
    input: Union[str, list[str]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class RerankRequest(BaseModel):
    query: str = Field(min_length=1)
    texts: list[str]
    truncate: bool = True
    raw_scores: bool = False
    return_text: bool = False


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "Validation"):
        self.status, self.message, self.kind = status, message, kind


def create_app(settings: Settings | None = None) -> FastAPI:
    loader = Loader(settings or settings_from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        loader.start()
        yield

    app = FastAPI(title="bge-server", lifespan=lifespan)
    app.state.loader = loader
    lock = threading.Lock()  # one forward pass at a time: the runtime already uses every core for one batch

    def chunks(items: list):
        size = loader.settings.max_batch_size
        for start in range(0, len(items), size):
            yield items[start : start + size]

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "error_type": exc.kind}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse({"error": f"{where}: {first.get('msg')}", "error_type": "Validation"}, status_code=422)

    def encoder(task: str):
        if loader.encoder is None:
            raise ApiError(503, loader.error or "the model is still loading; retry when /health answers 200",
                           "Unhealthy")
        if loader.settings.task != task:
            other = "/rerank" if loader.settings.task == "rerank" else "/embed or /v1/embeddings"
            raise ApiError(400, f"this image serves a {loader.settings.task} model; use {other}", "Backend")
        return loader.encoder

    def texts_of(value: Union[str, list[str]]) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts:
            raise ApiError(422, "inputs is empty; send at least one text")
        limit = loader.settings.max_inputs
        if len(texts) > limit:
            raise ApiError(413, f"{len(texts)} inputs, more than the {limit} allowed per request; split the "
                                "request", "Overloaded")
        for i, t in enumerate(texts):
            if not t.strip():
                raise ApiError(422, f"input {i} is empty")
        return texts

    @app.get("/health")
    def health() -> JSONResponse:
        if loader.encoder is not None:
            return JSONResponse({"status": "ok"})
        if loader.error:
            return JSONResponse({"status": "error", "error": loader.error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/info")
    def info() -> dict:
        enc = loader.encoder
        return {
            "model_id": os.environ.get("BGE_MODEL_ID", ""),
            "model_revision": os.environ.get("BGE_MODEL_REVISION", ""),
            "task": loader.settings.task,
            "ready": enc is not None,
            "dimension": enc.dimension if enc else None,
            "max_length": enc.max_length if enc else None,
            "max_batch_size": loader.settings.max_batch_size,
            "max_inputs": loader.settings.max_inputs,
            "device": enc.device if enc else loader.settings.device,
            "runtime": enc.runtime if enc else loader.settings.runtime,
            "threads": enc.threads if enc else None,
            "dtype": None,
            "pooling": None,
            "normalize": enc.normalize_default if enc else None,
            "sparse": False,
            "colbert": False,
            **(enc.info() if enc else {}),
        }

    def run_embed(texts: list[str], *, normalize: bool | None = None, truncate: bool = True, sparse: bool = False,
                  colbert: bool = False) -> Encoded:
        enc = encoder("embed")
        normalize = enc.normalize_default if normalize is None else normalize
        out = Encoded(dense=[], sparse=[] if sparse else None, colbert=[] if colbert else None)
        try:
            if not truncate:
                check_lengths(enc.token_counts(texts), enc.max_length)
            with lock:
                for batch in chunks(texts):
                    part = enc.embed(batch, normalize=normalize, sparse=sparse, colbert=colbert)
                    out.dense += part.dense
                    out.tokens += part.tokens
                    if sparse:
                        out.sparse += part.sparse
                    if colbert:
                        out.colbert += part.colbert
        except InputTooLong as exc:
            raise ApiError(413, str(exc)) from None
        except LookupError as exc:
            raise ApiError(400, str(exc), "Backend") from None
        return out

    @app.post("/embed")
    def embed(req: EmbedRequest):
        texts = texts_of(req.inputs)
        out = run_embed(texts, normalize=req.normalize, truncate=req.truncate, sparse=req.return_sparse,
                        colbert=req.return_colbert)
        if not (req.return_sparse or req.return_colbert):
            return out.dense  # the text-embeddings-inference shape: one vector per input
        items = []
        for i, vector in enumerate(out.dense):
            item = {"dense": vector}
            if out.sparse is not None:
                item["sparse"] = out.sparse[i]
            if out.colbert is not None:
                item["colbert"] = out.colbert[i]
            items.append(item)
        return items

    @app.post("/v1/embeddings")
    def openai_embeddings(req: OpenAIRequest) -> dict:
        texts = texts_of(req.input)
        out = run_embed(texts)
        data = []
        for i, vector in enumerate(out.dense):
            value = vector
            if req.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": req.model or os.environ.get("BGE_MODEL_ID", ""),
                "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens}}

    @app.post("/rerank")
    def rerank(req: RerankRequest) -> list[dict]:
        texts = texts_of(req.texts)
        enc = encoder("rerank")
        pairs = [(req.query, t) for t in texts]
        try:
            if not req.truncate:
                check_lengths(enc.token_counts(pairs), enc.max_length)
        except InputTooLong as exc:
            raise ApiError(413, str(exc)) from None
        logits: list[float] = []
        with lock:
            for batch in chunks(pairs):
                logits += enc.score(batch)
        ranked = []
        for i, logit in enumerate(logits):
            item = {"index": i, "score": logit if req.raw_scores else 1.0 / (1.0 + math.exp(-logit))}
            if req.return_text:
                item["text"] = texts[i]
            ranked.append(item)
        return sorted(ranked, key=lambda r: r["score"], reverse=True)

    return app


app = create_app()
