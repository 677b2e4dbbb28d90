#!/usr/bin/env bash
# The Kafka gateway benchmark: HTTP → rill (kind = "kafka") → Kafka, next to a native rdkafka
# producer into the same broker, measured in one run; prints the gateway's share of native.
#
#   bench/kafka.sh            # RUNS=3 runs of DURATION=5 s (after 1 s warm-up) per figure, median
#   QUICK=1 bench/kafka.sh    # smoke run: RUNS=1, DURATION=2
#
# Starts its own one-node Apache Kafka (.ci/kafka/kafka.sh) in a temporary directory, a release
# rill gateway in front of it, rill-loadgen against the gateway (keyed 100-byte JSON records,
# 100 per request, CONNS connections) and examples/kafka_native_bench (same records, same
# producer settings: acks=all, idempotence, linger 5 ms) straight into the broker, each into a
# 3-partition topic of its own, for codecs none and lz4. Everything shares this machine's cores
# with the broker. Writes a markdown section to bench/kafka-results.md (also printed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${QUICK:-0}" == 1 ]]; then
  RUNS=${RUNS:-1}
  DURATION=${DURATION:-2}
else
  RUNS=${RUNS:-3}
  DURATION=${DURATION:-5}
fi
CONNS=${CONNS:-16}
BATCH=${BATCH:-100}
RECORD_BYTES=100
CODECS=${CODECS:-none lz4}
OUT=${OUT:-bench/kafka-results.md}

# SKIP_BUILD=1 reuses the release binaries already built.
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --bin rill --bin rill-loadgen --example kafka_native_bench >&2
fi
RILL=target/release/rill
LOADGEN=target/release/rill-loadgen
NATIVE=target/release/examples/kafka_native_bench

mkdir -p target
WORK=$(mktemp -d "$PWD/target/kafka-bench.XXXXXX")
RILL_PID=""
cleanup() {
  [[ -n "$RILL_PID" ]] && kill "$RILL_PID" 2>/dev/null && wait "$RILL_PID" 2>/dev/null
  .ci/kafka/kafka.sh stop "$WORK/kafka" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

BOOTSTRAP=$(.ci/kafka/kafka.sh start "$WORK/kafka")
echo "kafka.sh: broker on $BOOTSTRAP" >&2

cat >"$WORK/broker.toml" <<TOML
[server]
bind = "127.0.0.1:0"

[storage]
data_dir = "$WORK/unused"

[[topics]]
name = "bench-gateway"
partitions = 3

[backend]
kind = "kafka"
bootstrap_servers = "$BOOTSTRAP"
TOML
"$RILL" --config "$WORK/broker.toml" >"$WORK/rill.log" 2>"$WORK/rill.err" &
RILL_PID=$!
URL=""
for _ in $(seq 300); do
  URL=$(sed -n 's|.* listening on \(http://[^ ]*\)$|\1|p' "$WORK/rill.log" | head -1)
  [[ -n "$URL" ]] && break
  kill -0 "$RILL_PID" 2>/dev/null || { cat "$WORK/rill.err" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$URL" ]] || { echo "rill printed no listening line" >&2; exit 1; }
curl -sf -X POST -H 'content-type: application/json' "$URL/api/topics" \
  -d '{"name": "bench-native", "partitions": 3}' >/dev/null

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { tr ' ' '\n' | sed -n "s|^$1=||p" | head -1; }

gateway() { # CODEC → "records/s errors p50 p99" (median run)
  local codec=$1 lines=() l med
  for _ in $(seq "$RUNS"); do
    lines+=("$("$LOADGEN" --url "$URL" --topic bench-gateway --connections "$CONNS" \
      --batch "$BATCH" --record-bytes "$RECORD_BYTES" --keys --format json \
      --compression "$codec" --warmup-secs 1 --duration-secs "$DURATION" 2>>"$WORK/loadgen.err")")
  done
  med=$(for l in "${lines[@]}"; do echo "$l" | field records_per_s; done | median)
  local errors=0
  for l in "${lines[@]}"; do
    errors=$((errors + $(echo "$l" | field non2xx) + $(echo "$l" | field io_errors) + $(echo "$l" | field record_errors)))
  done
  for l in "${lines[@]}"; do
    if [[ "$(echo "$l" | field records_per_s)" == "$med" ]]; then
      echo "$med $errors $(echo "$l" | field p50_ms) $(echo "$l" | field p99_ms)"
      return
    fi
  done
}

native() { # CODEC → "records/s errors" (median run)
  local codec=$1 rates=() errors=0 l
  for _ in $(seq "$RUNS"); do
    l=$("$NATIVE" --bootstrap "$BOOTSTRAP" --topic bench-native --seconds "$DURATION" \
      --record-bytes "$RECORD_BYTES" --compression "$codec")
    rates+=("$(echo "$l" | field records_per_s)")
    errors=$((errors + $(echo "$l" | field errors)))
  done
  echo "$(printf '%s\n' "${rates[@]}" | median) $errors"
}

{
  echo "### HTTP → rill gateway → Kafka, next to a native rdkafka producer"
  echo
  echo "Command: \`bench/kafka.sh\` (RUNS=$RUNS, ${DURATION}s each after 1 s warm-up, median), $(date -u +%Y-%m-%d), $(nproc) cores; Apache Kafka $(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' .ci/kafka/pom.xml), one KRaft node on loopback (.ci/kafka/kafka.sh), 3 partitions."
  echo "Gateway: rill-loadgen, $CONNS connections, $BATCH keyed ${RECORD_BYTES}-byte JSON records per sync request. Native: examples/kafka_native_bench, same records and producer settings (acks=all, idempotence, linger.ms=5), acks counted in the delivery callback, at most 100 000 records unacknowledged (librdkafka's queue). Broker, gateway and client share the machine."
  echo
  echo "| codec | gateway records/s | gateway p50 / p99 ms | native records/s | gateway / native | errors (gateway, native) |"
  echo "|---|---:|---:|---:|---:|---|"
  for codec in $CODECS; do
    read -r g gerr p50 p99 < <(gateway "$codec")
    read -r n nerr < <(native "$codec")
    ratio=$(awk -v a="$g" -v b="$n" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    echo "| $codec | $g | $p50 / $p99 | $n | $ratio | $gerr, $nerr |"
  done
} | tee "$OUT"
