#!/usr/bin/env python3
"""Send one trace to Eventide's OTLP/HTTP endpoint with the real OpenTelemetry SDK.

Run with the python from scripts/compat-venv.sh:

    otel_traces.py --endpoint BASE_URL --key KEY --encoding protobuf|json|json-base64 \
        --service NAME --run-id STR [--processor batch|simple]

POSTs to BASE_URL + "/v1/traces", header x-honeycomb-team: KEY, gzip body.
- protobuf:    the real OTLPSpanExporter (compression=Compression.Gzip).
- json:        the SDK's own encoder (encode_spans) -> MessageToDict (camelCase,
               enums as ints, int64 as strings), traceId/spanId/parentSpanId
               (links too) rewritten to lowercase hex as OTLP/JSON requires.
- json-base64: the same, ids left as protobuf-JSON base64.
--processor batch (default) sends all 4 spans in one request; simple sends one
request per span, in end order (SELECT carts, load-cart, charge-card, GET /checkout).

Resource: service.name=NAME, deployment.environment=test (plus the SDK's
telemetry.sdk.* attributes). Every span has the attribute run_id.

  GET /checkout  SERVER  http.route="/checkout", http.status_code=500,
                         customer.tier="gold", feature.flags=["a","b"]
    load-cart    INTERNAL items=3; event "cache-miss" {key: "cart:42"}
      SELECT carts CLIENT db.system="postgresql"
    charge-card  INTERNAL status ERROR "card declined"; event "exception"
                         (record_exception(ValueError("card declined")));
                         link -> load-cart

The last line of stdout is one JSON object (derived from the very protobuf
message the SDK encodes for these spans):
  {"run_id", "service", "encoding", "trace_id": 32 hex,
   "resource": {attributes},
   "spans": [{"name", "span_id", "parent_span_id" (hex|null), "kind" (OTLP int),
              "start_unix_nano", "end_unix_nano", "duration_ms",
              "status_code" (OTLP int), "status_message", "attributes",
              "events" (count), "event_names", "links" (count),
              "link_span_ids"}],   in start order
   "requests": [{"status", "content_type", "content_encoding", "user_agent", "bytes"}]}
Exit status: nonzero unless every request was answered 200.
"""
import json
import sys
import time
import warnings

from _otlp_common import (
    RecordingSession,
    parse_args,
    recording_exporter,
    attrs,
    post_json,
    scrub_otel_env,
    to_otlp_json,
)

scrub_otel_env()

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode  # noqa: E402

warnings.simplefilter("ignore", DeprecationWarning)


class JsonSpanExporter(SpanExporter):
    """OTLP/HTTP JSON exporter built on the SDK's own protobuf encoder."""

    def __init__(self, url, key, session, hex_ids):
        self.url, self.key, self.session, self.hex_ids = url, key, session, hex_ids

    def export(self, spans):
        body = to_otlp_json(encode_spans(spans), self.hex_ids)
        try:
            resp = post_json(self.session, self.url, self.key, body)
        except Exception as e:  # noqa: BLE001
            print(f"POST {self.url} failed: {e}", file=sys.stderr)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if resp.status_code == 200 else SpanExportResult.FAILURE

    def shutdown(self):
        pass


def main():
    args = parse_args()

    url = args.endpoint.rstrip("/") + "/v1/traces"
    session = RecordingSession()
    if args.encoding == "protobuf":
        inner = OTLPSpanExporter(
            endpoint=url,
            headers={"x-honeycomb-team": args.key},
            compression=Compression.Gzip,
            session=session,
        )
    else:
        inner = JsonSpanExporter(url, args.key, session, hex_ids=args.encoding == "json")
    exporter = recording_exporter(SpanExporter, inner)

    resource = Resource.create({"service.name": args.service, "deployment.environment": "test"})
    provider = TracerProvider(resource=resource)
    if args.processor == "batch":
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("eventide.compat", "1.0.0")

    run = {"run_id": args.run_id}
    with tracer.start_as_current_span(
        "GET /checkout",
        kind=SpanKind.SERVER,
        attributes={
            **run,
            "http.route": "/checkout",
            "http.status_code": 500,
            "customer.tier": "gold",
            "feature.flags": ["a", "b"],
        },
    ):
        with tracer.start_as_current_span(
            "load-cart", kind=SpanKind.INTERNAL, attributes={**run, "items": 3}
        ) as load_cart:
            load_cart.add_event("cache-miss", {"key": "cart:42"})
            with tracer.start_as_current_span(
                "SELECT carts", kind=SpanKind.CLIENT, attributes={**run, "db.system": "postgresql"}
            ):
                time.sleep(0.005)
        with tracer.start_as_current_span(
            "charge-card",
            kind=SpanKind.INTERNAL,
            attributes=run,
            links=[Link(load_cart.get_span_context())],
            record_exception=False,
            set_status_on_exception=False,
        ) as charge:
            try:
                time.sleep(0.002)
                raise ValueError("card declined")
            except ValueError as e:
                charge.record_exception(e)
                charge.set_status(Status(StatusCode.ERROR, "card declined"))

    flushed = provider.force_flush(30_000)
    provider.shutdown()

    ok = flushed and len(exporter.items) == 4 and all(r == SpanExportResult.SUCCESS for r in exporter.results)
    ok = not session.report_failures() and ok and len(session.exchanges) > 0

    msg = encode_spans(exporter.items)
    res_attrs = {}
    pb_spans = []
    for rs in msg.resource_spans:
        res_attrs = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            pb_spans.extend(ss.spans)
    pb_spans.sort(key=lambda s: s.start_time_unix_nano)
    trace_ids = {s.trace_id.hex() for s in pb_spans}
    spans = []
    for s in pb_spans:
        spans.append({
            "name": s.name,
            "span_id": s.span_id.hex(),
            "parent_span_id": s.parent_span_id.hex() or None,
            "kind": int(s.kind),
            "start_unix_nano": s.start_time_unix_nano,
            "end_unix_nano": s.end_time_unix_nano,
            "duration_ms": (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
            "status_code": int(s.status.code),
            "status_message": s.status.message or None,
            "attributes": attrs(s.attributes),
            "events": len(s.events),
            "event_names": [e.name for e in s.events],
            "links": len(s.links),
            "link_span_ids": [link.span_id.hex() for link in s.links],
        })
    summary = {
        "run_id": args.run_id,
        "service": args.service,
        "encoding": args.encoding,
        "trace_id": trace_ids.pop() if len(trace_ids) == 1 else None,
        "resource": res_attrs,
        "spans": spans,
        "requests": session.summary(),
    }
    print(json.dumps(summary))
    sys.stdout.flush()
    if not ok:
        print(f"export failed: results={exporter.results} spans={len(exporter.items)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
