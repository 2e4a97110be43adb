#!/usr/bin/env bash
# Two builds side by side at a steady ingest rate: each gets its own `meshtel serve`
# and its own `meshtel bench ingest` client at the same time, so both see the same
# minutes of a machine whose speed drifts, and which build is "A" swaps every round.
#
#   benches/steady_ab.sh OLD_BIN NEW_BIN
#   BENCH_ROUNDS=3 BENCH_SECONDS=60 BENCH_RATE=10000 benches/steady_ab.sh old/meshtel new/meshtel
#
# Per round and build: the collector's CPU over BENCH_SECONDS (60) as % of one core
# (utime + stime from /proc/PID/stat, after a 5 s warm-up), its largest RSS sampled
# once a second, and the spans the client had acknowledged. Two collectors and two
# clients share the cores, so both figures read higher than one `e2e.sh steady` alone;
# the difference between the builds is what this measures. Needs python3.
set -euo pipefail
OLD=${1:?usage: benches/steady_ab.sh OLD_BIN NEW_BIN}
NEW=${2:?usage: benches/steady_ab.sh OLD_BIN NEW_BIN}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-60}
RATE=${BENCH_RATE:-10000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-steady-ab.XXXXXX")
TICKS=$(getconf CLK_TCK)
PIDS=()
CLIENTS=()

cleanup() {
    set +e
    for pid in "${CLIENTS[@]}" "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
grpc_of() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['grpc'])" "$1"; }

# round N BIN_A BIN_B: prints one line per build.
round() {
    local n=$1 name i
    shift
    local bins=("$@") names=(old new)
    [[ ${bins[0]} == "$NEW" ]] && names=(new old)
    PIDS=() CLIENTS=()
    for i in 0 1; do
        name=${names[$i]}
        RUST_LOG=warn "${bins[$i]}" serve --data-dir "$WORK/$n-$name" \
            --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
            --zipkin-listen 127.0.0.1:0 --query-listen 127.0.0.1:0 \
            >"$WORK/$n-$name.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 0 1; do
        name=${names[$i]}
        for _ in $(seq 1 300); do
            [[ -s $WORK/$n-$name/listeners.json ]] && break
            kill -0 "${PIDS[$i]}" 2>/dev/null || { cat "$WORK/$n-$name.log" >&2; exit 1; }
            sleep 0.1
        done
    done
    sleep 0.2
    for i in 0 1; do
        name=${names[$i]}
        "$NEW" bench ingest --endpoint "http://$(grpc_of "$WORK/$n-$name/listeners.json")" \
            --duration "$((SECS + 10))s" --connections 4 --rate "$RATE" \
            --spans-per-request 500 >"$WORK/$n-$name.bench" 2>&1 &
        CLIENTS+=($!)
    done
    sleep 5
    local c0=() c1=() max=(0 0) r
    for i in 0 1; do c0+=("$(cpu_ticks "${PIDS[$i]}")"); done
    for _ in $(seq 1 "$SECS"); do
        sleep 1
        for i in 0 1; do
            r=$(rss_kb "${PIDS[$i]}")
            ((r > max[i])) && max[i]=$r
        done
    done
    for i in 0 1; do c1+=("$(cpu_ticks "${PIDS[$i]}")"); done
    wait "${CLIENTS[@]}" || true
    CLIENTS=()
    for i in 0 1; do
        name=${names[$i]}
        printf 'round %s %s: %s %% of a core, max RSS %s MiB, %s\n' "$n" "$name" \
            "$(awk -v c="$((c1[i] - c0[i]))" -v hz="$TICKS" -v s="$SECS" 'BEGIN {printf "%.2f", 100 * c / hz / s}')" \
            "$((max[i] / 1024))" \
            "$(grep -h 'acked spans ' "$WORK/$n-$name.bench" | tr -s ' ' | sed 's/^ //')"
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    done
    wait "${PIDS[@]}" 2>/dev/null || true
    PIDS=()
}

for n in $(seq 1 "$ROUNDS"); do
    if ((n % 2)); then round "$n" "$OLD" "$NEW"; else round "$n" "$NEW" "$OLD"; fi
done
