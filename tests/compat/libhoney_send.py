#!/usr/bin/env python3
"""Send events to an Eventide server with the real libhoney-py client.

Run with the python from scripts/compat-venv.sh:

    libhoney_send.py --endpoint http://127.0.0.1:PORT --key KEY --dataset DS \
        --n N --samplerate R --run-id STR [--seed S] [--allow-errors]

Event i (0 <= i < N) has the fields
    run_id       str    the --run-id value
    id           int    i
    name         str    f"event-{i}"
    duration_ms  float  i * 0.5
    ok           bool   i % 2 == 0
    http         dict   {"status": 200 + i % 3, "route": f"/r/{i % 5}"}
and libhoney's own batch-item "time" (Event.created_at, naive UTC, sent as
isoformat() + "Z") and "samplerate" (= R for every event that is sent).

libhoney drops events client side (random.randint(1, R) != 1) and reports each
dropped one on its responses queue with error "event dropped due to sampling".
Every event therefore yields exactly one response; ev.metadata = i ties it back.

The last line of stdout is one JSON object:
    {"run_id", "dataset", "n", "samplerate",
     "sent_ids": [ids answered 202, ascending],
     "sampled_out": count dropped by sampling, "sampled_out_ids": [...],
     "statuses": {"<http status>": count}   (sampled-out events not included),
     "errors": [{"id", "status", "error"}]  (non-202, not sampled; at most 20),
     "time_min", "time_max": the "time" values libhoney sent (sent events only),
     "libhoney_version", "gzip": true}
Exit status: 0 when every event got a response and every sent event got 202
(any response is fine with --allow-errors); 1 otherwise.
"""
import argparse
import json
import random
import sys
import threading
from collections import Counter

import libhoney
from libhoney.transmission import Transmission
from libhoney.version import VERSION as LIBHONEY_VERSION

SAMPLING_ERROR = "event dropped due to sampling"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4080")
    p.add_argument("--key", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--samplerate", type=int, default=1, help="libhoney sample_rate (integer >= 1)")
    p.add_argument("--run-id", required=True)
    p.add_argument("--seed", type=int, default=None, help="seed Python's random (libhoney's sampler)")
    p.add_argument("--allow-errors", action="store_true")
    args = p.parse_args()
    if args.samplerate < 1:
        p.error("--samplerate must be >= 1")

    # libhoney calls random.seed() at import; reseed after it for repeatable sampling.
    if args.seed is not None:
        random.seed(args.seed)

    # libhoney.init() does not forward gzip settings (nor max_batch_size /
    # send_frequency) to the Transmission it builds, so build the default
    # Transmission ourselves with gzip explicitly on (it is also the default:
    # gzip_enabled=True, level 1, header "Content-Encoding: gzip" on the session).
    # Blocking on send and on response: no event or response is ever dropped
    # for a full queue (pending holds 1000, responses 2000).
    xmit = Transmission(block_on_send=True, block_on_response=True, gzip_enabled=True)
    if xmit.session.headers.get("Content-Encoding") != "gzip":
        print("libhoney transmission is not gzipping", file=sys.stderr)
        return 1

    libhoney.init(
        writekey=args.key,
        dataset=args.dataset,
        api_host=args.endpoint,
        sample_rate=args.samplerate,
        block_on_send=True,
        block_on_response=True,
        transmission_impl=xmit,
    )

    responses = []
    resp_q = libhoney.responses()

    def drain():
        while True:
            r = resp_q.get()
            if r is None:  # put there by close(): nothing more is coming
                return
            responses.append(r)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    created_at = {}
    for i in range(args.n):
        ev = libhoney.new_event()
        ev.add({
            "run_id": args.run_id,
            "id": i,
            "name": f"event-{i}",
            "duration_ms": i * 0.5,
            "ok": i % 2 == 0,
            "http": {"status": 200 + i % 3, "route": f"/r/{i % 5}"},
        })
        ev.metadata = i
        created_at[i] = ev.created_at
        ev.send()

    # Flushes the pending batch, waits for the sender, then puts None on the
    # responses queue.
    libhoney.close()
    reader.join(timeout=60)
    if reader.is_alive():
        print("timed out waiting for libhoney responses", file=sys.stderr)
        return 1

    by_id = {}
    dup = []
    for r in responses:
        i = r["metadata"]
        if i in by_id:
            dup.append(i)
        by_id[i] = r

    sent_ids, sampled_ids, errors = [], [], []
    statuses = Counter()
    for i in range(args.n):
        r = by_id.get(i)
        if r is None:
            continue
        if r["status_code"] == 0 and r["error"] == SAMPLING_ERROR:
            sampled_ids.append(i)
            continue
        statuses[str(r["status_code"])] += 1
        if r["status_code"] == 202:
            sent_ids.append(i)
        else:
            errors.append({"id": i, "status": r["status_code"], "error": str(r["error"])})
    missing = [i for i in range(args.n) if i not in by_id]

    def wire_time(i):
        # exactly what Transmission._send_batch puts in the batch item
        t = created_at[i].isoformat()
        return t + "Z" if created_at[i].tzinfo is None else t

    times = sorted(wire_time(i) for i in sent_ids)
    summary = {
        "run_id": args.run_id,
        "dataset": args.dataset,
        "n": args.n,
        "samplerate": args.samplerate,
        "sent_ids": sent_ids,
        "sampled_out": len(sampled_ids),
        "sampled_out_ids": sampled_ids,
        "statuses": dict(sorted(statuses.items())),
        "errors": errors[:20],
        "time_min": times[0] if times else None,
        "time_max": times[-1] if times else None,
        "libhoney_version": LIBHONEY_VERSION,
        "gzip": True,
    }
    if missing:
        summary["missing_ids"] = missing
    if dup:
        summary["duplicate_ids"] = dup
    print(json.dumps(summary))
    sys.stdout.flush()

    if missing or dup:
        print(f"{len(missing)} events got no response, {len(dup)} got several", file=sys.stderr)
        return 1
    if errors and not args.allow_errors:
        print(f"{len(errors)} events were not accepted: {errors[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
