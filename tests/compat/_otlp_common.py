"""Shared helpers for otel_traces.py and otel_logs.py (not a test by itself).

- scrub_otel_env(): drop OTEL_* variables so the environment cannot change
  headers, resource attributes, compression or endpoints behind our back.
- RecordingSession: a requests.Session whose response hook records every
  request/response (status, request headers, body) for both the real OTLP
  exporters (passed via their public `session=` argument) and our JSON poster.
- to_otlp_json(): ExportXServiceRequest -> OTLP/JSON dict (camelCase, enums as
  ints); ids as lowercase hex (spec) or left as protobuf-JSON base64.
- post_json(): gzip + POST one OTLP/JSON body.
"""
import base64
import gzip
import json
import os
import sys

import requests
from google.protobuf.json_format import MessageToDict

ID_KEYS = ("traceId", "spanId", "parentSpanId")


def scrub_otel_env():
    for k in list(os.environ):
        if k.startswith("OTEL_"):
            del os.environ[k]


class RecordingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.exchanges = []
        self.hooks["response"].append(self._record)

    def _record(self, resp, *args, **kwargs):
        req = resp.request
        self.exchanges.append({
            "status": resp.status_code,
            "url": req.url,
            "request_headers": {k.lower(): v for k, v in req.headers.items()},
            "request_bytes": len(req.body or b""),
            "response_content_type": resp.headers.get("content-type"),
            "response_body": resp.content,
        })
        return resp

    def summary(self):
        out = []
        for x in self.exchanges:
            h = x["request_headers"]
            out.append({
                "status": x["status"],
                "content_type": h.get("content-type"),
                "content_encoding": h.get("content-encoding"),
                "user_agent": h.get("user-agent"),
                "bytes": x["request_bytes"],
            })
        return out

    def report_failures(self):
        """Print non-200 exchanges (with their body) to stderr; return True if any."""
        bad = False
        for x in self.exchanges:
            if x["status"] != 200:
                bad = True
                body = x["response_body"].decode("utf-8", "replace")
                print(f"POST {x['url']} -> {x['status']}: {body}", file=sys.stderr)
        return bad


def b64_to_hex(v):
    return base64.b64decode(v).hex()


def _rewrite_ids(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ID_KEYS and isinstance(v, str):
                node[k] = b64_to_hex(v)
            else:
                _rewrite_ids(v)
    elif isinstance(node, list):
        for v in node:
            _rewrite_ids(v)


def to_otlp_json(msg, hex_ids):
    d = MessageToDict(msg, use_integers_for_enums=True)
    if hex_ids:
        _rewrite_ids(d)
    return d


def post_json(session, url, key, body_dict, timeout=10):
    raw = json.dumps(body_dict, separators=(",", ":")).encode()
    resp = session.post(
        url,
        data=gzip.compress(raw),
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "x-honeycomb-team": key,
        },
        timeout=timeout,
    )
    return resp


def any_value(v):
    """Decode an OTLP AnyValue protobuf into a plain Python value."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def parse_args():
    """The command line shared by otel_traces.py and otel_logs.py."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4080")
    p.add_argument("--key", required=True)
    p.add_argument("--encoding", choices=["protobuf", "json", "json-base64"], required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--processor", choices=["batch", "simple"], default="batch")
    return p.parse_args()


def recording_exporter(base, inner):
    """An exporter of the SDK class `base` that delegates to `inner` and keeps what it was
    given (`.items`) and each export's result (`.results`)."""

    class Recording(base):
        def __init__(self):
            self.inner = inner
            self.items = []
            self.results = []

        def export(self, batch):
            self.items.extend(batch)
            r = self.inner.export(batch)
            self.results.append(r)
            return r

        def shutdown(self):
            self.inner.shutdown()

        def force_flush(self, timeout_millis=30000):
            return self.inner.force_flush(timeout_millis)

    return Recording()
