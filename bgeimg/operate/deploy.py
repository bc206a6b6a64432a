"""Deployment manifests for a pushed image: Kubernetes (Deployment, Service, HPA), docker compose, nginx.

Built as data and dumped, not templated as text, so every value lands in the field it belongs to. Figures follow
seed 002 (BGE-M3 behind nginx `least_conn` and an HPA): 2 replicas, HPA 2-10 on 70 % CPU / 80 % memory,
probes on /health, 16 Gi and one GPU for the CUDA profile.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from bgeimg.errors import BgeimgError
from bgeimg.oci.reference import check_reference
from bgeimg.profile import Profile

TARGETS = ("k8s", "compose", "nginx")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CLAIM = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
BACKEND_RE = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")


class DeployError(BgeimgError):
    """Bad deploy input (exit 2)."""


@dataclass(frozen=True)
class DeployOptions:
    image: str
    replicas: int = 2
    name: str | None = None
    namespace: str | None = None
    allow_tag: bool = False
    min_replicas: int = 2
    max_replicas: int = 10
    cpu_target: int = 70
    memory_target: int = 80
    model_claim: str | None = None  # external-model: a PVC with the weights; None: an emptyDir the entrypoint fills
    backends: tuple[str, ...] = ()  # nginx: host:port of each replica


def check(options: DeployOptions) -> None:
    ref = check_reference(options.image)  # the one grammar; a malformed reference is refused even with --allow-tag
    if not options.allow_tag and not ref.digest:
        raise DeployError(f"image {options.image!r} is not pinned by digest",
                          "pass --image REGISTRY/REPO@sha256:... (bgeimg push prints it) or --allow-tag")
    if options.name and not NAME_RE.fullmatch(options.name):
        raise DeployError(f"name {options.name!r} is not a valid Kubernetes name", "lowercase letters, digits, '-'")
    if options.replicas < 1 or not 1 <= options.min_replicas <= options.max_replicas:
        raise DeployError("replicas must be >= 1 and min <= max", "e.g. --replicas 2")
    if options.namespace is not None and not NAME_RE.fullmatch(options.namespace):
        raise DeployError(f"namespace {options.namespace!r} is not a valid Kubernetes namespace",
                          "lowercase letters, digits, '-', at most 63")
    if options.model_claim is not None and not _CLAIM.fullmatch(options.model_claim):
        raise DeployError(f"model claim {options.model_claim!r} is not a valid PersistentVolumeClaim name",
                          "lowercase letters, digits, '-' and '.', at most 253")
    for b in options.backends:
        check_backend(b)


def check_backend(b: str, flag: str = "--backend") -> None:
    """`host:port` of an nginx upstream server (`flag` names the option it came from)."""
    what = flag.lstrip("-").replace("-", " ")
    if not BACKEND_RE.fullmatch(b):
        raise DeployError(f"{what} {b!r} is not host:port", f"e.g. {flag} 10.0.0.5:8000")
    if not 1 <= int(b.rsplit(":", 1)[1]) <= 65535:
        raise DeployError(f"{what} {b!r}: the port must be 1-65535", f"e.g. {flag} 10.0.0.5:8000")


def app_name(profile: Profile, options: DeployOptions) -> str:
    if options.name:
        return options.name
    base = (profile.model.id or "bge").split("/")[-1].lower()
    return re.sub(r"[^a-z0-9-]+", "-", base).strip("-")[:50] or "bge"


def _resources(profile: Profile) -> dict:
    if profile.device == "cuda":
        return {"requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
                "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}}
    return {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}}


def termination_grace(profile: Profile) -> int:
    """Seconds before SIGKILL: the server's drain (BGE_GRACE_SECONDS), then up to 5 s for uvicorn to write the
    last responses, and 5 s of slack."""
    return profile.server.grace_seconds + 10


def kubernetes(profile: Profile, options: DeployOptions) -> list[dict]:
    """Deployment, Service and HorizontalPodAutoscaler."""
    name = app_name(profile, options)
    port = profile.server.port
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "bge-server",
              "app.kubernetes.io/managed-by": "bgeimg"}
    meta = {"name": name, "labels": labels}
    if options.namespace:
        meta["namespace"] = options.namespace
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    volumes = [{"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    if profile.model.source == "none":  # weights mounted, or downloaded on start into the volume
        volumes.append({"name": "models", **({"persistentVolumeClaim": {"claimName": options.model_claim}}
                                             if options.model_claim else {"emptyDir": {}})})
        mounts.append({"name": "models", "mountPath": "/models"})
    container = {
        "name": "bge",
        "image": options.image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "HF_HOME", "value": "/tmp/hf"}],
        "resources": _resources(profile),
        # Loading weights takes a while: the startup probe holds liveness off for up to 5 minutes.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 30},
        # /health answers 503 from SIGTERM on while queued requests finish: one failed probe takes the pod out.
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 1},
        "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 30, "failureThreshold": 3},
        "securityContext": {"runAsNonRoot": True, "runAsUser": profile.user.uid, "runAsGroup": profile.user.uid,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }
    pod_spec: dict = {"containers": [container], "volumes": volumes,
                      "terminationGracePeriodSeconds": termination_grace(profile),
                      "securityContext": {"fsGroup": profile.user.uid}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": options.replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": options.min_replicas, "maxReplicas": options.max_replicas,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": options.cpu_target}}},
                     {"type": "Resource", "resource": {"name": "memory", "target": {
                         "type": "Utilization", "averageUtilization": options.memory_target}}}]},
    }
    return [deployment, service, hpa]


def compose(profile: Profile, options: DeployOptions) -> dict:
    name = app_name(profile, options)
    service: dict = {
        "image": options.image,
        "ports": [str(profile.server.port)],  # ephemeral host ports: N replicas cannot share one
        "restart": "unless-stopped",
        "stop_grace_period": f"{termination_grace(profile)}s",  # Docker's default 10 s cuts the drain short
        "read_only": True,
        "tmpfs": ["/tmp"],
        "environment": {"HF_HOME": "/tmp/hf"},
        "deploy": {"replicas": options.replicas},
    }
    if profile.device == "cuda":
        service["deploy"]["resources"] = {"reservations": {"devices": [
            {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
    if profile.model.source == "none":
        service["volumes"] = ["./models:/models"]
    return {"services": {name: service}}


def upstream(name: str, backends: tuple[str, ...]) -> str:
    """An nginx `least_conn` upstream block: least_conn spreads long embedding requests better than round robin."""
    servers = "\n".join(f"    server {b} max_fails=3 fail_timeout=30s;" for b in backends)
    return f"upstream {name} {{\n    least_conn;\n{servers}\n    keepalive 32;\n}}\n"


def proxy_server(target: str) -> str:
    """The nginx `server` block that proxies everything to `target` (an upstream, or a variable naming one)."""
    return f"""server {{
    listen 80;
    client_max_body_size 16m;

    location / {{
        proxy_pass http://{target};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_connect_timeout 60s;
        proxy_send_timeout 60s;
        proxy_read_timeout 60s;
        proxy_next_upstream error timeout http_503;
    }}
}}
"""


def nginx(profile: Profile, options: DeployOptions) -> str:
    name = app_name(profile, options).replace("-", "_")
    backends = options.backends or tuple(f"127.0.0.1:{profile.server.port + i}" for i in range(options.replicas))
    return ("# Rendered by bgeimg: least_conn spreads long embedding requests better than round robin.\n"
            f"{upstream(f'{name}_backend', backends)}\n{proxy_server(f'{name}_backend')}")


class _Plain(yaml.SafeDumper):
    """No `&id001` anchors: the shared label dicts are written out in full, as people write manifests."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump_yaml(docs: list[dict]) -> str:
    return yaml.dump_all(docs, Dumper=_Plain, sort_keys=False)


def render(target: str, profile: Profile, options: DeployOptions) -> dict[str, str]:
    """file name -> text for the target."""
    if target not in TARGETS:
        raise DeployError(f"--target {target!r} is not known", f"choose one of: {', '.join(TARGETS)}")
    check(options)
    if target == "k8s":
        return {"k8s.yaml": dump_yaml(kubernetes(profile, options))}
    if target == "compose":
        return {"compose.yaml": yaml.dump(compose(profile, options), Dumper=_Plain, sort_keys=False)}
    return {"nginx.conf": nginx(profile, options)}


def write(files: dict[str, str], directory: Path) -> list[Path]:
    """Write the rendered files into `directory` (made when missing), each atomically; the paths written."""
    from bgeimg import atomic

    if directory.exists() and not directory.is_dir():
        raise DeployError(f"{directory} is a file, not a directory", "give -o a directory for the manifests")
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for name, text in files.items():
            written.append(atomic.write_text(directory / name, text))
    except BaseException:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return written
