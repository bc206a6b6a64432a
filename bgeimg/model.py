"""Model sources: put exactly the files the runtime needs into the build context.

`hf://org/name@revision` (through huggingface_hub), a local directory, or none (the external-model profile).
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bgeimg.errors import ModelError
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

    @property
    def total_bytes(self) -> int:
        return self._bytes

    _bytes: int = 0


def wanted(relpaths: list[str]) -> list[str]:
    """The files the runtime loads: safetensors over a duplicate pytorch .bin, no other-runtime exports."""
    keep = [p for p in relpaths if not any(fnmatch.fnmatch(p, pat) for pat in SKIP_PATTERNS)]
    has_safetensors = any(p.endswith(".safetensors") for p in keep)
    if has_safetensors:
        keep = [p for p in keep if not fnmatch.fnmatch(p.rsplit("/", 1)[-1], "pytorch_model*.bin")]
    return sorted(keep)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_local(spec: ModelSpec, dest: Path) -> ModelFiles:
    """Copy the needed files of a local model directory into `dest`."""
    src = Path(spec.path or "")
    if not src.is_dir():
        raise ModelError(f"model path {src} is not a directory", "point model.path at a directory with config.json")
    if not (src / "config.json").is_file():
        raise ModelError(f"model path {src} has no config.json", "give the directory that holds the model's files")
    rel = [p.relative_to(src).as_posix() for p in sorted(src.rglob("*")) if p.is_file()]
    result = ModelFiles(source="path", model_id=spec.id, revision=spec.revision)
    for name in wanted(rel):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, target)
        result.files[name] = _sha256(target)
        result._bytes += target.stat().st_size
    return result


def materialize(spec: ModelSpec, dest: Path) -> ModelFiles | None:
    """Fill `dest` (the context's model/ directory) from the spec; None when the image carries no weights."""
    if spec.source == "none":
        return None
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if spec.source == "path":
        return copy_local(spec, dest)
    raise ModelError("hf:// model sources are not supported yet", "use a local directory (model.path) for now")
