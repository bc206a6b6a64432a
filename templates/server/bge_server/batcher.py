"""Dynamic batching across concurrent requests; knows nothing of the runtime beyond encoder.py's interface.

Requests put jobs on a bounded queue and await a future. One worker thread owns the encoder: it takes a round
(every waiting job that shares the oldest job's forward-pass flags), drops jobs whose client went away, sorts the
round's texts by length when they need more than one forward pass (less padding), packs them into batches under
the token and size budgets and answers each job with its own slice once all its texts are done. There is no
waiting for a batch to fill: while one forward pass runs, the next batch gathers by itself, so a lone request
costs what it did before batching existed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from bge_server.encoder import Encoded, InputTooLong, Settings, check_lengths


class QueueFull(Exception):
    """More texts are waiting than BGE_MAX_QUEUE allows."""


class Draining(Exception):
    """The server is shutting down and takes no new work."""


@dataclass(eq=False)
class Job:
    key: tuple  # ("embed", normalize, sparse, colbert) | ("score",): what changes the forward pass
    items: list  # texts, or (query, text) pairs for "score"
    truncate: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    counts: list[int] | None = None  # untruncated token counts, filled by the worker
    results: list = field(default_factory=list)
    left: int = 0  # texts not answered yet
    cancelled: bool = False  # the client went away (or the job failed): skip what is not computed yet
    queued: int = 0  # texts still counted in Batcher.waiting
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Batch:
    """What one forward pass was, for metrics."""

    size: int
    padded_tokens: int
    seconds: float


class Batcher:
    def __init__(self, encoder: Any, settings: Settings, on_batch: Callable[[Batch], None] | None = None):
        self.encoder = encoder
        self.max_batch_size = max(1, settings.max_batch_size)
        self.max_batch_tokens = max(1, settings.max_batch_tokens)
        self.max_queue = max(1, settings.max_queue)
        self.on_batch = on_batch
        self.cond = threading.Condition()
        self.pending: deque[Job] = deque()
        self.waiting = 0  # texts queued and not yet in a forward pass (the 429 limit and the queue-depth gauge)
        self.busy = False  # a round is being computed
        self.accepting = True
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self.thread.start()

    # ---- the event loop's side ----

    def submit(self, key: tuple, items: list, truncate: bool = True) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        job = Job(key=key, items=items, truncate=truncate, future=loop.create_future(), loop=loop,
                  results=[None] * len(items), left=len(items), queued=len(items))
        with self.cond:
            if not self.accepting:
                raise Draining()
            # A request bigger than the whole queue is still taken when nothing waits, or it could never run.
            if self.waiting and self.waiting + len(items) > self.max_queue:
                raise QueueFull()
            self.pending.append(job)
            self.waiting += len(items)
            self.cond.notify()
        job.future.add_done_callback(lambda f: f.cancelled() and setattr(job, "cancelled", True))
        return job.future

    def idle(self) -> bool:
        with self.cond:
            return not self.pending and not self.busy

    def stop_accepting(self) -> None:
        with self.cond:
            self.accepting = False

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued job is answered (True) or timeout seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending or self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    # ---- the worker's side ----

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending and not self.stopped:
                    self.cond.wait()
                if self.stopped:
                    return
                key = self.pending[0].key
                round_ = [j for j in self.pending if j.key == key]
                self.pending = deque(j for j in self.pending if j.key != key)
                self.busy = True
            try:
                self._round(key, round_)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def _release(self, job: Job, n: int | None = None) -> None:
        """n of job's texts leave the queue (all that are left when n is None)."""
        n = job.queued if n is None else n
        job.queued -= n
        with self.cond:
            self.waiting -= n

    def _round(self, key: tuple, jobs: list[Job]) -> None:
        live = []
        for job in jobs:
            if job.cancelled:
                self._release(job)
                continue
            try:
                job.counts = self.encoder.token_counts(job.items)
                if not job.truncate:
                    check_lengths(job.counts, self.encoder.max_length)
            except Exception as exc:  # InputTooLong, or a tokenizer failure: this job only
                self._fail(job, exc)
                continue
            live.append(job)
        work = [(job, i, min(job.counts[i], self.encoder.max_length)) for job in live for i in range(len(job.items))]
        if len(work) > self.max_batch_size or self._padded(work) > self.max_batch_tokens:
            work.sort(key=lambda w: w[2])  # several forward passes: similar lengths together pad least
        for batch in self._pack(work):
            for job in {w[0] for w in batch if w[0].cancelled}:
                self._release(job)  # went away (or failed) since the round began: no forward pass for it
            batch = [w for w in batch if not w[0].cancelled]
            if batch:
                self._forward(key, batch)

    def _padded(self, work: list) -> int:
        return len(work) * max((w[2] for w in work), default=0)

    def _pack(self, work: list):
        batch: list = []
        longest = 0
        for w in work:
            if batch and (len(batch) >= self.max_batch_size or (len(batch) + 1) * max(longest, w[2])
                          > self.max_batch_tokens):
                yield batch
                batch, longest = [], 0
            batch.append(w)
            longest = max(longest, w[2])
        if batch:
            yield batch

    def _forward(self, key: tuple, batch: list) -> None:
        items = [job.items[i] for job, i, _ in batch]
        for job in {w[0] for w in batch}:
            self._release(job, sum(1 for w in batch if w[0] is job))
        start = time.perf_counter()
        try:
            if key[0] == "score":
                out = self.encoder.score(items)
                values = [(s,) for s in out]
            else:
                _, normalize, sparse, colbert = key
                enc: Encoded = self.encoder.embed(items, normalize=normalize, sparse=sparse, colbert=colbert)
                values = list(zip(enc.dense, enc.sparse or [None] * len(items), enc.colbert or [None] * len(items)))
        except Exception as exc:  # LookupError (no such head) or a runtime failure: every job in this batch
            for job in {job for job, _, _ in batch}:
                self._fail(job, exc)
            return
        seconds = time.perf_counter() - start
        if self.on_batch:
            self.on_batch(Batch(size=len(batch), padded_tokens=len(batch) * max(w[2] for w in batch),
                                seconds=seconds))
        for (job, i, _), value in zip(batch, values):
            job.results[i] = value
            job.left -= 1
            if job.left == 0:
                job.loop.call_soon_threadsafe(_settle, job.future, self._result(key, job), None)

    def _result(self, key: tuple, job: Job):
        if key[0] == "score":
            return [r[0] for r in job.results]
        _, _, sparse, colbert = key
        return Encoded(dense=[r[0] for r in job.results],
                       sparse=[r[1] for r in job.results] if sparse else None,
                       colbert=[r[2] for r in job.results] if colbert else None,
                       tokens=sum(min(c, self.encoder.max_length) for c in job.counts))

    def _fail(self, job: Job, exc: Exception) -> None:
        job.cancelled = True  # answered: later batches of this round skip it
        self._release(job)
        job.loop.call_soon_threadsafe(_settle, job.future, None, exc)


def _settle(future: asyncio.Future, value, exc: Exception | None) -> None:
    if future.done():  # cancelled: the client went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


__all__ = ["Batch", "Batcher", "Draining", "InputTooLong", "Job", "QueueFull"]
