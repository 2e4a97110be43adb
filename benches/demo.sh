#!/usr/bin/env bash
# CPU and memory of `meshtel demo` at its default traffic, release build: the demo runs
# for BENCH_WARMUP (15) + BENCH_SECONDS (60) seconds; printed are the CPU it used over
# the last BENCH_SECONDS as a percentage of one core (utime + stime, /proc/PID/stat),
# its context switches per second (all threads), its peak and final RSS (VmHWM, VmRSS),
# and that it exits 0 on Ctrl-C.
#
#   benches/demo.sh [MESHTEL_BIN ...]     # default: the release build
#
# Given several binaries, runs each in turn (alternate them to compare builds on a
# machine whose speed drifts). Everything it makes is under one temporary directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
WARMUP=${BENCH_WARMUP:-15}
SECONDS_MEASURED=${BENCH_SECONDS:-60}
if [[ $# -eq 0 ]]; then
    (cd "$ROOT" && cargo build --release --bin meshtel)
    set -- "$CARGO_TARGET_DIR/release/meshtel"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-demo-bench.XXXXXX")
DEMO=""
cleanup() {
    [[ -n $DEMO ]] && kill -INT "$DEMO" 2>/dev/null && wait "$DEMO" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
HZ=$(getconf CLK_TCK)

for bin in "$@"; do
    run=$(mktemp -d "$WORK/run.XXXX")
    "$bin" demo --data-dir "$run/data" --listeners-file "$run/listeners.json" >"$run/demo.log" 2>&1 &
    DEMO=$!
    sleep "$WARMUP"
    kill -0 "$DEMO" 2>/dev/null || { tail -20 "$run/demo.log" >&2; echo "demo exited" >&2; exit 1; }
    c0=$(ticks "$DEMO"); s0=$(switches "$DEMO")
    sleep "$SECONDS_MEASURED"
    c1=$(ticks "$DEMO"); s1=$(switches "$DEMO")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$DEMO/status")
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$DEMO/status")
    kill -INT "$DEMO"
    status=0
    wait "$DEMO" || status=$?
    DEMO=""
    awk -v b="$bin" -v c=$((c1 - c0)) -v hz="$HZ" -v t="$SECONDS_MEASURED" -v s=$((s1 - s0)) \
        -v hwm="$hwm" -v rss="$rss" -v st="$status" 'BEGIN {
        printf "%s: CPU %.1f %% of one core, %d context switches/s, VmHWM %d MiB, VmRSS %d MiB, exit %d on Ctrl-C\n",
            b, 100 * c / hz / t, s / t, hwm / 1024, rss / 1024, st }'
done
