#!/bin/sh
# Starts the BGE server. With arguments, runs them instead (docker run IMAGE python -c ...).
# Without baked weights (external-model), uses $BGE_MODEL_DIR when it holds a model, else downloads the
# pinned revision into it (through $HF_ENDPOINT when set), and stops with a clear message when neither works.
# The ONNX runtime needs the model's ONNX form there (model.onnx, or a repository's onnx/model.onnx).
set -eu
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
has_model() {
  if [ "${BGE_RUNTIME:-torch}" = "onnx" ]; then
    [ -f "$BGE_MODEL_DIR/model.onnx" ] || [ -f "$BGE_MODEL_DIR/onnx/model.onnx" ]
  else
    [ -f "$BGE_MODEL_DIR/config.json" ]
  fi
}
if ! has_model; then
  if [ "${BGE_MODEL_BAKED:-0}" = "1" ]; then
    echo "bgeimg: the weights baked into this image are missing from $BGE_MODEL_DIR" >&2
    exit 1
  fi
  if [ -f "$BGE_MODEL_DIR/config.json" ]; then
    echo "bgeimg: $BGE_MODEL_DIR holds a torch checkpoint but no ONNX form (model.onnx); make it with" \
         "\`bgeimg export MODEL_DIR OUT_DIR\` and mount OUT_DIR at $BGE_MODEL_DIR, or use an image with runtime torch" >&2
    exit 1
  fi
  python -m bge_server.fetch || exit 1
  if ! has_model; then
    echo "bgeimg: ${BGE_MODEL_ID:-the model}@${BGE_MODEL_REVISION:-main} has no ONNX form (onnx/model.onnx);" \
         "make it with \`bgeimg export MODEL_DIR OUT_DIR\` and mount OUT_DIR at $BGE_MODEL_DIR" >&2
    exit 1
  fi
fi
# serve drains on SIGTERM (finishes queued requests, exits 0); it reads BGE_PORT and BGE_WORKERS.
# An app_dir of the user's own without serve.py is started with plain uvicorn, as before.
if [ -f /opt/app/bge_server/serve.py ]; then
  exec python -m bge_server.serve bge_server.app:app
fi
exec python -m uvicorn bge_server.app:app --host 0.0.0.0 --port "$BGE_PORT" --workers "$BGE_WORKERS" --no-access-log
