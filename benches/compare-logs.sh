#!/usr/bin/env bash
# HTTP batch ingest through the embedded log versus through Apache Kafka, same client, same
# generated data, one run (release build), with freshness probes (ack → visible in SQL)
# during each load. Usage: benches/compare-logs.sh [EVENTS] (default 1000000). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
KEY=bench-admin
WORK=$(mktemp -d /tmp/eventide-compare.XXXXXX)
SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release -p eventide -p eventide-benches
BIN=target/release
scripts/kafka.sh start

run() { # name port extra-args...
  local name=$1 port=$2; shift 2
  EVENTIDE_KEYS="admin:$KEY" EVENTIDE_LOG=warn "$BIN/eventide" serve --data-dir "$WORK/$name" \
    --http "127.0.0.1:$port" "$@" >"$WORK/$name.out" 2>&1 &
  SERVER=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo "== $name"
  "$BIN/eventide-bench" ingest --url "http://127.0.0.1:$port" --key "$KEY" --dataset bench \
    --clients 4 --events "$EVENTS" | tee "$WORK/$name.result"
  kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=""
}

run embedded 4181
run kafka 4182 --kafka 127.0.0.1:9092 --kafka-topic "bench-$$-$(date +%s)" --kafka-group "bench-$$"

e=$(grep -o '= [0-9]* events/s' "$WORK/embedded.result" | grep -o '[0-9]*')
k=$(grep -o '= [0-9]* events/s' "$WORK/kafka.result" | grep -o '[0-9]*')
awk -v e="$e" -v k="$k" 'BEGIN { printf "kafka / embedded ingest throughput: %d / %d events/s = %.2f\n", k, e, k / e }'
