"""The HTTP surface of a bgeimg image, shaped like text-embeddings-inference's:
GET /health, GET /info, GET /metrics, POST /embed, POST /v1/embeddings (OpenAI-compatible), POST /rerank.

Settings come from the BGE_* environment variables the Dockerfile sets. Errors are JSON
`{"error": "...", "error_type": "..."}` with a 4xx status saying what to change (429 when the queue is full,
503 while loading or draining). Routes never call the encoder: they queue work on the batcher and await it.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import struct
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from bge_server.batcher import Batcher, Draining, QueueFull
from bge_server.encoder import InputTooLong, Loader, Settings
from bge_server.metrics import Metrics, MetricsMiddleware


def settings_from_env() -> Settings:
    env = os.environ.get
    max_length, threads = env("BGE_MAX_LENGTH"), env("BGE_THREADS")
    return Settings(
        model_dir=Path(env("BGE_MODEL_DIR", "/opt/model")),
        task=env("BGE_TASK", "embed"),
        device=env("BGE_DEVICE", "cpu"),
        runtime=env("BGE_RUNTIME", "torch"),
        max_batch_size=int(env("BGE_MAX_BATCH_SIZE", "32")),
        max_batch_tokens=int(env("BGE_MAX_BATCH_TOKENS", "16384")),
        max_queue=int(env("BGE_MAX_QUEUE", "512")),
        grace_seconds=float(env("BGE_GRACE_SECONDS", "20")),
        max_length=int(max_length) if max_length else None,
        max_inputs=int(env("BGE_MAX_INPUTS", "256")),
        threads=int(threads) if threads else None,
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


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body is read already: the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def json_response(value, status: int = 200) -> Response:
    # A Response, not a returned list: FastAPI would walk every float through jsonable_encoder first.
    return JSONResponse(value, status_code=status)


def create_app(settings: Settings | None = None) -> FastAPI:
    loader = Loader(settings or settings_from_env())
    metrics = Metrics()
    state = {"batcher": None, "draining": False}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        loader.start()
        yield
        if state["batcher"] is not None:
            state["batcher"].close()

    app = FastAPI(title="bge-server", lifespan=lifespan)
    app.state.loader = loader
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def batcher() -> Batcher | None:
        """The batcher, made once the model is loaded."""
        if state["batcher"] is None and loader.encoder is not None:
            enc = loader.encoder
            state["batcher"] = Batcher(enc, loader.settings, on_batch=metrics.on_batch)
            metrics.queue_depth.set_function(lambda: state["batcher"].waiting)
            info = {"model_id": os.environ.get("BGE_MODEL_ID", ""),
                    "model_revision": os.environ.get("BGE_MODEL_REVISION", ""), "task": loader.settings.task,
                    "max_length": str(enc.max_length), "max_batch_size": str(loader.settings.max_batch_size),
                    "max_batch_tokens": str(loader.settings.max_batch_tokens)}
            info.update({k: str(v) for k, v in enc.info().items()})
            metrics.model.info(info)
        return state["batcher"]

    def begin_drain() -> None:
        """SIGTERM: refuse new work (503) and fail readiness; what is queued still finishes."""
        state["draining"] = True
        metrics.draining.set(1)
        if state["batcher"] is not None:
            state["batcher"].stop_accepting()

    def wait_drained(timeout: float) -> bool:
        return state["batcher"] is None or state["batcher"].wait_idle(timeout)

    app.state.begin_drain, app.state.wait_drained = begin_drain, wait_drained
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "error_type": exc.kind}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse({"error": f"{where}: {first.get('msg')}", "error_type": "Validation"}, status_code=422)

    def check_task(task: str) -> None:
        if state["draining"]:
            raise ApiError(503, "the server is shutting down; retry on another replica", "Unhealthy")
        if loader.encoder is None:
            raise ApiError(503, loader.error or "the model is still loading; retry when /health answers 200",
                           "Unhealthy")
        if loader.settings.task != task:
            other = "/rerank" if loader.settings.task == "rerank" else "/embed or /v1/embeddings"
            raise ApiError(400, f"this image serves a {loader.settings.task} model; use {other}", "Backend")

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

    async def run(request: Request, key: tuple, items: list, truncate: bool):
        """Queue the work, await its answer; a client that leaves first cancels it (no forward pass for it)."""
        try:
            future = batcher().submit(key, items, truncate)
        except QueueFull:
            raise ApiError(429, f"the queue is full ({loader.settings.max_queue} texts waiting); retry later or "
                                "add replicas", "Overloaded") from None
        except Draining:
            raise ApiError(503, "the server is shutting down; retry on another replica", "Unhealthy") from None
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait((future, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not future.done():
                future.cancel()
        if future.cancelled():
            raise ClientGone()
        try:
            return future.result()
        except InputTooLong as exc:
            raise ApiError(413, str(exc)) from None
        except LookupError as exc:
            raise ApiError(400, str(exc), "Backend") from None
        except Exception as exc:  # the runtime failed on this batch (out of memory...): JSON, not a bare 500
            raise ApiError(500, f"{type(exc).__name__}: {exc}", "Backend") from None

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; nginx's code for "client closed request"

    @app.get("/health")
    def health() -> JSONResponse:
        if state["draining"]:
            return JSONResponse({"status": "draining"}, status_code=503)
        if loader.encoder is not None:
            return JSONResponse({"status": "ok"})
        if loader.error:
            return JSONResponse({"status": "error", "error": loader.error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    def metrics_route() -> Response:
        batcher()  # the model-info metric appears as soon as the model is loaded
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/info")
    def info() -> dict:
        enc = loader.encoder
        s = loader.settings
        return {
            "model_id": os.environ.get("BGE_MODEL_ID", ""),
            "model_revision": os.environ.get("BGE_MODEL_REVISION", ""),
            "task": s.task,
            "ready": enc is not None,
            "dimension": enc.dimension if enc else None,
            "max_length": enc.max_length if enc else None,
            "max_batch_size": s.max_batch_size,
            "max_batch_tokens": s.max_batch_tokens,
            "max_queue": s.max_queue,
            "max_inputs": s.max_inputs,
            "grace_seconds": s.grace_seconds,
            "device": enc.device if enc else s.device,
            "runtime": enc.runtime if enc else s.runtime,
            "threads": enc.threads if enc else None,
            "dtype": None,
            "pooling": None,
            "normalize": enc.normalize_default if enc else None,
            "sparse": False,
            "colbert": False,
            **(enc.info() if enc else {}),
        }

    async def run_embed(request: Request, texts: list[str], *, normalize: bool | None = None,
                        truncate: bool = True, sparse: bool = False, colbert: bool = False):
        check_task("embed")
        normalize = loader.encoder.normalize_default if normalize is None else normalize
        return await run(request, ("embed", normalize, sparse, colbert), texts, truncate)

    @app.post("/embed")
    async def embed(req: EmbedRequest, request: Request) -> Response:
        texts = texts_of(req.inputs)
        out = await run_embed(request, texts, normalize=req.normalize, truncate=req.truncate,
                              sparse=req.return_sparse, colbert=req.return_colbert)
        if not (req.return_sparse or req.return_colbert):
            return json_response(out.dense)  # the text-embeddings-inference shape: one vector per input
        items = []
        for i, vector in enumerate(out.dense):
            item = {"dense": vector}
            if out.sparse is not None:
                item["sparse"] = out.sparse[i]
            if out.colbert is not None:
                item["colbert"] = out.colbert[i]
            items.append(item)
        return json_response(items)

    @app.post("/v1/embeddings")
    async def openai_embeddings(req: OpenAIRequest, request: Request) -> Response:
        texts = texts_of(req.input)
        out = await run_embed(request, texts)
        data = []
        for i, vector in enumerate(out.dense):
            value = vector
            if req.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        return json_response({"object": "list", "data": data,
                              "model": req.model or os.environ.get("BGE_MODEL_ID", ""),
                              "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens}})

    @app.post("/rerank")
    async def rerank(req: RerankRequest, request: Request) -> Response:
        texts = texts_of(req.texts)
        check_task("rerank")
        logits = await run(request, ("score",), [(req.query, t) for t in texts], req.truncate)
        ranked = []
        for i, logit in enumerate(logits):
            item = {"index": i, "score": logit if req.raw_scores else 1.0 / (1.0 + math.exp(-logit))}
            if req.return_text:
                item["text"] = texts[i]
            ranked.append(item)
        return json_response(sorted(ranked, key=lambda r: r["score"], reverse=True))

    return app


app = create_app()
