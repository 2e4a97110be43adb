# Sourced by the benches that read a data directory kept by
# `BENCH_KEEP=1 benches/e2e.sh storage` (fetch_block.sh, search_ab.sh).

SERVER=""

# Stops the `meshtel serve` started by start_server, if one runs.
stop_server() {
    if [[ -n $SERVER ]]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
}
trap stop_server EXIT

# start_server BIN DATA_DIR LOG: starts `BIN serve` on DATA_DIR with port-0 listeners,
# its output in LOG; sets SERVER to its pid and QUERY to its query URL once it serves.
start_server() {
    local bin=$1 data=$2 log=$3
    rm -f "$data/listeners.json"
    RUST_LOG=warn "$bin" serve --data-dir "$data" \
        --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
        --zipkin-listen 127.0.0.1:0 --query-listen 127.0.0.1:0 >"$log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 300); do
        [[ -s $data/listeners.json ]] && break
        kill -0 "$SERVER" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    [[ -s $data/listeners.json ]] || { echo "meshtel serve did not start in 30 s: see $log" >&2; exit 1; }
    sleep 0.5
    QUERY=http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["query"])' "$data/listeners.json")
}
