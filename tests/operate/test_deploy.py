"""deploy render: Kubernetes output validated against the official schemas offline (kubernetes-validate),
compose and nginx output checked for what they must say, for every shipped profile."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from bgeimg.cli.app import app

DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com/ml/bge-m3@{DIGEST}"
runner = CliRunner()


def render(*args: str) -> str:
    result = runner.invoke(app, ["deploy", "render", "--image", IMAGE, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("profile", ["cpu-slim", "cuda-runtime", "external-model"])
def test_kubernetes_manifests_validate_against_the_official_schemas(profile: str) -> None:
    docs = list(yaml.safe_load_all(render("--target", "k8s", "-p", profile, "--replicas", "3")))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema violation
    deployment, service, hpa = docs
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 3 and container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # the server drains for server.grace_seconds (20) after SIGTERM with /health at 503: one failed readiness
    # probe takes the pod out, and the kubelet's SIGKILL comes only after the drain and uvicorn's last writes
    assert container["readinessProbe"]["failureThreshold"] == 1
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["runAsUser"] == 10001
    gpu = container["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpu == "1") == (profile == "cuda-runtime")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert ("/models" in mounts) == (profile == "external-model")
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 70, "memory": 80} and hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_a_broken_manifest_is_caught_by_the_validator() -> None:
    doc = next(yaml.safe_load_all(render("--target", "k8s")))
    doc["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_external_model_uses_the_claim_when_given() -> None:
    deployment = next(yaml.safe_load_all(render("--target", "k8s", "-p", "external-model", "--model-claim", "bge-w")))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "bge-w"


@pytest.mark.parametrize("profile", ["cpu-slim", "gpu"])
def test_compose(profile: str) -> None:
    doc = yaml.safe_load(render("--target", "compose", "-p", profile, "--replicas", "4"))
    (name, service), = doc["services"].items()
    assert service["image"] == IMAGE and service["deploy"]["replicas"] == 4
    assert service["stop_grace_period"] == "30s"  # not Docker's 10 s: the drain gets its 20 s
    devices = service["deploy"].get("resources", {}).get("reservations", {}).get("devices", [])
    assert (devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]) == (profile == "gpu")


def test_nginx_least_conn_upstream() -> None:
    conf = render("--target", "nginx", "--backend", "10.0.0.5:8000", "--backend", "10.0.0.6:8000")
    upstream = re.search(r"upstream (\w+) \{(.*?)\}", conf, re.S)
    assert upstream and "least_conn;" in upstream.group(2)
    assert re.findall(r"server (\S+) max_fails=3", upstream.group(2)) == ["10.0.0.5:8000", "10.0.0.6:8000"]
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert conf.count("{") == conf.count("}")
    default = render("--target", "nginx", "--replicas", "3")
    assert len(re.findall(r"^\s+server 127\.0\.0\.1:800[0-2] ", default, re.M)) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "k8s", "--image", "bge-m3:latest"],
     "error: image 'bge-m3:latest' is not pinned by digest (pass --image REGISTRY/REPO@sha256:... (bgeimg push prints "
     "it) or --allow-tag)"),
    (["--target", "helm", "--image", IMAGE], "error: --target 'helm' is not known (choose one of: k8s, compose, nginx)"),
    (["--target", "k8s", "--image", IMAGE, "--name", "Bad_Name"],
     "error: name 'Bad_Name' is not a valid Kubernetes name (lowercase letters, digits, '-')"),
    (["--target", "nginx", "--image", IMAGE, "--backend", "nope"],
     "error: backend 'nope' is not host:port (e.g. --backend 10.0.0.5:8000)"),
])
def test_bad_deploy_input(args, message, capsys, monkeypatch) -> None:
    import sys

    from bgeimg.cli.app import main

    monkeypatch.setattr(sys, "argv", ["bgeimg", "deploy", "render", *args])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == message


def test_allow_tag_accepts_a_tag() -> None:
    result = runner.invoke(app, ["deploy", "render", "--target", "compose", "--image", "bge:1.0", "--allow-tag"])
    assert result.exit_code == 0 and "image: bge:1.0" in result.stdout


def test_termination_grace_follows_the_profiles_drain() -> None:
    deployment = next(yaml.safe_load_all(render("--target", "k8s", "--set", "server.grace_seconds=50")))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
