# Rendered by bgeimg 0.1.0 from profile onnx-cpu for the classic builder.
# Re-render instead of editing: bgeimg render --profile onnx-cpu -o DIR

# ---- builder: a virtualenv with the pinned requirements, trimmed before it is copied ----
FROM python:3.11-slim AS builder
# binutils' strip for slim.strip_symbols; the builder stage only, nothing of it reaches the runtime image.
# hadolint ignore=DL3008
RUN command -v strip >/dev/null || { apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*; }
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/build/requirements.txt
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/build/requirements.txt
RUN find /opt/venv/lib/python3*/site-packages -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/quantization \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/transformers \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/tools \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/backend \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/f2py \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/distutils \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/_pyinstaller \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/typing \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/random \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/fft \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/polynomial \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/ma \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/testing \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/_core/_simd* \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/_core/include \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/_core/lib \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/_core/_*_tests.*.so \
 && rm -rf /opt/venv/lib/python3*/site-packages/numpy/*.pxd \
 && rm -rf /opt/venv/lib/python3*/site-packages/pydantic/v1 \
 && rm -rf /opt/venv/lib/python3*/site-packages/tokenizers/tools \
 && rm -rf /opt/venv/lib/python3*/site-packages/fastapi/.agents \
 && rm -rf /opt/venv/lib/python3*/site-packages/*/*.pyi \
 && rm -rf /opt/venv/lib/python3*/site-packages/*/*/*.pyi \
 && rm -rf /opt/venv/lib/python3*/site-packages/*/*/*/*.pyi \
 && pip uninstall --yes --quiet protobuf flatbuffers fsspec hf-xet huggingface-hub tqdm pyyaml filelock httpx2 httpcore2 truststore packaging idna \
 && pip uninstall --yes --quiet pip setuptools \
 && find /opt/venv -type f -name '*.so*' -not -path '*.libs/*' -exec sh -c 'for f; do if readelf -S "$f" 2>/dev/null | grep -q "[.]symtab"; then strip --strip-unneeded "$f"; fi; done' sh {} + \
 && find /opt/venv -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +

# ---- export: torch + transformers turn the checkpoint into its ONNX form; none of them reach the runtime ----
FROM python:3.11-slim AS export
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/export
COPY export-requirements.txt /tmp/build/export-requirements.txt
RUN /opt/export/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/build/export-requirements.txt
COPY export_onnx.py /tmp/build/export_onnx.py
# The checkpoint enters this stage only. The export is cached like a weights layer: it runs again only when the
# model files or the script change.
COPY model/ /tmp/build/model/
RUN /opt/export/bin/python /tmp/build/export_onnx.py /tmp/build/model /opt/model --task embed --quantize none

# ---- runtime: a slim base, the venv, the weights, the app ----
FROM python:3.11-slim AS runtime
# useradd writes the day it ran into /etc/shadow unless SOURCE_DATE_EPOCH says otherwise: a fixed day (1980-01-01)
# keeps the layer the same whenever it is built, and out of the cache key (the build's epoch would be in it).
RUN SOURCE_DATE_EPOCH=315532800 useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin bge \
 && mkdir -p /opt/model \
 && chown 10001:10001 /opt/model
COPY --from=builder /opt/venv /opt/venv
# After the venv: a new model id or revision in ENV must not invalidate the copied dependencies.
# BGE_MAX_BATCH_TOKENS is a count of tokens, not a secret (hadolint matches the word).
# hadolint ignore=DL3064
ENV PATH="/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    PYTHONUNBUFFERED="1" \
    PYTHONDONTWRITEBYTECODE="1" \
    PYTHONPATH="/opt/app" \
    BGE_MODEL_DIR="/opt/model" \
    BGE_MODEL_BAKED="1" \
    BGE_MODEL_ID="BAAI/bge-m3" \
    BGE_MODEL_REVISION="main" \
    BGE_TASK="embed" \
    BGE_RUNTIME="onnx" \
    BGE_DEVICE="cpu" \
    BGE_PORT="8000" \
    BGE_WORKERS="1" \
    BGE_MAX_BATCH_SIZE="32" \
    BGE_MAX_BATCH_TOKENS="16384" \
    BGE_MAX_QUEUE="512" \
    BGE_GRACE_SECONDS="20" \
    HF_HUB_DISABLE_TELEMETRY="1" \
    HF_HUB_OFFLINE="1" \
    TRANSFORMERS_NO_TF="1" \
    OMP_WAIT_POLICY="PASSIVE" \
    ORT_DISABLE_TELEMETRY="1"
# The ONNX form (graph, tokenizer, heads) gets a layer of its own, like baked weights.
COPY --from=export /opt/model/ /opt/model/
WORKDIR /opt/app
COPY server/ /opt/app/
COPY entrypoint.sh /usr/local/bin/bgeimg-entrypoint
USER 10001:10001
EXPOSE 8000
# Python's urllib instead of curl: nothing extra in the image just to be probed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/venv/bin/python", "/opt/app/healthcheck.py"]
LABEL org.opencontainers.image.title="bge-onnx-cpu" \
      org.opencontainers.image.description="ONNX Runtime on python:3.11-slim (no torch), the model's ONNX form baked into its own layer" \
      io.bgeimg.version="0.1.0" \
      io.bgeimg.profile="onnx-cpu" \
      io.bgeimg.device="cpu" \
      io.bgeimg.runtime="onnx" \
      io.bgeimg.model.source="hf" \
      io.bgeimg.model.id="BAAI/bge-m3" \
      io.bgeimg.model.revision="main" \
      io.bgeimg.model.task="embed" \
      io.bgeimg.slim.bytecode="strip" \
      io.bgeimg.onnx.quantize="none"
ENTRYPOINT ["/usr/local/bin/bgeimg-entrypoint"]
