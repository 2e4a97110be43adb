#!/usr/bin/env bash
# End-to-end benchmark of meshtel-proxy against nginx (issue 3, "Figures to reach").
# Release build, everything on 127.0.0.1, wrk as the client, nginx as the upstream.
#
#   benches/proxy.sh                     # sections max, rate, load
#   benches/proxy.sh rate load           # some sections, in the order given
#   BENCH_DIGEST=1 benches/proxy.sh      # ... and the collector's digest-rate tests
#   BENCH_SECONDS=3 BENCH_BIN=... BENCH_PROXY_BIN=... benches/proxy.sh   # smoke run
#   BENCH_RULES=100 benches/proxy.sh rate load   # every proxy with 100 traffic rules
#
# The upstream is an nginx worker answering `200 ok`. Every wrk run lasts BENCH_SECONDS
# (20) after BENCH_WARMUP (2) unmeasured seconds, with one wrk thread.
# Sections:
#   max    maximum throughput, CONNS (16) connections, pinned with taskset: the hop
#          under test (nginx or meshtel-proxy) and the upstream on BENCH_SERVER_CPU
#          (0), so that core is what runs out; wrk and the collector on
#          BENCH_CLIENT_CPU (1). Runs: direct to the upstream; one nginx hop; one
#          meshtel-proxy (inbound → upstream) with telemetry on; the same with
#          telemetry off. Each row shows how busy the hop and the upstream kept their
#          core: together near 100% means the server core was the limit, less means
#          the client side or other processes were (a note says when processes
#          this script did not start took over 10% of that core).
#          "Telemetry off" means the proxy's --collector points at a closed port and
#          its queues hold one record and one span (--report-queue 1 --span-queue 1):
#          every request still gathers what its record needs (and builds its span,
#          when sampled, BENCH_SAMPLING %); the full queue drops the record before it
#          is encoded and counts it, nothing is sent, and the Report stream only
#          retries its connection (backoff up to 10 s). The proxy has no switch that
#          skips the telemetry work itself, so "off" is "no export", not "no
#          telemetry code".
#   rate   latency at a fixed offered rate, BENCH_RATE (1000) req/s over
#          BENCH_RATE_CONNS (10) connections (wrk has no open-loop mode and Debian
#          has no wrk2: each connection waits CONNS*1000/RATE ms after a response
#          before its next request; latency is timed from the write, so this is a
#          paced closed loop, not wrk2's coordinated-omission-corrected open loop).
#          Runs: direct; one nginx hop; the proxy pair (outbound → inbound →
#          upstream, telemetry on). Unpinned. Gives p50/p99 added per pair and CPU
#          per request of each proxy and of nginx.
#   load   the proxy pair at BENCH_LOAD_RATE (5000) req/s over BENCH_LOAD_CONNS (64)
#          connections, telemetry on: peak VmRSS (sampled every 0.5 s) and VmHWM
#          of both proxies, idle VmRSS of fresh proxies before it.
#   digest `cargo test --release -p meshtel-collector --lib -- --ignored --nocapture
#          rate`: the collector's in-process digest rates (records/s). Also run after
#          the others when BENCH_DIGEST=1.
# The `max` section's telemetry-on run also gives the collector's CPU per request
# record end to end (gRPC decode + digest), from its utime+stime and the records the
# proxy had acknowledged.
#
# CPU per request = (utime + stime of the process, from /proc/PID/stat, over the
# measured run) / requests wrk completed; nginx's counts master and worker.
#
# BENCH_RULES=N loads N VirtualServices and N DestinationRules (`--rules`) into every
# proxy; the one for `bench` routes by a header match (never true here) then to subset
# v1 with a retry policy and a timeout, so each request through the outbound proxy
# goes through route matching, the subset's cluster and the retry loop.
#
# BENCH_IDLE_POLL=1 holds /dev/cpu_dma_latency at 0 for the whole run (root): idle
# CPUs poll instead of halting. On a virtual machine whose idle vCPUs halt, waking one
# costs tens of µs per request, for nginx and the proxies alike.
#
# Needs wrk and nginx (`apt-get install -y wrk nginx`), taskset, curl, python3.
# Other knobs: CARGO_TARGET_DIR (default $HOME/.cache/meshtel-target), BENCH_BIN
# (meshtel, for `serve`), BENCH_PROXY_BIN (meshtel-proxy, or a meshtel binary, which
# is run as `meshtel proxy`); given both, nothing is built. CONNS (16),
# BENCH_SAMPLING (1, % of traces the proxies sample), BENCH_UPSTREAM_CPU (the
# server's), BENCH_COLLECTOR_CPU (the client's), BENCH_KEEP=1 (keep the temp dir),
# BENCH_BUILD_TIMEOUT (3600 s), BENCH_DIGEST_TIMEOUT (3600 s).
set -euo pipefail

export LC_ALL=C.UTF-8 # ${#text} counts characters; awk prints a decimal point
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/benches/proxy
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}

