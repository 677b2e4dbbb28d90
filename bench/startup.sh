#!/usr/bin/env bash
# Start-up time of a large data dir: a topic with one partition holding ~2 GiB in ≥ 200
# segments (10 MiB each). Measures the time from exec to `/readyz` 200 after a clean shutdown
# (SIGTERM) and after SIGKILL mid-load, RUNS times each, and prints the medians.
#
#   bench/startup.sh            # RUNS=5 GIB=2
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
GIB=${GIB:-2}
[[ "${BUILD:-1}" == 1 ]] && cargo build --release --workspace --bins
DIR=$(mktemp -d "$PWD/target/startup-bench.XXXXXX")
trap 'pkill -f "$DIR/broker.toml" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/broker.toml" <<TOML
[server]
bind = "127.0.0.1:0"
[storage]
data_dir = "$DIR/data"
[[topics]]
name = "big"
partitions = 1
segment_bytes = 10485760
retention_ms = -1
TOML

start() { # → prints ms from exec to /readyz 200; leaves the broker running ($PID)
  local t0 url
  t0=$(date +%s%N)
  target/release/rill --config "$DIR/broker.toml" > "$DIR/out" 2>"$DIR/err" &
  PID=$!
  # `start` also runs in command substitutions (subshells): the caller reads these back.
  echo "$PID" > "$DIR/pid"
  until url=$(sed -n 's/^rill listening on //p' "$DIR/out" 2>/dev/null) && [ -n "$url" ]; do sleep 0.002; done
  until curl -sf "$url/readyz" >/dev/null; do sleep 0.002; done
  URL=$url
  echo "$url" > "$DIR/url"
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
# Stops the broker `start` left running and waits until it is gone (it may not be this
# shell's child: `start` runs in command substitutions too).
stop() { # SIGNAL
  local pid
  pid=$(cat "$DIR/pid")
  kill "-$1" "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Create the topic, then fill its partition directly through the log (flush = os: fast).
start >/dev/null; stop TERM
# ~110 bytes per 100-byte record on disk: a little over GIB GiB.
batches=$(( GIB * 1024 * 1024 * 1024 / (1000 * 110) ))
target/release/rill-append-bench --dir "$DIR/data/big-0" --appenders 4 --batch-records 1000 \
  --record-bytes 100 --batches $(( batches / 4 )) --flush os --segment-bytes 10485760 >/dev/null
sync
segments=$(ls "$DIR/data/big-0"/*.log | wc -l)
bytes=$(du -sb "$DIR/data/big-0" | cut -f1)

clean=(); killed=()
for _ in $(seq "$RUNS"); do
  clean+=("$(start)"); stop TERM
  start >/dev/null
  # SIGKILL while producing, so the tail is mid-write.
  (for _ in $(seq 200); do curl -s -o /dev/null -XPOST "$URL/api/topics/big/produce" \
     -H 'content-type: application/json' -d '{"records":[{"value":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}]}' || break; done) &
  sleep 0.3; stop KILL; wait || true
  killed+=("$(start)"); stop TERM
done
echo "### Start-up of a large data dir"
echo
echo "Command: \`bench/startup.sh\` (RUNS=$RUNS), $(date -u +%Y-%m-%d), $(nproc) cores. Data: 1 partition, $segments segments, $((bytes / 1024 / 1024)) MiB. Time = exec to first \`/readyz\` 200 (includes process start and recovery)."
echo
echo "| after | median ms | runs (ms) |"
echo "|---|---:|---|"
echo "| clean shutdown (SIGTERM) | $(printf '%s\n' "${clean[@]}" | median) | ${clean[*]} |"
echo "| SIGKILL during produce | $(printf '%s\n' "${killed[@]}" | median) | ${killed[*]} |"
