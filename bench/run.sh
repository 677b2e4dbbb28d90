#!/usr/bin/env bash
# The HTTP produce benchmark of issue 4: rill next to the ceiling server, measured in one run.
#
#   bench/run.sh              # RUNS=3 rounds over the whole matrix, DURATION=5 s (after
#                             # WARMUP=1 s) per figure per round; each figure the median
#   QUICK=1 bench/run.sh      # smoke run: RUNS=1, DURATION=2
#
# Builds release binaries, starts the ceiling server (rill-ceiling: rill's actix-web settings,
# `/null/*` reads the body, `/parse/*` also parses it as JSON into nothing (IgnoredAny, the
# targets' ceiling), `/tree/*` into a serde_json::Value for context), measures the durable floor
# (`/durable/*` of a fresh rill-ceiling per run: the bodies only written into three files and
# fsynced before each answer, nothing parsed or built) and, for every row, a fresh rill
# on a new temporary data dir (so rows don't inherit each other's segments or page cache
# pressure), runs rill-loadgen against it, and measures the ceiling with the same bodies and
# connections. The floor is measured a second time with the strict parse before the write
# (`/parse-durable/*`): what a server that only parses and makes the bytes durable reaches.
# Writes a markdown section to bench/perf-results.md (also printed).
#
# Environment: RUNS, DURATION, WARMUP, LOADGEN_THREADS (default 1: the 2 cores are shared with
# the server), BENCH_DIR (parent of the temp dir; default target/, i.e. the project's disk),
# OUT (default bench/perf-results.md), CONNS_1 / CONNS_100 / CONNS_1000 (connections per batch
# size), ROWS (a regex: only rows whose id matches), BUILD=0 (use the binaries already in
# target/release instead of building them).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${QUICK:-0}" == 1 ]]; then
  RUNS=${RUNS:-1}
  DURATION=${DURATION:-2}
else
  RUNS=${RUNS:-3}
  DURATION=${DURATION:-5}
fi
WARMUP=${WARMUP:-1}
THREADS=${LOADGEN_THREADS:-1}
RECORD_BYTES=100
# Connections per batch size. Batch 1: 64, the issue's figure (enough requests in flight that
# both server workers always have work and every fsync group-commits many requests). 100-record
# requests: 64 too, 1000-record ones: 32 — with fsync before every answer, throughput grows
# with what one group commit covers (measured: 16 connections gave 552k records/s at batch
# 100, 64 gave 848k; 8 → 32 at batch 1000: 1.66M → 1.89M).
CONNS_1=${CONNS_1:-64}
CONNS_100=${CONNS_100:-64}
CONNS_1000=${CONNS_1000:-32}
OUT=${OUT:-bench/perf-results.md}
ROWS=${ROWS:-.}

if [[ "${BUILD:-1}" == 1 ]]; then
  cargo build --release --bin rill --bin rill-loadgen --bin rill-ceiling >&2
fi
RILL=target/release/rill
LOADGEN=target/release/rill-loadgen
CEILING=target/release/rill-ceiling

mkdir -p "${BENCH_DIR:-$PWD/target}"
WORK=$(mktemp -d "${BENCH_DIR:-$PWD/target}/perf-bench.XXXXXX")
RILL_PID=""
CEILING_PID=""
FLOOR_PID=""
cleanup() {
  [[ -n "$RILL_PID" ]] && kill "$RILL_PID" 2>/dev/null && wait "$RILL_PID" 2>/dev/null
  [[ -n "$FLOOR_PID" ]] && kill "$FLOOR_PID" 2>/dev/null && wait "$FLOOR_PID" 2>/dev/null
  [[ -n "$CEILING_PID" ]] && kill "$CEILING_PID" 2>/dev/null && wait "$CEILING_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_server NAME LOG CMD… — starts CMD in the background; sets SERVER_PID and SERVER_URL
# from its "… listening on http://ADDR" line.
start_server() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>"$log.err" &
  SERVER_PID=$!
  SERVER_URL=""
  for _ in $(seq 300); do
    SERVER_URL=$(sed -n 's|.* listening on \(http://[^ ]*\)$|\1|p' "$log" | head -1)
    [[ -n "$SERVER_URL" ]] && return 0
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "$name exited at start:" >&2
      cat "$log" "$log.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name printed no listening line in 30 s" >&2
  cat "$log.err" >&2
  exit 1
}

