"""Prometheus metrics of one app, in a registry of its own (several apps may live in one test process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

ROUTES = ("/embed", "/v1/embeddings", "/rerank", "/health", "/info", "/metrics")
LATENCY = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("bge_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram("bge_request_duration_seconds", "HTTP request latency", ["route", "status"],
                                 buckets=LATENCY, registry=r)
        self.queue_depth = Gauge("bge_queue_depth", "texts waiting for a forward pass", registry=r)
        self.batch_size = Histogram("bge_batch_size", "texts per forward pass", buckets=SIZES, registry=r)
        self.batch_tokens = Histogram("bge_batch_tokens", "padded tokens (texts x longest) per forward pass",
                                      buckets=TOKENS, registry=r)
        self.inference = Histogram("bge_inference_duration_seconds", "seconds of one forward pass",
                                   buckets=LATENCY, registry=r)
        self.texts = Counter("bge_texts", "texts encoded or scored", registry=r)
        self.draining = Gauge("bge_draining", "1 after SIGTERM while queued work finishes", registry=r)
        self.model = Info("bge_model", "the model this server serves", registry=r)

    def on_batch(self, batch) -> None:
        self.batch_size.observe(batch.size)
        self.batch_tokens.observe(batch.padded_tokens)
        self.inference.observe(batch.seconds)
        self.texts.inc(batch.size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task and a stream per request): count and time every HTTP
    request by route and status. Unknown paths share one label so a scanner cannot grow the label set."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope.get("path", "")
        route = route if route in ROUTES else "other"
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            code = str(status["code"])
            self.metrics.requests.labels(route, code).inc()
            self.metrics.latency.labels(route, code).observe(time.perf_counter() - start)
