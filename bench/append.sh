#!/usr/bin/env bash
# Raw appends through a PartitionActor (no HTTP), flush = "always", next to the disk's own
# ceiling (sequential write + fdatasync of the same batch, one writer), measured in one run.
# Each figure is the median of RUNS runs of SECONDS seconds. Prints a markdown table (also written to bench/append-results.md, pasted into RESULTS.md).
#
#   bench/append.sh            # RUNS=3 BENCH_SECONDS=2, data in a temp dir on the data disk
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-2}
DIR=$(mktemp -d "${BENCH_DIR:-$PWD/target}/append-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cargo build --release -p rill-actors --bin rill-append-bench >/dev/null
BIN=target/release/rill-append-bench

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { tr " " "\n" | sed -n "s|^$1=||p"; }

run() { # args… → "records/s MB/s" medians
  local recs=() mbs=()
  for _ in $(seq "$RUNS"); do
    rm -rf "$DIR/log"
    local line; line=$("$BIN" --dir "$DIR/log" --seconds "$SECONDS_PER_RUN" "$@")
    recs+=("$(echo "$line" | field 'records/s')"); mbs+=("$(echo "$line" | field 'MB/s')")
  done
  echo "$(printf '%s\n' "${recs[@]}" | median) $(printf '%s\n' "${mbs[@]}" | median)"
}

out=bench/append-results.md
{
  echo "### Raw appends through the partition actor (flush = \"always\")"
  echo
  echo "Command: \`bench/append.sh\` (RUNS=$RUNS, ${SECONDS_PER_RUN}s each, median), $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r), data dir on $(df --output=source "$DIR" | tail -1)."
  echo "100-byte records. Ceiling = one writer doing write + fdatasync of the same batch bytes, no broker."
  echo
  echo "| records/batch | appenders | records/s | MB/s | ceiling records/s | ceiling MB/s | ratio to ceiling |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  for batch in 1 100 1000; do
    read -r crec cmb < <(run --ceiling --batch-records "$batch" --record-bytes 100)
    for appenders in 1 8 64; do
      read -r rec mb < <(run --appenders "$appenders" --batch-records "$batch" --record-bytes 100 --flush always)
      ratio=$(awk -v a="$rec" -v b="$crec" 'BEGIN {printf "%.2f", a / b}')
      echo "| $batch | $appenders | $rec | $mb | $crec | $cmb | $ratio |"
    done
  done
} | tee "$out"
