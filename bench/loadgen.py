"""A closed-loop HTTP load generator, light enough to share 2 cores with the server it measures.

Each of `concurrency` clients holds one keep-alive connection and sends its next request as soon as the last
answer arrived (closed loop), for `seconds` (bounded: also stops after `max_requests`). Raw HTTP/1.1 over asyncio
streams: no client library's per-request overhead competes with the server for the CPU.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    texts: int = 0
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


async def _request(reader, writer, head: bytes, body: bytes) -> tuple[int, bytes]:
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        data = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            data += await reader.readexactly(size)
            await reader.readline()
        return status, data
    return status, await reader.readexactly(length or 0)


async def _client(host: str, port: int, path: str, payloads: list[bytes], counts: list[int], deadline: float,
                  result: Result, max_requests: int, offset: int) -> None:
    reader = writer = None
    i = offset
    while time.perf_counter() < deadline and result.requests < max_requests:
        body, texts = payloads[i % len(payloads)], counts[i % len(payloads)]
        i += 1
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            status, _ = await asyncio.wait_for(_request(reader, writer, head, body), timeout=60)
        except (OSError, asyncio.TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            status = 0
            if writer is not None:
                writer.close()
            reader = writer = None
        elapsed = time.perf_counter() - start
        result.requests += 1
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 200:
            result.texts += texts
            result.latencies.append(elapsed)
        else:
            result.errors += 1
            await asyncio.sleep(0.01)  # a refused connection must not spin
    if writer is not None:
        writer.close()


async def _run(host, port, path, payloads, counts, concurrency, seconds, max_requests) -> Result:
    result = Result()
    start = time.perf_counter()
    await asyncio.gather(*(_client(host, port, path, payloads, counts, start + seconds, result, max_requests, k)
                           for k in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def run_load(port: int, texts: list[list[str]], concurrency: int, seconds: float, path: str = "/embeddings",
             body_key: str = "input", host: str = "127.0.0.1", max_requests: int = 1_000_000) -> Result:
    """Closed loop: each request carries one of `texts` (lists of texts), round-robin; texts/s counts the texts of
    each request answered."""
    payloads = [json.dumps({body_key: t, **({"model": "minilm"} if body_key == "input" else {})}).encode()
                for t in texts]
    return asyncio.run(_run(host, port, path, payloads, [len(t) for t in texts], concurrency, seconds,
                            max_requests))
