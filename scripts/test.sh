#!/usr/bin/env bash
# The test command from README.md: installs and starts everything the tests need (Debian packages, Docker
# engine, registry mirror, qemu, stand-in base images, a venv with bgeimg and its dev tools), then runs pytest.
# Everything it makes is cached outside the clone (BGEIMG_TESTBED_CACHE), so a second run is fast.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE="${BGEIMG_TESTBED_CACHE:-/var/cache/bgeimg-testbed}"
VENV="${BGEIMG_VENV:-$CACHE/venv}"

bash scripts/testbed.sh up --modern  # everything: both architectures, Docker 20.10 and Docker 26
eval "$(bash scripts/testbed.sh env)"

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
echo "test: installing bgeimg and its test dependencies into $VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[dev,server-test]' 2> >(grep -v "^WARNING: Location" >&2)

export PATH="$VENV/bin:$PATH"
if [[ ${BGEIMG_LINT:-0} == 1 ]]; then  # .ci/run sets it: lint and types first, seconds, before minutes of tests
    echo "test: ruff and mypy" >&2
    "$VENV/bin/ruff" check bgeimg tests bench scripts
    "$VENV/bin/mypy"
fi
exec "$VENV/bin/python" -m pytest "$@"
