#!/usr/bin/env bash
# Trace fetches by id from one compacted block that is not the newest: what opening a
# trace from a link costs once compaction has moved it into a large block.
#
#   BENCH_KEEP=1 benches/e2e.sh storage          # a data directory to read (kept)
#   benches/fetch_block.sh DATA_DIR [MESHTEL_BIN ...]
#
# For each binary (default: the release build; give several to alternate builds on a
# machine whose speed drifts): starts `meshtel serve` on DATA_DIR with port-0
# listeners, takes the third-newest block of at least BENCH_BLOCK_ROWS (200000) spans
# from the catalog, finds up to BENCH_TRACES (300) traces with a search in the middle of
# that block's time range, fetches each BENCH_ROUNDS (3) times one at a time through
# `/api/traces/{id}`, and prints the fetch p50/p99 and the collector's CPU per fetch
# (utime + stime from /proc/PID/stat). Needs python3 and curl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
DATA=${1:?usage: benches/fetch_block.sh DATA_DIR [MESHTEL_BIN ...]}
shift
[[ -f $DATA/meshtel.db ]] || { echo "$DATA holds no meshtel.db" >&2; exit 2; }
if [[ $# -eq 0 ]]; then
    (cd "$ROOT" && cargo build --release --bin meshtel)
    set -- "$CARGO_TARGET_DIR/release/meshtel"
fi
. "$ROOT/benches/kept_dir.sh"

for bin in "$@"; do
    start_server "$bin" "$DATA" "$DATA/fetch_block.log"
    printf '%s: ' "$bin"
    python3 - "$DATA" "$SERVER" "${BENCH_BLOCK_ROWS:-200000}" "${BENCH_TRACES:-300}" \
        "${BENCH_ROUNDS:-3}" <<'PY'
import json, os, sqlite3, sys, time, urllib.request

data, pid, min_rows, want, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
query = "http://" + json.load(open(data + "/listeners.json"))["query"]
db = sqlite3.connect("file:%s/meshtel.db?mode=ro" % data, uri=True)
blocks = db.execute(
    "SELECT id, row_count, min_start_unix_nano, max_start_unix_nano FROM blocks "
    "WHERE row_count >= ? ORDER BY max_start_unix_nano DESC LIMIT 3", (min_rows,)).fetchall()
if not blocks:
    sys.exit("no block of at least %d spans; load more (benches/e2e.sh storage)" % min_rows)
block, rows, lo, hi = blocks[-1]

def get(path):
    with urllib.request.urlopen(query + path, timeout=30) as r:
        return json.load(r)

# Jaeger's search takes microseconds; a window of 0.4 s in the middle of the block.
mid = (lo + hi) // 2000
ids = []
for service in get("/api/services")["data"]:
    found = get("/api/traces?service=%s&start=%d&end=%d&limit=%d" % (service, mid - 200000, mid + 200000, want))
    ids += [t["traceID"] for t in found["data"]]
ids = ids[:want]
if not ids:
    sys.exit("no trace found in block %d's time range" % block)

def ticks():
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

latencies = []
before = ticks()
for _ in range(rounds):
    for trace in ids:
        start = time.perf_counter()
        get("/api/traces/" + trace)
        latencies.append((time.perf_counter() - start) * 1e3)
used = ticks() - before
latencies.sort()
hz = os.sysconf("SC_CLK_TCK")
print("block %d (%d spans), %d traces × %d: p50 %.2f ms, p99 %.2f ms, %.2f ms of CPU per fetch" % (
    block, rows, len(ids), rounds, latencies[len(latencies) // 2],
    latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], used * 1000.0 / hz / len(latencies)))
PY
    stop_server
done
