#!/usr/bin/env bash
# Instructions per span that the store's OTLP wire reader spends turning a protobuf
# export request into span rows (`meshtel_store::wire::encode_export_request`),
# counted by valgrind's callgrind over the `otlp_read` bench (500-span requests of the
# ingest shape). A figure that does not move with the machine's load, for comparing
# two versions of the reader on a noisy machine; it repeats within 1 %.
#
#   benches/otlp_read_instructions.sh
#
# Prints the instructions per span and the functions that spend the most of them.
# Needs valgrind (Debian: apt-get install valgrind). Takes about two minutes.
set -euo pipefail

source "$(dirname "$0")/callgrind_bench.sh"
BENCH=$(store_bench_executable otlp_read)

OUT=$(mktemp -d "${TMPDIR:-/tmp}/meshtel-otlp-read.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
# The pattern names the entry point exactly: a function inside it whose name also
# matched (`encode_export_request_reserving`) would toggle counting off again.
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    --toggle-collect='*wire::encode_export_request' \
    "$BENCH" --bench --warm-up-time 0.05 --measurement-time 0.2 wire >/dev/null 2>&1

# Its calls: collection starts inside it, so it shows only as the caller of what it
# calls, and so does the function it hands each request to (whichever the compiler
# kept as a call): the first such line counts the requests.
calls=$(calls_in "$OUT/callgrind.out" caller '< .*wire::encode_export_request(_reserving)? \(')
total=$(program_total "$OUT/callgrind.out")
[[ -n $calls && -n $total ]] || { echo "no calls of encode_export_request were counted" >&2; exit 1; }
echo "encode_export_request: $calls requests of 500 spans, $((total / calls / 500)) instructions per span"
top_functions "$OUT/callgrind.out"