RUN_SECONDS=${BENCH_SECONDS:-20}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${CONNS:-16}
RATE=${BENCH_RATE:-1000}
RATE_CONNS=${BENCH_RATE_CONNS:-10}
LOAD_RATE=${BENCH_LOAD_RATE:-5000}
LOAD_CONNS=${BENCH_LOAD_CONNS:-64}
SAMPLING=${BENCH_SAMPLING:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
UPSTREAM_CPU=${BENCH_UPSTREAM_CPU:-$SERVER_CPU}
COLLECTOR_CPU=${BENCH_COLLECTOR_CPU:-$CLIENT_CPU}
BUILD_TIMEOUT=${BENCH_BUILD_TIMEOUT:-3600}
DIGEST_TIMEOUT=${BENCH_DIGEST_TIMEOUT:-3600}
KEEP=${BENCH_KEEP:-0}

ALL_SECTIONS=(max rate load digest)
if [[ $# -eq 0 ]]; then
    SECTIONS=(max rate load)
    [[ ${BENCH_DIGEST:-0} == 1 ]] && SECTIONS+=(digest)
else
    SECTIONS=("$@")
fi
for s in "${SECTIONS[@]}"; do
    case $s in
        max | rate | load | digest) ;;
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
wants() {
    local s
    for s in "${SECTIONS[@]}"; do [[ $s == "$1" ]] && return 0; done
    return 1
}
needs_servers() { wants max || wants rate || wants load; }

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "benches/proxy.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites

if needs_servers; then
    missing=()
    for tool in wrk nginx; do
        command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "benches/proxy.sh needs ${missing[*]}; on Debian: apt-get install -y wrk nginx" >&2
        exit 2
    fi
    for tool in taskset curl python3; do
        command -v "$tool" >/dev/null 2>&1 || { echo "benches/proxy.sh needs $tool" >&2; exit 2; }
    done
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    CPUS=$(nproc)
    for cpu in "$SERVER_CPU" "$CLIENT_CPU" "$UPSTREAM_CPU" "$COLLECTOR_CPU"; do
        ((cpu < CPUS)) || die "CPU $cpu does not exist (nproc = $CPUS); set BENCH_SERVER_CPU / BENCH_CLIENT_CPU"
    done
    ALL_CPUS=0-$((CPUS - 1))
fi

if needs_servers && [[ -z ${BENCH_BIN:-} || -z ${BENCH_PROXY_BIN:-} ]]; then
    # The sidecar is measured as it ships: the `sidecar` profile (release + fat LTO).
    log "building meshtel (--release) and meshtel-proxy (--profile sidecar)"
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release --bin meshtel)
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --profile sidecar -p meshtel-proxy --bin meshtel-proxy)
fi
BIN=${BENCH_BIN:-$CARGO_TARGET_DIR/release/meshtel}
PROXY_BIN=${BENCH_PROXY_BIN:-$CARGO_TARGET_DIR/sidecar/meshtel-proxy}
PROXY_CMD=("$PROXY_BIN")
[[ $(basename "$PROXY_BIN") == meshtel ]] && PROXY_CMD+=(proxy)
if needs_servers; then
    [[ -x $BIN ]] || die "no meshtel binary at $BIN"
    [[ -x $PROXY_BIN ]] || die "no meshtel-proxy binary at $PROXY_BIN"
fi

# ---------------------------------------------------------------- bookkeeping

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-proxy-bench.XXXXXX")
declare -A PID_OF=()  # name → pid of every server process this script started
RULES_ARGS=()
if [[ -n ${BENCH_RULES:-} ]]; then
    mkdir -p "$WORK/rules"
    python3 - "$WORK/rules/rules.yaml" "$BENCH_RULES" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
docs = []
for i in range(n):
    host = "bench" if i == n - 1 else f"svc{i}"
    docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host}}}
spec:
  hosts: [{host}]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: {host}, subset: v2}}}}]
  - match: [{{uri: {{prefix: /admin}}, method: {{regex: "POST|PUT"}}}}]
    route: [{{destination: {{host: {host}, subset: v2}}}}]
  - route: [{{destination: {{host: {host}, subset: v1}}}}]
    timeout: 10s
    retries: {{attempts: 2, perTryTimeout: 5s, retryOn: "connect-failure,refused-stream,503"}}
