#!/usr/bin/env bash
# Instructions per forwarded request in meshtel-proxy's own process, counted by
# valgrind's callgrind: a figure that does not move with the machine's load, for
# comparing two builds of the proxy on a noisy shared machine (CPU time per request
# swings by 30 % and more there; this count repeats within 3 %).
#
#   benches/proxy_instructions.sh [PROXY_BIN ...]     # default: the sidecar build
#   BENCH_REQUESTS=2000 BENCH_LISTENER=outbound benches/proxy_instructions.sh A B
#
# Each binary runs under callgrind with instrumentation off, forwards 500 warm-up
# requests, then BENCH_REQUESTS (1000) keep-alive GETs over 4 connections from a
# Python client to an nginx upstream through the BENCH_LISTENER (inbound) listener with
# instrumentation on. Printed: user-space instructions per request (kernel time is not
# counted). Telemetry goes to a closed port with queues of one, as in
# benches/proxy.sh's "telemetry off"; BENCH_COLLECTOR=http://HOST:PORT sends it to a
# running `meshtel serve` instead (every record streamed and acknowledged).
# CALLGRIND_KEEP=DIR keeps each profile there for `callgrind_annotate --inclusive=yes`.
#
# Needs valgrind and nginx (`apt-get install -y valgrind nginx`), curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
REQUESTS=${BENCH_REQUESTS:-1000}
LISTENER=${BENCH_LISTENER:-inbound}
TELEMETRY=(--collector http://127.0.0.1:9 --report-queue 1 --span-queue 1)
[[ -n ${BENCH_COLLECTOR:-} ]] && TELEMETRY=(--collector "$BENCH_COLLECTOR")
for tool in valgrind callgrind_control nginx python3; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || {
        echo "benches/proxy_instructions.sh needs $tool (apt-get install -y valgrind nginx)" >&2
        exit 2
    }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ $# -eq 0 ]]; then
    (cd "$ROOT" && cargo build --profile sidecar -p meshtel-proxy --bin meshtel-proxy)
    set -- "$CARGO_TARGET_DIR/sidecar/meshtel-proxy"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-proxy-instructions.XXXXXX")
PIDS=()
cleanup() {
    # TERM first: an nginx master killed with KILL leaves its worker behind.
    local pid alive
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

UPSTREAM=$(free_port)
mkdir -p "$WORK/upstream"
user=""
[[ $EUID -eq 0 ]] && user="user root;"
sed -e "s|@DIR@|$WORK/upstream|g" -e "s|@PORT@|$UPSTREAM|g" -e "s|@USER@|$user|g" \
    "$ROOT/benches/proxy/upstream.conf.in" >"$WORK/upstream/nginx.conf"
"$NGINX" -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/error.log" >/dev/null 2>&1 &
PIDS+=($!)
printf 'services:\n  - name: bench\n    port: 8080\n    endpoints:\n      - address: 127.0.0.1:%s\n        labels: { app: bench, version: v1 }\n' \
    "$UPSTREAM" >"$WORK/mesh.yaml"

# client N: N keep-alive GETs over 4 connections, every answer a 200.
client() {
    python3 - "$1" "$2" <<'PY'
import http.client, sys, threading
addr, n = sys.argv[1], int(sys.argv[2])
host, port = addr.rsplit(":", 1)
failures = []
def run(k):
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    for _ in range(k):
        c.request("GET", "/", headers={"Host": "bench"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            failures.append(r.status)
threads = [threading.Thread(target=run, args=(n // 4,)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} requests failed: {sorted(set(failures))}")
PY
}

for bin in "$@"; do
    run=$WORK/run-$(basename "$bin")-$RANDOM
    mkdir -p "$run"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$run/callgrind.out" --instr-atstart=no \
        "$bin" --mesh "$WORK/mesh.yaml" --service bench --version v1 --admin 127.0.0.1:0 \
        --outbound 127.0.0.1:0 --inbound "127.0.0.1:0=127.0.0.1:$UPSTREAM" "${TELEMETRY[@]}" \
        --listeners-file "$run/listeners.json" >"$run/proxy.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 600); do [[ -s $run/listeners.json ]] && break; sleep 0.1; done
    [[ -s $run/listeners.json ]] || { cat "$run/proxy.log" >&2; echo "proxy did not start under valgrind in 60 s" >&2; exit 1; }
    addr=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$run/listeners.json" "$LISTENER")
    client "$addr" 500
    callgrind_control -i on "$pid" >/dev/null
    client "$addr" "$REQUESTS"
    callgrind_control -d "$pid" >/dev/null
    profile=""
    for _ in $(seq 1 100); do
        profile=$(ls "$run"/callgrind.out.* 2>/dev/null | head -n 1 || true)
        [[ -n $profile && -s $profile ]] && grep -q '^totals:' "$profile" && break
        sleep 0.2
    done
    total=$(awk '/^totals:/ {print $2; exit}' "$profile")
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '%-60s %s requests via %s: %s instructions/request\n' "$bin" "$REQUESTS" "$LISTENER" \
        "$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN {printf "%.0f", t / n}')"
    if [[ -n ${CALLGRIND_KEEP:-} ]]; then
        mkdir -p "$CALLGRIND_KEEP"
        cp "$profile" "$CALLGRIND_KEEP/$(basename "$bin").callgrind"
    fi
done
