"""Server tests run the image's app on the host, with the real small model, through FastAPI's TestClient."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "templates" / "server"))  # what PYTHONPATH=/opt/app does in the image

try:
    import torch  # noqa: F401
except ImportError:  # CI installs the extra; only a hand-made dev venv may lack it
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise
    pytest.skip("server tests need the server-test extra: pip install -e '.[server-test]'", allow_module_level=True)


@pytest.fixture(scope="session")
def make_client():
    from bge_server.app import create_app
    from bge_server.encoder import Settings
    from fastapi.testclient import TestClient

    clients = []

    def make(model_dir: Path, **settings):
        client = TestClient(create_app(Settings(model_dir=model_dir, **settings)))
        client.__enter__()
        clients.append(client)
        client.app.state.loader.thread.join(timeout=120)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)
