#!/usr/bin/env bash
# A/B of two rill binaries (or two configurations) under the same load, in interleaved rounds:
# A, B, A, B, … so that a shared machine's drift hits both alike. Each run starts a fresh rill
# on a new data dir, runs rill-loadgen against it and reads rill's CPU time from /proc, so a
# change is judged by CPU per request as well as by requests/s (the CPU figure is steadier on
# a noisy machine: it does not move with how much of the cores other tenants took).
#
#   bench/ab.sh A_BINARY B_BINARY [LOADGEN ARGS…]
#   ROUNDS=7 bench/ab.sh /tmp/rill.before target/release/rill --batch 100
#   CONFIG_B=/tmp/other.toml bench/ab.sh target/release/rill target/release/rill --batch 1
#   EXTRA_B=--idempotency-keys bench/ab.sh target/release/rill target/release/rill
#   WARMUP=12 DURATION=10 bench/ab.sh A B     (seconds of load before and while measuring)
#   GAP=15 bench/ab.sh A B     (seconds of rest after each run: on a VM the memory a run's
#                               deleted data freed goes back to the host meanwhile, so the
#                               next run does not start on page-cache pages just warmed)
#
# Loadgen arguments default to the matrix's h100 row (topic bench3 = 3 partitions, 64
# connections, keyed 100-byte JSON values); arguments given are appended and override. The
# broker config: flush always, topics bench1 and bench3; CONFIG_A / CONFIG_B replace it per
# side (their bind address must be 127.0.0.1:18080 and their data_dir is replaced); EXTRA_A /
# EXTRA_B add loadgen arguments to one side (the cost of a request option). Prints
# one line per run and, per side, the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
if curl -s -o /dev/null http://127.0.0.1:18080/; then
  echo "bench/ab.sh: something already listens on 127.0.0.1:18080" >&2
  exit 1
fi
A=${1:?A binary}
B=${2:?B binary}
shift 2
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
GAP=${GAP:-0}
LOADGEN=${LOADGEN:-target/release/rill-loadgen}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD/target}/ab.XXXXXX")
PID=""
trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

default_config() {
  cat <<EOF
[server]
bind = "127.0.0.1:18080"

[storage]
data_dir = "DATA_DIR"
flush = "always"

[[topics]]
name = "bench1"
partitions = 1

[[topics]]
name = "bench3"
partitions = 3
EOF
}

# run_once BINARY CONFIG LOADGEN_ARGS… → "records_per_s p99_ms cpu_us_per_request"
run_once() {
  local bin=$1 config=$2 dir
  shift 2
  dir=$(mktemp -d "$WORK/run.XXXXXX")
  if [[ -n "$config" ]]; then
    sed "s|^data_dir *=.*|data_dir = \"$dir/data\"|" "$config" >"$dir/broker.toml"
  else
    default_config | sed "s|DATA_DIR|$dir/data|" >"$dir/broker.toml"
  fi
  "$bin" --config "$dir/broker.toml" >"$dir/rill.log" 2>&1 &
  PID=$!
  # run_once runs in a subshell (process substitution): stop this broker on any exit of it.
  trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null' EXIT
  for _ in $(seq 100); do
    kill -0 "$PID" 2>/dev/null || { cat "$dir/rill.log" >&2; exit 1; }
    curl -sf -o /dev/null http://127.0.0.1:18080/readyz && break
    sleep 0.1
  done
  local ticks0 ticks1 line hz sampler
  hz=$(getconf CLK_TCK)
  # rill's CPU time when the warm-up ends, read beside the load, so the figure covers the
  # measured seconds only (a long warm-up may do work of its own, like filling a table).
  (sleep "$WARMUP"; awk '{print $14 + $15}' "/proc/$PID/stat" >"$dir/ticks0") &
  sampler=$!
  line=$("$LOADGEN" --url http://127.0.0.1:18080 --topic bench3 --batch 100 --connections 64 \
    --keys --record-bytes 100 --warmup-secs "$WARMUP" --duration-secs "$DURATION" "$@" 2>/dev/null)
  ticks1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  wait "$sampler"
  ticks0=$(cat "$dir/ticks0")
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
  rm -rf "$dir"
  field() { echo "$line" | tr ' ' '\n' | sed -n "s|^$1=||p" | head -1; }
  local requests non2xx
  requests=$(field requests)
  non2xx=$(field non2xx)
  if [[ "$non2xx" != 0 ]]; then
    echo "non-2xx answers ($non2xx): the run does not count" >&2
    exit 1
  fi
  awk -v r="$(field records_per_s)" -v p="$(field p99_ms)" -v t=$((ticks1 - ticks0)) \
    -v hz="$hz" -v n="$requests" \
    'BEGIN { printf "%d %s %.1f\n", r, p, t / hz * 1e6 / n }'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A RECORDS P99 CPU
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    if [[ $side == A ]]; then
      bin=$A config=${CONFIG_A:-} extra=${EXTRA_A:-}
    else
      bin=$B config=${CONFIG_B:-} extra=${EXTRA_B:-}
    fi
    # shellcheck disable=SC2086 # EXTRA_* are word lists
    read -r rec p99 cpu < <(run_once "$bin" "$config" "$@" $extra)
    echo "round $round $side: records/s $rec  p99 ${p99} ms  rill CPU ${cpu} µs/request"
    sleep "$GAP"
    RECORDS[$side]+="$rec"$'\n'
    P99[$side]+="$p99"$'\n'
    CPU[$side]+="$cpu"$'\n'
  done
done
for side in A B; do
  echo "median $side: records/s $(printf '%s' "${RECORDS[$side]}" | median)  p99 $(printf '%s' "${P99[$side]}" | median) ms  rill CPU $(printf '%s' "${CPU[$side]}" | median) µs/request"
done
