#!/usr/bin/env bash
# rill next to its floors at one body shape and several connection counts, interleaved.
#
#   bench/floors.sh BATCH "CONNS…" [ROUNDS]     # e.g. bench/floors.sh 100 "64 256" 3
#
# Per round and connection count, one run each of: the parse ceiling (`/parse`, IgnoredAny),
# the tree ceiling (`/tree`, serde_json::Value), the durable floor (`/durable/P`: the bodies
# written into three files and fdatasynced before each answer), the durable floor with the
# parse before the write (`/parse-durable/P`), and rill (3 partitions, flush = "always"). The
# floors and rill get a fresh server and directory per run, as in bench/run.sh. P is 1 for
# single records (whole into one file in turn) and 3 otherwise (each body cut in three).
# Prints one line per round and connection count, then the medians and the ratios.
#
# Environment: DURATION (5), WARMUP (1), BENCH_DIR (parent of the temp dir; default target/),
# BUILD=0 (use the binaries already in target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

BATCH=${1:?usage: bench/floors.sh BATCH \"CONNS…\" [ROUNDS]}
CONNS=${2:?usage: bench/floors.sh BATCH \"CONNS…\" [ROUNDS]}
ROUNDS=${3:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PIECES=3
((BATCH == 1)) && PIECES=1

if [[ "${BUILD:-1}" == 1 ]]; then
  cargo build --release --bin rill --bin rill-loadgen --bin rill-ceiling >&2
fi
RILL=target/release/rill
LOADGEN=target/release/rill-loadgen
CEILING=target/release/rill-ceiling

mkdir -p "${BENCH_DIR:-$PWD/target}"
WORK=$(mktemp -d "${BENCH_DIR:-$PWD/target}/floors.XXXXXX")
# The ceiling server, and the floor or rill being measured: only live processes, so cleanup
# never signals a PID that was already reaped (and possibly reused).
CEILING_PID=""
PID=""
cleanup() {
  local pid
  for pid in $CEILING_PID $PID; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start LOG CMD… — starts CMD; sets URL from its "… listening on http://ADDR" line, PID.
start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do
    URL=$(sed -n 's|.* listening on \(http://[^ ]*\)$|\1|p' "$log" | head -1)
    [[ -n "$URL" ]] && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "no listening line from $1" >&2
  exit 1
}
stop() {
  kill "$PID"
  wait "$PID" || true
  PID=""
}

# records/s of one loadgen run against URL PATH with CONNS connections.
measure() {
  "$LOADGEN" --url "$1" --path "$2" --connections "$3" --batch "$BATCH" --record-bytes 100 \
    --keys --format json --threads 1 --warmup-secs "$WARMUP" --duration-secs "$DURATION" \
    2>>"$WORK/loadgen.err" | tr ' ' '\n' | sed -n 's/^records_per_s=//p'
}

floor() { # ROUTE CONNS → records/s of a fresh floor server
  local dir
  dir=$(mktemp -d "$WORK/floor.XXXXXX")
  start "$dir/log" "$CEILING" --bind 127.0.0.1:0 --durable-dir "$dir/files" --durable-files 3
  measure "$URL" "/$1/$PIECES" "$2"
  stop
  rm -rf "$dir"
}

rill() { # CONNS → records/s of a fresh rill
  local dir
  dir=$(mktemp -d "$WORK/rill.XXXXXX")
  cat >"$dir/broker.toml" <<EOF
[server]
bind = "127.0.0.1:0"

[storage]
data_dir = "$dir/data"
flush = "always"

[[topics]]
name = "bench3"
partitions = 3
EOF
  start "$dir/log" "$RILL" --config "$dir/broker.toml"
  measure "$URL" /api/topics/bench3/produce "$1"
  stop
  rm -rf "$dir"
}

start "$WORK/ceiling.log" "$CEILING" --bind 127.0.0.1:0
CEILING_URL=$URL
CEILING_PID=$PID
PID=""

NAMES=(parse tree floor floor_parse rill)
declare -A RUNS
for round in $(seq "$ROUNDS"); do
  for conns in $CONNS; do
    p=$(measure "$CEILING_URL" /parse/x "$conns")
    t=$(measure "$CEILING_URL" /tree/x "$conns")
    f=$(floor durable "$conns")
    fp=$(floor parse-durable "$conns")
    r=$(rill "$conns")
    echo "round=$round batch=$BATCH conns=$conns parse=$p tree=$t floor=$f floor_parse=$fp rill=$r"
    RUNS[$conns.parse]+="$p "
    RUNS[$conns.tree]+="$t "
    RUNS[$conns.floor]+="$f "
    RUNS[$conns.floor_parse]+="$fp "
    RUNS[$conns.rill]+="$r "
  done
done

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
for conns in $CONNS; do
  declare -A M=()
  line="medians batch=$BATCH conns=$conns"
  for name in "${NAMES[@]}"; do
    M[$name]=$(echo "${RUNS[$conns.$name]}" | median)
    line+=" $name=${M[$name]}"
  done
  echo "$line"
  echo "ratios batch=$BATCH conns=$conns floor/parse=$(ratio "${M[floor]}" "${M[parse]}") floor_parse/parse=$(ratio "${M[floor_parse]}" "${M[parse]}") rill/parse=$(ratio "${M[rill]}" "${M[parse]}") rill/tree=$(ratio "${M[rill]}" "${M[tree]}") rill/floor_parse=$(ratio "${M[rill]}" "${M[floor_parse]}")"
done
