"""Run the app with uvicorn, draining on SIGTERM:

    python -m bge_server.serve bge_server.app:app

The first SIGTERM (or Ctrl+C) makes /health answer 503 (readiness fails, the load balancer stops sending) and
new requests 503, while every queued request is still answered; once the queue is empty, or BGE_GRACE_SECONDS
have passed, uvicorn shuts down as usual and the process exits 0. A second signal stops at once.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

import uvicorn
import uvicorn.supervisors.multiprocess
from uvicorn.server import Server


def _app_of(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


class DrainingServer(Server):
    target = "bge_server.app:app"
    _draining = False

    def handle_exit(self, sig: int, frame) -> None:
        if self._draining or sig not in (signal.SIGTERM, signal.SIGINT):
            return super().handle_exit(sig, frame)
        self._draining = True
        app = _app_of(self.target)
        app.state.begin_drain()
        grace = app.state.loader.settings.grace_seconds
        threading.Thread(target=self._drain, args=(app, grace), name="drain", daemon=True).start()

    def _drain(self, app, grace: float) -> None:
        if not app.state.wait_drained(grace):
            print(f"bge-server: queued requests still running after {grace:g} s (BGE_GRACE_SECONDS); stopping",
                  flush=True)
        # not super().handle_exit: uvicorn would re-raise the signal after shutting down, and exit 143, not 0
        self.should_exit = True


def main(argv: list[str]) -> int:
    DrainingServer.target = argv[0] if argv else DrainingServer.target
    workers = int(os.environ.get("BGE_WORKERS", "1"))
    config = uvicorn.Config(DrainingServer.target, host=os.environ.get("BGE_HOST", "0.0.0.0"),
                            port=int(os.environ.get("BGE_PORT", "8000")), workers=workers, access_log=False,
                            timeout_graceful_shutdown=5)  # after the drain: responses still being written
    if workers > 1:
        # The workers are spawned processes running uvicorn's own Server: on SIGTERM each stops listening and
        # finishes the requests it holds, without the 503 phase (docs/server.md).
        sock = config.bind_socket()
        uvicorn.supervisors.multiprocess.Multiprocess(config, sockets=[sock]).run()
        return 0
    server = DrainingServer(config)
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
