# Sourced by the scripts that count a store bench's instructions under callgrind
# (benches/otlp_read_instructions.sh, benches/flush_instructions.sh).
#
#   source "$(dirname "$0")/callgrind_bench.sh"
#   BENCH=$(store_bench_executable otlp_read)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/meshtel-target}
for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install valgrind)" >&2; exit 1; }
done

# store_bench_executable NAME: builds meshtel-store's bench NAME (release) and prints
# the path of its executable, or fails saying so.
store_bench_executable() {
    local name=$1 exe
    exe=$(cd "$ROOT" && cargo bench -p meshtel-store --bench "$name" --no-run --message-format=json 2>/dev/null |
        NAME=$name python3 -c 'import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == os.environ["NAME"] and m.get("executable"):
        print(m["executable"])')
    [[ -x $exe ]] || { echo "could not build the $name bench" >&2; return 1; }
    echo "$exe"
}

# calls_in PROFILE TREE PATTERN: the call count on the first line of
# `callgrind_annotate --tree=TREE` that matches PATTERN (an extended regex).
calls_in() {
    callgrind_annotate --tree="$2" "$1" 2>/dev/null |
        grep -E "$3" | head -1 | sed -E 's/.*\(([0-9,]+)x\).*/\1/' | tr -d ,
}

# program_total PROFILE: the instructions the profile counted in all.
program_total() {
    callgrind_annotate "$1" 2>/dev/null | grep 'PROGRAM TOTALS' | awk '{print $1}' | tr -d ,
}

# top_functions PROFILE: the eight functions that spent the most instructions.
top_functions() {
    callgrind_annotate "$1" 2>/dev/null | sed -n '/file:function/,$p' | sed -n '2,9p'
}
