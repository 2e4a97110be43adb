#!/usr/bin/env bash
# Time from a fresh clone to `meshtel demo` answering, build included, the way a
# newcomer meets it: a new clone of this repository, an empty CARGO_HOME (every crate
# is downloaded) and no CARGO_TARGET_DIR, then the README's run command,
# `cargo run --release -- demo`, until the query API lists the demo's services.
# Takes the machine's cores for the whole build (8 min on 2 cores). Everything it
# makes is under one temporary directory, removed at the end.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-fresh.XXXXXX")
CARGO_BIN=$(command -v cargo)
DEMO=""
cleanup() {
    if [[ -n $DEMO ]]; then
        kill -INT "$DEMO" 2>/dev/null || true
        pkill -INT -f "$WORK/clone/target/release/meshtel demo" 2>/dev/null || true
        wait "$DEMO" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

git clone -q "$REPO" "$WORK/clone"
mkdir -p "$WORK/cargo-home"
cd "$WORK/clone"
started=$(date +%s.%N)
env -u CARGO_TARGET_DIR CARGO_HOME="$WORK/cargo-home" "$CARGO_BIN" run --release -- demo \
    --data-dir "$WORK/data" --listeners-file "$WORK/listeners.json" >"$WORK/demo.log" 2>&1 &
DEMO=$!
until [[ -s $WORK/listeners.json ]]; do
    kill -0 "$DEMO" 2>/dev/null || { tail -20 "$WORK/demo.log" >&2; echo "demo exited" >&2; exit 1; }
    sleep 0.5
done
query=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['query'])" "$WORK/listeners.json")
for _ in $(seq 600); do
    curl -sf "http://$query/api/services" | grep -q productpage && break
    sleep 0.1
done
ended=$(date +%s.%N)
grep -E 'Finished `release`' "$WORK/demo.log" >&2 || true
awk -v a="$started" -v b="$ended" 'BEGIN { s = b - a; printf "fresh clone to demo answering: %d min %d s (%.1f s)\n", s / 60, s % 60, s }'
