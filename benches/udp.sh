#!/usr/bin/env bash
# UDP receiver throughput (issue #4), on a release build:
#   1. `eventide-bench udp`: 1M events at each paced rate, 1 event per datagram, then 10;
#      reports stored/lost per rate and the highest rate with < 0.1 % loss;
#   2. the same-run reference: HTTP batch ingest from 4 clients (`eventide-bench ingest`),
#      so the UDP figure can be read as a ratio on this (shared, noisy) machine.
# Usage: benches/udp.sh [EVENTS] [RATES]   (defaults 1000000, 25000,...,300000). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
RATES=${2:-25000,50000,100000,150000,200000,300000}
PORT=${PORT:-4190}
UDP_PORT=${UDP_PORT:-4191}
URL="http://127.0.0.1:$PORT"
KEY=bench-admin
WORK=$(mktemp -d /tmp/eventide-udp-bench.XXXXXX)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release -p eventide -p eventide-benches
BIN=target/release

EVENTIDE_KEYS="admin:$KEY" EVENTIDE_LOG=warn "$BIN/eventide" serve --data-dir "$WORK/data" \
  --http "127.0.0.1:$PORT" --udp "127.0.0.1:$UDP_PORT" >"$WORK/server.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done
echo "kernel receive buffer cap (net.core.rmem_max): $(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo unknown)"

for PER in 1 10; do
  echo "== UDP, $PER event(s) per datagram"
  "$BIN/eventide-bench" udp --target "127.0.0.1:$UDP_PORT" --url "$URL" --key "$KEY" \
    --events "$EVENTS" --rates "$RATES" --per-datagram "$PER"
  curl -s "$URL/metrics" | grep -v '^#'
done

echo "== reference: HTTP batch ingest, 4 clients, 1000-event batches"
"$BIN/eventide-bench" ingest --url "$URL" --key "$KEY" --dataset http-ref --clients 4 \
  --events "$EVENTS" --probe-every-ms 0
echo "kernel UDP counters (RcvbufErrors = datagrams the kernel dropped):"
grep '^Udp:' /proc/net/snmp | tail -1 | awk '{print "InDatagrams=" $2, "RcvbufErrors=" $6}'
