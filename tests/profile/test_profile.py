"""Profile resolution: extends, project config, --set, user profiles and user template blocks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.context.render import render_dockerfile
from bgeimg.errors import ProfileError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_profiles_are_listed_with_aliases() -> None:
    rows = {name: aliases for name, aliases, _, _ in profiles.list_profiles(profiles.search_dirs())}
    assert set(rows) == {"cpu-slim", "cuda-runtime", "external-model", "onnx-cpu", "onnx-external"}
    assert rows["cuda-runtime"] == ["gpu"]


def test_extends_inherits_and_overrides() -> None:
    cpu = profiles.resolve("cpu-slim").profile
    ext = profiles.resolve("external-model").profile
    assert ext.requirements == cpu.requirements  # from _base through cpu-slim
    assert ext.torch_index_url == cpu.torch_index_url == "https://download.pytorch.org/whl/cpu"
    assert cpu.model.source == "hf" and ext.model.source == "none" and ext.model.id == "BAAI/bge-m3"
    gpu = profiles.resolve("gpu").profile
    assert gpu.name == "cuda-runtime" and gpu.python == "base" and gpu.torch_index_url is None
    assert gpu.cuda == "13.0" and gpu.torch_index == "https://download.pytorch.org/whl/cu130"
    assert cpu.cuda is None and cpu.torch_index == cpu.torch_index_url


@pytest.mark.parametrize(("sets", "message"), [
    (["cuda=12.4"], "--set cuda: cuda: '12.4' is not a CUDA flavour; choose one of 12.6, 12.8, 13.0"),
    (["device=cpu"], "cuda: a CUDA flavour is for device: cuda images only"),
    (["cuda=null"], "cuda: device cuda needs a CUDA flavour: set cuda: \"13.0\" (one of 12.6, 12.8, 13.0)"),
])
def test_cuda_flavour_is_checked(sets, message) -> None:
    with pytest.raises(ProfileError, match=re.escape(message)):
        profiles.resolve("gpu", sets=sets)


def test_cuda_flavour_from_yaml_number_and_mirror_index() -> None:
    gpu = profiles.resolve("gpu", sets=["cuda=12.8", "torch_index_url=https://mirror.example.com/whl/cu128"]).profile
    assert gpu.cuda == "12.8"  # YAML read 12.8 as a number
    assert gpu.torch_index == "https://mirror.example.com/whl/cu128"  # a mirror replaces PyTorch's index


def test_set_overrides_scalars_lists_and_nested_model_fields() -> None:
    p = profiles.resolve(
        "cpu-slim",
        sets=["server.port=9000", "platforms=[linux/amd64,linux/arm64]", "model.revision=abc123", "slim.remove_pip=true"],
    ).profile
    assert p.server.port == 9000
    assert p.platforms == ["linux/amd64", "linux/arm64"]
    # refines `model: hf://BAAI/bge-m3@main` instead of replacing it
    assert (p.model.source, p.model.id, p.model.revision) == ("hf", "BAAI/bge-m3", "abc123")
    assert p.slim.remove_pip is True


def test_project_config_overrides_profile_and_set_wins(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bgeimg.yaml", "profile: external-model\nregistry: reg.example.com/ml\nserver:\n  port: 7000\n"
                "  workers: 2\nmodel: ./weights\n")
    (tmp_path / "weights").mkdir()
    config = profiles.load_config(cfg)
    assert config.registry == "reg.example.com/ml"
    p = profiles.resolve(config=config, sets=["server.port=7100"]).profile
    assert p.name == "external-model"
    assert (p.server.port, p.server.workers) == (7100, 2)
    assert p.model.source == "path" and p.model.path == str((tmp_path / "weights").resolve())


def test_config_is_found_in_working_directory(tmp_path: Path) -> None:
    write(tmp_path / "bgeimg.yaml", "profile: gpu\n")
    assert profiles.load_config(cwd=tmp_path).profile == "gpu"
    assert profiles.load_config(cwd=tmp_path / "nowhere").profile == "cpu-slim"


def test_user_profile_dir_extends_builtin_and_can_shadow(tmp_path: Path) -> None:
    write(tmp_path / "reranker.yaml", "extends: cpu-slim\ndescription: my reranker\n"
          "model: hf://BAAI/bge-reranker-v2-m3@main\n")
    write(tmp_path / "reranker.yaml", "extends: cpu-slim\ndescription: my reranker\n"
          "model:\n  source: hf\n  id: BAAI/bge-reranker-v2-m3\n  task: rerank\n")
    write(tmp_path / "cpu-slim.yaml", "extends: _base\ndescription: shadowed\n")
    p = profiles.resolve("reranker", profile_dirs=[tmp_path]).profile
    assert p.model.id == "BAAI/bge-reranker-v2-m3" and p.model.task == "rerank"
    # the user's cpu-slim shadows the built-in one, so the reranker inherits no torch index
    assert p.torch_index_url is None
    names = [n for n, *_ in profiles.list_profiles(profiles.search_dirs([tmp_path]))]
    assert "reranker" in names


def test_user_template_overrides_a_block(tmp_path: Path) -> None:
    tpl = write(tmp_path / "my.Dockerfile.j2",
                '{% extends "Dockerfile.j2" %}\n{% block footer %}\nLABEL team="search"\n{% endblock %}\n'
                "{% block app %}{{ super() }}COPY extra.txt /opt/app/extra.txt\n{% endblock %}\n")
    text = render_dockerfile(profiles.resolve("cpu-slim", sets=[f"template={tpl}"]).profile)
    assert text.rstrip().endswith('LABEL team="search"')
    assert "COPY server/ /opt/app/\nCOPY entrypoint.sh /usr/local/bin/bgeimg-entrypoint\nCOPY extra.txt" in text


def test_mirror_rewrites_docker_hub_images_only() -> None:
    assert profiles.mirror_image("python:3.11-slim", "mirror.local:5000") == "mirror.local:5000/library/python:3.11-slim"
    assert profiles.mirror_image("nvidia/cuda:12.4.1-runtime-ubuntu22.04", "m.io/hub") == \
        "m.io/hub/nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert profiles.mirror_image("docker.io/library/python:3.11", "m.io") == "m.io/library/python:3.11"
    assert profiles.mirror_image("ghcr.io/org/img:1", "m.io") == "ghcr.io/org/img:1"
    p = profiles.resolve("cpu-slim", sets=["mirrors.registry=mirror.local:5000"]).profile
    assert "FROM mirror.local:5000/library/python:3.11-slim AS builder" in render_dockerfile(p)


def test_pip_mirror_is_a_builder_arg_not_runtime_env() -> None:
    p = profiles.resolve("cpu-slim", sets=["mirrors.pip_index_url=https://pypi.mirror.local/simple",
                                           "mirrors.pip_trusted_hosts=[pypi.mirror.local]"]).profile
    text = render_dockerfile(p)
    builder, runtime = text.split(" AS runtime", 1)
    assert "ARG PIP_INDEX_URL=https://pypi.mirror.local/simple" in builder
    assert "ARG PIP_TRUSTED_HOST=pypi.mirror.local" in builder
    assert "pypi.mirror.local" not in runtime


def test_profile_error_names_the_file_of_a_bad_value(tmp_path: Path) -> None:
    write(tmp_path / "bad.yaml", "extends: cpu-slim\nserver:\n  port: seventy\n")
    with pytest.raises(ProfileError) as info:
        profiles.resolve("bad", profile_dirs=[tmp_path])
    assert str(info.value).startswith(f"{tmp_path / 'bad.yaml'}: server.port: ")
