"""Canary rollouts: the nginx config passes the real `nginx -t` and splits real requests between two local
backends within two points of the weight; the Kubernetes files validate against the official schemas, and the
HTTPRoute (a CRD, not in those schemas) against the Gateway API v1 fields it uses."""

from __future__ import annotations

import http.client
import http.server
import re
import socket
import subprocess
import threading
import time
from collections import Counter

import jsonschema
import kubernetes_validate
import pytest

from bgeimg import profile as profiles
from bgeimg.operate import canary
from bgeimg.operate.deploy import DeployError, DeployOptions

STABLE = "registry.example.com/ml/bge-m3@sha256:" + "ab" * 32
CANDIDATE = "registry.example.com/ml/bge-m3@sha256:" + "cd" * 32


def cpu_slim():
    return profiles.resolve("cpu-slim").profile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Named(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each reply waits out a delayed ACK (40 ms)

    def do_GET(self):  # noqa: N802
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def backend(name: str) -> tuple[http.server.ThreadingHTTPServer, int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def wrap(conf: str, tmp, port: int) -> str:
    """The rendered file is an http-level include (conf.d); a whole nginx.conf around it, in the test's tmp."""
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / d).mkdir(exist_ok=True)
    (tmp / "canary.conf").write_text(conf.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    temp = "".join(f"    {k}_temp_path {tmp / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    temp = temp.replace(f"{tmp / 'client_body'}", f"{tmp / 'body'}")
    main = (f"worker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'logs/error.log'};\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temp}"
            f"    include {tmp / 'canary.conf'};\n}}\n")
    (tmp / "nginx.conf").write_text(main)
    return str(tmp / "nginx.conf")


def test_nginx_canary_passes_nginx_t_and_splits_by_the_weight(nginx_bin, tmp_path) -> None:
    stable, stable_port = backend("stable")
    cand, cand_port = backend("candidate")
    conf = canary.nginx(cpu_slim(), DeployOptions(image=STABLE, backends=(f"127.0.0.1:{stable_port}",)),
                        canary.CanaryOptions(candidate=CANDIDATE, weight=10, split_key="header:X-User-Id",
                                             backends=(f"127.0.0.1:{cand_port}",)))
    assert re.search(r"split_clients \"\$bge_split_key\" \$(\w+)_pool \{\s+10%\s+\1_candidate;\s+\*\s+\1_stable;", conf)
    assert conf.count("least_conn;") == 2
    port = free_port()
    main = wrap(conf, tmp_path, port)
    check = subprocess.run([nginx_bin, "-t", "-c", main, "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx_bin, "-c", main, "-p", str(tmp_path), "-g", "daemon off;"],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.time() < deadline and proc.poll() is None, "nginx did not start"
            time.sleep(0.05)
        seen = Counter()
        sticky = set()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 3000
        for i in range(n):
            conn.request("GET", "/", headers={"X-User-Id": f"user-{i}"})
            seen[conn.getresponse().read().decode()] += 1
        for _ in range(3):  # the same key always lands on the same side
            conn.request("GET", "/", headers={"X-User-Id": "user-7"})
            sticky.add(conn.getresponse().read().decode())
        share = 100 * seen["candidate"] / n
        print(f"candidate share {share:.2f}% of {n}")
        assert seen["stable"] + seen["candidate"] == n and abs(share - 10) <= 2, seen
        assert len(sticky) == 1
    finally:
        proc.terminate()
        proc.wait(10)
        stable.shutdown()
        cand.shutdown()


def test_nginx_client_address_key(nginx_bin, tmp_path) -> None:
    conf = canary.nginx(cpu_slim(), DeployOptions(image=STABLE), canary.CanaryOptions(candidate=CANDIDATE, weight=2.5))
    assert 'split_clients "$remote_addr"' in conf and "2.5%" in conf and "map " not in conf
    check = subprocess.run([nginx_bin, "-t", "-c", wrap(conf, tmp_path, free_port()), "-p", str(tmp_path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def _validate_k8s(docs):
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["kind"] != "HTTPRoute":
            kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_canary_replicas_in_the_ratio_behind_one_service() -> None:
    docs = canary.kubernetes_canary(cpu_slim(), DeployOptions(image=STABLE, replicas=10),
                                    canary.CanaryOptions(candidate=CANDIDATE, weight=10))
    assert [d["kind"] for d in docs] == ["Deployment", "Deployment", "Service"]
    _validate_k8s(docs)
    stable, cand, service = docs
    assert (stable["spec"]["replicas"], cand["spec"]["replicas"]) == (9, 1)
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == STABLE
    assert cand["spec"]["template"]["spec"]["containers"][0]["image"] == CANDIDATE
    for dep in (stable, cand):  # the Service selects both tracks; each Deployment only its own pods
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert stable["spec"]["selector"] != cand["spec"]["selector"]
    with pytest.raises(DeployError, match=r"with 2 replicas a 10% canary gets 50% .*--replicas 10 .*--gateway"):
        canary.kubernetes_canary(cpu_slim(), DeployOptions(image=STABLE, replicas=2),
                                 canary.CanaryOptions(candidate=CANDIDATE, weight=10))


# The HTTPRoute fields bgeimg writes, with the constraints of the Gateway API v1 CRD
# (gateway.networking.k8s.io_httproutes.yaml, standard channel): kubernetes-validate has no CRD schemas.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
HTTPROUTE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"}, "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": _NAME}},
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "parentRefs": {"type": "array", "maxItems": 32, "items": {
                "type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                    "group": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME, "namespace": _NAME,
                    "sectionName": {"type": "string"}, "port": {"type": "integer"}}}},
            "rules": {"type": "array", "maxItems": 16, "items": {
                "type": "object", "additionalProperties": False, "properties": {
                    "matches": {"type": "array", "maxItems": 64, "items": {"type": "object", "properties": {
                        "path": {"type": "object", "properties": {
                            "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                            "value": {"type": "string", "maxLength": 1024}}}}}},
                    "backendRefs": {"type": "array", "maxItems": 16, "items": {
                        "type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                            "group": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME,
                            "namespace": _NAME, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}}}}}}}}},
    },
}


def test_k8s_canary_with_a_gateway_route_by_weight() -> None:
    docs = canary.kubernetes_canary(cpu_slim(), DeployOptions(image=STABLE, replicas=2),
                                    canary.CanaryOptions(candidate=CANDIDATE, weight=12.5, gateway="public"))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Deployment", "Deployment", "Service", "Service", "Service", "HorizontalPodAutoscaler",
                     "HorizontalPodAutoscaler", "HTTPRoute"]
    _validate_k8s(docs)
    route = docs[-1]
    jsonschema.validate(route, HTTPROUTE)
    refs = route["spec"]["rules"][0]["backendRefs"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert [r["weight"] for r in refs] == [8750, 1250] and all(r["name"] in services for r in refs)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for ref in refs:  # each weighted Service selects exactly one track's pods
        selector = services[ref["name"]]["spec"]["selector"].items()
        assert [n for n, d in deployments.items() if selector <= d["spec"]["template"]["metadata"]["labels"].items()] \
            == [ref["name"]]
    hpa_targets = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert hpa_targets == set(deployments)
    broken = {**route, "spec": {**route["spec"], "rules": [{"backendRefs": [{"port": 80, "weight": -1}]}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, HTTPROUTE)


@pytest.mark.parametrize(("options", "message"), [
    (canary.CanaryOptions(candidate="bge:2", weight=10), "canary 'bge:2' is not pinned by digest"),
    (canary.CanaryOptions(candidate=STABLE, weight=10), "the canary is the stable image"),
    (canary.CanaryOptions(candidate=CANDIDATE, weight=100), "--weight 100 is not between 0 and 100"),
    (canary.CanaryOptions(candidate=CANDIDATE, weight=10, split_key="cookie:x"), "expected client or header:NAME"),
    (canary.CanaryOptions(candidate=CANDIDATE, weight=10, split_key="header:X User"), "expected client or header"),
])
def test_bad_canary_input(options, message) -> None:
    with pytest.raises(DeployError, match=re.escape(message)):
        canary.check_canary(DeployOptions(image=STABLE), options)


def test_cli_canary(monkeypatch, capsys) -> None:
    import sys

    import yaml

    from bgeimg.cli.app import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["bgeimg", "deploy", "render", "--image", STABLE, "--canary", CANDIDATE,
                                          *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        got = capsys.readouterr()
        return code, got.out, got.err.strip()

    code, out, _ = run("--target", "k8s", "--weight", "5", "--gateway", "public", "--replicas", "4")
    docs = list(yaml.safe_load_all(out))
    assert code == 0 and docs[-1]["kind"] == "HTTPRoute"
    assert [r["weight"] for r in docs[-1]["spec"]["rules"][0]["backendRefs"]] == [9500, 500]
    code, out, _ = run("--target", "nginx", "--weight", "20", "--split-key", "header:X-Session",
                       "--canary-backend", "10.0.0.9:8000")
    assert code == 0 and "map $http_x_session $bge_split_key" in out and "server 10.0.0.9:8000" in out
    assert run("--target", "compose") == (2, "", "error: --canary works with --target k8s or nginx, not compose "
                                          "(compose has no traffic split; render nginx in front of two compose "
                                          "projects)")
    monkeypatch.setattr(sys, "argv", ["bgeimg", "deploy", "render", "--image", STABLE, "--target", "k8s",
                                      "--gateway", "public"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2 and capsys.readouterr().err.strip() == (
        "error: --gateway applies only to a canary (add --canary REGISTRY/REPO@sha256:...)")
    code, _, err = run("--target", "nginx", "--canary-backend", "nope")
    assert code == 2 and err == "error: canary backend 'nope' is not host:port (e.g. --canary-backend 10.0.0.5:8000)"
