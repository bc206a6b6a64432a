"""The test bed's second engine is what the modern-engine tests claim it is, and the first one is unchanged."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.engine


def test_docker26_is_26_with_the_containerd_store_and_buildx(docker26):
    info = json.loads(docker26.docker("info", "--format", "{{json .}}").stdout)
    assert info["ServerVersion"].startswith("26.1.5")
    assert ["driver-type", "io.containerd.snapshotter.v1"] in info["DriverStatus"]
    assert "http://127.0.0.1:5000/" in info["RegistryConfig"]["Mirrors"]
    assert docker26.docker("buildx", "version").stdout.split()[1].startswith("0.13.1")
    assert docker26.docker("buildx", "version", buildx=False, check=False).returncode != 0


def test_docker20_stays_classic_without_buildx_unless_asked(docker20):
    """`--engine auto` on the default client must keep choosing buildkit on 20.10: the plugin is only reachable
    through the buildx DOCKER_CONFIG."""
    info = json.loads(docker20.docker("info", "--format", "{{json .}}").stdout)
    assert info["ServerVersion"].startswith("20.10")
    assert info["Driver"] == "overlay2"
    assert docker20.docker("buildx", "version", buildx=False, check=False).returncode != 0
    assert docker20.docker("buildx", "version").returncode == 0  # asked for: the same plugin works on 20.10


def test_docker26_runs_arm64_and_reaches_the_network(docker26):
    out = docker26.docker("run", "--rm", "--platform", "linux/arm64", "python:3.11-slim", "python3", "-c",
                          "import platform, urllib.request; print(platform.machine(), urllib.request.urlopen("
                          "'http://deb.debian.org/debian/dists/bookworm/Release', timeout=20).status)").stdout
    assert out.split() == ["aarch64", "200"]
