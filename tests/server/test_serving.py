"""The real server (`python -m bge_server.serve`, uvicorn, the real MiniLM weights) under concurrent load: batching
changes no answer, a full queue answers 429, a client that left costs no forward pass, /metrics moves, SIGTERM
drains, and a short soak keeps memory flat."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bge_server.cpu import cgroup_quota  # noqa: E402  (tests/server/conftest.py puts templates/server on the path)

APP = Path(__file__).resolve().parents[2] / "templates" / "server"
WORDS = ("bread tax vector search model query cat dog river mountain city night light music paper glass "
         "window garden train market winter summer ocean forest engine").split()


def text(i: int, words: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words)) + f" {i}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir: Path, **env: str):
        self.port = free_port()
        environ = {**os.environ, "PYTHONPATH": str(APP), "BGE_MODEL_DIR": str(model_dir), "BGE_HOST": "127.0.0.1",
                   "BGE_PORT": str(self.port), "HF_HUB_OFFLINE": "1", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "bge_server.serve", "bge_server.app:app"], env=environ,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read().decode(errors="replace")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("the server did not become healthy")

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path, timeout=5)

    def embed(self, inputs, **extra) -> tuple[int, object]:
        status, data = self.request("POST", "/embed", {"inputs": inputs, **extra})
        return status, json.loads(data)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        from prometheus_client.parser import text_string_to_metric_families

        status, data = self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(data.decode()) for s in family.samples}

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(minilm_dir):
    s = Server(minilm_dir, BGE_MAX_QUEUE="64", BGE_MAX_BATCH_SIZE="16")
    yield s
    s.stop()


def test_answers_under_concurrency_equal_one_at_a_time(server) -> None:
    texts = [text(i, 3 + (i * 5) % 40) for i in range(24)]  # 5 to 45 tokens: batches pad a lot
    alone = [np.asarray(server.embed(t)[1][0]) for t in texts]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda t: server.embed(t), texts))
        grouped = list(pool.map(lambda k: server.embed(texts[k:k + 6]), range(0, 24, 6)))
    assert all(status == 200 for status, _ in together + grouped)
    worst = max(float(np.abs(np.asarray(body[0]) - a).max()) for (_, body), a in zip(together, alone))
    worst = max(worst, *(float(np.abs(np.asarray(v) - alone[k + j]).max())
                         for k, (_, body) in zip(range(0, 24, 6), grouped) for j, v in enumerate(body)))
    assert worst <= 1e-5, worst
    m = server.metrics()
    # the 16 clients really were batched together: fewer forward passes than texts
    assert m[("bge_batch_size_count", ())] < m[("bge_batch_size_sum", ())]


def test_a_full_queue_answers_429_at_once(server) -> None:
    batch = [text(i, 60) for i in range(32)]  # two of these fill the queue of 64 texts
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: server.request("POST", "/embed", {"inputs": batch}), range(12)))
    statuses = [status for status, _ in answers]
    assert set(statuses) == {200, 429}, statuses
    refused = next(json.loads(body) for status, body in answers if status == 429)
    assert refused["error_type"] == "Overloaded" and "queue is full (64 texts waiting)" in refused["error"]
    assert ("bge_requests_total", (("route", "/embed"), ("status", "429"))) in server.metrics()


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_a_client_that_left_costs_no_forward_pass(server) -> None:
    before = server.metrics()
    long = [text(i, 200) for i in range(48)]  # three forward passes of 16 x 256 tokens: the worker is busy
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(server.embed, long)
        wait_for(lambda: server.metrics()[("bge_queue_depth", ())] > 0)
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            body = json.dumps({"inputs": ["nobody waits for this"] * 5}).encode()
            s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            # queued behind the long request (the depth counts its 5 texts), then the client goes away
            wait_for(lambda: server.metrics()[("bge_queue_depth", ())] % 16 == 5)
        assert busy.result()[0] == 200
    gone = ("bge_requests_total", (("route", "/embed"), ("status", "499")))
    wait_for(lambda: server.metrics().get(gone, 0) == before.get(gone, 0) + 1)
    after = server.metrics()
    assert after[("bge_texts_total", ())] - before[("bge_texts_total", ())] == len(long)
    assert after[("bge_queue_depth", ())] == 0


def test_metrics_parse_and_move(server) -> None:
    before = server.metrics()
    assert server.embed(["one", "two", "three"])[0] == 200
    after = server.metrics()
    key = ("bge_requests_total", (("route", "/embed"), ("status", "200")))
    assert after[key] == before.get(key, 0) + 1
    assert after[("bge_texts_total", ())] == before[("bge_texts_total", ())] + 3
    latency = ("bge_request_duration_seconds_count", (("route", "/embed"), ("status", "200")))
    assert after[latency] == before.get(latency, 0) + 1
    assert after[("bge_inference_duration_seconds_count", ())] > before[("bge_inference_duration_seconds_count", ())]
    assert after[("bge_queue_depth", ())] == 0
    info = next(labels for (name, labels) in after if name == "bge_model_info")
    assert dict(info)["runtime"] == "torch" and dict(info)["max_batch_size"] == "16"
    threads = json.loads(server.get("/info")[1])["threads"]
    assert isinstance(threads, int) and 1 <= threads <= (os.cpu_count() or 1)


def test_sigterm_drains_in_flight_work_refuses_new_and_exits_0(minilm_dir) -> None:
    s = Server(minilm_dir, BGE_GRACE_SECONDS="60")
    try:
        long = [text(i, 200) for i in range(24)]  # one forward pass of 24 x 256 tokens each
        with ThreadPoolExecutor(3) as pool:
            in_flight = [pool.submit(s.embed, long) for _ in range(3)]
            wait_for(lambda: s.metrics()[("bge_queue_depth", ())] > 24)  # one computing, two queued
            s.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: s.get("/health")[0] == 503)
            assert s.get("/health") == (503, b'{"status":"draining"}')
            status, body = s.embed("too late")
            results = [f.result() for f in in_flight]
        assert status == 503 and "shutting down" in body["error"]
        assert [r[0] for r in results] == [200, 200, 200] and all(len(r[1]) == 24 for r in results)
        assert s.proc.wait(timeout=60) == 0
    finally:
        s.stop()


def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "kubepods" / "pod1").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    (v2 / "kubepods" / "cpu.max").write_text("300000 100000\n")
    (v2 / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")  # the tighter one binds
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    assert cgroup_quota(v2, proc) == 1.5
    (v2 / "kubepods" / "pod1" / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(v2, proc) == 3.0
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("4:cpu,cpuacct:/docker/abc\n")  # inside the container the hierarchy is mounted at its root
    assert cgroup_quota(v1, proc) == 2.0
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(v1, proc) is None


@pytest.mark.slow
def test_soak_mixed_load_has_no_error_and_flat_memory(server) -> None:
    bodies = [("/embed", {"inputs": text(i, 8)}) for i in range(20)]
    bodies += [("/embed", {"inputs": [text(i, 30) for i in range(16)], "truncate": False})]
    bodies += [("/v1/embeddings", {"input": [text(i, 12) for i in range(4)], "encoding_format": "base64"})]
    bodies += [("/embed", {"inputs": text(3, 400)})]  # cut at the max length

    def client(k: int, seconds: float) -> list[int]:
        statuses, i, end = [], k, time.time() + seconds
        while time.time() < end:
            path, body = bodies[i % len(bodies)]
            statuses.append(server.request("POST", path, body)[0])
            i += 1
        return statuses

    # 4 clients of at most 16 texts each never fill the queue of 64: any non-200 is a real error
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client, range(4), [10] * 4))  # warm: allocator pools and caches reach their size
        rss_warm = server.rss()
        statuses = [s for part in pool.map(client, range(4), [50] * 4) for s in part]
    rss_end = server.rss()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert rss_end <= rss_warm * 1.05, (rss_warm, rss_end)
