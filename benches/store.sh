#!/usr/bin/env bash
# Storage and pruning (issue #5), on a release build:
#   1. 10M generated events (the realistic mix of `eventide-bench gen`) over HTTP;
#   2. compaction settles (`GET /api/v1/datasets` reports no merge pending);
#   3. bytes per event on disk (Parquet segments) versus raw NDJSON, and the segment count;
#   4. a needle query (`trace.trace_id = X`): median latency of 5 runs and the bytes it read
#      versus the dataset's bytes (bloom filters and statistics at work), against a reference
#      measured in the same run: a full-scan GROUP BY over the same data.
# Usage: benches/store.sh [EVENTS]   (default 10000000). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}
PORT=${PORT:-4195}
URL="http://127.0.0.1:$PORT"
KEY=bench-admin
WORK=$(mktemp -d /tmp/eventide-store-bench.XXXXXX)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release -p eventide -p eventide-benches
BIN=target/release

"$BIN/eventide-bench" gen --events 100000 --out "$WORK/sample.ndjson" >/dev/null
RAW_PER_EVENT=$(( $(stat -c %s "$WORK/sample.ndjson") / 100000 ))

EVENTIDE_KEYS="admin:$KEY" EVENTIDE_LOG=warn EVENTIDE_COMPACTION_SECONDS=2 \
  EVENTIDE_COMPACTION_GRACE_SECONDS=5 EVENTIDE_RETIRE_GRACE_SECONDS=5 \
  "$BIN/eventide" serve --data-dir "$WORK/data" --http "127.0.0.1:$PORT" >"$WORK/server.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

echo "== ingest $EVENTS events"
"$BIN/eventide-bench" ingest --url "$URL" --key "$KEY" --dataset store --clients 4 \
  --events "$EVENTS" --probe-every-ms 0

echo "== waiting for compaction to settle"
START=$(date +%s)
python3 - "$URL" "$KEY" "$EVENTS" <<'PY'
import json, sys, time, urllib.request
url, key, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
quiet, last = 0, None
while True:
    req = urllib.request.Request(url + "/api/v1/datasets", headers={"X-Honeycomb-Team": key})
    d = [x for x in json.load(urllib.request.urlopen(req))["datasets"] if x["name"] == "store"][0]
    state = (d["segments"], d["segment_rows"], d["merges_pending"])
    quiet = quiet + 1 if (d["merges_pending"] == 0 and d["segment_rows"] == events and state == last) else 0
    last = state
    if quiet >= 3:
        break
    time.sleep(2)
PY
echo "settled in $(( $(date +%s) - START )) s"

python3 - "$URL" "$KEY" "$RAW_PER_EVENT" <<'PY'
import json, statistics, sys, time, urllib.request
url, key, raw = sys.argv[1], sys.argv[2], int(sys.argv[3])
def get(path):
    return json.load(urllib.request.urlopen(urllib.request.Request(url + path, headers={"X-Honeycomb-Team": key})))
def sql(q):
    body = json.dumps({"sql": q}).encode()
    req = urllib.request.Request(url + "/api/v1/sql", data=body, headers={"X-Honeycomb-Team": key, "Content-Type": "application/json"})
    t = time.perf_counter()
    r = json.load(urllib.request.urlopen(req))
    return r, (time.perf_counter() - t) * 1000
d = [x for x in get("/api/v1/datasets")["datasets"] if x["name"] == "store"][0]
per = d["bytes"] / d["rows"]
print(f"rows {d['rows']}, {d['segments']} segments, {d['bytes']} bytes on disk")
print(f"bytes/event: raw NDJSON {raw}, Parquet {per:.1f} -> {raw / per:.1f}x smaller (1/{raw / per:.1f} of raw)")
needle = sql('SELECT "trace.trace_id" FROM store LIMIT 1')[0]["rows"][0][0]
runs, stats = [], None
for _ in range(5):
    r, ms = sql(f"SELECT timestamp, \"service.name\", duration_ms FROM store WHERE \"trace.trace_id\" = '{needle}'")
    runs.append(ms); stats = r["stats"]
ref = []
for _ in range(5):
    r, ms = sql('SELECT "service.name", count(*), avg(duration_ms) FROM store GROUP BY 1')
    ref.append(ms); ref_stats = r["stats"]
n, f = statistics.median(runs), statistics.median(ref)
print(f"needle trace.trace_id = {needle}: median {n:.1f} ms over 5 runs; read {stats['bytes_scanned']} of {stats['bytes_total']} bytes "
      f"({100 * stats['bytes_scanned'] / stats['bytes_total']:.2f} %), row groups pruned by bloom filter {stats['row_groups_pruned_bloom_filter']}, "
      f"by statistics {stats['row_groups_pruned_statistics']}, files {stats['files_scanned']}/{stats['files_total']}")
print(f"reference full-scan GROUP BY service.name: median {f:.1f} ms, read {ref_stats['bytes_scanned']} bytes; needle/reference latency = {n / f:.3f}")
PY
