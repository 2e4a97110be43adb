#!/usr/bin/env bash
# The one test command (README): builds and runs every test of the workspace,
# including the end-to-end suite (tests/it) that starts the real `meshtel` binary, the
# OpenTelemetry SDK tests, whose Python lives in a venv under target/ and whose JS SDK
# under target/sdk-node/, and the browser test of the web UI, whose playwright-core
# lives under target/ui-node/.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -- --nocapture  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}"

# Versions of the OpenTelemetry Python SDK the sdk test sends traces with, and of its
# Zipkin JSON exporter (released on its own, one patch behind).
OTEL_PY_VERSION="1.45.2"
OTEL_PY_ZIPKIN_VERSION="1.45.1"
# The Thrift library the Zipkin v1 Thrift test encodes its span with (tests/it/zipkin_v1.rs).
THRIFTPY2_VERSION="0.7.1"
VENV="target/py-venv"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
fi
# Installed only when missing or at another version, so a second run is fast.
if ! "$PY" - "$OTEL_PY_VERSION" "$OTEL_PY_ZIPKIN_VERSION" "$THRIFTPY2_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want, zipkin, thriftpy2 = sys.argv[1], sys.argv[2], sys.argv[3]
for name in ("opentelemetry-sdk",
             "opentelemetry-exporter-otlp-proto-grpc",
             "opentelemetry-exporter-otlp-proto-http"):
    if version(name) != want:
        sys.exit(1)
if version("opentelemetry-exporter-zipkin-json") != zipkin:
    sys.exit(1)
if version("thriftpy2") != thriftpy2:
    sys.exit(1)
PYEOF
then
    echo "== installing the OpenTelemetry Python SDK $OTEL_PY_VERSION and thriftpy2 $THRIFTPY2_VERSION into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "opentelemetry-sdk==$OTEL_PY_VERSION" \
        "opentelemetry-exporter-otlp-proto-grpc==$OTEL_PY_VERSION" \
        "opentelemetry-exporter-otlp-proto-http==$OTEL_PY_VERSION" \
        "opentelemetry-exporter-zipkin-json==$OTEL_PY_ZIPKIN_VERSION" \
        "thriftpy2==$THRIFTPY2_VERSION"
fi
MESHTEL_TEST_PYTHON="$(pwd)/$PY"
export MESHTEL_TEST_PYTHON

# npm packages for the tests, from a lock file into a folder under target/, installed
# only when that lock file changed since the last install that finished (the stamp
# `installed.lock` is written after `npm ci` succeeds). A failed install is reported and
# the tests that need it skip, or fail under CI=true.
npm_install() {
    local from=$1 into=$2 what=$3
    if cmp -s "$from/package-lock.json" "$into/installed.lock"; then
        return
    fi
    echo "== installing $what into $into"
    mkdir -p "$into"
    cp "$from/package.json" "$from/package-lock.json" "$into/"
    if PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$into" \
        --ignore-scripts --no-audit --no-fund --loglevel=error; then
        cp "$from/package-lock.json" "$into/installed.lock"
    else
        echo "== installing $what failed: the tests that need it will skip (and fail under CI=true)"
    fi
}

# The browser test (tests/it/ui.rs) drives Debian's Chromium with playwright-core
# (target/ui-node/; no browser is ever downloaded); tests/it/sdk.rs sends through the
# OpenTelemetry JS SDK and zipkin-js (target/sdk-node/).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    npm_install ui/tests target/ui-node "playwright-core"
    npm_install tests/sdk/js target/sdk-node "the OpenTelemetry JS SDK and zipkin-js"
else
    echo "== no node/npm: the browser and JS SDK tests will be skipped (they fail under CI=true)"
fi

CARGO_INCREMENTAL=0 cargo test --workspace "$@"
