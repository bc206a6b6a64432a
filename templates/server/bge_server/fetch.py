"""Download the pinned model into $BGE_MODEL_DIR on start (external-model images with an empty mount).

Runs through $HF_ENDPOINT when set (a mirror); uses $HF_TOKEN if the container was given one. Exits 1 with one
line saying what to do when the download cannot happen."""

from __future__ import annotations

import os
import sys

# The files the server loads; the same rule bgeimg applies on the host (safetensors over .bin, no other runtimes).
IGNORE = ["onnx/*", "openvino/*", "*.onnx", "*.onnx_data", "*.md", "*.png", "*.jpg", "*.h5", "*.msgpack", "*.ot",
          "tf_model*", "flax_model*", "rust_model*", "imgs/*", ".gitattributes"]
# The ONNX runtime takes a repository's own ONNX form: its onnx/ graph and the tokenizer and pooling files.
ONNX_FILES = ["onnx/model.onnx", "onnx/model.onnx_data", "onnx/tokenizer.json", "*.json", "*/config.json"]


def main() -> int:
    model_dir = os.environ.get("BGE_MODEL_DIR", "/models")
    model_id = os.environ.get("BGE_MODEL_ID", "")
    revision = os.environ.get("BGE_MODEL_REVISION", "main")
    if not model_id:
        print(f"bgeimg: no model in {model_dir} and no BGE_MODEL_ID to download; mount the weights at {model_dir}",
              file=sys.stderr)
        return 1
    try:
        from huggingface_hub import HfApi, snapshot_download

        files = HfApi().list_repo_files(model_id, revision=revision)
        ignore = list(IGNORE)
        if any(f.endswith(".safetensors") for f in files):
            ignore.append("pytorch_model*.bin")
        onnx = os.environ.get("BGE_RUNTIME", "torch") == "onnx"
        print(f"bgeimg: downloading {model_id}@{revision}{' (its ONNX form)' if onnx else ''} into {model_dir}",
              file=sys.stderr, flush=True)
        if onnx:
            snapshot_download(model_id, revision=revision, local_dir=model_dir, allow_patterns=ONNX_FILES)
        else:
            snapshot_download(model_id, revision=revision, local_dir=model_dir, ignore_patterns=ignore)
    except Exception as exc:  # one line, whatever went wrong: the operator needs the fix, not the stack
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"bgeimg: no model in {model_dir} and downloading {model_id}@{revision} from {endpoint} failed "
              f"({type(exc).__name__}: {reason[:200]}); mount the weights read-only at {model_dir} "
              f"(docker run -v /path/to/model:{model_dir}:ro) or set HF_ENDPOINT to a reachable mirror",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
