#!/usr/bin/env bash
# Searches one at a time against a kept data directory, builds alternating round by
# round, so that each build sees the same minutes of a machine whose speed drifts.
#
#   BENCH_KEEP=1 benches/e2e.sh storage          # a data directory to read (kept)
#   benches/search_ab.sh DATA_DIR KINDS [MESHTEL_BIN ...]
#   BENCH_ROUNDS=4 BENCH_SECONDS=15 benches/search_ab.sh /tmp/meshtel-e2e.X/storage tag,operation old/meshtel new/meshtel
#
# KINDS: comma-separated `meshtel bench search` kinds (trace, service, operation, tag,
# services), or `mix`. For each round and binary (default: the release build): starts
# `meshtel serve` on DATA_DIR with port-0 listeners, runs `meshtel bench search --mix
# KIND=1 --concurrency 1` for BENCH_SECONDS (15) per kind, and prints p50/p99, the
# requests and the collector's CPU per request (utime + stime from /proc/PID/stat,
# which includes the bench's discovery requests). `mix` runs bench search's default
# mix of every kind with BENCH_CONCURRENCY (4) requests in flight, and prints each
# kind's p50/p99. Needs python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
DATA=${1:?usage: benches/search_ab.sh DATA_DIR KINDS [MESHTEL_BIN ...]}
KINDS=${2:?usage: benches/search_ab.sh DATA_DIR KINDS [MESHTEL_BIN ...]}
shift 2
[[ -f $DATA/meshtel.db ]] || { echo "$DATA holds no meshtel.db" >&2; exit 2; }
if [[ $# -eq 0 ]]; then
    (cd "$ROOT" && cargo build --release --bin meshtel)
    set -- "$CARGO_TARGET_DIR/release/meshtel"
fi
ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
. "$ROOT/benches/kept_dir.sh"
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        start_server "$bin" "$DATA" "$DATA/search_ab.log"
        for kind in ${KINDS//,/ }; do
            before=$(cpu_ticks "$SERVER")
            if [[ $kind == mix ]]; then
                how=(--concurrency "${BENCH_CONCURRENCY:-4}")
            else
                how=(--concurrency 1 --mix "$kind=1")
            fi
            out=$("$bin" bench search --endpoint "$QUERY" --duration "${SECONDS_PER_RUN}s" \
                "${how[@]}" --json 2>>"$DATA/search_ab.bench.log" | tail -1)
            after=$(cpu_ticks "$SERVER")
            python3 - "$out" "$((after - before))" "$TICKS" "$round" "$bin" "$kind" <<'EOF'
import json, sys
out, ticks, hz, rnd, binary, kind = sys.argv[1:]
o = json.loads(out)
n = o["requests"]
cpu_ms = int(ticks) * 1000.0 / int(hz) / max(n, 1)
for name in (sorted(o["kinds"]) if kind == "mix" else [kind]):
    lat = o["kinds"][name]["latency_ms"]
    print(f"round {rnd}  {binary}  {kind}:{name:9}  p50 {lat['p50']:8.1f} ms  p99 {lat['p99']:8.1f} ms  "
          f"{n:5d} requests  {cpu_ms:8.1f} ms CPU/request")
EOF
        done
        stop_server
    done
done