# start_rill FLUSH — a fresh rill on a new data dir; topics bench1 (1 partition) and bench3
# (3 partitions), default codec none, storage flush FLUSH. Sets RILL_PID, RILL_URL.
start_rill() {
  local flush=$1 dir
  dir=$(mktemp -d "$WORK/rill.XXXXXX")
  cat >"$dir/broker.toml" <<EOF
[server]
bind = "127.0.0.1:0"

[storage]
data_dir = "$dir/data"
flush = "$flush"

[[topics]]
name = "bench1"
partitions = 1

[[topics]]
name = "bench3"
partitions = 3
EOF
  start_server rill "$dir/rill.log" "$RILL" --config "$dir/broker.toml"
  RILL_PID=$SERVER_PID
  RILL_URL=$SERVER_URL
  RILL_DIR=$dir
}

stop_rill() {
  kill "$RILL_PID"
  wait "$RILL_PID" || true
  RILL_PID=""
  rm -rf "$RILL_DIR"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# field KEY < "k=v k=v…" → v
field() { tr ' ' '\n' | sed -n "s|^$1=||p" | head -1; }
# num LINE KEY → the number, 0 when absent
num() {
  local v
  v=$(echo "$1" | field "$2")
  echo "${v:-0}"
}

# measure_once ARGS… — one run of rill-loadgen: one key=value line.
measure_once() {
  "$LOADGEN" --warmup-secs "$WARMUP" --duration-secs "$DURATION" \
    --threads "$THREADS" --record-bytes "$RECORD_BYTES" --keys --format json "$@" \
    2>>"$WORK/loadgen.err"
}

# pick_median LINES — of newline-separated runs of one figure, the run with the median
# records/s (one key=value line, so its latencies and error counts belong to the same run).
# Non-2xx, I/O and record errors are summed over all runs and replace the chosen line's
# counts, so a figure with errors in any run shows them.
pick_median() {
  local lines=() chosen="" bad=0 statuses="" l n med
  mapfile -t lines < <(printf '%s' "$1" | sed '/^$/d')
  med=$(for l in "${lines[@]}"; do echo "$l" | field records_per_s; done | median)
  for l in "${lines[@]}"; do
    [[ -z "$chosen" && "$(echo "$l" | field records_per_s)" == "$med" ]] && chosen=$l
    for n in non2xx io_errors record_errors async_failed; do
      bad=$((bad + $(num "$l" "$n")))
    done
    statuses+=" $(echo "$l" | tr ' ' '\n' | grep '^non2xx_' | tr '\n' ' ')"
  done
  echo "$chosen errors_all_runs=$bad statuses_all_runs=$(echo $statuses | tr ' ' ',')"
}

conns_for() {
  case $1 in
    1) echo "$CONNS_1" ;;
    100) echo "$CONNS_100" ;;
    *) echo "$CONNS_1000" ;;
  esac
}

# The ceilings for one body shape (batch size, connections): null, parse and tree routes and
# the durable floor without and with the parse, one run each, appended to CEIL_NULL /
# CEIL_PARSE / CEIL_TREE / CEIL_FLOOR / CEIL_FLOOR_PARSE (newline-separated runs).
declare -A CEIL_NULL CEIL_PARSE CEIL_TREE CEIL_FLOOR CEIL_FLOOR_PARSE
ceiling() {
  local batch=$1 conns
  conns=$(conns_for "$batch")
  CEIL_NULL[$batch]+="$(measure_once --url "$CEILING_URL" --path /null/topics/bench3/produce \
    --batch "$batch" --connections "$conns")"$'\n'
  CEIL_PARSE[$batch]+="$(measure_once --url "$CEILING_URL" --path /parse/topics/bench3/produce \
    --batch "$batch" --connections "$conns")"$'\n'
  CEIL_TREE[$batch]+="$(measure_once --url "$CEILING_URL" --path /tree/topics/bench3/produce \
    --batch "$batch" --connections "$conns")"$'\n'
  durable_floor "$batch" "$conns"
}

