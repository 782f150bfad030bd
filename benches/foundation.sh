#!/usr/bin/env bash
# The figures issue #2 reports, on a release build:
#   1. `eventide import` of a 1M-event NDJSON file (events/s),
#   2. HTTP batch ingest from 4 concurrent clients (events/s, ack latency),
#   3. freshness (ack → visible in SQL) under that load,
#   4. bytes per event on disk (Parquet segments) versus raw NDJSON.
# Usage: benches/foundation.sh [EVENTS]   (default 1000000). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
PORT=${PORT:-4180}
URL="http://127.0.0.1:$PORT"
KEY=bench-admin
WORK=$(mktemp -d /tmp/eventide-bench.XXXXXX)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release -p eventide -p eventide-benches
BIN=target/release

echo "== generate $EVENTS events"
"$BIN/eventide-bench" gen --events "$EVENTS" --out "$WORK/events.ndjson"
NDJSON_BYTES=$(stat -c %s "$WORK/events.ndjson")

EVENTIDE_KEYS="admin:$KEY" EVENTIDE_LOG=warn "$BIN/eventide" serve --data-dir "$WORK/data" --http "127.0.0.1:$PORT" >"$WORK/server.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

echo "== import (NDJSON, 4 MB chunks, 4 requests in flight)"
"$BIN/eventide" import --url "$URL" --key "$KEY" imported "$WORK/events.ndjson"

echo "== HTTP batch ingest, 4 clients, 1000-event batches, freshness probes every 100 ms"
"$BIN/eventide-bench" ingest --url "$URL" --key "$KEY" --dataset batched --clients 4 --events "$EVENTS"

echo "== storage"
kill -TERM "$SERVER"; wait "$SERVER" || true
SEG_BYTES=$(du -sb "$WORK/data/segments/imported" | cut -f1)
LOG_BYTES=$(du -sb "$WORK/data/log" | cut -f1)
FILES=$(ls "$WORK/data/segments/imported" | wc -l)
awk -v n="$EVENTS" -v nd="$NDJSON_BYTES" -v seg="$SEG_BYTES" -v files="$FILES" -v logb="$LOG_BYTES" 'BEGIN {
  printf "raw NDJSON: %.1f bytes/event; Parquet segments: %.1f bytes/event in %d files (%.1fx smaller); log dir after truncation: %d bytes\n",
    nd / n, seg / n, files, nd / seg, logb }'
