#!/usr/bin/env bash
# Memory under sustained load: rill's RSS every minute of a long 1,000-record produce load,
# to show it levels off (RSS at the end within 10 % of RSS after the first minute).
#
#   bench/rss.sh                 # MINUTES=10 CONNS=32 MODE=sync (or MODE=async)
#
# A fresh rill (flush = "always", 3 partitions, defaults otherwise: max_inflight_bytes 256 MiB,
# async max_pending 10000, max_finished_records 1000000) on a temporary data dir under target/,
# then rill-loadgen for MINUTES minutes; prints a markdown table of VmRSS per minute. The load
# writes ~100 GB in 10 minutes: retention (1 GiB per partition, checked every 5 s) keeps the
# data dir small, and segments roll every 128 MiB, so the run also covers rolls and deletes.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
CONNS=${CONNS:-32}
MODE=${MODE:-sync}
[[ "${BUILD:-1}" == 1 ]] && cargo build --release --bin rill --bin rill-loadgen >&2
DIR=$(mktemp -d "$PWD/target/rss-bench.XXXXXX")
trap 'kill "$RILL" "$LOADGEN" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/broker.toml" <<TOML
[server]
bind = "127.0.0.1:0"
[storage]
data_dir = "$DIR/data"
retention_check_interval_ms = 5000
[[topics]]
name = "bench3"
partitions = 3
segment_bytes = 134217728
retention_bytes = 1073741824
TOML
target/release/rill --config "$DIR/broker.toml" > "$DIR/out" 2> "$DIR/err" &
RILL=$!
until url=$(sed -n 's/^rill listening on //p' "$DIR/out") && [ -n "$url" ]; do sleep 0.05; done
extra=()
[[ "$MODE" == async ]] && extra=(--async)
target/release/rill-loadgen --url "$url" --topic bench3 --batch 1000 --connections "$CONNS" \
  --keys --format json --record-bytes 100 --warmup-secs 0 --duration-secs $((MINUTES * 60)) \
  "${extra[@]}" > "$DIR/loadgen" 2>&1 &
LOADGEN=$!
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$RILL/status"; }
rows=()
for m in $(seq "$MINUTES"); do
  sleep 60
  rows+=("| $m | $(( $(rss) / 1024 )) |")
done
wait "$LOADGEN" || true
first=$(echo "${rows[0]}" | awk -F'|' '{print $3}')
last=$(echo "${rows[-1]}" | awk -F'|' '{print $3}')
echo "### RSS under a ${MINUTES}-minute 1,000-record $MODE load"
echo
echo "Command: \`MODE=$MODE bench/rss.sh\` (MINUTES=$MINUTES, CONNS=$CONNS), $(date -u +%Y-%m-%d), $(nproc) cores; flush always, 3 partitions, 100-byte JSON values with keys."
echo "Load: $(tr ' ' '\n' < "$DIR/loadgen" | grep -E '^(records_per_s|non2xx|io_errors)=' | tr '\n' ' ')"
echo
echo "| minute | rill VmRSS MiB |"
echo "|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
awk -v a="$first" -v b="$last" 'BEGIN { printf "RSS after %d min ÷ RSS after 1 min: %.3f\n", '"$MINUTES"', b / a }'
