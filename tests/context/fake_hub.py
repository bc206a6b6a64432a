"""TEST DOUBLE of the Hugging Face hub: the hub cannot be reached from here, so this serves local model
directories over the routes huggingface_hub itself calls (model_info and hf_hub_download), letting the real
huggingface_hub client do the real download through HF_ENDPOINT. Not a general hub implementation."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class FakeRepo:
    directory: Path
    commit: str  # the sha every branch of this repo resolves to
    branches: tuple[str, ...] = ("main",)
    token: str | None = None  # when set, requests without `Authorization: Bearer <token>` get 401


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _error(self, status: int, code: str) -> None:
                payload = json.dumps({"error": code}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _serve(self, body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path, dict(self.headers)))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                    return self._info("/".join(parts[2:4]), "/".join(parts[5:]), body)
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                    return self._tree("/".join(parts[2:4]), "/".join(parts[5:]), body)  # snapshot_download lists
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._file("/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
                self._error(404, "EntryNotFound")

            def _repo(self, repo_id: str, revision: str) -> FakeRepo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound")
                    return None
                if repo.token and self.headers.get("authorization") != f"Bearer {repo.token}":
                    self._error(401, "RepoNotFound")
                    return None
                if revision not in repo.branches and revision != repo.commit:
                    self._error(404, "RevisionNotFound")
                    return None
                return repo

            def _info(self, repo_id: str, revision: str, body: bool) -> None:
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                files = sorted(p.relative_to(repo.directory).as_posix() for p in repo.directory.rglob("*") if p.is_file())
                payload = json.dumps({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                                      "siblings": [{"rfilename": f} for f in files]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _tree(self, repo_id: str, revision: str, body: bool) -> None:
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                entries = [{"type": "file", "path": p.relative_to(repo.directory).as_posix(), "size": p.stat().st_size,
                            "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                           for p in sorted(repo.directory.rglob("*")) if p.is_file()]
                payload = json.dumps(entries).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _file(self, repo_id: str, revision: str, name: str, body: bool) -> None:
                repo = self._repo(repo_id, revision)
                if repo is None:
                    return
                target = repo.directory / name
                if not target.is_file():
                    return self._error(404, "EntryNotFound")
                data = target.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
