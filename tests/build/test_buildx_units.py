"""The buildx backend's decisions without an engine: what `docker buildx inspect` says, when several platforms
go in one call, the flags' command lines, which platform a multi-platform failure names, and buildx's failure
lines turned into bgeimg's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgeimg.build import builders
from bgeimg.build import run as builds
from bgeimg.build.backends.base import BuildRequest, RegistryRefused, Step, StepLog, classify_failure
from bgeimg.build.backends.buildx import BuildxEngine
from bgeimg.build.backends.progress import PlainProgress
from bgeimg.errors import BgeimgError

INSPECT_26 = """Name:          default
Driver:        docker
Last Activity: 2026-12-01 23:24:23 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.0.0+unknown
Platforms:        linux/amd64, linux/amd64/v2, linux/arm64
Labels:
 org.mobyproject.buildkit.worker.executor:             containerd
"""

INSPECT_FARM = """Name:          farm
Driver:        remote

Nodes:
Name:             farm0
Endpoint:         tcp://amd64-node:1234
Status:           running
BuildKit version: v0.13.2
Platforms:        linux/amd64*, linux/386

Name:             farm1
Endpoint:         tcp://arm64-node:1234
Status:           running
BuildKit version: v0.13.2
Platforms:        linux/arm64*
"""


def test_inspect_parses_driver_and_every_nodes_platforms():
    default = builders.parse_inspect(INSPECT_26)
    assert (default.name, default.driver) == ("default", "docker")
    assert default.platforms == ("linux/amd64", "linux/amd64/v2", "linux/arm64")
    farm = builders.parse_inspect(INSPECT_FARM)
    assert farm.platforms == ("linux/amd64", "linux/386", "linux/arm64") and farm.buildkit == "v0.13.2"
    assert farm.serves("linux/arm64") and farm.serves("linux/arm64/v8") and not farm.serves("linux/s390x")


DU_VERBOSE = """ID:		y5l3j4b9qqif27zc5yrp8dc4p
Parent:		moc0yvi22aehsl8c9oz4fr0pr
Created at:	2026-12-02 02:48:16.969986866 +0000 UTC
Mutable:	false
Description:	mount / from exec /bin/sh -c echo a
Type:		regular

ID:		egdank35ru0lq6e21xrtnexkh
Created at:	2026-12-02 02:59:31.185521531 +0000 UTC
Description:	local source for context

