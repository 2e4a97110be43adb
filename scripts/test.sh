#!/usr/bin/env bash
# The one test command (README): builds and runs every test of the workspace,
# including the end-to-end suite (tests/it) that starts the real `meshtel` binary and
# the OpenTelemetry Python SDK test, whose interpreter lives in a venv under target/.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -- --nocapture  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}"

# Versions of the OpenTelemetry Python SDK the sdk test sends traces with.
OTEL_PY_VERSION="1.45.2"
VENV="target/py-venv"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
fi
# Installed only when missing or at another version, so a second run is fast.
if ! "$PY" - "$OTEL_PY_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want = sys.argv[1]
for name in ("opentelemetry-sdk",
             "opentelemetry-exporter-otlp-proto-grpc",
             "opentelemetry-exporter-otlp-proto-http"):
    if version(name) != want:
        sys.exit(1)
PYEOF
then
    echo "== installing the OpenTelemetry Python SDK $OTEL_PY_VERSION into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "opentelemetry-sdk==$OTEL_PY_VERSION" \
        "opentelemetry-exporter-otlp-proto-grpc==$OTEL_PY_VERSION" \
        "opentelemetry-exporter-otlp-proto-http==$OTEL_PY_VERSION"
fi
MESHTEL_TEST_PYTHON="$(pwd)/$PY"
export MESHTEL_TEST_PYTHON

CARGO_INCREMENTAL=0 cargo test --workspace "$@"
