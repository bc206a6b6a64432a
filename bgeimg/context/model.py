"""Model sources: put exactly the files the runtime needs into the build context.

`hf://org/name@revision` (through huggingface_hub), a local directory, or none (the external-model profile).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.errors import ModelError, OutsideError
from bgeimg.oci.streams import sha256_file
from bgeimg.profile import ModelSpec

# Never needed by the server: other runtimes' exports, repo metadata, docs and images.
SKIP_PATTERNS = ["onnx/*", "openvino/*", "*.onnx", "*.onnx_data", ".git/*", ".gitattributes", "*.md", "*.png",
                 "*.jpg", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*", "rust_model*", "imgs/*"]


@dataclass
class ModelFiles:
    """What went into the context: the resolved revision and each file's sha256 (for labels and bgeimg.lock)."""

    source: str
    model_id: str | None
    revision: str
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    sizes: dict[str, int] = field(default_factory=dict)  # relative path -> bytes

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


# The ONNX runtime's export stage uses a repository's own graph when it fits (other onnx/ variants stay behind).
ONNX_GRAPH = ["onnx/model.onnx", "onnx/model.onnx_data", "onnx/tokenizer.json"]


def wanted(relpaths: list[str], *, onnx: bool = False) -> list[str]:
    """The files the runtime loads: safetensors over a duplicate pytorch .bin, no other-runtime exports (with
    `onnx`, the repository's onnx/model.onnx too)."""
    keep = [p for p in relpaths if (onnx and p in ONNX_GRAPH)
            or not any(fnmatch.fnmatch(p, pat) for pat in SKIP_PATTERNS)]
    has_safetensors = any(p.endswith(".safetensors") for p in keep)
    if has_safetensors:
        keep = [p for p in keep if not fnmatch.fnmatch(p.rsplit("/", 1)[-1], "pytorch_model*.bin")]
    return sorted(keep)




def copy_local(spec: ModelSpec, dest: Path, *, onnx: bool = False) -> ModelFiles:
    """Copy the needed files of a local model directory into `dest`."""
    src = Path(spec.path or "")
    if not src.is_dir():
        raise ModelError(f"model path {src} is not a directory", "point model.path at a directory with config.json")
    if not (src / "config.json").is_file():
        raise ModelError(f"model path {src} has no config.json", "give the directory that holds the model's files")
    rel = [p.relative_to(src).as_posix() for p in sorted(src.rglob("*")) if p.is_file()]
    result = ModelFiles(source="path", model_id=spec.id, revision=spec.revision)
    for name in wanted(rel, onnx=onnx):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src / name, target)  # same inode/mtime: BuildKit does not resend unchanged weights
        result.files[name] = sha256_file(target)
        result.sizes[name] = target.stat().st_size
    return result


def _hf_error(spec: ModelSpec, endpoint: str, exc: Exception, offline: bool = False) -> ModelError | OutsideError:
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{spec.id}@{spec.revision} on {endpoint}"
    if offline and isinstance(exc, LocalEntryNotFoundError):
        return ModelError(f"HF_HUB_OFFLINE is set and the local Hugging Face cache lacks {spec.id}'s locked files",
                          "build once online with the same HF_HOME / cache, or unset HF_HUB_OFFLINE")
    if isinstance(exc, RevisionNotFoundError):
        return ModelError(f"revision {spec.revision!r} of {spec.id} not found on {endpoint}",
                          "give an existing branch, tag or commit sha in model.revision")
    if isinstance(exc, GatedRepoError):
        return ModelError(f"{where} is gated", "accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelError(f"model {spec.id} not found on {endpoint} (or private)",
                          "check model.id, or set HF_TOKEN for a private model")
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return OutsideError(f"cannot fetch {where}: {reason}",
                        "check the network or point HF_ENDPOINT / mirrors.hf_endpoint at a reachable mirror")


def fetch_hf(spec: ModelSpec, dest: Path, *, endpoint: str | None = None, token: str | None = None,
             pinned: LockedModel | None = None, cache_dir: Path | None = None, onnx: bool = False) -> ModelFiles:
    """Resolve the revision to a commit sha and download the files the runtime needs into `dest`.

    With `pinned` (from bgeimg.lock) the locked commit is used instead of resolving the branch again, and every
    file must match its locked sha256. The token goes to huggingface_hub only: never printed or written."""
    from huggingface_hub import HfApi, snapshot_download

    assert spec.id is not None, "an hf:// model spec always has an id (the schema requires it)"
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    token = token or os.environ.get("HF_TOKEN") or None
    cache_dir = cache_dir or (Path(os.environ["BGEIMG_HF_CACHE"]) if os.environ.get("BGEIMG_HF_CACHE") else None)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline and not pinned:
        raise ModelError(f"HF_HUB_OFFLINE is set and {LOCK_FILE} does not pin {spec.id}@{spec.revision}",
                         "build once online to write the lock (or unset HF_HUB_OFFLINE); offline builds use the "
                         "locked commit and files from the local Hugging Face cache")
    try:
        if pinned:  # the lock names the commit and the files: no hub query, and offline from the cache works
            commit, names = pinned.commit, sorted(pinned.files)
        else:
            info = HfApi(endpoint=endpoint, token=token).model_info(spec.id, revision=spec.revision, token=token)
            commit = info.sha or spec.revision
            names = wanted([s.rfilename for s in info.siblings or []], onnx=onnx)
        if not any(n == "config.json" for n in names):
            raise ModelError(f"{spec.id}@{commit} has no config.json", "is this a transformers model repository?")
        # snapshot_download: parallel, resumable, only these files, verified into the shared cache.
        snapshot = Path(snapshot_download(spec.id, revision=commit, allow_patterns=names, endpoint=endpoint,
                                          token=token, cache_dir=str(cache_dir) if cache_dir else None,
                                          local_files_only=offline))
        result = ModelFiles(source="hf", model_id=spec.id, revision=commit)
        for name in names:
            source = snapshot / name
            if not source.is_file():
                raise ModelError(f"{spec.id}@{commit}: {name} is missing from the download",
                                 "check the lock against the repository (--update-lock re-resolves it)")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source.resolve(), target)
            result.files[name] = sha256_file(target)
            result.sizes[name] = target.stat().st_size
    except ModelError:
        raise
    except Exception as exc:  # huggingface_hub and httpx errors become one line
        raise _hf_error(spec, endpoint, exc, offline=offline) from None
    if pinned:
        pinned.verify(result)
    return result


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)  # the source and the context share the bytes of multi-GB weights
    except OSError:
        shutil.copy2(src, dst)  # keeps the mtime, so the build cache still recognises the file


