"""hf:// model sources through the real huggingface_hub client against a local hub TEST DOUBLE (fake_hub.py):
revision resolved to a commit, only the runtime's files, bgeimg.lock written and enforced, token kept secret."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from bgeimg import profile as profiles
from bgeimg.cli.app import main
from bgeimg.context import assemble as context
from bgeimg.context import model as models
from bgeimg.errors import ModelError, OutsideError

sys.path.insert(0, str(Path(__file__).parent))
from fake_hub import FakeHub, FakeRepo  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "test-token-not-a-secret-0123456789abcdef"


@pytest.fixture()
def hub(minilm_dir, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(minilm_dir, repo)
    (repo / "pytorch_model.bin").write_bytes(b"duplicate weights" * 100)
    (repo / "onnx").mkdir()
    (repo / "onnx" / "model.onnx").write_bytes(b"onnx export")
    hub = FakeHub(repos={"BAAI/tiny-m3": FakeRepo(repo, COMMIT),
                         "BAAI/private-m3": FakeRepo(repo, COMMIT, token=TOKEN)}).start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("BGEIMG_HF_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield hub
    hub.stop()


def spec(ref: str) -> profiles.ModelSpec:
    return profiles.ModelSpec.model_validate(ref)


def test_fetch_resolves_the_commit_and_takes_only_runtime_files(hub, minilm_dir, tmp_path) -> None:
    files = models.materialize(spec("hf://BAAI/tiny-m3@main"), tmp_path / "model")
    assert files.revision == COMMIT and files.source == "hf"
    assert "model.safetensors" in files.files and "1_Pooling/config.json" in files.files
    assert "pytorch_model.bin" not in files.files and not any(n.startswith("onnx/") for n in files.files)
    assert "README.md" not in files.files
    assert files.files["model.safetensors"] == hashlib.sha256((minilm_dir / "model.safetensors").read_bytes()).hexdigest()
    assert not (tmp_path / "model" / ".cache").exists()  # no hub metadata inside the context


def test_lock_pins_the_commit_and_the_label_carries_it(hub, tmp_path) -> None:
    lock_path = tmp_path / "bgeimg.lock"
    p = profiles.resolve("cpu-slim", sets=["model=hf://BAAI/tiny-m3@main"]).profile
    ctx = context.prepare(p, tmp_path / "ctx", lock=models.Lock.load(lock_path))
    assert f'io.bgeimg.model.revision="{COMMIT}"' in ctx.rendered.dockerfile
    data = json.loads(lock_path.read_text())
    entry = data["models"]["BAAI/tiny-m3@main"]
    assert entry["commit"] == COMMIT and entry["requested"] == "main"
    assert entry["files"]["model.safetensors"]["size"] > 1_000_000
    # a second build asks the hub for the locked commit, not the branch
    hub.requests.clear()
    context.prepare(p, tmp_path / "ctx2", lock=models.Lock.load(lock_path))
    assert not any("/main" in path for _, path, _ in hub.requests), hub.requests  # never the branch again
    assert all(COMMIT in path for _, path, _ in hub.requests if path.startswith("/api/"))


def test_lock_refuses_changed_weights(hub, tmp_path) -> None:
    lock_path = tmp_path / "bgeimg.lock"
    p = profiles.resolve("cpu-slim", sets=["model=hf://BAAI/tiny-m3@main"]).profile
    context.prepare(p, tmp_path / "ctx", lock=models.Lock.load(lock_path))
    (hub.repos["BAAI/tiny-m3"].directory / "vocab.txt").write_text("tampered\n")
    fresh_cache = tmp_path / "cache2"
    with pytest.raises(ModelError) as info:
        models.fetch_hf(spec("hf://BAAI/tiny-m3@main"), tmp_path / "m", pinned=models.Lock.load(lock_path).find(
            spec("hf://BAAI/tiny-m3@main")), cache_dir=fresh_cache)
    assert "vocab.txt has sha256" in str(info.value) and "--update-lock" in str(info.value)
    # the model really changed upstream (a new commit on main): --update-lock accepts it
    hub.repos["BAAI/tiny-m3"].commit = "f" * 40
    lock = models.Lock.load(lock_path, update=True)
    models.materialize(spec("hf://BAAI/tiny-m3@main"), tmp_path / "m2", lock=lock)
    assert lock.models["BAAI/tiny-m3@main"].files["vocab.txt"]["size"] == len("tampered\n")
    assert lock.models["BAAI/tiny-m3@main"].commit == "f" * 40


def test_errors_are_one_line(hub, tmp_path, monkeypatch) -> None:
    with pytest.raises(ModelError, match=r"revision 'nope' of BAAI/tiny-m3 not found on http://127\.0\.0\.1:\d+"):
        models.fetch_hf(spec("hf://BAAI/tiny-m3@nope"), tmp_path / "a")
    with pytest.raises(ModelError, match="model BAAI/absent not found on .* \\(or private\\)"):
        models.fetch_hf(spec("hf://BAAI/absent@main"), tmp_path / "b")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(OutsideError, match="cannot fetch BAAI/tiny-m3@main on http://127.0.0.1:9: "):
        models.fetch_hf(spec("hf://BAAI/tiny-m3@main"), tmp_path / "c")


def test_token_reaches_the_hub_but_nothing_else(hub, tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(ModelError, match="or private"):
        models.fetch_hf(spec("hf://BAAI/private-m3@main"), tmp_path / "x")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    out_dir = tmp_path / "ctx"
    monkeypatch.setattr(sys, "argv", ["bgeimg", "render", "--set", "model=hf://BAAI/private-m3@main", "-o", str(out_dir)])
    main()
    output = capsys.readouterr()
    assert any({k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {TOKEN}"
               for _, _, h in hub.requests)
    assert TOKEN not in output.out + output.err
    written = [p for p in [*out_dir.rglob("*"), tmp_path / "bgeimg.lock"] if p.is_file()]
    assert (tmp_path / "bgeimg.lock").exists() and len(written) > 5
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path


def test_render_cli_writes_the_lock_beside_the_config(hub, tmp_path, monkeypatch) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "bgeimg.yaml").write_text("profile: cpu-slim\nmodel: hf://BAAI/tiny-m3@main\n")
    monkeypatch.setattr(sys, "argv", ["bgeimg", "render", "--config", str(tmp_path / "proj" / "bgeimg.yaml"),
                                      "-o", str(tmp_path / "ctx")])
    main()
    assert json.loads((tmp_path / "proj" / "bgeimg.lock").read_text())["models"]["BAAI/tiny-m3@main"]["commit"] == COMMIT
    assert f'io.bgeimg.model.revision="{COMMIT}"' in (tmp_path / "ctx" / "Dockerfile").read_text()


def test_offline_build_from_the_cache_with_a_lock(hub, tmp_path, monkeypatch) -> None:
    lock_path = tmp_path / "bgeimg.lock"
    p = profiles.resolve("cpu-slim", sets=["model=hf://BAAI/tiny-m3@main"]).profile
    context.prepare(p, tmp_path / "online", lock=models.Lock.load(lock_path))
    hub.stop()  # nothing answers any more: what follows can only come from the local cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    ctx = context.prepare(p, tmp_path / "offline", lock=models.Lock.load(lock_path))
    assert f'io.bgeimg.model.revision="{COMMIT}"' in ctx.rendered.dockerfile
    assert (tmp_path / "offline" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "online" / "model" / "model.safetensors").read_bytes()
    # offline without a lock, and offline with a lock but an empty cache: one line each, no network tried
    with pytest.raises(ModelError, match=r"^HF_HUB_OFFLINE is set and bgeimg.lock does not pin BAAI/tiny-m3@main"):
        models.fetch_hf(spec("hf://BAAI/tiny-m3@main"), tmp_path / "nolock")
    pinned = models.Lock.load(lock_path).find(spec("hf://BAAI/tiny-m3@main"))
    with pytest.raises(ModelError, match="the local Hugging Face cache lacks BAAI/tiny-m3's locked files"):
        models.fetch_hf(spec("hf://BAAI/tiny-m3@main"), tmp_path / "empty", pinned=pinned,
                        cache_dir=tmp_path / "empty-cache")
