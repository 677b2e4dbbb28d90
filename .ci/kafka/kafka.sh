#!/usr/bin/env bash
# A one-node Apache Kafka broker (KRaft: broker and controller in one JVM) on loopback, for the
# Kafka backend's tests and benchmark. No Docker, no downloads outside Maven Central:
#
#   .ci/kafka/kafka.sh fetch        # copy Kafka's jars into $KAFKA_LIBS (once; cached)
#   .ci/kafka/kafka.sh start DIR    # start (or restart) the broker whose state lives in DIR;
#                                   # prints its bootstrap address, 127.0.0.1:PORT
#   .ci/kafka/kafka.sh stop DIR     # SIGTERM, then SIGKILL after 20 s
#
# The ports are chosen free on the first start and kept in DIR, so a broker restarted on the same
# DIR answers on the same address with the same data (what the outage tests rely on).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
KAFKA_LIBS="${KAFKA_LIBS:-$ROOT/target/kafka-libs}"
POM="$ROOT/.ci/kafka/pom.xml"

fetch() {
  # The marker holds the pom's checksum: editing the pom (a new Kafka version) fetches again.
  local sum; sum=$(sha256sum "$POM" | cut -d' ' -f1)
  if [ -f "$KAFKA_LIBS/.fetched" ] && [ "$(cat "$KAFKA_LIBS/.fetched")" = "$sum" ]; then
    return
  fi
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_LIBS" >&2
  echo "$sum" >"$KAFKA_LIBS/.fetched"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  fetch
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "kafka.sh: a broker already runs in $dir (pid $(cat "$dir/pid"))" >&2
    exit 1
  fi
  if [ ! -f "$dir/ports" ]; then
    local broker controller
    broker=$(free_port)
    controller=$(free_port)
    while [ "$controller" = "$broker" ]; do controller=$(free_port); done
    echo "$broker $controller" >"$dir/ports"
  fi
  local broker controller
  read -r broker controller <"$dir/ports"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$broker,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$broker
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
PROPS
  cat >"$dir/log4j2.properties" <<'LOG'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = warn
LOG
  local cp="$KAFKA_LIBS/*"
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true -Dkafka.logs.dir="$dir"
    -Dlog4j2.configurationFile="$dir/log4j2.properties")
  if [ ! -f "$dir/data/meta.properties" ]; then
    java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format \
      -t "$(python3 -c '
import base64, uuid
# A cluster id is a UUID in URL-safe base64. One starting with "-" would be read as an option
# by the tool (1 in 64 ids): draw until it does not.
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        print(cid)
        break
')" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 || {
        cat "$dir/format.log" >&2
        exit 1
      }
  fi
  : >"$dir/server.log"
  # setsid: the broker outlives this script and gets no terminal signals meant for it.
  setsid java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" \
    >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  local deadline=$((SECONDS + 90))
  until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "kafka.sh: broker exited during start; its log:" >&2
      tail -40 "$dir/stdout.log" "$dir/server.log" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "kafka.sh: broker not started within 90 s; its log:" >&2
      tail -40 "$dir/server.log" >&2
      stop "$dir"
      exit 1
    fi
    sleep 0.2
  done
  echo "127.0.0.1:$broker"
}

stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  local pid; pid=$(cat "$dir/pid")
  kill -TERM "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$dir/pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start "${2:?usage: kafka.sh start DIR}" ;;
  stop) stop "${2:?usage: kafka.sh stop DIR}" ;;
  *) echo "usage: kafka.sh fetch | start DIR | stop DIR" >&2; exit 2 ;;
esac
