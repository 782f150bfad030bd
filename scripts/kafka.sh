#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft mode) for development and CI.
#
#   scripts/kafka.sh start   fetch Kafka with Maven (first run only), format storage, start the
#                            broker on 127.0.0.1:9092 and wait until it accepts connections
#   scripts/kafka.sh stop    stop it cleanly
#   scripts/kafka.sh status  exit 0 when it is running
#
# Environment: KAFKA_VERSION (4.4.0), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_HOME (cache for jars, ~/.cache/eventide/kafka), KAFKA_DATA (broker data, a temp dir
# under KAFKA_HOME), KAFKA_HEAP (512m). Idempotent: start on a running broker does nothing.
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HOME=${KAFKA_HOME:-$HOME/.cache/eventide/kafka}
KAFKA_DATA=${KAFKA_DATA:-$KAFKA_HOME/data-$KAFKA_PORT}
KAFKA_HEAP=${KAFKA_HEAP:-512m}
LIB="$KAFKA_HOME/lib-$KAFKA_VERSION"
PIDFILE="$KAFKA_DATA/kafka.pid"

log() { echo "kafka.sh: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch() {
  if [ -f "$LIB/.complete" ]; then return; fi
  command -v mvn >/dev/null || { log "maven (mvn) is required"; exit 1; }
  log "fetching Apache Kafka $KAFKA_VERSION and its dependencies from Maven Central"
  local pom_dir="$KAFKA_HOME/pom-$KAFKA_VERSION"
  mkdir -p "$pom_dir" "$LIB"
  cat >"$pom_dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.eventide</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>2.0.17</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B -f "$pom_dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIB" -DincludeScope=runtime
  touch "$LIB/.complete"
}

java_kafka() {
  java "-Xmx$KAFKA_HEAP" "-Xms$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$LIB/*" "$@"
}

configure() {
  mkdir -p "$KAFKA_DATA/logs"
  cat >"$KAFKA_DATA/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA/logs
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
PROPS
  if [ ! -f "$KAFKA_DATA/logs/meta.properties" ]; then
    local id
    id=$(java_kafka kafka.tools.StorageTool random-uuid | tail -n 1)
    java_kafka kafka.tools.StorageTool format -t "$id" -c "$KAFKA_DATA/server.properties" >/dev/null
  fi
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  if running && port_open "$KAFKA_PORT"; then log "already running on 127.0.0.1:$KAFKA_PORT"; return; fi
  fetch
  configure
  log "starting broker on 127.0.0.1:$KAFKA_PORT (data in $KAFKA_DATA)"
  nohup java "-Xmx$KAFKA_HEAP" "-Xms$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$LIB/*" kafka.Kafka "$KAFKA_DATA/server.properties" >"$KAFKA_DATA/kafka.out" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 240); do
    if port_open "$KAFKA_PORT"; then log "ready"; return; fi
    if ! running; then log "broker exited; see $KAFKA_DATA/kafka.out"; tail -n 30 "$KAFKA_DATA/kafka.out" >&2; exit 1; fi
    sleep 0.5
  done
  log "broker did not open port $KAFKA_PORT in 120 s"; exit 1
}

stop() {
  if ! running; then log "not running"; return; fi
  local pid; pid=$(cat "$PIDFILE")
  kill -TERM "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; log "stopped"; return; }; sleep 0.5; done
  log "broker did not stop in 60 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running && port_open "$KAFKA_PORT" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
