#!/usr/bin/env python3
"""The five-second loop with real clients: libhoney-py sends the events, `eventide deploy`
(the CLI under test) posts the deploys and waits for their verdicts.

Run with the python from scripts/compat-venv.sh:

    deploy_loop.py --endpoint URL --eventide BIN --ingest-key K --query-key Q --admin-key A \
        --dataset DS --service SVC

1. libhoney sends a minute of history of SVC v1 (200 events/s, 5 % errors), stamped in the past.
2. A trigger counts SVC's 5xx over the last 10 s every second (threshold: 1.5x the baseline).
3. A libhoney thread sends live traffic at 200 events/s: v2 errs at 10 % until the rollback.
4. `eventide deploy --version v2 --wait` must exit 1 (fail) and print the evidence.
5. Once the trigger fired, traffic goes back to v1 (5 %) and `eventide deploy --type rollback
   --version v1` posts the rollback.
6. The job watches the failed deploy turn `recovered` and the trigger resolve.

The last line of stdout is one JSON object with every time (seconds, this machine's clock):
    {"deploy_exit", "deploy_output", "deploy_seconds", "failed_verdict", "trigger_fired_after_s",
     "rollback_at", "recovered_after_rollback_s", "trigger_resolved_after_rollback_s",
     "trigger_resolution", "events_sent", "libhoney_version"}
Exit status 0 when every step happened before its timeout, 1 otherwise.
"""
import argparse
import datetime
import json
import subprocess
import sys
import threading
import time

import libhoney
import requests
from libhoney.version import VERSION as LIBHONEY_VERSION


class Traffic:
    def __init__(self, service):
        self.service = service
        self.version = "v1"
        self.every = 20  # one error in 20: 5 %
        self.sent = 0
        self.stop = False
        self.lock = threading.Lock()

    def one(self, k, when):
        with self.lock:
            version, every = self.version, self.every
        ev = libhoney.new_event()
        ev.add({
            "service.name": self.service,
            "service.version": version,
            "endpoint": f"/e{k % 5}",
            "region": ["us-east-1", "eu-west-1"][k % 2],
            "duration_ms": 40.0 + (k * 37) % 80,
            "http.status_code": 500 if k % every == 0 else 200,
        })
        ev.created_at = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).replace(tzinfo=None)
        ev.send()
        self.sent += 1

    def live(self):
        k = 0
        start = time.time()
        while not self.stop:
            # 200 events/s in steps of 20 ms.
            due = int((time.time() - start) * 200)
            while k < due:
                self.one(k, time.time())
                k += 1
            time.sleep(0.02)


def wait_for(what, check, timeout, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    p = argparse.ArgumentParser()
    for a in ("endpoint", "eventide", "ingest-key", "query-key", "admin-key", "dataset", "service"):
        p.add_argument(f"--{a}", required=True)
    args = p.parse_args()
    base = args.endpoint
    q = {"X-Honeycomb-Team": args.query_key}

    libhoney.init(writekey=args.ingest_key, dataset=args.dataset, api_host=base, block_on_send=True)
    t = Traffic(args.service)
    now = time.time()
    for i in range(12000):
        t.one(i, now - 60 + i / 200)
    libhoney.flush()

    trig = requests.post(
        f"{base}/1/triggers/{args.dataset}",
        headers={"X-Honeycomb-Team": args.admin_key},
        json={
            "name": f"{args.service} 5xx",
            "frequency": 1,
            "query": {
                "calculations": [{"op": "COUNT"}],
                "filters": [
                    {"column": "service.name", "op": "=", "value": args.service},
                    {"column": "http.status_code", "op": ">=", "value": 500},
                ],
                "time_range": 10,
            },
            "threshold": {"op": ">", "value": 150},
        },
        timeout=10,
    )
    trig.raise_for_status()
    trigger_id = trig.json()["id"]

    live = threading.Thread(target=t.live, daemon=True)
    live.start()
    time.sleep(1.0)
    with t.lock:
        t.version, t.every = "v2", 10  # 10 %: twice as many errors
    cli = [args.eventide, "deploy", "--url", base, "--key", args.ingest_key,
           "--query-key", args.query_key, "--dataset", args.dataset, "--service", args.service]
    started = time.time()
    d = subprocess.run(cli + ["--version", "v2", "--wait", "--timeout", "120"],
                       capture_output=True, text=True, timeout=180)
    deploy_seconds = time.time() - started
    marker_id = d.stderr.split("marker ", 1)[1].split(" ", 1)[0] if "marker " in d.stderr else None

    def triggered():
        r = requests.get(f"{base}/1/triggers/{args.dataset}/{trigger_id}", headers=q, timeout=10)
        r.raise_for_status()
        return r.json()["triggered"]

    wait_for("the trigger to fire", triggered, 60)
    fired_after = time.time() - started

    with t.lock:
        t.version, t.every = "v1", 20
    rollback_at = time.time()
    rb = subprocess.run(cli + ["--version", "v1", "--type", "rollback"],
                        capture_output=True, text=True, timeout=60)
    if rb.returncode != 0:
        raise SystemExit(f"rollback marker: {rb.stdout} {rb.stderr}")

    def recovered():
        r = requests.get(f"{base}/api/v1/deploys/{marker_id}/verdict", headers=q, timeout=10)
        r.raise_for_status()
        v = r.json()
        return v if v["verdict"] == "recovered" else None

    verdict = wait_for("the deploy to recover", recovered, 60)
    recovered_after = time.time() - rollback_at
    wait_for("the trigger to resolve", lambda: not triggered(), 60)
    resolved_after = time.time() - rollback_at
    ev = requests.get(f"{base}/1/triggers/{args.dataset}/{trigger_id}/evaluations?limit=200",
                      headers=q, timeout=10).json()["evaluations"]
    resolution = next((e for e in ev if e.get("notification") == "resolved"), None)
    t.stop = True
    live.join()
    libhoney.close()
    print(json.dumps({
        "marker_id": marker_id, "deploy_exit": d.returncode, "deploy_output": d.stdout,
        "deploy_seconds": deploy_seconds, "failed_verdict": verdict,
        "trigger_fired_after_s": fired_after, "rollback_at": rollback_at,
        "recovered_after_rollback_s": recovered_after,
        "trigger_resolved_after_rollback_s": resolved_after,
        "trigger_resolution": resolution, "events_sent": t.sent,
        "libhoney_version": LIBHONEY_VERSION,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
