#!/usr/bin/env bash
# End-to-end benchmark of meshtel, release build, everything on 127.0.0.1.
#
#   benches/e2e.sh                         # every section
#   benches/e2e.sh ingest steady           # some sections, in the order given
#   BENCH_SPANS=1000000 benches/e2e.sh storage search
#
# Sections (each starts its own `meshtel serve` on port-0 listeners in a temp dir):
#   ingest     max-rate OTLP/gRPC ingest for BENCH_INGEST_SECONDS (60): spans/s, peak RSS
#   steady     BENCH_STEADY_RATE (10000) spans/s for BENCH_STEADY_SECONDS (60): CPU % of
#              one core, RSS
#   freshness  BENCH_FRESHNESS_SAMPLES (50) single spans: ack → found by id, p50/p99/max
#   storage    BENCH_SPANS (10,000,000) spans of the "tempo" shape (traces × 10 spans,
#              11 attributes from 97 keys × 1000 values), wait for flush and compaction,
#              bytes per span = meshtel_store_block_bytes / meshtel_store_block_spans
#   search     BENCH_SEARCH_SECONDS (30) of the search mix over the storage data (loads
#              it first when `storage` was not run), then BENCH_SEARCH_ALONE_SECONDS (15)
#              of each of trace, service, operation (service + operation + duration)
#              and tag alone, one request at a time
#
# Other knobs: CARGO_TARGET_DIR (default $HOME/.cache/meshtel-target), BENCH_CONFIG (a
# meshtel TOML config for every server), BENCH_BIN (use this binary, skip the build),
# BENCH_KEEP=1 (keep the temp dir),
# BENCH_STORAGE_TIMEOUT (3600 s to load), BENCH_SETTLE_TIMEOUT (900 s for flush and
# compaction), BENCH_SETTLE_STABLE (40 s without a new compaction counts as settled),
# BENCH_SEARCH_CONCURRENCY (4), BENCH_CONNECTIONS (4).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
BIN=${BENCH_BIN:-$CARGO_TARGET_DIR/release/meshtel}

BENCH_SPANS=${BENCH_SPANS:-10000000}
INGEST_SECONDS=${BENCH_INGEST_SECONDS:-60}
STEADY_RATE=${BENCH_STEADY_RATE:-10000}
STEADY_SECONDS=${BENCH_STEADY_SECONDS:-60}
FRESHNESS_SAMPLES=${BENCH_FRESHNESS_SAMPLES:-50}
SEARCH_SECONDS=${BENCH_SEARCH_SECONDS:-30}
SEARCH_CONCURRENCY=${BENCH_SEARCH_CONCURRENCY:-4}
SEARCH_ALONE_SECONDS=${BENCH_SEARCH_ALONE_SECONDS:-15}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
STORAGE_TIMEOUT=${BENCH_STORAGE_TIMEOUT:-3600}
SETTLE_TIMEOUT=${BENCH_SETTLE_TIMEOUT:-900}
SETTLE_STABLE=${BENCH_SETTLE_STABLE:-40}
KEEP=${BENCH_KEEP:-0}

