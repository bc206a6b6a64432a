"""Canary rollouts: a candidate digest next to the stable one, taking a set share of the traffic.

nginx: `split_clients` hashes a request key (a header, falling back to the client address, or the client address
alone) into the stable or the candidate upstream, each `least_conn`; the same key always lands on the same side,
so one user does not flip between models. Kubernetes: a stable and a canary Deployment (the pod spec of
bgeimg.operate.deploy) behind one Service; without a Gateway the replica ratio is the traffic ratio, so no HPA is rendered
(it would change the ratio); with `--gateway` a Gateway API HTTPRoute splits by weight over one Service per track,
and each track gets its own HPA. Tags follow seed 003: promote the candidate digest to `candidate`, then `stable`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from bgeimg.oci.reference import check_reference
from bgeimg.operate.deploy import (
    NAME_RE,
    DeployError,
    DeployOptions,
    app_name,
    check,
    check_backend,
    dump_yaml,
    kubernetes,
    proxy_server,
    upstream,
)
from bgeimg.profile import Profile

TRACK_LABEL = "bgeimg.io/track"
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# The most a canary may be off its asked share through replicas alone before we refuse (use more replicas or a
# Gateway instead).
RATIO_SLACK = 5.0


@dataclass(frozen=True)
class CanaryOptions:
    candidate: str  # REGISTRY/REPO@sha256:... of the candidate
    weight: float  # percent of traffic for the candidate, 0 < weight < 100
    split_key: str = "client"  # "client" (the client address) or "header:NAME" (falls back to the address)
    gateway: str | None = None  # k8s: the Gateway the HTTPRoute attaches to
    gateway_namespace: str | None = None
    backends: tuple[str, ...] = ()  # nginx: host:port of each candidate replica


def check_canary(options: DeployOptions, canary: CanaryOptions) -> None:
    check(options)
    if not check_reference(canary.candidate).digest:
        raise DeployError(f"canary {canary.candidate!r} is not pinned by digest",
                          "pass --canary REGISTRY/REPO@sha256:... (bgeimg push prints it)")
    if canary.candidate == options.image:
        raise DeployError("the canary is the stable image", "pass the candidate's digest to --canary")
    if not 0 < canary.weight < 100:
        raise DeployError(f"--weight {canary.weight:g} is not between 0 and 100", "e.g. --weight 10 for 10 %")
    if round(canary.weight, 2) != canary.weight:
        raise DeployError(f"--weight {canary.weight} has more than two decimals", "e.g. --weight 2.5")
    if canary.split_key != "client" and not (canary.split_key.startswith("header:")
                                             and _HEADER.fullmatch(canary.split_key[7:])):
        raise DeployError(f"--split-key {canary.split_key!r}: expected client or header:NAME",
                          "e.g. --split-key header:X-User-Id")
    for b in canary.backends:
        check_backend(b, "--canary-backend")
    if canary.gateway and not NAME_RE.fullmatch(canary.gateway):
        raise DeployError(f"gateway {canary.gateway!r} is not a valid Kubernetes name", "lowercase letters, digits, '-'")


def refuse_without_canary(split_key: str, gateway: str | None, backends: tuple[str, ...]) -> None:
    """Canary-only options given without --canary would be silently ignored: say so instead."""
    given = [flag for flag, value in (("--split-key", split_key != "client"), ("--gateway", gateway),
                                      ("--canary-backend", backends)) if value]
    if given:
        raise DeployError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to a canary",
                          "add --canary REGISTRY/REPO@sha256:...")


def replica_split(total: int, weight: float) -> tuple[int, int]:
    """(stable, canary) replicas out of `total` closest to `weight` percent, at least one each."""
    canary = min(max(1, round(total * weight / 100)), max(total - 1, 1))
    return max(total - canary, 1), canary


# ---- nginx -----------------------------------------------------------------------------------------------------

def _split_variable(split_key: str) -> tuple[str, str]:
    """(nginx lines that define the key, the variable split_clients hashes)."""
    if split_key == "client":
        return "", "$remote_addr"
    var = "$http_" + split_key[7:].lower().replace("-", "_")
    # a request without the header is keyed by its address, not all lumped into the empty string's bucket
    return (f"map {var} $bge_split_key {{\n    \"\"      $remote_addr;\n    default {var};\n}}\n\n",
            "$bge_split_key")


def nginx(profile: Profile, options: DeployOptions, canary: CanaryOptions) -> str:
    name = app_name(profile, options).replace("-", "_")
    port = profile.server.port
    stable = options.backends or tuple(f"127.0.0.1:{port + i}" for i in range(options.replicas))
    candidate = canary.backends or (f"127.0.0.1:{port + len(stable)}",)
    keymap, key = _split_variable(canary.split_key)
    return (f"# Rendered by bgeimg: canary {canary.weight:g}% to {canary.candidate}\n"
            f"# stable {options.image}\n"
            "# split_clients hashes the key, so one client (or header value) always reaches the same side.\n"
            f"{keymap}split_clients \"{key}\" ${name}_pool {{\n"
            f"    {canary.weight:g}%    {name}_candidate;\n    *       {name}_stable;\n}}\n\n"
            f"{upstream(f'{name}_stable', stable)}\n{upstream(f'{name}_candidate', candidate)}\n"
            f"{proxy_server(f'${name}_pool')}")


# ---- Kubernetes ------------------------------------------------------------------------------------------------

def _track(doc: dict, name: str, track: str, image: str | None = None) -> dict:
    """A copy of a Deployment, Service or HPA of bgeimg.deploy for one track (name-stable / name-canary)."""
    out = copy.deepcopy(doc)
    out["metadata"]["name"] = f"{name}-{track}"
    out["metadata"]["labels"][TRACK_LABEL] = track
    kind = out["kind"]
    if kind == "Deployment":
        out["spec"]["selector"]["matchLabels"][TRACK_LABEL] = track
        out["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] = track
        out["spec"]["template"]["spec"]["containers"][0]["image"] = image
    elif kind == "Service":
        out["spec"]["selector"][TRACK_LABEL] = track
    elif kind == "HorizontalPodAutoscaler":
        out["spec"]["scaleTargetRef"]["name"] = f"{name}-{track}"
    return out


def kubernetes_canary(profile: Profile, options: DeployOptions, canary: CanaryOptions) -> list[dict]:
    """Stable and canary Deployments, one Service over both; with a gateway, a Service and an HPA per track and
    an HTTPRoute with the weights."""
    name = app_name(profile, options)
    stable_n, canary_n = replica_split(options.replicas, canary.weight)
    share = 100 * canary_n / (stable_n + canary_n)
    if not canary.gateway and abs(share - canary.weight) > RATIO_SLACK:
        raise DeployError(f"with {options.replicas} replicas a {canary.weight:g}% canary gets {share:.0f}% of the "
                          f"traffic ({stable_n} stable, {canary_n} canary)",
                          f"pass --replicas {max(2, round(100 / canary.weight))} or more, or --gateway NAME to "
                          "split by weight")
    deployment, service, hpa = kubernetes(profile, options)
    docs = [_track(deployment, name, "stable", options.image), _track(deployment, name, "canary", canary.candidate)]
    docs[0]["spec"]["replicas"], docs[1]["spec"]["replicas"] = stable_n, canary_n
    docs.append(service)  # selects app.kubernetes.io/name only: both tracks
    if canary.gateway:
        docs += [_track(service, name, "stable"), _track(service, name, "canary"),
                 _track(hpa, name, "stable"), _track(hpa, name, "canary")]
        stable_w = round((100 - canary.weight) * 100)
        parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": canary.gateway}
        if canary.gateway_namespace:
            parent["namespace"] = canary.gateway_namespace
        docs.append({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {**copy.deepcopy(service["metadata"]), "name": name},
            "spec": {"parentRefs": [parent], "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                # weights are relative integers: percent x 100 keeps two decimals exact
                "backendRefs": [{"group": "", "kind": "Service", "name": f"{name}-stable", "port": 80,
                                 "weight": stable_w},
                                {"group": "", "kind": "Service", "name": f"{name}-canary", "port": 80,
                                 "weight": 10000 - stable_w}]}]},
        })
    return docs


def render(target: str, profile: Profile, options: DeployOptions, canary: CanaryOptions) -> dict[str, str]:
    """file name -> text, as bgeimg.operate.deploy.render, with the candidate next to the stable image."""
    if target not in ("k8s", "nginx"):
        raise DeployError(f"--canary works with --target k8s or nginx, not {target}",
                          "compose has no traffic split; render nginx in front of two compose projects")
    check_canary(options, canary)
    if target == "k8s":
        return {"k8s.yaml": dump_yaml(kubernetes_canary(profile, options, canary))}
    return {"nginx.conf": nginx(profile, options, canary)}