def materialize(spec: ModelSpec, dest: Path, *, lock: Lock | None = None, endpoint: str | None = None,
                token: str | None = None, onnx: bool = False) -> ModelFiles | None:
    """Fill `dest` (the context's model/ directory) from the spec; None when the image carries no weights.

    With a lock, an hf:// model uses its locked commit and is verified file by file; a new model is added to it.
    With `onnx` (runtime onnx) the repository's onnx/ graph comes too, and a model the builder's export cannot
    handle is refused here, before the build."""
    from bgeimg.context.onnx import check_exportable

    if spec.source == "none":
        return None
    if onnx and spec.source == "path" and Path(spec.path or "").is_dir():
        check_exportable(Path(spec.path or ""))
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if spec.source == "path":
        files = copy_local(spec, dest, onnx=onnx)
    else:
        pinned = lock.find(spec) if lock else None
        files = fetch_hf(spec, dest, endpoint=endpoint, token=token, pinned=pinned, onnx=onnx)
        if onnx:
            check_exportable(dest)
    if lock is not None:
        lock.record(spec, files)
    return files


# ---------------------------------------------------------------------------------------------------------
# bgeimg.lock: the resolved commit and each file's sha256, so a later build gets exactly the same weights.

LOCK_FILE = "bgeimg.lock"


@dataclass
class LockedModel:
    """One model's entry in bgeimg.lock."""

    model_id: str
    requested: str  # the revision the profile asked for (branch, tag or sha)
    commit: str
    files: dict[str, dict[str, object]]  # name -> {sha256, size}

    def verify(self, got: ModelFiles) -> None:
        if set(got.files) != set(self.files):
            missing = sorted(set(self.files) - set(got.files)) or sorted(set(got.files) - set(self.files))
            raise ModelError(f"{self.model_id}@{self.commit}: files differ from {LOCK_FILE} ({', '.join(missing)})",
                             f"if the change is intended, delete the entry from {LOCK_FILE} or pass --update-lock")
        for name, digest in got.files.items():
            if self.files[name]["sha256"] != digest:
                raise ModelError(f"{self.model_id}@{self.commit}: {name} has sha256 {digest[:12]}…, "
                                 f"{LOCK_FILE} says {str(self.files[name]['sha256'])[:12]}…",
                                 "the download was altered or the lock is stale; pass --update-lock to accept it")


@dataclass
class Lock:
    """The lock file: read, consulted, updated and written back in a stable form."""

    path: Path
    models: dict[str, LockedModel] = field(default_factory=dict)
    update: bool = False  # --update-lock: re-resolve and overwrite entries instead of verifying

    @classmethod
    def load(cls, path: Path, *, update: bool = False) -> Lock:
        lock = cls(path=path, update=update)
        if not path.is_file():
            return lock
        try:
            data = json.loads(path.read_text())
            for key, entry in data.get("models", {}).items():
                lock.models[key] = LockedModel(model_id=entry["id"], requested=entry["requested"],
                                               commit=entry["commit"], files=entry["files"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{path}: not a valid bgeimg lock file ({exc})", f"delete {path} to recreate it") from None
        return lock

    @staticmethod
    def key(spec: ModelSpec) -> str:
        return f"{spec.id or spec.path}@{spec.revision}"

    def find(self, spec: ModelSpec) -> LockedModel | None:
        return None if self.update else self.models.get(self.key(spec))

    def record(self, spec: ModelSpec, files: ModelFiles) -> None:
        if files.source != "hf":
            return  # a local directory is its own pin; nothing to resolve later
        self.models[self.key(spec)] = LockedModel(
            model_id=spec.id or "", requested=spec.revision, commit=files.revision,
            files={name: {"sha256": digest, "size": (files.sizes or {}).get(name, 0)}
                   for name, digest in sorted(files.files.items())})

    def write(self) -> None:
        data = {"version": 1, "comment": "written by bgeimg; commit it so every build gets the same weights",
                "models": {k: {"id": m.model_id, "requested": m.requested, "commit": m.commit, "files": m.files}
                           for k, m in sorted(self.models.items())}}
        from bgeimg import atomic

        atomic.write_text(self.path, json.dumps(data, indent=2, sort_keys=False) + "\n")
