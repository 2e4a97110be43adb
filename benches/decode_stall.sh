#!/usr/bin/env bash
# Whether decoding large ingest requests holds up the other requests of the port.
#
#   benches/decode_stall.sh [BIN...]      # default: the release build
#
# For each binary (a `meshtel serve` on 127.0.0.1, port-0 listeners, a temp dir) and
# each kind of body (OTLP/JSON, Zipkin JSON, gzipped OTLP/JSON; 12,000 spans with 8
# attributes each), two clients each send three such requests at once while a third
# asks `GET /healthz` on the OTLP HTTP port every 2 ms: the probe's latency p50, p99
# and max while the requests are decoded. Binaries are run in the order given, so
# alternate them to compare builds on a machine whose speed drifts. The servers run
# with `[ingest] max_inflight_bytes = "1 GiB"`: parsing such a body takes about 170 MiB,
# and the clients' requests would otherwise wait for each other's (a 503 to retry).
# Knobs: DECODE_STALL_SPANS (spans a request, 12000), DECODE_STALL_CLIENTS (2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
if [[ $# -eq 0 ]]; then
    (cd "$ROOT" && cargo build --release --bin meshtel >&2)
    set -- "$CARGO_TARGET_DIR/release/meshtel"
fi
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/probe.py" <<'PY'
import gzip, http.client, json, os, sys, threading, time

listeners, kind = json.load(open(sys.argv[1])), sys.argv[2]
host, port = listeners["http"].split(":")
zhost, zport = listeners["zipkin"].split(":")
now = time.time_ns() - 10_000_000_000
SPANS = int(os.environ.get("DECODE_STALL_SPANS", "12000"))
SENDERS, REQUESTS = int(os.environ.get("DECODE_STALL_CLIENTS", "2")), 3

def otlp_body():
    tid = os.urandom(16).hex()
    spans = [{"traceId": tid, "spanId": "%016x" % (i + 1), "name": "op-%d" % (i % 40), "kind": 2,
              "startTimeUnixNano": str(now + i), "endTimeUnixNano": str(now + i + 1000),
              "attributes": [{"key": "k%d" % j, "value": {"stringValue": "value-%d-%d" % (i % 97, j)}}
                             for j in range(8)]}
             for i in range(SPANS)]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "big"}}]}, "scopeSpans": [{"spans": spans}]}]}).encode()

def zipkin_body():
    tid = os.urandom(16).hex()
    return json.dumps([{"traceId": tid, "id": "%016x" % (i + 1), "name": "op-%d" % (i % 40),
                        "timestamp": now // 1000 + i, "duration": 10, "localEndpoint": {"serviceName": "big"},
                        "tags": {"k%d" % j: "value-%d-%d" % (i % 97, j) for j in range(8)}}
                       for i in range(SPANS)]).encode()

bodies = [zipkin_body() if kind == "zipkin" else otlp_body() for _ in range(REQUESTS)]
if kind == "gzip-json":
    bodies = [gzip.compress(b, 1) for b in bodies]

def post(body):
    if kind == "zipkin":
        c = http.client.HTTPConnection(zhost, int(zport), timeout=120)
        c.request("POST", "/api/v2/spans", body, {"content-type": "application/json"})
    else:
        c = http.client.HTTPConnection(host, int(port), timeout=120)
        headers = {"content-type": "application/json"}
        if kind == "gzip-json":
            headers["content-encoding"] = "gzip"
        c.request("POST", "/v1/traces", body, headers)
    reply = c.getresponse()
    reply.read()
    if reply.status not in (200, 202):
        sys.exit("%s answered %d" % (kind, reply.status))

stop, latencies = threading.Event(), []
def probe():
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    while not stop.is_set():
        started = time.perf_counter()
        c.request("GET", "/healthz")
        c.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)

prober = threading.Thread(target=probe)
prober.start()
time.sleep(1)
first = len(latencies)
senders = [threading.Thread(target=lambda: [post(b) for b in bodies]) for _ in range(SENDERS)]
for t in senders:
    t.start()
for t in senders:
    t.join()
stop.set()
prober.join()
during = sorted(latencies[first:])
print("%-9s %s bytes a request: /healthz p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d probes)"
      % (kind, len(bodies[0]), during[len(during) // 2], during[int(len(during) * 0.99)], during[-1], len(during)))
PY

for bin in "$@"; do
    for kind in json zipkin gzip-json; do
        dir=$(mktemp -d "$WORK/run.XXXX")
        printf '[ingest]\nmax_inflight_bytes = "1 GiB"\n' >"$dir/meshtel.toml"
        RUST_LOG=warn "$bin" serve --config "$dir/meshtel.toml" --data-dir "$dir/data" --grpc-listen 127.0.0.1:0 \
            --http-listen 127.0.0.1:0 --zipkin-listen 127.0.0.1:0 \
            --query-listen 127.0.0.1:0 >"$dir/log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 1 300); do
            [[ -s $dir/data/listeners.json ]] && break
            kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
            sleep 0.1
        done
        printf '%s: ' "$bin"
        python3 "$WORK/probe.py" "$dir/data/listeners.json" "$kind"
        kill "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    done
done