Reclaimable:	7.7GB
Total:		7.7GB
"""


def test_du_gives_each_record_with_its_creation_time():
    assert builders.parse_du(DU_VERBOSE) == {"y5l3j4b9qqif27zc5yrp8dc4p": "2026-12-02 02:48:16.969986866 +0000 UTC",
                                             "egdank35ru0lq6e21xrtnexkh": "2026-12-02 02:59:31.185521531 +0000 UTC"}


def test_several_platforms_at_once_only_where_the_builder_can():
    docker = builders.parse_inspect(INSPECT_26)
    assert builders.builds_many_at_once(docker, "containerd")
    assert not builders.builds_many_at_once(docker, "classic")
    assert builders.builds_many_at_once(builders.parse_inspect(INSPECT_FARM), "classic")
    assert builders.image_store({"DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}) == "containerd"
    assert builders.image_store({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}) == "classic"


def _engine(inspect: str, store: str) -> BuildxEngine:
    engine = BuildxEngine("/usr/bin/docker")
    engine._builder = builders.parse_inspect(inspect)
    engine.image_store = lambda: store  # type: ignore[method-assign]
    return engine


def test_plan_falls_back_to_one_platform_per_call_with_one_note():
    groups, note = _engine(INSPECT_26, "classic").plan(["linux/amd64", "linux/arm64"], push=True)
    assert groups == [["linux/amd64"], ["linux/arm64"]]
    assert note == ("buildx builder default (docker driver) on a classic image store builds one platform per call: "
                    "building linux/amd64, linux/arm64 in turn, and assembling the index as bgeimg push does")
    assert _engine(INSPECT_26, "containerd").plan(["linux/amd64", "linux/arm64"], push=False) == \
        ([["linux/amd64", "linux/arm64"]], None)


def test_platform_not_served_names_the_builder_and_the_fix():
    with pytest.raises(builders.PlatformNotServed) as exc:
        builds.check_platforms(_engine(INSPECT_FARM, "classic"), ["linux/amd64", "linux/s390x"], None)
    assert str(exc.value) == ("buildx builder farm (remote driver) does not serve linux/s390x; it serves linux/amd64, "
                              "linux/386, linux/arm64 (add a node that serves it (docker buildx create --append "
                              "--name farm --platform linux/s390x ENDPOINT), or drop it from --platform)")
    builds.check_platforms(_engine(INSPECT_FARM, "classic"), ["linux/arm64"], Path("/nonexistent"))  # no qemu asked


def test_buildx_flags_reach_the_command_line(tmp_path):
    request = BuildRequest(context_dir=tmp_path, tags=("r/bge:1", "r/bge:latest"), platforms=("linux/amd64",),
                           build_args={"A": "1"}, secrets={"hf_token": Path("/run/t")}, builder="farm",
                           provenance="mode=max", sbom="true")
    cmd = _engine(INSPECT_FARM, "classic").command(request, tmp_path / "m.json")
    assert cmd == ["/usr/bin/docker", "buildx", "build", "--progress=plain", "--platform", "linux/amd64",
                   "--file", f"{tmp_path}/Dockerfile", "--metadata-file", f"{tmp_path}/m.json", "--builder", "farm",
                   "--tag", "r/bge:1", "--tag", "r/bge:latest", "--build-arg", "A=1",
                   "--secret", "id=hf_token,src=/run/t", "--provenance=mode=max", "--sbom=true", "--load",
                   str(tmp_path)]


def test_reproducible_output_per_driver(tmp_path):
    request = BuildRequest(context_dir=tmp_path, tags=("bge:1",), platforms=("linux/amd64", "linux/arm64"),
                           source_date_epoch=1700000000, push=True)
    docker = _engine(INSPECT_26, "containerd").command(request, tmp_path / "m.json", tmp_path / "i.tar")
    assert docker[-4:] == ["SOURCE_DATE_EPOCH=1700000000", "--output",
                           f"type=oci,rewrite-timestamp=true,dest={tmp_path}/i.tar", str(tmp_path)]
    farm = _engine(INSPECT_FARM, "classic").command(request, tmp_path / "m.json", tmp_path / "i.tar")
    assert farm[-3:] == ["--output", "type=image,push=true,rewrite-timestamp=true", str(tmp_path)]


def test_flag_values_parse_like_buildx(tmp_path, monkeypatch):
    assert builds.parse_build_args(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    assert builds.parse_secrets(["id=hf_token,src=/run/t"]) == {"hf_token": Path("/run/t")}
    with pytest.raises(BgeimgError, match="--secret takes id=ID,src=FILE"):
        builds.parse_secrets(["hf_token=abc"])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert builds.source_date_epoch(tmp_path) == 1234
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert builds.source_date_epoch(tmp_path) == builds.FIXED_EPOCH  # not a git checkout


def test_failures_name_the_failing_platform_and_the_refusing_registry():
    steps = [Step("[linux/amd64 builder 7/7] RUN pip install -r r.txt"),
             Step("[linux/arm64 builder 6/7] RUN pip install -r r.txt", failed=True,
                  output=["ERROR: No matching distribution found for pydantic-core==2.1"])]
    error = classify_failure("process did not complete", steps, base_images=["python:3.11-slim"], mirror=None,
                             wheelhouse=True, platform="linux/amd64,linux/arm64")
    assert str(error).startswith("the wheelhouse has no wheel for pydantic-core==2.1 (linux/arm64)")
    refused = classify_failure(
        'failed to solve: failed to push 127.0.0.1:5999/x/y:1: failed to do request: Head "https://127.0.0.1:5999/v2/'
        'x/y/blobs/sha256:20": dial tcp 127.0.0.1:5999: connect: connection refused', [], base_images=[],
        mirror=None, wheelhouse=False, platform="linux/amd64")
    assert isinstance(refused, RegistryRefused) and refused.exit_code == 3
    assert refused.message == "registry 127.0.0.1:5999 refused the push of 127.0.0.1:5999/x/y:1: connection refused"


def test_buildx_advice_lines_are_never_the_error():
    log = StepLog()
    progress = PlainProgress(log)
    for line in ["ERROR: Multi-platform build is not supported for the docker driver.",
                 "Switch to a different driver, or turn on the containerd image store, and try again.",
                 "Learn more at https://docs.docker.com/go/build-multi-platform/"]:
        list(progress.feed(line))
    assert progress.errors[-1] == "ERROR: Multi-platform build is not supported for the docker driver."


def test_bad_progress_and_secret_are_one_line_errors(tmp_path):
    from buildhelp import assert_one_line_error, run_cli

    line = assert_one_line_error(run_cli("build", "-p", "external-model", "--progress", "fancy"), 2)
    assert line == "error: --progress 'fancy' is not a progress mode (choose one of: auto, plain, quiet, rawjson)"
    line = assert_one_line_error(run_cli("build", "-p", "external-model", "--secret", "id=t,src=/nonexistent/t"), 2)
    assert line == "error: --secret id=t: /nonexistent/t is not a file (pass --secret id=ID,src=FILE)"
