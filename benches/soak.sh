#!/usr/bin/env bash
# A long run of everything at once, for memory, file descriptors and threads that grow
# with time or with what is stored: `meshtel demo` with `serve`'s store settings
# (collector, query service, a proxy beside every Bookinfo instance, quotas, traffic
# rules, its page loads and bursts),
# OTLP spans into its collector at SOAK_RATE (10,000) spans/s of mesh traces, and a
# mix of Jaeger searches and trace fetches for 10 s of every minute, for SOAK_MINUTES
# (30). Everything is on 127.0.0.1 (ports picked by the kernel) under one temporary
# directory, and stops by itself.
#
#   benches/soak.sh [MESHTEL_BIN]          # default: the release build
#   SOAK_MINUTES=60 benches/soak.sh
#
# Every SOAK_SAMPLE (15) seconds it samples the demo process: resident memory (and its
# anonymous and file-backed parts), open files, threads, and from its /metrics the
# head, the blocks and the trace id index. It prints a line every five minutes, then
# the anonymous memory between searches by quarter of the run and its growth per hour
# over the second half (a least-squares slope), where the first merges, caches and
# allocator arenas have settled, and what the searches add.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-10000}
SAMPLE=${SOAK_SAMPLE:-15}
BIN=${1:-}
if [[ -z $BIN ]]; then
    (cd "$ROOT" && cargo build --release --bin meshtel)
    BIN=$CARGO_TARGET_DIR/release/meshtel
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-soak.XXXXXX")
PIDS=()
SEARCHES=
cleanup() {
    # The search loop runs in the background of a script, where SIGINT is ignored:
    # it and its child (a sleep or a 10 s `bench search`) get SIGTERM.
    if [[ -n $SEARCHES ]]; then
        pkill -TERM -P "$SEARCHES" 2>/dev/null || true
        kill -TERM "$SEARCHES" 2>/dev/null || true
        wait "$SEARCHES" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An empty config file: the demo keeps serve's defaults (compaction to 262,144-span
# blocks, 7 days' retention) instead of its own small-store settings.
: >"$WORK/meshtel.toml"
"$BIN" demo --config "$WORK/meshtel.toml" --data-dir "$WORK/data" --listeners-file "$WORK/listeners.json" \
    --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --zipkin-listen 127.0.0.1:0 \
    --query-listen 127.0.0.1:0 --ingress-listen 127.0.0.1:0 >"$WORK/demo.log" 2>&1 &
DEMO=$!
PIDS+=("$DEMO")
for _ in $(seq 600); do
    [[ -s $WORK/listeners.json ]] && break
    kill -0 "$DEMO" 2>/dev/null || { tail -20 "$WORK/demo.log" >&2; echo "the demo exited" >&2; exit 1; }
    sleep 0.1
done
[[ -s $WORK/listeners.json ]] || { echo "the demo did not answer within 60 s" >&2; exit 1; }
address() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/listeners.json" "$1"; }
GRPC=$(address grpc)
HTTP=$(address http)
QUERY=$(address query)
echo "soak: $MINUTES min, demo pid $DEMO, $RATE spans/s into $GRPC, searches on $QUERY"

"$BIN" bench ingest --endpoint "http://$GRPC" --duration "${MINUTES}m" --connections 2 \
    --rate "$RATE" --spans-per-request 500 --progress-interval 600s \
    >"$WORK/ingest.log" 2>&1 &
PIDS+=("$!")
(
    end=$(($(date +%s) + MINUTES * 60))
    while (($(date +%s) + 70 < end)); do
        sleep 50
        touch "$WORK/searching"
        if "$BIN" bench search --endpoint "http://$QUERY" --duration 10s --concurrency 2 \
            --lookback 1h >>"$WORK/search.log" 2>&1; then
            echo ok >>"$WORK/search.runs"
        else
            echo failed >>"$WORK/search.runs"
        fi
        rm -f "$WORK/searching"
    done
) &
SEARCHES=$!

# The value as written (mawk's printf "%d" stops at 2^31 - 1: block bytes pass it).
metric() { awk -v n="$1" '$1 == n && !found {print $2; found = 1} END {if (!found) print 0}' "$WORK/metrics"; }
status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$DEMO/status"; }
SAMPLES=$WORK/samples
echo "min rss_mib anon_mib file_mib fds threads head_mib blocks block_gib index_kib searching" >"$SAMPLES"
start=$(date +%s)
last_print=-1
while (($(date +%s) - start < MINUTES * 60)); do
    sleep "$SAMPLE"
    kill -0 "$DEMO" 2>/dev/null || { tail -20 "$WORK/demo.log" >&2; echo "the demo exited" >&2; exit 1; }
    curl -s --max-time 5 "http://$HTTP/metrics" >"$WORK/metrics" || : >"$WORK/metrics"
    elapsed=$(($(date +%s) - start))
    line=$(awk -v m="$elapsed" -v rss="$(status VmRSS)" -v anon="$(status RssAnon)" \
        -v file="$(status RssFile)" -v fds="$(ls "/proc/$DEMO/fd" | wc -l)" \
        -v threads="$(status Threads)" -v head="$(metric meshtel_store_head_bytes)" \
        -v blocks="$(metric meshtel_store_blocks)" -v bytes="$(metric meshtel_store_block_bytes)" \
        -v idx="$(metric meshtel_store_trace_index_bytes)" \
        -v searching="$([[ -e $WORK/searching ]] && echo 1 || echo 0)" 'BEGIN {
        printf "%.1f %.0f %.0f %.0f %d %d %.0f %d %.2f %.0f %d", m / 60, rss / 1024, anon / 1024,
            file / 1024, fds, threads, head / 1048576, blocks, bytes / 1073741824, idx / 1024, searching }')
    echo "$line" >>"$SAMPLES"
    minute=$((elapsed / 300))
    if ((minute != last_print)); then
        last_print=$minute
        echo "$line" | awk '{printf "%5.1f min: RSS %s MiB (anon %s, file %s), %s fds, %s threads, head %s MiB, %s blocks (%s GiB), trace index %s KiB\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
    fi
done

touch "$WORK/search.runs"
echo "search runs: $(grep -c ok "$WORK/search.runs" || true) passed, $(grep -c failed "$WORK/search.runs" || true) failed"
grep -E "errors|acked" "$WORK/ingest.log" | tail -3 || true
awk 'NR > 1 {
    n++; r[n] = $2; f[n] = $5; th[n] = $6
    if ($11 == 0) { m++; t[m] = $1; a[m] = $3 } else { busy++; sa += $3; if ($3 > ma) ma = $3 }
}
END {
    if (m < 8) { print "too few samples between searches"; exit 1 }
    # Anonymous memory between searches, by quarter of the run, and its slope over the
    # second half.
    for (q = 1; q <= 4; q++) {
        s = c = 0
        for (i = 1; i <= m; i++) if (i > (q - 1) * m / 4 && i <= q * m / 4) { s += a[i]; c++ }
        printf "%s%.0f", (q == 1 ? "anonymous memory between searches, mean by quarter of the run (MiB): " : ", "), s / c
    }
    print ""
    h = int(m / 2); sx = sy = sxx = sxy = k = 0
    for (i = h; i <= m; i++) { k++; sx += t[i]; sy += a[i]; sxx += t[i] * t[i]; sxy += t[i] * a[i] }
    printf "its slope over the second half: %+.1f MiB per hour\n", (k * sxy - sx * sy) / (k * sxx - sx * sx) * 60
    if (busy > 0) printf "during searches: mean %.0f MiB, max %d MiB (%d samples)\n", sa / busy, ma, busy
    maxr = 0; minf = maxf = f[1]; mint = maxt = th[1]
    for (i = 1; i <= n; i++) {
        if (r[i] > maxr) maxr = r[i]
        if (f[i] < minf) minf = f[i]; if (f[i] > maxf) maxf = f[i]
        if (th[i] < mint) mint = th[i]; if (th[i] > maxt) maxt = th[i]
    }
    printf "max RSS %d MiB; open files %d-%d; threads %d-%d\n", maxr, minf, maxf, mint, maxt
}' "$SAMPLES"
kill -INT "$DEMO"
status=0
wait "$DEMO" || status=$?
PIDS=("${PIDS[@]:1}")
echo "demo exit status on Ctrl-C: $status"
cp "$SAMPLES" "${SOAK_SAMPLES_OUT:-/dev/null}" 2>/dev/null || true
