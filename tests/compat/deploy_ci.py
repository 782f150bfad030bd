#!/usr/bin/env python3
"""A CI job's view of a deploy check, with the real libhoney-py client and requests.

Run with the python from scripts/compat-venv.sh:

    deploy_ci.py --endpoint http://127.0.0.1:PORT --ingest-key K --query-key Q \
        --dataset DS --service SVC [--timeout 45]

1. libhoney sends a minute of history for SVC at version v1 (100 events/s, 5 % errors,
   event times in the past through Event.created_at).
2. requests posts a deploy marker (type "deploy", service SVC, version v2, commit and
   commit_time) to /1/markers/DS, as a deploy pipeline would.
3. libhoney keeps sending live traffic of v2, erring twice as often (10 %), while the job
   polls GET /api/v1/deploys/{marker}/verdict until it is not "pending".

The last line of stdout is one JSON object:
    {"marker_id", "verdict", "seconds" (deploy marker to verdict), "evidence",
     "polls", "events_sent", "libhoney_version"}
Exit status 0 when a verdict came before the timeout, 1 otherwise.
"""
import argparse
import datetime
import json
import sys
import time

import libhoney
import requests
from libhoney.version import VERSION as LIBHONEY_VERSION


def event(service, version, k, every, when):
    ev = libhoney.new_event()
    block = k // every
    ev.add({
        "service.name": service,
        "service.version": version,
        "endpoint": f"/e{block % 5}",
        "duration_ms": 50.0 + (block * 37) % 100,
        "http.status_code": 500 if k % every == 0 else 200,
    })
    ev.created_at = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).replace(tzinfo=None)
    ev.send()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ingest-key", required=True)
    p.add_argument("--query-key", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--timeout", type=float, default=45.0)
    args = p.parse_args()

    # Blocking on a full queue: no event is dropped client side. libhoney sends in the
    # background in batches (every 100 events or 0.25 s); the job never waits for it.
    libhoney.init(
        writekey=args.ingest_key, dataset=args.dataset, api_host=args.endpoint,
        block_on_send=True,
    )
    sent = 0
    now = time.time()
    for i in range(6000):
        event(args.service, "v1", i, 20, now - 60 + i * 0.01)
        sent += 1

    deploy_at = time.time()
    r = requests.post(
        f"{args.endpoint}/1/markers/{args.dataset}",
        headers={"X-Honeycomb-Team": args.ingest_key},
        json={
            "type": "deploy", "service": args.service, "version": "v2",
            "message": f"deploy {args.service} v2", "start_time": int(deploy_at),
            "commit": "0123abc", "commit_time": int(deploy_at) - 900,
        },
        timeout=10,
    )
    r.raise_for_status()
    marker_id = r.json()["id"]

    k = 0
    polls = 0
    verdict = {"verdict": "pending", "evidence": {}}
    next_poll = time.time()
    while time.time() - deploy_at < args.timeout:
        for _ in range(10):
            event(args.service, "v2", k, 10, time.time())
            k += 1
            sent += 1
        if time.time() >= next_poll:
            polls += 1
            v = requests.get(
                f"{args.endpoint}/api/v1/deploys/{marker_id}/verdict",
                headers={"X-Honeycomb-Team": args.query_key},
                timeout=10,
            )
            v.raise_for_status()
            verdict = v.json()
            if verdict["verdict"] != "pending":
                break
            next_poll = time.time() + 0.5
        time.sleep(0.1)
    seconds = time.time() - deploy_at
    libhoney.close()
    print(json.dumps({
        "marker_id": marker_id, "verdict": verdict["verdict"], "seconds": seconds,
        "evidence": verdict.get("evidence", {}), "polls": polls, "events_sent": sent,
        "libhoney_version": LIBHONEY_VERSION,
    }))
    return 0 if verdict["verdict"] != "pending" else 1


if __name__ == "__main__":
    sys.exit(main())