""")
    docs.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}}}
spec:
  host: {host}
  trafficPolicy: {{connectionPool: {{http: {{http2MaxRequests: 100000}}}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")
open(path, "w").write("---\n".join(docs))
PY
    RULES_ARGS=(--rules "$WORK/rules")
fi
SAMPLER_PIDS=()
ROWS=()   # "section|figure|value|target" ; value and target already formatted
NOTES=()

# pad TEXT WIDTH [FILL]: TEXT padded to WIDTH characters (printf pads bytes, and µ is two).
pad() {
    local text=$1 n=$(($2 - ${#1}))
    ((n > 0)) && text+=$(printf "%${n}s" "" | tr ' ' "${3:- }")
    printf '%s' "$text"
}
row() { ROWS+=("$1|$2|$3|${4:-}"); }
note() { NOTES+=("$*"); }

print_table() {
    [[ ${#ROWS[@]} -eq 0 ]] && return 0
    printf '\n%s  %s  %s  %s\n' "$(pad section 8)" "$(pad figure 62)" "$(pad value 22)" "target (issue 3)"
    printf '%s  %s  %s  %s\n' "$(pad '' 8 -)" "$(pad '' 62 -)" "$(pad '' 22 -)" "$(pad '' 16 -)"
    local r a b c d
    for r in "${ROWS[@]}"; do
        IFS='|' read -r a b c d <<<"$r"
        printf '%s  %s  %s  %s\n' "$(pad "$a" 8)" "$(pad "$b" 62)" "$(pad "$c" 22)" "$d"
    done
    if [[ ${#NOTES[@]} -gt 0 ]]; then
        printf '\nnotes:\n'
        for r in "${NOTES[@]}"; do printf '  - %s\n' "$r"; done
    fi
}

stop() {
    local name=$1 pid=${PID_OF[$1]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID_OF[$name]"
}

stop_samplers() {
    local pid
    for pid in "${SAMPLER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SAMPLER_PIDS=()
}

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    stop_samplers
    local name
    for name in "${!PID_OF[@]}"; do stop "$name"; done
    if [[ -n $IDLE_POLL_PID ]]; then
        kill "$IDLE_POLL_PID" 2>/dev/null
        wait "$IDLE_POLL_PID" 2>/dev/null
    fi
    print_table
    if [[ $KEEP == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
IDLE_POLL_PID=""

# ---------------------------------------------------------------- small helpers

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
jget() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }
CLK_TCK=$(getconf CLK_TCK)
# utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after the
# parenthesised command name, which may hold spaces).
cpu_ticks() {
    local stat
    stat=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || true
    awk '{print $12 + $13}' <<<"$stat"
}
# core_jiffies CPU: "busy total irq" jiffies of one CPU from /proc/stat (busy: user,
# nice, system, steal; irq: irq and softirq, where loopback traffic is processed).
core_jiffies() {
    awk -v c="cpu$1" '$1 == c {busy = $2 + $3 + $4 + $9; irq = $7 + $8; print busy, busy + irq + $5 + $6, irq}' /proc/stat
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v kb="$1" 'BEGIN {printf "%.1f MiB", kb / 1024}'; }
in_mib() { awk -v kb="$1" 'BEGIN {printf "%.2f", kb / 1024}'; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
# A process and its children (nginx: master and workers).
tree_pids() { echo "$1" $(pgrep -P "$1" || true); }
# pin PID CPU: move a running process tree (every thread) onto CPU.
pin() {
    local p
    for p in $(tree_pids "$1"); do taskset -a -pc "$2" "$p" >/dev/null; done
}
pinned() { if [[ -n $1 ]]; then echo taskset -c "$1"; fi; }
# verdict VALUE OP LIMIT → "ok" or "MISS" (empty VALUE → "n/a").
verdict() {
    [[ -n $1 && $1 != n/a ]] || { echo n/a; return; }
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "ok" : "MISS" }'
}

wait_http() { # URL SECONDS: until it answers 200
    local url=$1 limit=$2 i
    for i in $(seq 1 $((limit * 10))); do
        [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null || true) == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# start_nginx NAME CPU TEMPLATE UPSTREAM_PORT: sets NGINX_PORT.
start_nginx() {
    local name=$1 cpu=$2 template=$3 upstream_port=${4:-0}
    local dir=$WORK/$name
    mkdir -p "$dir"
    NGINX_PORT=$(free_port)
    local user=""
    [[ $EUID -eq 0 ]] && user="user root;"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" \
        -e "s|@UPSTREAM_PORT@|$upstream_port|g" -e "s|@USER@|$user|g" \
        "$HERE/$template" >"$dir/nginx.conf"
    # shellcheck disable=SC2046
    $(pinned "$cpu") "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >"$WORK/$name.log" 2>&1 &
    PID_OF[$name]=$!
    wait_http "http://127.0.0.1:$NGINX_PORT/" 10 || {
        cat "$WORK/$name.log" "$dir/error.log" >&2 2>/dev/null
        die "nginx $name did not answer on 127.0.0.1:$NGINX_PORT"
    }
    echo "nginx $name: 127.0.0.1:$NGINX_PORT (pid ${PID_OF[$name]}, workers $(pgrep -P "${PID_OF[$name]}" | tr '\n' ' '))" >&2
}

start_collector() {
    local dir=$WORK/collector
    mkdir -p "$dir"
    # shellcheck disable=SC2046
    RUST_LOG=${RUST_LOG:-warn} $(pinned "$COLLECTOR_CPU") "$BIN" serve --data-dir "$dir" \
        --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
        --zipkin-listen 127.0.0.1:0 --query-listen 127.0.0.1:0 \
        >"$WORK/collector.log" 2>&1 &
    PID_OF[collector]=$!
    local i
    for i in $(seq 1 300); do
        [[ -s $dir/listeners.json ]] && break
        kill -0 "${PID_OF[collector]}" 2>/dev/null || { cat "$WORK/collector.log" >&2; die "meshtel serve exited"; }
        sleep 0.1
    done
    [[ -s $dir/listeners.json ]] || die "meshtel serve did not start in 30 s"
    sleep 0.2
    COLLECTOR=http://$(jget "$dir/listeners.json" grpc)
    COLLECTOR_HTTP=http://$(jget "$dir/listeners.json" http)
    echo "collector: otlp/report $COLLECTOR, http $COLLECTOR_HTTP (pid ${PID_OF[collector]})" >&2
}

# start_proxy NAME CPU MESH SERVICE COLLECTOR [more proxy args]: sets PROXY_INBOUND,
# PROXY_OUTBOUND, PROXY_ADMIN of that proxy.
start_proxy() {
    local name=$1 cpu=$2 mesh=$3 service=$4 collector=$5
    shift 5
    local listeners=$WORK/$name.listeners.json
    rm -f "$listeners"
    # shellcheck disable=SC2046
    RUST_LOG=${RUST_LOG:-warn} $(pinned "$cpu") "${PROXY_CMD[@]}" --mesh "$mesh" \
        --service "$service" --version v1 --admin 127.0.0.1:0 --outbound 127.0.0.1:0 \
        --collector "$collector" --sampling "$SAMPLING" --listeners-file "$listeners" \
        "${RULES_ARGS[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    PID_OF[$name]=$!
    local i
    for i in $(seq 1 100); do
        [[ -s $listeners ]] && break
        kill -0 "${PID_OF[$name]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "proxy $name exited"; }
        sleep 0.1
    done
    [[ -s $listeners ]] || die "proxy $name wrote no listeners file in 10 s"
    sleep 0.1
    PROXY_INBOUND=$(jget "$listeners" inbound)
    PROXY_OUTBOUND=$(jget "$listeners" outbound)
    PROXY_ADMIN=$(jget "$listeners" admin)
    wait_http "http://$PROXY_ADMIN/ready" 10 || die "proxy $name not ready in 10 s"
    echo "proxy $name: inbound ${PROXY_INBOUND:-none}, outbound $PROXY_OUTBOUND, admin $PROXY_ADMIN (pid ${PID_OF[$name]})" >&2
}

# counter ADMIN NAME: a counter of the proxy's /stats/prometheus (0 when absent).
counter() {
    curl -s -m 2 "http://$1/stats/prometheus" | awk -v n="$2" '$1 == n {v = $2} END {printf "%d", v + 0}'
}

# write_mesh FILE INBOUND_ADDRESS: service `bench` (endpoint: that address, when
# given) and service `client` (the pair's caller), both without anything else.
write_mesh() {
    {
        echo "services:"
        echo "  - name: bench"
        echo "    port: 8080"
        if [[ -n ${2:-} ]]; then
            echo "    endpoints:"
            echo "      - address: $2"
            echo "        labels: { app: bench, version: v1 }"
        else
            echo "    endpoints: []"
        fi
        echo "  - name: client"
        echo "    endpoints: []"
    } >"$1"
}

# run_wrk LABEL CONNS RATE URL HOST [GROUP=PID,PID ...]
# One wrk thread on CLIENT_CPU (when WRK_CPU is set to it), WARMUP unmeasured seconds,
# then RUN_SECONDS measured (BEFORE_MEASURE, when set, is run in between). RATE 0 = as
# fast as it goes. Sets R_REQ, R_RPS, R_P50,
# R_P90, R_P99 (µs), R_ERR, and for each GROUP: CPU_US[GROUP] (CPU µs per request) and
# BUSY[GROUP] (% of one core over the run).
declare -A CPU_US=() BUSY=()
run_wrk() {
    local label=$1 conns=$2 rate=$3 url=$4 host=$5
    shift 5
    local delay=0
    [[ $rate != 0 ]] && delay=$(calc '%.3f' "$conns * 1000 / $rate")
    local headers=()
    [[ -n $host ]] && headers=(-H "Host: $host")
    local wrk=(wrk -t1 -c"$conns" --timeout 5s -s "$HERE/wrk.lua" "${headers[@]}" "$url")
    local pin_cmd=()
    [[ -n ${WRK_CPU:-} ]] && pin_cmd=(taskset -c "$WRK_CPU")
    if [[ $WARMUP != 0 ]]; then
        WRK_DELAY_MS=$delay timeout $((WARMUP + 30)) "${pin_cmd[@]}" "${wrk[@]}" -d"${WARMUP}s" \
            >"$WORK/wrk-$label-warmup.log" 2>&1 || true
    fi
    "${BEFORE_MEASURE:-true}"
    declare -A before=()
    local g name pids p sum
    for g in "$@"; do
        name=${g%%=*} pids=${g#*=} sum=0
        for p in ${pids//,/ }; do sum=$((sum + $(cpu_ticks "$p"))); done
        before[$name]=$sum
    done
    local started core0
    core0=$(core_jiffies "$SERVER_CPU")
    started=$(date +%s.%N)
    if ! WRK_DELAY_MS=$delay timeout $((RUN_SECONDS + 30)) "${pin_cmd[@]}" "${wrk[@]}" -d"${RUN_SECONDS}s" \
        >"$WORK/wrk-$label.log" 2>&1; then
        cat "$WORK/wrk-$label.log" >&2
        die "wrk $label failed"
    fi
    local core1
    core1=$(core_jiffies "$SERVER_CPU")
    CORE_BUSY=$(awk -v a="$core0" -v b="$core1" 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.0f", (t > 0 ? (y[1] - x[1]) * 100 / t : 0) }')
    CORE_IRQ=$(awk -v a="$core0" -v b="$core1" 'BEGIN {
        split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.0f", (t > 0 ? (y[3] - x[3]) * 100 / t : 0) }')
    local elapsed
    elapsed=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')
    local result
    result=$(grep '^RESULT ' "$WORK/wrk-$label.log" | tail -n 1) || { cat "$WORK/wrk-$label.log" >&2; die "wrk $label printed no RESULT"; }
    local requests duration_us
    requests=$(sed 's/.* requests=\([0-9]*\).*/\1/' <<<"$result")
    duration_us=$(sed 's/.* duration_us=\([0-9]*\).*/\1/' <<<"$result")
    R_REQ=$requests
    R_ERR=$(sed 's/.* errors=\([0-9]*\).*/\1/' <<<"$result")
    R_P50=$(sed 's/.* p50_us=\([0-9]*\).*/\1/' <<<"$result")
    R_P90=$(sed 's/.* p90_us=\([0-9]*\).*/\1/' <<<"$result")
    R_P99=$(sed 's/.* p99_us=\([0-9]*\).*/\1/' <<<"$result")
    R_RPS=$(calc '%.0f' "$requests / ($duration_us / 1000000)")
    for g in "$@"; do
        name=${g%%=*} pids=${g#*=} sum=0
        for p in ${pids//,/ }; do sum=$((sum + $(cpu_ticks "$p"))); done
        local ticks=$((sum - ${before[$name]}))
        CPU_US[$name]=$(calc '%.1f' "$ticks * 1000000 / $CLK_TCK / ($requests > 0 ? $requests : 1)")
        BUSY[$name]=$(calc '%.0f' "$ticks * 100 / $CLK_TCK / $elapsed")
    done
    local cpu_text=""
    for g in "$@"; do
        name=${g%%=*}
        cpu_text+=" $name=${CPU_US[$name]}µs/req(${BUSY[$name]}%core)"
    done
    printf '%-13s %8s req/s  p50 %6s µs  p90 %6s µs  p99 %6s µs  errors %s %s cpu%s=%s%%+%s%%irq\n' \
        "$label" "$R_RPS" "$R_P50" "$R_P90" "$R_P99" "$R_ERR" "$cpu_text" "$SERVER_CPU" "$CORE_BUSY" "$CORE_IRQ" >&2
    if [[ $R_ERR != 0 ]]; then note "$label: wrk counted $R_ERR errors (non-2xx, timeouts, socket errors)"; fi
    if [[ $rate != 0 ]]; then
        local off
        off=$(calc '%.0f' "($R_RPS - $rate) * 100 / $rate")
        if ((off < -10 || off > 10)); then note "$label: offered $rate req/s, achieved $R_RPS req/s"; fi
    fi
}

# others_on_core LABEL GROUP...: after a pinned run, note when processes this script
# did not start took more than 10% of the server core (a shared machine). Process
# time excludes irq/softirq time, which is reported beside it.
others_on_core() {
    local label=$1 ours=0 g
    shift
    for g in "$@"; do ours=$((ours + BUSY[$g])); done
    local others=$((CORE_BUSY - ours))
    if ((others > 10)); then
        note "$label: CPU $SERVER_CPU was ${CORE_BUSY}% busy in processes (+${CORE_IRQ}% irq/softirq), ${others} points of it not this benchmark's processes"
    fi
}
ratio() { calc '%.2f' "$1 / ($2 > 0 ? $2 : 1)"; }

# ---------------------------------------------------------------- the runs

if needs_servers; then
    log "collector, upstream"
    start_collector
    start_nginx upstream "" upstream.conf.in
    UPSTREAM_PORT=$NGINX_PORT
    UPSTREAM_PIDS=$(tree_pids "${PID_OF[upstream]}" | tr ' ' ',')
    CLOSED_PORT=$(free_port) # nothing listens there: the collector of "telemetry off"
    CLOSED=http://127.0.0.1:$CLOSED_PORT
    write_mesh "$WORK/mesh-inbound.yaml" ""
fi

section_max() {
    log "max: maximum throughput over $CONNS connections; hop under test on CPU $SERVER_CPU, upstream on CPU $UPSTREAM_CPU, wrk on CPU $CLIENT_CPU, collector on CPU $COLLECTOR_CPU"
    local WRK_CPU=$CLIENT_CPU
    pin "${PID_OF[upstream]}" "$UPSTREAM_CPU"
    run_wrk direct-max "$CONNS" 0 "http://127.0.0.1:$UPSTREAM_PORT/" "" upstream="$UPSTREAM_PIDS"
    local direct=$R_RPS direct_busy=${BUSY[upstream]}
    others_on_core direct-max upstream

    start_nginx hop "$SERVER_CPU" hop.conf.in "$UPSTREAM_PORT"
    run_wrk nginx-max "$CONNS" 0 "http://127.0.0.1:$NGINX_PORT/" "" \
        nginx="$(tree_pids "${PID_OF[hop]}" | tr ' ' ',')" upstream="$UPSTREAM_PIDS"
    others_on_core nginx-max nginx upstream
    local hop=$R_RPS hop_cpu=${CPU_US[nginx]} hop_busy="nginx ${BUSY[nginx]}%, upstream ${BUSY[upstream]}%"
    stop hop

    start_proxy proxy-on "$SERVER_CPU" "$WORK/mesh-inbound.yaml" bench "$COLLECTOR" \
        --inbound "127.0.0.1:0=127.0.0.1:$UPSTREAM_PORT"
    sleep 1
    local idle_on
    idle_on=$(rss_kb "${PID_OF[proxy-on]}")
    local admin=$PROXY_ADMIN
    local acc0 col0
    # shellcheck disable=SC2317
    snapshot() {
        acc0=$(counter "$admin" meshtel_proxy_reports_accepted_total)
        col0=$(cpu_ticks "${PID_OF[collector]}")
    }
    BEFORE_MEASURE=snapshot run_wrk proxy-on-max "$CONNS" 0 "http://$PROXY_INBOUND/" "" \
        proxy="${PID_OF[proxy-on]}" collector="${PID_OF[collector]}" upstream="$UPSTREAM_PIDS"
    others_on_core proxy-on-max proxy upstream
    local on=$R_RPS on_cpu=${CPU_US[proxy]} on_busy="proxy ${BUSY[proxy]}%, upstream ${BUSY[upstream]}%" on_req=$R_REQ
    sleep 1 # the last batch (100 ms linger) reaches the collector
    local acc1 col1 dropped
    acc1=$(counter "$admin" meshtel_proxy_reports_accepted_total)
    col1=$(cpu_ticks "${PID_OF[collector]}")
    dropped=$(counter "$admin" meshtel_proxy_reports_dropped_total)
    echo "proxy-on: records accepted by the collector $acc1 (this run $((acc1 - acc0)) of $on_req requests measured), dropped $dropped" >&2
    stop proxy-on

    start_proxy proxy-off "$SERVER_CPU" "$WORK/mesh-inbound.yaml" bench "$CLOSED" \
        --inbound "127.0.0.1:0=127.0.0.1:$UPSTREAM_PORT" --report-queue 1 --span-queue 1
    sleep 1
    local idle_off
    idle_off=$(rss_kb "${PID_OF[proxy-off]}")
    run_wrk proxy-off-max "$CONNS" 0 "http://$PROXY_INBOUND/" "" proxy="${PID_OF[proxy-off]}" upstream="$UPSTREAM_PIDS"
    others_on_core proxy-off-max proxy upstream
    local off=$R_RPS off_cpu=${CPU_US[proxy]} off_busy="proxy ${BUSY[proxy]}%, upstream ${BUSY[upstream]}%"
    echo "proxy-off: records dropped $(counter "$PROXY_ADMIN" meshtel_proxy_reports_dropped_total) (collector $CLOSED is a closed port)" >&2
    stop proxy-off
    pin "${PID_OF[upstream]}" "$ALL_CPUS"

    local r1 r2
    r1=$(ratio "$on" "$hop")
    r2=$(ratio "$on" "$off")
    row max "direct (upstream ${direct_busy}% of a core)" "$direct req/s"
    row max "one nginx hop ($hop_busy)" "$hop req/s"
    row max "one proxy, telemetry on ($on_busy)" "$on req/s"
    row max "one proxy, telemetry off ($off_busy)" "$off req/s"
    row max "throughput proxy (on) / nginx, one hop" "${r1}x" ">= 0.8x  $(verdict "$r1" '>=' 0.8)"
    row max "throughput proxy telemetry on / off" "${r2}x" ">= 0.9x  $(verdict "$r2" '>=' 0.9)"
    row max "CPU per request, nginx hop, max rate" "$hop_cpu µs"
    row max "CPU per request, proxy on, max rate" "$on_cpu µs" "<= 50 µs  $(verdict "$on_cpu" '<=' 50)"
    row max "CPU per request, proxy off, max rate" "$off_cpu µs"
    local cr
    cr=$(ratio "$on_cpu" "$hop_cpu")
    row max "CPU per request proxy (on) / nginx, max rate" "${cr}x" "<= 1.2x  $(verdict "$cr" '<=' 1.2)"
    row rss "proxy RSS idle, telemetry on (fresh, 1 s)" "$(mib "$idle_on")" "<= 15 MiB  $(verdict "$(in_mib "$idle_on")" '<=' 15)"
    row rss "proxy RSS idle, telemetry off (fresh, 1 s)" "$(mib "$idle_off")" "<= 15 MiB  $(verdict "$(in_mib "$idle_off")" '<=' 15)"
    local records=$((acc1 - acc0))
    if ((records > 0)); then
        local per rate
        per=$(calc '%.2f' "($col1 - $col0) * 1000000 / $CLK_TCK / $records")
        rate=$(calc '%.0f' "$records / (($col1 - $col0 > 0 ? $col1 - $col0 : 1) / $CLK_TCK)")
        row digest "collector CPU per record, end to end (proxy-on run)" "$per µs"
        row digest "records/s per collector core (1 / CPU per record)" "$rate /s" ">= 200000/s  $(verdict "$rate" '>=' 200000)"
        note "collector CPU per record counts everything meshtel serve did during the proxy-on run (Report stream gRPC decode, metrics, edge rollups, the 1% sampled spans) over the records the proxy had acknowledged ($records); it is a rate per core, not a measured maximum"
    else
        note "the collector acknowledged no records during the proxy-on run: see $WORK/collector.log and proxy-on.log (BENCH_KEEP=1)"
    fi
}

section_rate() {
    log "rate: latency at $RATE req/s over $RATE_CONNS connections (paced closed loop), unpinned"
    local WRK_CPU=""
    run_wrk direct-rate "$RATE_CONNS" "$RATE" "http://127.0.0.1:$UPSTREAM_PORT/" "" upstream="$UPSTREAM_PIDS"
    local d50=$R_P50 d99=$R_P99 drps=$R_RPS

    start_nginx hop "" hop.conf.in "$UPSTREAM_PORT"
    run_wrk nginx-rate "$RATE_CONNS" "$RATE" "http://127.0.0.1:$NGINX_PORT/" "" \
        nginx="$(tree_pids "${PID_OF[hop]}" | tr ' ' ',')"
    local n50=$R_P50 n99=$R_P99 ncpu=${CPU_US[nginx]} nrps=$R_RPS
    stop hop

    start_proxy pair-in "" "$WORK/mesh-inbound.yaml" bench "$COLLECTOR" \
        --inbound "127.0.0.1:0=127.0.0.1:$UPSTREAM_PORT"
    local in_pid=${PID_OF[pair-in]} in_admin=$PROXY_ADMIN
    write_mesh "$WORK/mesh-pair.yaml" "$PROXY_INBOUND"
    start_proxy pair-out "" "$WORK/mesh-pair.yaml" client "$COLLECTOR"
    local out_pid=${PID_OF[pair-out]} out_admin=$PROXY_ADMIN out=$PROXY_OUTBOUND
    run_wrk pair-rate "$RATE_CONNS" "$RATE" "http://$out/" bench:8080 out="$out_pid" in="$in_pid"
    local p50=$R_P50 p99=$R_P99 ocpu=${CPU_US[out]} icpu=${CPU_US[in]} prps=$R_RPS
    echo "pair: records accepted outbound $(counter "$out_admin" meshtel_proxy_reports_accepted_total), inbound $(counter "$in_admin" meshtel_proxy_reports_accepted_total)" >&2
    stop pair-out
    stop pair-in

    local a50=$((p50 - d50)) a99=$((p99 - d99))
    row rate "direct p50 / p99 ($drps req/s)" "$d50 / $d99 µs"
    row rate "one nginx hop p50 / p99 ($nrps req/s)" "$n50 / $n99 µs"
    row rate "proxy pair p50 / p99 ($prps req/s)" "$p50 / $p99 µs"
    row rate "nginx hop added p50 / p99" "$((n50 - d50)) / $((n99 - d99)) µs"
    row rate "proxy pair added p50, telemetry on" "$a50 µs" "<= 120 µs  $(verdict "$a50" '<=' 120)"
    row rate "proxy pair added p99, telemetry on" "$a99 µs" "<= 500 µs  $(verdict "$a99" '<=' 500)"
    row rate "CPU per request, nginx hop @ $RATE req/s" "$ncpu µs"
    row rate "CPU per request, outbound proxy @ $RATE req/s" "$ocpu µs" "<= 50 µs  $(verdict "$ocpu" '<=' 50)"
    row rate "CPU per request, inbound proxy @ $RATE req/s" "$icpu µs" "<= 50 µs  $(verdict "$icpu" '<=' 50)"
    local ro ri
    ro=$(ratio "$ocpu" "$ncpu")
    ri=$(ratio "$icpu" "$ncpu")
    row rate "CPU per request outbound proxy / nginx hop" "${ro}x" "<= 1.2x  $(verdict "$ro" '<=' 1.2)"
    row rate "CPU per request inbound proxy / nginx hop" "${ri}x" "<= 1.2x  $(verdict "$ri" '<=' 1.2)"
}

section_load() {
    log "load: proxy pair at $LOAD_RATE req/s over $LOAD_CONNS connections, telemetry on, unpinned"
    local WRK_CPU=""
    start_proxy load-in "" "$WORK/mesh-inbound.yaml" bench "$COLLECTOR" \
        --inbound "127.0.0.1:0=127.0.0.1:$UPSTREAM_PORT"
    local in_pid=${PID_OF[load-in]}
    write_mesh "$WORK/mesh-load.yaml" "$PROXY_INBOUND"
    start_proxy load-out "" "$WORK/mesh-load.yaml" client "$COLLECTOR"
    local out_pid=${PID_OF[load-out]} out=$PROXY_OUTBOUND
    sleep 1
    local idle_in idle_out
    idle_in=$(rss_kb "$in_pid")
    idle_out=$(rss_kb "$out_pid")
    local p
    for p in "$in_pid" "$out_pid"; do
        (
            while kill -0 "$p" 2>/dev/null; do
                rss_kb "$p" >>"$WORK/rss-$p"
                sleep 0.5
            done
        ) &
        SAMPLER_PIDS+=($!)
    done
    run_wrk pair-load "$LOAD_CONNS" "$LOAD_RATE" "http://$out/" bench:8080 out="$out_pid" in="$in_pid"
    local rps=$R_RPS
    stop_samplers
    local max_in max_out hwm_in hwm_out
    max_in=$(sort -n "$WORK/rss-$in_pid" | tail -n 1)
    max_out=$(sort -n "$WORK/rss-$out_pid" | tail -n 1)
    hwm_in=$(hwm_kb "$in_pid")
    hwm_out=$(hwm_kb "$out_pid")
    stop load-out
    stop load-in
    row rss "outbound proxy RSS idle (fresh, 1 s)" "$(mib "$idle_out")" "<= 15 MiB  $(verdict "$(in_mib "$idle_out")" '<=' 15)"
    row rss "inbound proxy RSS idle (fresh, 1 s)" "$(mib "$idle_in")" "<= 15 MiB  $(verdict "$(in_mib "$idle_in")" '<=' 15)"
    row rss "outbound proxy RSS peak / VmHWM, $rps req/s × $LOAD_CONNS conns" "$(mib "$max_out") / $(mib "$hwm_out")" \
        "<= 25 MiB  $(verdict "$(in_mib "$hwm_out")" '<=' 25)"
    row rss "inbound proxy RSS peak / VmHWM, $rps req/s × $LOAD_CONNS conns" "$(mib "$max_in") / $(mib "$hwm_in")" \
        "<= 25 MiB  $(verdict "$(in_mib "$hwm_in")" '<=' 25)"
    row load "CPU per request outbound / inbound @ $rps req/s" "${CPU_US[out]} / ${CPU_US[in]} µs" "<= 50 µs"
}

section_digest() {
    log "digest: cargo test --release -p meshtel-collector --lib -- --ignored --nocapture rate"
    local out=$WORK/digest.log
    if ! (cd "$ROOT" && timeout "$DIGEST_TIMEOUT" cargo test --release -p meshtel-collector --lib \
        -- --ignored --nocapture rate) >"$out" 2>&1; then
        tail -n 30 "$out" >&2
        die "the collector's digest-rate tests failed"
    fi
    local line name value
    while IFS= read -r line; do
        name=${line%%:*}
        value=$(sed 's/.*: \([0-9]*\) records\/s.*/\1/' <<<"$line")
        row digest "collector $name, in process" "$value /s" ">= 200000/s  $(verdict "$value" '>=' 200000)"
    done < <(grep 'records/s' "$out")
    grep -q 'records/s' "$out" || die "the digest-rate tests printed no records/s (see $out)"
}

if [[ ${BENCH_IDLE_POLL:-0} == 1 ]]; then
    [[ -w /dev/cpu_dma_latency ]] || die "BENCH_IDLE_POLL=1 needs root and /dev/cpu_dma_latency"
    python3 -c '
import os, signal, struct
fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
os.write(fd, struct.pack("i", 0))
signal.pause()
' &
    IDLE_POLL_PID=$!
    note "idle CPUs polling (/dev/cpu_dma_latency held at 0) for the whole run"
fi
for s in "${SECTIONS[@]}"; do
    "section_$s"
done
note "figures are from one run on this machine; wrk, nginx, the proxies and the collector share its $(nproc) CPUs"