ALL_SECTIONS=(ingest steady freshness storage search)
if [[ $# -eq 0 ]]; then
    SECTIONS=("${ALL_SECTIONS[@]}")
else
    SECTIONS=("$@")
fi
for s in "${SECTIONS[@]}"; do
    case $s in
        ingest | steady | freshness | storage | search) ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown section '$s' (expected: ${ALL_SECTIONS[*]})" >&2
            exit 2
            ;;
    esac
done

log() { printf '\n== %s\n' "$*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-e2e.XXXXXX")
SERVER_PID=""
SERVER_NAME=""
SAMPLER_PID=""
BENCH_PID=""
SUMMARY=()  # "section|metric|value"

add() { SUMMARY+=("$1|$2|$3"); }

print_summary() {
    if [[ ${#SUMMARY[@]} -eq 0 ]]; then
        return 0
    fi
    printf '\n%-10s  %-34s  %s\n' section metric value
    printf '%-10s  %-34s  %s\n' ---------- ---------------------------------- ---------------------
    local row
    for row in "${SUMMARY[@]}"; do
        IFS='|' read -r a b c <<<"$row"
        printf '%-10s  %-34s  %s\n' "$a" "$b" "$c"
    done
}

stop_sampler() {
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
    fi
}

stop_server() {
    stop_sampler
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        SERVER_NAME=""
    fi
}

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $BENCH_PID ]]; then
        # `timeout` passes the signal on to the bench client.
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    stop_server
    print_summary
    if [[ $KEEP == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# jget FILE FILTER: one value out of a JSON file (jq, or python3 without jq).
jget() {
    if command -v jq >/dev/null 2>&1; then
        jq -r "$2" "$1"
    else
        python3 - "$1" "$2" <<'EOF'
import json, sys
value = json.load(open(sys.argv[1]))
for part in sys.argv[2].lstrip('.').split('.'):
    value = value.get(part) if isinstance(value, dict) else None
print('null' if value is None else value)
EOF
    fi
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the parenthesised command name, which may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
mib() { awk -v kb="$1" 'BEGIN {printf "%.1f MiB", kb / 1024}'; }
now_s() { date +%s.%N; }

# start_sampler FILE: the server's VmRSS (kB), once a second, into FILE.
start_sampler() {
    local file=$1 pid=$SERVER_PID
    : >"$file"
    (
        while kill -0 "$pid" 2>/dev/null; do
            rss_kb "$pid" >>"$file"
            sleep 1
        done
    ) &
    SAMPLER_PID=$!
}
max_of() { sort -n "$1" | tail -n 1; }

# start_server NAME: a fresh `meshtel serve` in $WORK/NAME on port-0 listeners.
start_server() {
    stop_server
    local name=$1 dir=$WORK/$1
    mkdir -p "$dir"
    local config=()
    [[ -n ${BENCH_CONFIG:-} ]] && config=(--config "$BENCH_CONFIG")
    RUST_LOG=${RUST_LOG:-warn} "$BIN" serve "${config[@]}" \
        --data-dir "$dir" \
        --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
        --zipkin-listen 127.0.0.1:0 --query-listen 127.0.0.1:0 \
        >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    SERVER_NAME=$name
    local i
    for i in $(seq 1 300); do
        [[ -s $dir/listeners.json ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || {
            cat "$WORK/$name.log" >&2
            echo "meshtel serve exited" >&2
            exit 1
        }
        sleep 0.1
    done
    [[ -s $dir/listeners.json ]] || { echo "meshtel serve did not start in 30 s" >&2; exit 1; }
    sleep 0.2 # listeners.json is written in one go, but give the write a moment
    GRPC=http://$(jget "$dir/listeners.json" .grpc)
    HTTP=http://$(jget "$dir/listeners.json" .http)
    QUERY=http://$(jget "$dir/listeners.json" .query)
    echo "meshtel serve ($name, pid $SERVER_PID): otlp $GRPC, http $HTTP, query $QUERY" >&2
}

# metric NAME: one value from the server's /metrics, empty when unreachable.
metric() {
    { curl -sf --max-time 5 "$HTTP/metrics" || true; } |
        awk -v name="$1" '$1 == name {printf "%.0f\n", $2}'
}

# run_bench SECONDS OUTFILE ARGS...: `meshtel bench ARGS --json`, killed after SECONDS.
# The human summary goes to the terminal, the JSON line to OUTFILE.
# It runs in the background so that a signal to this script is handled at once (bash
# runs traps only between foreground commands, but does interrupt `wait`).
run_bench() {
    local seconds=$1 out=$2 status=0
    shift 2
    timeout --kill-after=10 "$seconds" "$BIN" bench "$@" --json >"$out" &
    BENCH_PID=$!
    wait "$BENCH_PID" || status=$?
    BENCH_PID=""
    return "$status"
}

section_ingest() {
    log "ingest: max rate for ${INGEST_SECONDS}s (mesh shape, $CONNECTIONS connections)"
    start_server ingest
    start_sampler "$WORK/ingest.rss"
    local out=$WORK/ingest.json
    if run_bench $((INGEST_SECONDS + 120)) "$out" ingest --endpoint "$GRPC" \
        --duration "${INGEST_SECONDS}s" --connections "$CONNECTIONS" --spans-per-request 500; then
        add ingest "acked spans/s" "$(printf '%.0f' "$(jget "$out" .spans_per_s)")"
        add ingest "request p99 (ms)" "$(jget "$out" .latency_ms.p99)"
        add ingest "errors" "$(jget "$out" '.errors' | tr -d '\n ')"
    else
        add ingest "result" "FAILED (see above)"
    fi
    add ingest "collector peak RSS (VmHWM)" "$(mib "$(hwm_kb "$SERVER_PID")")"
    stop_sampler
    add ingest "collector max sampled RSS" "$(mib "$(max_of "$WORK/ingest.rss")")"
    stop_server
}

section_steady() {
    log "steady: ${STEADY_RATE} spans/s for ${STEADY_SECONDS}s"
    start_server steady
    start_sampler "$WORK/steady.rss"
    local out=$WORK/steady.json t0 c0 t1 c1
    local hz
    hz=$(getconf CLK_TCK)
    t0=$(now_s)
    c0=$(cpu_ticks "$SERVER_PID")
    if run_bench $((STEADY_SECONDS + 120)) "$out" ingest --endpoint "$GRPC" \
        --duration "${STEADY_SECONDS}s" --connections "$CONNECTIONS" --rate "$STEADY_RATE" \
        --spans-per-request 500; then
        t1=$(now_s)
        c1=$(cpu_ticks "$SERVER_PID")
        add steady "acked spans/s (target $STEADY_RATE)" "$(printf '%.0f' "$(jget "$out" .spans_per_s)")"
        add steady "collector CPU (% of one core)" \
            "$(awk -v c="$((c1 - c0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
                'BEGIN {printf "%.1f %%", 100 * c / hz / (t1 - t0)}')"
        add steady "request p99 (ms)" "$(jget "$out" .latency_ms.p99)"
    else
        add steady "result" "FAILED (see above)"
    fi
    add steady "collector RSS at end" "$(mib "$(rss_kb "$SERVER_PID")")"
    stop_sampler
    add steady "collector max sampled RSS" "$(mib "$(max_of "$WORK/steady.rss")")"
    stop_server
}

section_freshness() {
    log "freshness: $FRESHNESS_SAMPLES samples"
    start_server freshness
    local out=$WORK/freshness.json
    if run_bench 600 "$out" freshness --otlp "$GRPC" --query "$QUERY" \
        --samples "$FRESHNESS_SAMPLES" --timeout 30s; then
        add freshness "ack->searchable p50 (ms)" "$(jget "$out" .ack_to_searchable_ms.p50)"
        add freshness "ack->searchable p99 (ms)" "$(jget "$out" .ack_to_searchable_ms.p99)"
        add freshness "ack->searchable max (ms)" "$(jget "$out" .ack_to_searchable_ms.max)"
        add freshness "timeouts" "$(jget "$out" .timeouts)"
    else
        add freshness "result" "FAILED (see above)"
    fi
    stop_server
}

# Waits until the head is empty and no compaction has happened for SETTLE_STABLE s.
wait_for_settle() {
    local deadline=$((SECONDS + SETTLE_TIMEOUT))
    local last_compactions=-1 last_blocks=-1 stable_since=$SECONDS
    while ((SECONDS < deadline)); do
        local head compactions blocks
        head=$(metric meshtel_store_head_spans)
        compactions=$(metric meshtel_store_compactions_total)
        blocks=$(metric meshtel_store_blocks)
        if [[ $compactions != "$last_compactions" || $blocks != "$last_blocks" || $head != 0 ]]; then
            stable_since=$SECONDS
            last_compactions=$compactions
            last_blocks=$blocks
        fi
        if [[ $head == 0 ]] && ((SECONDS - stable_since >= SETTLE_STABLE)); then
            echo "settled: head 0, $blocks blocks, $compactions compactions" >&2
            return 0
        fi
        printf '  waiting: head %s spans, %s blocks, %s compactions\n' "$head" "$blocks" "$compactions" >&2
        sleep 5
    done
    echo "not settled after ${SETTLE_TIMEOUT}s; measuring anyway" >&2
    return 1
}

STORAGE_LOADED=0

section_storage() {
    local traces=$((BENCH_SPANS / 10))
    log "storage: load $traces traces × 10 spans (tempo shape)"
    start_server storage
    local out=$WORK/storage.json started
    started=$SECONDS
    if run_bench "$STORAGE_TIMEOUT" "$out" ingest --endpoint "$GRPC" --shape tempo \
        --traces "$traces" --spans-per-trace 10 --connections "$CONNECTIONS" \
        --spans-per-request 500 --progress-interval 10s; then
        add storage "load spans/s" "$(printf '%.0f' "$(jget "$out" .spans_per_s)")"
        add storage "acked spans" "$(jget "$out" .acked_spans)"
    else
        add storage "load" "FAILED or timed out after ${STORAGE_TIMEOUT}s"
    fi
    STORAGE_LOADED=1
    log "storage: waiting for flush and compaction"
    local settle_started=$SECONDS
    wait_for_settle || add storage "settle" "timed out after ${SETTLE_TIMEOUT}s"
    local bytes spans blocks
    bytes=$(metric meshtel_store_block_bytes)
    spans=$(metric meshtel_store_block_spans)
    blocks=$(metric meshtel_store_blocks)
    bytes=${bytes:-0} spans=${spans:-0}
    add storage "settle time (s)" "$((SECONDS - settle_started))"
    add storage "block spans" "$spans"
    add storage "blocks / compactions" "$blocks / $(metric meshtel_store_compactions_total)"
    add storage "block bytes" "$bytes ($(mib $((bytes / 1024))))"
    add storage "bytes per span" "$(awk -v b="$bytes" -v s="$spans" 'BEGIN {if (s > 0) printf "%.1f", b / s; else print "n/a"}')"
    add storage "data dir on disk (du)" "$(du -sh "$WORK/storage" | cut -f1)"
    add storage "collector peak RSS (VmHWM)" "$(mib "$(hwm_kb "$SERVER_PID")")"
    echo "storage stage took $((SECONDS - started)) s" >&2
    # The server stays up for `search`.
}

section_search() {
    if [[ $STORAGE_LOADED != 1 || $SERVER_NAME != storage ]]; then
        echo "search needs data: running the storage load first" >&2
        section_storage
    fi
    log "search: ${SEARCH_SECONDS}s, concurrency $SEARCH_CONCURRENCY"
    local out=$WORK/search.json
    if run_bench $((SEARCH_SECONDS + 300)) "$out" search --endpoint "$QUERY" \
        --duration "${SEARCH_SECONDS}s" --concurrency "$SEARCH_CONCURRENCY"; then
        add search "requests/s" "$(jget "$out" .requests_per_s)"
        local kind
        for kind in trace service operation tag services; do
            local p50 p99
            p50=$(jget "$out" ".kinds.$kind.latency_ms.p50")
            p99=$(jget "$out" ".kinds.$kind.latency_ms.p99")
            [[ $p50 == null ]] && continue
            add search "$kind p50 / p99 (ms)" "$p50 / $p99"
        done
    else
        add search "result" "FAILED (see above)"
    fi
    # Alone, the collector's CPU per request is also given: on a machine whose speed
    # and scheduling vary from minute to minute it moves less than the percentiles.
    # It includes the bench's discovery requests (under a second of the run).
    local kind c0 c1 hz
    hz=$(getconf CLK_TCK)
    for kind in trace service operation tag; do
        log "search: $kind alone, ${SEARCH_ALONE_SECONDS}s, one request at a time"
        out=$WORK/search-$kind.json
        c0=$(cpu_ticks "$SERVER_PID")
        if run_bench $((SEARCH_ALONE_SECONDS + 300)) "$out" search --endpoint "$QUERY" \
            --duration "${SEARCH_ALONE_SECONDS}s" --concurrency 1 --mix "$kind=1"; then
            c1=$(cpu_ticks "$SERVER_PID")
            add search "$kind alone p50 / p99 (ms)" \
                "$(jget "$out" ".kinds.$kind.latency_ms.p50") / $(jget "$out" ".kinds.$kind.latency_ms.p99")"
            add search "$kind alone: collector CPU per request (ms)" \
                "$(awk -v c="$((c1 - c0))" -v hz="$hz" -v n="$(jget "$out" .requests)" \
                    'BEGIN {printf "%.1f", 1000 * c / hz / n}')"
        else
            add search "$kind alone" "FAILED (see above)"
        fi
    done
}

if [[ -z ${BENCH_BIN:-} ]]; then
    log "building meshtel (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --bin meshtel)
fi
echo "binary: $BIN; work dir: $WORK; sections: ${SECTIONS[*]}" >&2

for s in "${SECTIONS[@]}"; do
    "section_$s"
done
stop_server
