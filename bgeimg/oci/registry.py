"""Registry HTTP API v2 client: auth from the docker config, manifests, indexes, blobs, tags.

Read side (also used by `analyze` for remote images): `RegistryClient.get_manifest`, `get_blob`/`iter_blob`,
`list_tags`. Write side (push, promote):
`blob_exists`, `upload_blob` (monolithic or chunked), `mount_blob`, `put_manifest`.

Auth follows docker: credentials come from `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`):
`credHelpers[host]`, then an `auths` entry, then `credsStore`, the helpers being `docker-credential-<name>`
programs. The registry's 401 challenge decides between a bearer token (fetched per scope) and basic auth.
Secrets are never put into messages, reprs or logs.

TLS: CAs and client certificates are read from `/etc/docker/certs.d/<host[:port]>/` as dockerd does
(`BGEIMG_CERTS_D` overrides the directory). A registry given as `http://host` is spoken to in plain HTTP; a
loopback host without a scheme is tried over HTTPS first and then HTTP, as dockerd treats 127.0.0.0/8.
Reads (GET, HEAD) are retried by urllib3's `Retry` on connection errors and 5xx/429 answers: exponential backoff
with jitter, and a `Retry-After` header honoured. Writes are retried here only when their body can be sent again;
a blob upload cut short restarts from a new upload session (`upload_blob`), which no HTTP library does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from bgeimg.errors import OutsideError
from bgeimg.oci.mediatypes import ACCEPT, INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX
from bgeimg.oci.reference import DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_AUTH_KEY, check_digest

RETRY_STATUS = (429, 500, 502, 503, 504)
READ_METHODS = frozenset({"GET", "HEAD"})
DEFAULT_CERTS_D = "/etc/docker/certs.d"


class RegistryError(OutsideError):
    """The registry failed or refused a request (exit 3)."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials, or wants some and we have none."""


class NotFoundError(RegistryError):
    """A manifest, tag, blob or repository the user named does not exist (bad input, exit 2)."""

    exit_code = 2


# ------------------------------------------------------------------------------------------------ credentials


