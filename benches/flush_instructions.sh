#!/usr/bin/env bash
# Instructions per span that writing blocks takes: a head flush of 20,000 spans
# (`meshtel_store::block::write_block_from_batches`) and a merge of four such flushes
# (`meshtel_store::block::merge_blocks_unless`), counted by valgrind's callgrind over
# the `flush` bench, for one of its layouts of the head's rows. A figure that does not
# move with the machine's load, for comparing two versions of the writer on a noisy
# machine (the bench's times there move by a fifth from run to run).
#
#   benches/flush_instructions.sh                       # traces whole, starts shuffled
#   BENCH_LAYOUT="traces taking turns" benches/flush_instructions.sh
#   BENCH_PARTS=flush benches/flush_instructions.sh     # the flush alone
#   BENCH_KEEP=1 benches/flush_instructions.sh          # keeps the profiles, prints where
#
# Prints the instructions per span of each and the functions that spend the most of
# them. Needs valgrind (Debian: apt-get install valgrind). Takes about five minutes.
set -euo pipefail

source "$(dirname "$0")/callgrind_bench.sh"
LAYOUT=${BENCH_LAYOUT:-whole traces, starts shuffled}
SPANS_PER_FLUSH=20000
BENCH=$(store_bench_executable flush)

OUT=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-flush.XXXXXX")
if [[ -n ${BENCH_KEEP:-} ]]; then
    echo "profiles kept in $OUT (callgrind_annotate --inclusive=yes $OUT/flush.out)"
else
    trap 'rm -rf "$OUT"' EXIT
fi

# count NAME FUNCTION SPANS_PER_CALL FILTER: one callgrind run collecting inside
# FUNCTION only, while the bench runs FILTER's group for the layout.
count() {
    local name=$1 function=$2 spans=$3 filter=$4 calls total
    BENCH_ROUNDS=0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" \
        --toggle-collect="*$function" \
        "$BENCH" --bench --warm-up-time 0.05 --measurement-time 0.2 --sample-size 10 \
        "^$filter/$LAYOUT\$" >/dev/null 2>&1
    # Both entry points hand their block to `write_columns`: its calls count the blocks.
    calls=$(calls_in "$OUT/$name.out" calling '> .*block::write_columns \(')
    total=$(program_total "$OUT/$name.out")
    [[ -n $calls && -n $total ]] || { echo "no calls of $function were counted" >&2; exit 1; }
    echo "$name ($LAYOUT): $calls calls, $((total / calls / spans)) instructions per span"
    top_functions "$OUT/$name.out"
}

for part in ${BENCH_PARTS:-flush merge}; do
    case $part in
        flush) count flush block::write_block_from_batches "$SPANS_PER_FLUSH" flush ;;
        merge) count merge block::merge_blocks_unless $((4 * SPANS_PER_FLUSH)) "merge of four flushes" ;;
        *) echo "BENCH_PARTS: flush and/or merge, not $part" >&2; exit 2 ;;
    esac
done
