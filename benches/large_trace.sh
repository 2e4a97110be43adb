#!/usr/bin/env bash
# Reading one very large trace: what [query] max_spans_per_response bounds.
#
#   benches/large_trace.sh                     # a 500,000-span trace
#   LARGE_TRACE_SPANS=200000 benches/large_trace.sh
#
# For each of two servers (release build, 127.0.0.1, port-0 listeners, temp dirs):
# the default bound (50,000 spans) and a bound above the trace (the whole trace, as
# before the bound existed), it sends one trace of LARGE_TRACE_SPANS spans over OTLP/HTTP
# JSON, waits until it is stored, then fetches it three times from /api/traces/{id}:
# spans returned, answer bytes, time, and the server's resident memory before and at
# its peak during the fetches (sampled every 5 ms from /proc); then three fetches with
# `Accept-Encoding: gzip`, as Grafana and browsers send: answer bytes and time.
# Knobs: CARGO_TARGET_DIR, BENCH_BIN (skip the build), BENCH_KEEP=1 (keep the temp dir),
# LARGE_TRACE_WHOLE=0 (skip the whole-trace server), LARGE_TRACE_BATCH=N (spans per
# request, default 20000; when set, each request becomes its own block and blocks are
# not merged, so the trace spans SPANS/N blocks).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
BIN=${BENCH_BIN:-$CARGO_TARGET_DIR/release/meshtel}
SPANS=${LARGE_TRACE_SPANS:-500000}
BATCH=${LARGE_TRACE_BATCH:-20000}

if [[ -z ${BENCH_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release --bin meshtel >&2)
fi
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    if [[ -n ${BENCH_KEEP:-} ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

run() {
    local name=$1 bound=$2 dir=$WORK/$1
    mkdir -p "$dir"
    printf '[query]\nmax_spans_per_response = %s\n[store]\n' "$bound" >"$dir.toml"
    if ((bound > 50000)); then
        # The whole trace: past the default bound of bytes too.
        printf 'max_read_bytes = "16 GiB"\n' >>"$dir.toml"
    fi
    if [[ -n ${LARGE_TRACE_BATCH:-} ]]; then
        # One block per request, never merged: the trace spread over many blocks.
        printf 'flush_rows = %s\ncompaction_interval = "1h"\n' "$BATCH" >>"$dir.toml"
    fi
    RUST_LOG=warn "$BIN" serve --config "$dir.toml" --data-dir "$dir" \
        --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
        --zipkin-listen 127.0.0.1:0 --query-listen 127.0.0.1:0 >"$dir.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        [[ -s $dir/listeners.json ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir.log" >&2; exit 1; }
        sleep 0.1
    done
    sleep 0.2
    python3 - "$name" "$bound" "$SPANS" "$SERVER_PID" "$dir/listeners.json" "$BATCH" <<'PY'
import json, os, sys, threading, time, urllib.request

name, bound, spans, pid, listeners, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
addr = json.load(open(listeners))
http, query = "http://" + addr["http"], "http://" + addr["query"]
trace_id = os.urandom(16).hex()
now = time.time_ns() - 60_000_000_000
root = "00000000000000ff"

def span(i):
    span_id = "%016x" % (i + 0x100)
    s = {"traceId": trace_id, "spanId": root if i == 0 else span_id, "name": "GET /batch" if i == 0 else "step-%d" % (i % 50),
         "kind": 2 if i == 0 else 3, "startTimeUnixNano": str(now + i * 1000), "endTimeUnixNano": str(now + i * 1000 + 500),
         "attributes": [{"key": "item", "value": {"intValue": str(i)}}, {"key": "db.system", "value": {"stringValue": "postgres"}}]}
    if i:
        s["parentSpanId"] = root
    return s

def rss_kib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

sent = 0
while sent < spans:
    n = min(batch, spans - sent)
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "batch"}}]},
                                          "scopeSpans": [{"spans": [span(sent + i) for i in range(n)]}]}]}).encode()
    req = urllib.request.Request(http + "/v1/traces", body, {"content-type": "application/json"})
    for attempt in range(100):
        try:
            urllib.request.urlopen(req, timeout=60).read()
            break
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            time.sleep(0.5)
    sent += n

def metric(name):
    text = urllib.request.urlopen(http + "/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0

deadline = time.time() + 300
while metric("meshtel_store_spans_written_total") < spans:
    if time.time() > deadline:
        sys.exit("spans not stored within 300 s")
    time.sleep(0.5)
time.sleep(3)
before = rss_kib()
peak = [before]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib())
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
times, size, shown, warn = [], 0, 0, None
for _ in range(3):
    started = time.time()
    raw = urllib.request.urlopen(query + "/api/traces/" + trace_id, timeout=600).read()
    times.append(time.time() - started)
    size = len(raw)
    trace = json.loads(raw)["data"][0]
    shown, warn = len(trace["spans"]), trace.get("warnings")
stop.set()
sampler.join()
times.sort()
print("%-8s bound %7d: %d of %d spans returned, answer %.1f MB, fetch %.2f s (median of 3), RSS %.0f MiB before, peak %.0f MiB (+%.0f MiB)%s"
      % (name, bound, shown, spans, size / 1e6, times[1], before / 1024, peak[0] / 1024, (peak[0] - before) / 1024,
         "; warning: " + warn[0] if warn else ""))
# As Grafana and browsers ask: gzip (the server compresses at gzip's fastest level).
gz_times, gz_size = [], 0
for _ in range(3):
    req = urllib.request.Request(query + "/api/traces/" + trace_id, headers={"accept-encoding": "gzip"})
    started = time.time()
    with urllib.request.urlopen(req, timeout=600) as reply:
        raw = reply.read()
        encoding = reply.headers.get("content-encoding")
    gz_times.append(time.time() - started)
    gz_size = len(raw)
gz_times.sort()
print("%-8s bound %7d, gzip: answer %.1f MB (%s, %.1fx smaller), fetch %.2f s (median of 3)"
      % (name, bound, gz_size / 1e6, encoding, size / max(gz_size, 1), gz_times[1]))
PY
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

run bounded 50000
[[ ${LARGE_TRACE_WHOLE:-1} == 0 ]] || run whole $((SPANS + 1))
