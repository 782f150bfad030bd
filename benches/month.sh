#!/usr/bin/env bash
# Query latency as a month of data accumulates (issue #5), on a release build.
# Four weeks of generated events are ingested one week at a time (2.5M events a week by
# default, event times spread over the week). After each week, once compaction has settled,
# the same questions about one fixed hour of week 1 run 5 times each; their median latency
# should stay flat while the dataset's files and bytes grow, because the catalog's time ranges
# prune whole files. The reference measured in the same run is week 1's latency.
# Usage: benches/month.sh [EVENTS_PER_WEEK]   (default 2500000). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
PER_WEEK=${1:-2500000}
PORT=${PORT:-4196}
URL="http://127.0.0.1:$PORT"
KEY=bench-admin
WORK=$(mktemp -d /tmp/eventide-month-bench.XXXXXX)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
T0_US=1788220800000000          # 2026-09-01T00:00:00Z
WEEK_US=$((7 * 86400 * 1000000))

cargo build --release -p eventide -p eventide-benches
BIN=target/release
EVENTIDE_KEYS="admin:$KEY" EVENTIDE_LOG=warn EVENTIDE_COMPACTION_SECONDS=2 \
  EVENTIDE_COMPACTION_GRACE_SECONDS=5 EVENTIDE_RETIRE_GRACE_SECONDS=5 \
  "$BIN/eventide" serve --data-dir "$WORK/data" --http "127.0.0.1:$PORT" >"$WORK/server.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

for W in 0 1 2 3; do
  echo "== week $((W + 1)): $PER_WEEK events"
  "$BIN/eventide-bench" ingest --url "$URL" --key "$KEY" --dataset month --clients 4 \
    --events "$PER_WEEK" --probe-every-ms 0 --seed $((W + 10)) \
    --start-us $((T0_US + W * WEEK_US)) --step-us $((WEEK_US / PER_WEEK))
  python3 - "$URL" "$KEY" "$((PER_WEEK * (W + 1)))" "$T0_US" "$((W + 1))" <<'PY'
import json, statistics, sys, time, urllib.request
url, key, rows, t0, week = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def get(path):
    return json.load(urllib.request.urlopen(urllib.request.Request(url + path, headers={"X-Honeycomb-Team": key})))
quiet, last, start = 0, None, time.time()
while True:
    d = [x for x in get("/api/v1/datasets")["datasets"] if x["name"] == "month"][0]
    state = (d["segments"], d["segment_rows"], d["merges_pending"])
    quiet = quiet + 1 if (d["merges_pending"] == 0 and d["segment_rows"] == rows and state == last) else 0
    last = state
    if quiet >= 3:
        break
    time.sleep(2)
settle = time.time() - start
def sql(q):
    body = json.dumps({"sql": q}).encode()
    req = urllib.request.Request(url + "/api/v1/sql", data=body, headers={"X-Honeycomb-Team": key, "Content-Type": "application/json"})
    t = time.perf_counter()
    r = json.load(urllib.request.urlopen(req))
    return r, (time.perf_counter() - t) * 1000
lo, hi = t0 + 30 * 3600 * 10**6, t0 + 31 * 3600 * 10**6   # one fixed hour of week 1
qs = {
    "count+avg, 1 hour": f"SELECT count(*), avg(duration_ms) FROM month WHERE timestamp >= to_timestamp_micros({lo}) AND timestamp < to_timestamp_micros({hi})",
    "p99 by service, 1 hour": f"SELECT \"service.name\", approx_percentile_cont(duration_ms, 0.99) FROM month WHERE timestamp >= to_timestamp_micros({lo}) AND timestamp < to_timestamp_micros({hi}) GROUP BY 1",
}
out = []
for name, q in qs.items():
    runs = []
    for _ in range(5):
        r, ms = sql(q)
        runs.append(ms)
    s = r["stats"]
    out.append(f"{name}: median {statistics.median(runs):.1f} ms, files {s['files_scanned']}/{s['files_total']}, bytes {s['bytes_scanned']}/{s['bytes_total']}")
print(f"after week {week}: {d['rows']} rows, {d['segments']} segments, {d['bytes']} bytes, settled in {settle:.0f} s")
for line in out:
    print("  " + line)
PY
done