@dataclass(frozen=True)
class Credentials:
    """A username and secret for one registry. The secret never shows in repr()."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # an OAuth refresh token (`docker login` with SSO)


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _auth_keys(host: str) -> list[str]:
    """The keys config.json may use for `host` (docker writes Docker Hub as its old v1 URL)."""
    if host == DOCKER_HUB:
        return [DOCKER_HUB_AUTH_KEY, "docker.io", "index.docker.io", "registry-1.docker.io", "https://docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _run_helper(helper: str, server: str) -> Credentials | None:
    prog = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([prog, "get"], input=server, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RegistryAuthError(
            f"credential helper {prog} named in {docker_config_path()} is not installed",
            hint="install it or remove it from credHelpers/credsStore",
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(f"credential helper {prog} did not answer within 60 s") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        # Only the first line, and never stdout: a helper could echo what it was given.
        first = (proc.stderr.strip().splitlines() or ["no message"])[0][:200]
        raise RegistryAuthError(f"credential helper {prog} failed for {server}: {first}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise RegistryAuthError(f"credential helper {prog} returned something that is not JSON") from None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret) if (user or secret) else None


def load_credentials(host: str, config_path: Path | None = None) -> Credentials | None:
    """Credentials for `host` (host[:port], docker.io for Docker Hub) from the docker config, or None."""
    path = config_path or docker_config_path()
    try:
        cfg = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise RegistryAuthError(f"cannot read docker config {path}: {type(exc).__name__}",
                                hint="fix the JSON or point DOCKER_CONFIG elsewhere") from None
    keys = _auth_keys(host)
    # docker's order: a per-registry credHelper, then the credsStore, then the file's own `auths` entries
    # (docker writes `auths: {HOST: {}}` placeholders when a store holds the secret).
    helpers = cfg.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _run_helper(helpers[key], key)
    if cfg.get("credsStore"):
        stored = _run_helper(cfg["credsStore"], keys[0])
        if stored is not None:
            return stored
    auths = cfg.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("identitytoken"):
            return Credentials(username=entry.get("username", ""), identity_token=entry["identitytoken"])
        if entry.get("auth"):
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryAuthError(f"the auth entry for {key} in {path} is not base64 of user:password") from None
            return Credentials(user, pw)
        if entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    return None


# ------------------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as the registry stored it: `raw` bytes hash to `digest`."""

    media_type: str
    digest: str
    raw: bytes = field(repr=False)

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.json

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass
class Stats:
    """Bytes and requests this client sent: what `bench/push.py` reports."""

    blob_bytes_uploaded: int = 0
    manifest_bytes_uploaded: int = 0
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    retries: int = 0


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _is_loopback(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0].strip("[")
    return h == "localhost" or h.startswith("127.") or h == "::1"


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _safe_url(url: str) -> str:
    """A URL for messages: no query string (upload state, tokens) and no userinfo."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


# ------------------------------------------------------------------------------------------------ client


class RegistryClient:
    """One registry (host[:port], optionally `http://`/`https://`). Safe to reuse for many repositories."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None | bool = True,
        config_path: Path | None = None,
        certs_dir: Path | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        m = re.match(r"^(https?)://", registry)
        self.scheme = m.group(1) if m else None
        host = registry[m.end():] if m else registry
        self.host = host.rstrip("/")
        self.api_host = DOCKER_HUB_API if self.host == DOCKER_HUB else self.host
        # True: look up the docker config lazily; None/False: anonymous; Credentials: given.
        self._creds_arg = credentials
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self.config_path = config_path
        self.certs_dir = Path(certs_dir or os.environ.get("BGEIMG_CERTS_D", DEFAULT_CERTS_D))
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "bgeimg"
        adapter = HTTPAdapter(max_retries=read_retry(retries, backoff), pool_maxsize=16)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._configure_tls()
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, str] = {}
        self.stats = Stats()

    def __repr__(self) -> str:
        return f"RegistryClient({self.host!r})"

    # -------------------------------------------------------------- plumbing

    def _configure_tls(self) -> None:
        d = self.certs_dir / self.host
        if not d.is_dir():
            return
        cas = sorted(d.glob("*.crt"))
        if cas:
            # Like dockerd: the certs.d CAs are added to the system pool, not substituted for it.
            system = Path("/etc/ssl/certs/ca-certificates.crt")
            bundle = system.read_text() if system.exists() else ""
            bundle += "\n".join(p.read_text() for p in cas)
            # Named by content: every client of this registry shares one file instead of leaving one per client.
            path = str(Path(tempfile.gettempdir()) / f"bgeimg-ca-{hashlib.sha256(bundle.encode()).hexdigest()[:16]}.pem")
            if not os.path.exists(path):
                fd, part = tempfile.mkstemp(prefix="bgeimg-ca-", suffix=".part")
                with os.fdopen(fd, "w") as fh:
                    fh.write(bundle)
                os.replace(part, path)
            self.session.verify = path
        for cert in sorted(d.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                self.session.cert = (str(cert), str(key))
                break

    @property
    def credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            arg = self._creds_arg
            if arg is True:
                self._creds = load_credentials(self.host, self.config_path)
            elif isinstance(arg, Credentials):
                self._creds = arg
            self._creds_loaded = True
        return self._creds

    def _send(self, method: str, url: str, **kw) -> requests.Response:
        """One HTTP exchange. Reads are retried inside urllib3 (the session's adapter); a write is retried here on
        connection errors and 5xx/429, and only when its body can be sent again (never on 4xx)."""
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", True)
        # Per request: requests lets $REQUESTS_CA_BUNDLE override a session's `verify` (psf/requests#3829).
        kw.setdefault("verify", self.session.verify)
        read = method.upper() in READ_METHODS
        attempt = 0
        while True:
            try:
                resp = self.session.request(method, url, **kw)
            except requests.exceptions.SSLError as exc:
                raise RegistryError(f"TLS with {self.host} failed: {_short(exc)}",
                                    hint=f"put the registry's CA in {self.certs_dir / self.host}/ca.crt") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if read or attempt >= self.retries or not _replayable(kw.get("data")):
                    tries = self.retries + 1 if read else attempt + 1
                    self.stats.retries += tries - 1 if read else 0
                    raise RegistryError(f"cannot reach registry {self.host} ({method} {_safe_url(url)}): "
                                        f"{_short(exc)}", hint=f"gave up after {tries} attempt{'s' if tries > 1 else ''}") from None
            else:
                if read:
                    done = getattr(resp.raw, "retries", None)
                    self.stats.retries += len(done.history) if done is not None else 0
                    return resp
                if resp.status_code not in RETRY_STATUS or attempt >= self.retries or not _replayable(kw.get("data")):
                    return resp
                resp.close()
            attempt += 1
            self.stats.retries += 1
            self._sleep(self.backoff * (2 ** (attempt - 1)))

    def base_url(self) -> str:
        """Find how to talk to the registry (GET /v2/), once."""
        if self._base:
            return self._base
        schemes = [self.scheme] if self.scheme else (["https", "http"] if _is_loopback(self.host) else ["https"])
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.api_host}/v2/"
            try:
                resp = self._send("GET", url)
            except RegistryError as exc:
                if last is None or "TLS" not in str(last):  # a TLS failure says more than the plain-HTTP retry
                    last = exc
                continue
            if resp.status_code in (200, 401) or resp.headers.get("Docker-Distribution-API-Version"):
                self._base = f"{scheme}://{self.api_host}"
                if resp.status_code == 401:
                    self._challenge = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                return self._base
            if last is None or "TLS" not in str(last):
                last = RegistryError(f"{url} answered HTTP {resp.status_code}: not a registry v2 API")
        assert last is not None
        raise last

    def ping(self) -> dict[str, Any]:
        """Check the registry answers and the credentials (if any) are accepted: {'url', 'auth'}."""
        base = self.base_url()
        resp = self._request("GET", "/v2/", scope=None)
        resp.close()
        return {"url": base, "auth": self._challenge[0] if self._challenge else "none"}

    def _token(self, scope: str | None) -> str:
        assert self._challenge is not None
        params = self._challenge[1]
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(f"registry {self.host} sent a bearer challenge without a realm")
        key = scope or ""
        if key in self._tokens:
            return self._tokens[key]
        query: dict[str, Any] = {}
        if params.get("service"):
            query["service"] = params["service"]
        if scope:
            query["scope"] = scope.split(" ")
        creds = self.credentials
        if creds and creds.identity_token:
            # OAuth2 refresh-token grant, as docker does for SSO logins.
            data = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": params.get("service", ""), "scope": scope or "", "client_id": "bgeimg"}
            resp = self._send("POST", realm, data=data)
        else:
            auth = (creds.username, creds.password) if creds and creds.username else None
            resp = self._send("GET", realm, params=query, auth=auth)
        if resp.status_code in (401, 403):
            raise self._auth_error()
        if resp.status_code != 200:
            raise RegistryError(f"token service of {self.host} answered HTTP {resp.status_code}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service of {self.host} returned no token")
        self._tokens[key] = token
        return token

    def _auth_error(self) -> RegistryAuthError:
        if self.credentials:
            return RegistryAuthError(f"registry {self.host} refused the credentials from the docker config",
                                     hint=f"check them with `docker login {self.host}`")
        return RegistryAuthError(f"registry {self.host} requires credentials and none were found in "
                                 f"{self.config_path or docker_config_path()}",
                                 hint=f"run `docker login {self.host}` or set DOCKER_CONFIG")

    def _apply_auth(self, headers: dict[str, str], scope: str | None) -> Any:
        if not self._challenge:
            return None
        scheme, _ = self._challenge
        if scheme == "bearer":
            headers["Authorization"] = f"Bearer {self._token(scope)}"
            return None
        if scheme == "basic":
            creds = self.credentials
            if not creds or not creds.username:
                raise self._auth_error()
            return (creds.username, creds.password)
        return None

    def _request(self, method: str, path: str, *, scope: str | None, headers: dict[str, str] | None = None,
                 **kw) -> requests.Response:
        """An authenticated request; a 401 (new challenge or expired token) is answered once."""
        url = path if path.startswith("http") else urljoin(self.base_url(), path)
        for attempt in range(2):
            h = dict(headers or {})
            auth = self._apply_auth(h, scope)
            resp = self._send(method, url, headers=h, auth=auth, **kw)
            if resp.status_code != 401:
                return resp
            resp.close()
            challenge = resp.headers.get("WWW-Authenticate")
            if attempt == 0 and challenge:
                self._challenge = _parse_challenge(challenge)
                self._tokens.pop(scope or "", None)
                # A bearer challenge may carry the exact scope the registry wants.
                if self._challenge[0] == "bearer" and self._challenge[1].get("scope"):
                    scope = " ".join(sorted({*(scope or "").split(" "), self._challenge[1]["scope"]} - {""}))
                continue
            raise self._auth_error()
        raise AssertionError("unreachable")

    def _check(self, resp: requests.Response, what: str, ok: tuple[int, ...] = (200,)) -> requests.Response:
        if resp.status_code in ok:
            return resp
        detail = ""
        try:
            errors = resp.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:300]
        except ValueError:
            pass
        resp.close()
        msg = f"{what}: registry {self.host} answered HTTP {resp.status_code}" + (f" ({detail})" if detail else "")
        if resp.status_code == 404:
            raise NotFoundError(msg)
        if resp.status_code in (401, 403):
            raise RegistryAuthError(msg + ": not allowed with these credentials")
        raise RegistryError(msg)

    # -------------------------------------------------------------- read

    @staticmethod
    def pull_scope(repo: str) -> str:
        return f"repository:{repo}:pull"

    @staticmethod
    def push_scope(repo: str) -> str:
        return f"repository:{repo}:pull,push"

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        """A manifest or index by tag or digest, bytes verified against the digest."""
        resp = self._request("GET", f"/v2/{repo}/manifests/{ref}", scope=self.pull_scope(repo),
                             headers={"Accept": ACCEPT})
        self._check(resp, f"manifest {repo}:{ref}" if not ref.startswith("sha256:") else f"manifest {repo}@{ref}")
        raw = resp.content
        digest = sha256_digest(raw)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"manifest {repo}@{ref} from {self.host} does not match its digest (got {digest})")
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media not in INDEX_TYPES + MANIFEST_TYPES:
            media = json.loads(raw).get("mediaType") or media
        return Manifest(media, digest, raw)

    def head_manifest(self, repo: str, ref: str) -> str | None:
        """The digest under `ref`, or None when there is no such manifest."""
        resp = self._request("HEAD", f"/v2/{repo}/manifests/{ref}", scope=self.pull_scope(repo),
                             headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        self._check(resp, f"manifest {repo}:{ref}")
        return resp.headers.get("Docker-Content-Digest") or (ref if ref.startswith("sha256:") else
                                                             self.get_manifest(repo, ref).digest)

    def blob_exists(self, repo: str, digest: str) -> int | None:
        """The size of blob `digest` in `repo`, or None when it is not there."""
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=self.pull_scope(repo))
        if resp.status_code == 404:
            return None
        self._check(resp, f"blob {repo}@{digest}")
        return int(resp.headers.get("Content-Length") or 0)

    def iter_blob(self, repo: str, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream a blob; raises RegistryError at the end when the bytes do not hash to `digest`."""
        check_digest(digest)
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", scope=self.pull_scope(repo), stream=True)
        self._check(resp, f"blob {repo}@{digest}")
        h = hashlib.sha256()
        try:
            for chunk in resp.iter_content(chunk_size):
                h.update(chunk)
                yield chunk
        except requests.RequestException as exc:
            raise RegistryError(f"blob {repo}@{digest} from {self.host} broke off: {_short(exc)}") from None
        finally:
            resp.close()
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryError(f"blob {repo}@{digest} from {self.host} does not match its digest")

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A whole (small) blob, such as an image config, verified."""
        return b"".join(self.iter_blob(repo, digest))

    def list_tags(self, repo: str) -> list[str]:
        """All tags of `repo` (following the registry's pagination)."""
        tags: list[str] = []
        url = f"/v2/{repo}/tags/list"
        while url:
            resp = self._check(self._request("GET", url, scope=self.pull_scope(repo)), f"tags of {repo}")
            tags += resp.json().get("tags") or []
            m = re.search(r"<([^>]+)>;\s*rel=\"?next\"?", resp.headers.get("Link", ""))
            url = urljoin(self.base_url(), m.group(1)) if m else ""
        return tags

    # -------------------------------------------------------------- write

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        """Put a manifest or index under a tag or its digest; returns the digest the registry stored."""
        return self.put_manifest_with_headers(repo, ref, raw, media_type)[0]

    def put_manifest_with_headers(self, repo: str, ref: str, raw: bytes, media_type: str) -> tuple[str, dict]:
        """put_manifest, and the answer's headers (`OCI-Subject` says the registry indexed a referrer)."""
        digest = sha256_digest(raw)
        if ref.startswith("sha256:") and ref != digest:
            raise RegistryError(f"manifest bytes hash to {digest}, not {ref}")
        resp = self._request("PUT", f"/v2/{repo}/manifests/{ref}", scope=self.push_scope(repo),
                             headers={"Content-Type": media_type}, data=raw)
        self._check(resp, f"put manifest {repo}:{ref}", ok=(201, 200))
        stored = resp.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise RegistryError(f"registry {self.host} stored {repo}:{ref} as {stored}, expected {digest}")
        self.stats.manifest_bytes_uploaded += len(raw)
        return digest, dict(resp.headers)

    def get_referrers(self, repo: str, digest: str) -> list[dict] | None:
        """The referrers API's descriptors for `digest`, or None when the registry has no referrers API."""
        check_digest(digest)
        resp = self._request("GET", f"/v2/{repo}/referrers/{digest}", scope=self.pull_scope(repo),
                             headers={"Accept": OCI_INDEX})
        if resp.status_code == 404 or resp.headers.get("Content-Type", "").split(";")[0].strip() != OCI_INDEX:
            resp.close()  # distribution 2.8 answers 404; some proxies answer 200 with something else
            return None
        self._check(resp, f"referrers of {repo}@{digest}")
        return list(resp.json().get("manifests") or [])

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Ask the registry to link a blob from another repository (no bytes sent). False if it declined."""
        scope = f"{self.push_scope(repo)} {self.pull_scope(from_repo)}"
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                             params={"mount": digest, "from": from_repo})
        if resp.status_code == 201:
            self.stats.blobs_mounted += 1
            return True
        if resp.status_code == 202 and resp.headers.get("Location"):
            # It opened an ordinary upload instead; cancel it so it does not linger.
            loc = urljoin(self.base_url(), resp.headers["Location"])
            self._request("DELETE", loc, scope=self.push_scope(repo)).close()
            return False
        self._check(resp, f"mount {digest} from {from_repo} into {repo}", ok=(201, 202))
        return False

    def upload_blob(self, repo: str, digest: str, source: bytes | Path, *, chunk_size: int | None = None,
                    progress: Callable[[int], None] | None = None) -> int:
        """Upload a blob (monolithic, or chunked PATCHes of `chunk_size`). A connection lost mid-way restarts
        the upload from a new session, up to `retries` times. Returns the bytes sent in the successful attempt."""
        check_digest(digest)
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        last: RegistryError | None = None
        for attempt in range(self.retries + 1):
            try:
                sent = self._upload_once(repo, digest, source, size, chunk_size, progress)
            except RegistryError as exc:
                if isinstance(exc, (RegistryAuthError, NotFoundError)) or attempt >= self.retries:
                    if attempt:  # the one-request count inside would say "after 1 attempt"
                        exc.hint = f"gave up after {attempt + 1} attempts"
                    raise
                last = exc
                self.stats.retries += 1
                self._sleep(self.backoff * (2 ** attempt))
                continue
            self.stats.blob_bytes_uploaded += sent
            self.stats.blobs_uploaded += 1
            return sent
        assert last is not None
        raise last

    def _upload_once(self, repo, digest, source, size, chunk_size, progress) -> int:
        scope = self.push_scope(repo)
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope)
        self._check(resp, f"start upload to {repo}", ok=(202,))
        loc = urljoin(self.base_url(), resp.headers["Location"])
        sent = 0

        def chunks() -> Iterator[bytes]:
            step = chunk_size or (8 << 20)
            if isinstance(source, bytes):
                for i in range(0, size, step):
                    yield source[i:i + step]
                return
            with open(source, "rb") as fh:
                while True:
                    block = fh.read(step)
                    if not block:
                        return
                    yield block

        if chunk_size:
            for block in chunks():
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{sent}-{sent + len(block) - 1}", "Content-Length": str(len(block))}
                resp = self._request("PATCH", loc, scope=scope, headers=headers, data=block)
                self._check(resp, f"upload {digest} to {repo}", ok=(202,))
                loc = urljoin(self.base_url(), resp.headers.get("Location", loc))
                sent += len(block)
                if progress:
                    progress(len(block))
            body: Any = b""
        else:
            # A sized file-like body: requests sends it with Content-Length (a generator would be sent chunked,
            # which distribution's monolithic PUT does not finish reading).
            body = _CountingReader(source, size, progress)
        sep = "&" if "?" in loc else "?"
        headers = {"Content-Type": "application/octet-stream"}
        try:
            resp = self._request("PUT", f"{loc}{sep}digest={digest}", scope=scope, headers=headers, data=body)
        finally:
            if isinstance(body, _CountingReader):
                sent = body.sent
                body.close()
        self._check(resp, f"upload {digest} to {repo}", ok=(201,))
        return sent


class _CountingReader:
    """A blob (bytes or a file) as a sized, readable body that counts what was read."""

    def __init__(self, source: bytes | Path, size: int, progress: Callable[[int], None] | None):
        import io

        self._fh = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        self._size = size
        self._progress = progress
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        block = self._fh.read(n)
        self.sent += len(block)
        if self._progress and block:
            self._progress(len(block))
        return block

    def close(self) -> None:
        self._fh.close()


def read_retry(retries: int, backoff: float) -> Retry:
    """urllib3's retry policy for registry reads: `retries` more tries on a refused or reset connection, a read
    timeout or a 5xx/429 answer, waiting backoff x 2^n with up to half of `backoff` of jitter (so clients cut off
    together do not come back together), or what the registry's Retry-After asks (429/503), at most 60 s. The last
    answer is returned rather than raised, so the caller's status handling says what the registry said."""
    return Retry(total=retries, connect=retries, read=retries, status=retries, other=0, redirect=False,
                 allowed_methods=READ_METHODS, status_forcelist=RETRY_STATUS, backoff_factor=backoff,
                 backoff_jitter=backoff / 2, backoff_max=60, respect_retry_after_header=True,
                 raise_on_status=False, raise_on_redirect=False)


def _replayable(data: Any) -> bool:
    """A generator body cannot be sent twice; upload_blob restarts those itself."""
    return data is None or isinstance(data, (bytes, str, dict))


def _short(exc: BaseException) -> str:
    """A one-line reason without the URL noise urllib3 puts into its messages."""
    text = str(exc)
    for needle in ("Connection refused", "Connection reset", "Connection aborted", "timed out",
                   "Name or service not known", "certificate verify failed", "wrong version number",
                   "Remote end closed connection", "Broken pipe"):
        if needle.lower() in text.lower():
            return needle.lower()
    return type(exc).__name__