# The durable floor for one body shape: a fresh rill-ceiling whose `/durable/N` route writes
# each body, cut into N pieces, into N of three files and answers once an fdatasync of each
# covered it — like rill's rows, on a new directory each run. Single records go whole to one
# file in turn (one keyed record, one partition); batches are cut in three (three partitions).
# Then the same with the body parsed (IgnoredAny) before it is written, on a fresh server too.
durable_floor() {
  local batch=$1 conns=$2 pieces=3 dir route
  ((batch == 1)) && pieces=1
  for route in durable parse-durable; do
    dir=$(mktemp -d "$WORK/floor.XXXXXX")
    start_server rill-ceiling "$dir/floor.log" "$CEILING" --bind 127.0.0.1:0 \
      --durable-dir "$dir/files" --durable-files 3
    FLOOR_PID=$SERVER_PID
    local line
    line="$(measure_once --url "$SERVER_URL" --path "/$route/$pieces" \
      --batch "$batch" --connections "$conns")"$'\n'
    if [[ $route == durable ]]; then
      CEIL_FLOOR[$batch]+=$line
    else
      CEIL_FLOOR_PARSE[$batch]+=$line
    fi
    kill "$FLOOR_PID"
    wait "$FLOOR_PID" || true
    FLOOR_PID=""
    rm -rf "$dir"
  done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

fmt_row() { # ID DESCRIPTION LINE NULL_LINE PARSE_LINE TREE_LINE FLOOR_LINE FLOOR_PARSE_LINE RSS → table row
  local id=$1 desc=$2 l=$3 cn=$4 cp=$5 ct=$6 cf=$7 cfp=$8 rss=$9 rec rnull rparse rtree rfloor rfloorparse
  rec=$(num "$l" records_per_s)
  rnull=$(ratio "$rec" "$(num "$cn" records_per_s)")
  rparse=$(ratio "$rec" "$(num "$cp" records_per_s)")
  rtree=$(ratio "$rec" "$(num "$ct" records_per_s)")
  rfloor=$(ratio "$rec" "$(num "$cf" records_per_s)")
  rfloorparse=$(ratio "$rec" "$(num "$cfp" records_per_s)")
  local extra=""
  if [[ "$(echo "$l" | field mode)" == async ]]; then
    extra=" (accepted $(echo "$l" | field accepted_per_s) req/s; done p50/p99 $(echo "$l" | field done_p50_ms)/$(echo "$l" | field done_p99_ms) ms)"
  fi
  local errs statuses
  errs=$(echo "$l" | field errors_all_runs)
  statuses=$(echo "$l" | field statuses_all_runs)
  [[ -n "$statuses" ]] && errs="$errs ($statuses)"
  echo "| $id | $desc | $(echo "$l" | field connections) | $(echo "$l" | field requests_per_s) | $rec$extra | $(echo "$l" | field mb_per_s) | $(echo "$l" | field p50_ms) / $(echo "$l" | field p99_ms) / $(echo "$l" | field p999_ms) | $rnull | $rparse | $rtree | $rfloor | $rfloorparse | $errs | $(echo "$l" | field loadgen_cpu) | $rss |"
}

fmt_ceiling_row() { # NAME LINE → table row
  local l=$2
  echo "| ceiling | $1 | $(echo "$l" | field connections) | $(echo "$l" | field requests_per_s) | $(echo "$l" | field records_per_s) | $(echo "$l" | field mb_per_s) | $(echo "$l" | field p50_ms) / $(echo "$l" | field p99_ms) / $(echo "$l" | field p999_ms) | | | | | | $(echo "$l" | field errors_all_runs) | $(echo "$l" | field loadgen_cpu) | |"
}

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

start_server rill-ceiling "$WORK/ceiling.log" "$CEILING" --bind 127.0.0.1:0
CEILING_PID=$SERVER_PID
CEILING_URL=$SERVER_URL

# The matrix: the headline configuration (3 partitions, flush always, codec none, sync) for
# each batch size, then one dimension at a time varied from it — async, lz4, zstd, flush os,
# 1 partition — for each batch size: 18 rows instead of the 72 of the full cross product; and
# the cost of idempotency keys on the 100-record sync case (ik100 against h100).
#   id  batch  mode   codec  flush   partitions  [extra]
MATRIX="
h1     1     sync  none always 3
h100   100   sync  none always 3
h1000  1000  sync  none always 3
a1     1     async none always 3
a100   100   async none always 3
a1000  1000  async none always 3
lz1    1     sync  lz4  always 3
lz100  100   sync  lz4  always 3
lz1000 1000  sync  lz4  always 3
zs1    1     sync  zstd always 3
zs100  100   sync  zstd always 3
zs1000 1000  sync  zstd always 3
os1    1     sync  none os     3
os100  100   sync  none os     3
os1000 1000  sync  none os     3
p1_1    1    sync  none always 1
p1_100  100  sync  none always 1
p1_1000 1000 sync  none always 1
ik100  100   sync  none always 3 idempotency-keys
"

# Rounds, not runs back to back: each round measures every ceiling and every row once, so a
# machine that speeds up or slows down during the ~15 minutes (it does: shared cores) shifts
# every figure alike instead of favouring the rows that ran last. Each figure is then the
# median of its RUNS runs.
declare -A RUNS_OF RSS_OF
IDS=()
BATCHES=$(echo "$MATRIX" | while read -r id batch _; do
  if [[ -n "$id" && "$id" =~ $ROWS ]]; then echo "$batch"; fi
done | sort -un)
for round in $(seq "$RUNS"); do
  echo "round $round of $RUNS" >&2
  for batch in $BATCHES; do
    ceiling "$batch"
  done
  while read -r id batch mode codec flush parts extra; do
    [[ -z "$id" ]] && continue
    [[ "$id" =~ $ROWS ]] || continue
    ((round == 1)) && IDS+=("$id")
    conns=$(conns_for "$batch")
    start_rill "$flush"
    args=(--url "$RILL_URL" --topic "bench$parts" --batch "$batch" --connections "$conns"
      --compression "$codec")
    [[ "$mode" == async ]] && args+=(--async)
    [[ "${extra:-}" == idempotency-keys ]] && args+=(--idempotency-keys)
    RUNS_OF[$id]+="$(measure_once "${args[@]}")"$'\n'
    RSS_OF[$id]=$(rss_kb "$RILL_PID")
    stop_rill
  done <<<"$MATRIX"
done

ROWS_OUT=()
CEIL_OUT=()
# Per batch size: the sync rill row with the most requests/s, for the generator check below.
declare -A BEST_REQ BEST_ID
for batch in $BATCHES; do
  CEIL_NULL[$batch]=$(pick_median "${CEIL_NULL[$batch]}")
  CEIL_PARSE[$batch]=$(pick_median "${CEIL_PARSE[$batch]}")
  CEIL_TREE[$batch]=$(pick_median "${CEIL_TREE[$batch]}")
  CEIL_FLOOR[$batch]=$(pick_median "${CEIL_FLOOR[$batch]}")
  CEIL_FLOOR_PARSE[$batch]=$(pick_median "${CEIL_FLOOR_PARSE[$batch]}")
done
while read -r id batch mode codec flush parts extra; do
  [[ -z "$id" ]] && continue
  [[ "$id" =~ $ROWS ]] || continue
  line=$(pick_median "${RUNS_OF[$id]}")
  rss=${RSS_OF[$id]}
  desc="batch $batch, $mode, $codec, flush $flush, $parts partition(s)${extra:+, a unique Idempotency-Key per request}"
  row=$(fmt_row "$id" "$desc" "$line" "${CEIL_NULL[$batch]}" "${CEIL_PARSE[$batch]}" "${CEIL_TREE[$batch]}" "${CEIL_FLOOR[$batch]}" "${CEIL_FLOOR_PARSE[$batch]}" "$((rss / 1024)) MiB")
  echo "$row" >&2
  ROWS_OUT+=("$row")
  req=$(num "$line" requests_per_s)
  if [[ "$mode" == sync ]] && ((req > ${BEST_REQ[$batch]:-0})); then
    BEST_REQ[$batch]=$req
    BEST_ID[$batch]=$id
  fi
done <<<"$MATRIX"

for batch in 1 100 1000; do
  [[ -n "${CEIL_NULL[$batch]:-}" ]] || continue
  CEIL_OUT+=("$(fmt_ceiling_row "null, batch $batch" "${CEIL_NULL[$batch]}")")
  CEIL_OUT+=("$(fmt_ceiling_row "parse, batch $batch" "${CEIL_PARSE[$batch]}")")
  CEIL_OUT+=("$(fmt_ceiling_row "tree, batch $batch" "${CEIL_TREE[$batch]}")")
  CEIL_OUT+=("$(fmt_ceiling_row "durable floor, batch $batch" "${CEIL_FLOOR[$batch]}")")
  CEIL_OUT+=("$(fmt_ceiling_row "durable floor + parse, batch $batch" "${CEIL_FLOOR_PARSE[$batch]}")")
done

# The null ceiling next to rill's own rows shows whether the generator is the limit: it is the
# same generator, same bodies and connections, against a server that does no work, so when it
# drives more requests/s than any rill row at the same shape, the generator is not what caps
# rill.
CHECK=()
for batch in 1 100 1000; do
  [[ -n "${CEIL_NULL[$batch]:-}" && -n "${BEST_REQ[$batch]:-}" ]] || continue
  n=$(num "${CEIL_NULL[$batch]}" requests_per_s)
  CHECK+=("- batch $batch: the generator drove the null ceiling at $n requests/s using $(num "${CEIL_NULL[$batch]}" loadgen_cpu) cores; the fastest sync rill row (${BEST_ID[$batch]}) reached ${BEST_REQ[$batch]} requests/s ($(ratio "${BEST_REQ[$batch]}" "$n") of it).")
done
read -r disk_src disk_fs disk_size < <(df -h --output=source,fstype,size "$WORK" | tail -1)
disk="$disk_src ($disk_fs, $disk_size)"
{
  echo "## HTTP produce benchmark (issue 4)"
  echo
  echo "Machine: $(nproc) cores, kernel $(uname -r), data dir on ${disk} per \`df\`; $(date -u +%Y-%m-%d)."
  echo
  echo "Command: \`$( [[ "${QUICK:-0}" == 1 ]] && echo 'QUICK=1 ')bench/run.sh\` — RUNS=$RUNS round(s) — each round runs every ceiling and every row once, ${DURATION} s after ${WARMUP} s warm-up — and each figure is the run with the median records/s over the rounds; loadgen threads $THREADS."
  echo "Each rill row: a fresh \`$RILL --config broker.toml\` (bind 127.0.0.1:0, new data dir, topics bench1 / bench3 with 1 / 3 partitions, \`[storage] flush\` as in the row), then"
  echo "\`$LOADGEN --url URL --topic bench3|bench1 --batch B --connections C --compression CODEC [--async] --keys --format json --record-bytes $RECORD_BYTES --warmup-secs $WARMUP --duration-secs $DURATION --threads $THREADS\`."
  echo "Ceiling: \`$CEILING --bind 127.0.0.1:0\` (rill's actix-web settings), the same loadgen command with \`--path /null/...\`, \`/parse/...\` (parsed into serde's IgnoredAny: validated, nothing built — the targets' ceiling) or \`/tree/...\` (parsed into a serde_json::Value, for context): same bodies, same connections."
  echo "Durable floor: a fresh \`$CEILING --bind 127.0.0.1:0 --durable-dir DIR --durable-files 3\` per run, the same loadgen command with \`--path /durable/1\` (batch 1: each body whole into one of the three files in turn) or \`/durable/3\` (each body cut in three, one piece per file); each answer waits for an fdatasync of every file its pieces went to (group commit, one sync thread per file, space reserved with fallocate, synced pages dropped from the page cache as rill does). Nothing is parsed or built and the answer is 11 bytes: what writing the records the way rill does (a file per partition, page cache, group-committed fdatasync) costs here before any broker work. Durable floor + parse: the same with \`--path /parse-durable/1|3\`, each body parsed into IgnoredAny (the parse ceiling's work) before it is written: what a server that only parses and makes the bytes durable reaches."
  echo
  echo "Matrix: the headline (3 partitions, flush always, codec none, sync) for batch 1 / 100 / 1000, then one dimension varied at a time from it (async, lz4, zstd, flush os, 1 partition) for each batch size — not the full cross product."
  echo "100-byte JSON values (\`{\"id\":N,\"pad\":\"<base-36 text>\"}\`), string keys \`user-<n>\`; MB/s counts record value bytes. Async rows report completed records/s (each status URL polled until completed)."
  echo "Ratios = records/s ÷ the null / parse / tree ceiling's or the durable floor's (without and with the parse) records/s at the same batch size (same bodies and connections; for batch 1 records/s = requests/s). Latency: of the produce request (async: of the 202), ms. Errors = non-2xx + I/O + per-record + failed async, summed over all runs (must be 0). RSS: rill's VmRSS after the row."
  echo
  echo "| id | configuration | conns | requests/s | records/s | MB/s | p50 / p99 / p99.9 ms | ÷ null ceiling | ÷ parse ceiling | ÷ tree ceiling | ÷ durable floor | ÷ floor + parse | errors | loadgen CPU (cores) | rill RSS |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${CEIL_OUT[@]}" "${ROWS_OUT[@]}"
  echo
  echo "Generator check (the null ceiling is the same generator, same bodies and connections, against a server that does no work; the generator and the server share the 2 cores):"
  echo
  printf '%s\n' "${CHECK[@]}"
} | tee "$OUT"
