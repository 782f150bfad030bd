#!/usr/bin/env python3
"""Send Python `logging` records to Eventide's OTLP/HTTP logs endpoint with the
real OpenTelemetry SDK (LoggerProvider + LoggingHandler).

Run with the python from scripts/compat-venv.sh:

    otel_logs.py --endpoint BASE_URL --key KEY --encoding protobuf|json|json-base64 \
        --service NAME --run-id STR [--processor batch|simple]

POSTs to BASE_URL + "/v1/logs", header x-honeycomb-team: KEY, gzip body.
- protobuf:    the real OTLPLogExporter (compression=Compression.Gzip).
- json:        the SDK's own encoder (encode_logs) -> MessageToDict (camelCase,
               enums as ints), traceId/spanId as lowercase hex (OTLP/JSON).
- json-base64: the same with ids left as protobuf-JSON base64.

Resource: service.name=NAME, deployment.environment=test. Records, in order,
from the Python logger "eventide.compat" (= the OTLP scope name):
  3 x INFO    "order placed {i}" (i = 0,1,2)  extra {run_id, order.id: i}
              inside the active span "place-orders" (trace_id/span_id set)
  1 x WARNING "slow payment"                 extra {run_id}   no span
  1 x ERROR   "payment failed"               extra {run_id, payment.provider: "acme"}   no span
The SDK maps WARNING to severity_text "WARN" and adds code.file.path,
code.function.name and code.line.number to every record's attributes.

The last line of stdout is one JSON object (derived from the very protobuf
message the SDK encodes for these records):
  {"run_id", "service", "encoding", "resource": {attributes}, "scope": name,
   "trace_id": hex of the span the INFO logs ran in, "span_id": hex,
   "logs": [{"body", "severity_text", "severity_number", "trace_id" (hex|null),
             "span_id" (hex|null), "time_unix_nano",
             "attributes": the extra attributes we set,
             "attribute_keys": every attribute key sent, sorted}],
   "requests": [{"status", "content_type", "content_encoding", "user_agent", "bytes"}]}
Exit status: nonzero unless every request was answered 200.
"""
import json
import logging
import sys
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
warnings.simplefilter("ignore", DeprecationWarning)

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import (  # noqa: E402
    BatchLogRecordProcessor,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

try:  # SDK >= 1.35-ish names; older ones only had LogExporter / LogExportResult
    from opentelemetry.sdk._logs.export import LogRecordExporter as _Exporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _Result
except ImportError:  # pragma: no cover
    from opentelemetry.sdk._logs.export import LogExporter as _Exporter
    from opentelemetry.sdk._logs.export import LogExportResult as _Result

LOGGER_NAME = "eventide.compat"


class JsonLogExporter(_Exporter):
    """OTLP/HTTP JSON exporter built on the SDK's own protobuf encoder."""

    def __init__(self, url, key, session, hex_ids):
        self.url, self.key, self.session, self.hex_ids = url, key, session, hex_ids

    def export(self, batch):
        body = to_otlp_json(encode_logs(batch), self.hex_ids)
        try:
            resp = post_json(self.session, self.url, self.key, body)
        except Exception as e:  # noqa: BLE001
            print(f"POST {self.url} failed: {e}", file=sys.stderr)
            return _Result.FAILURE
        return _Result.SUCCESS if resp.status_code == 200 else _Result.FAILURE

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    args = parse_args()

    url = args.endpoint.rstrip("/") + "/v1/logs"
    session = RecordingSession()
    if args.encoding == "protobuf":
        inner = OTLPLogExporter(
            endpoint=url,
            headers={"x-honeycomb-team": args.key},
            compression=Compression.Gzip,
            session=session,
        )
    else:
        inner = JsonLogExporter(url, args.key, session, hex_ids=args.encoding == "json")
    exporter = recording_exporter(_Exporter, inner)

    resource = Resource.create({"service.name": args.service, "deployment.environment": "test"})
    provider = LoggerProvider(resource=resource)
    if args.processor == "batch":
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    else:
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))

    # A real SDK tracer (no exporter) only to have a valid active span context.
    tracer = TracerProvider(resource=resource).get_tracer(LOGGER_NAME)

    handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)

    run = {"run_id": args.run_id}
    expected = []  # (body, extra attributes) in emit order
    with tracer.start_as_current_span("place-orders") as span:
        ctx = span.get_span_context()
        for i in range(3):
            extra = {**run, "order.id": i}
            log.info("order placed %d", i, extra=extra)
            expected.append((f"order placed {i}", extra))
    extra = dict(run)
    log.warning("slow payment", extra=extra)
    expected.append(("slow payment", extra))
    extra = {**run, "payment.provider": "acme"}
    log.error("payment failed", extra=extra)
    expected.append(("payment failed", extra))

    log.removeHandler(handler)
    flushed = provider.force_flush(30_000)
    provider.shutdown()

    ok = flushed and len(exporter.items) == len(expected) and all(r == _Result.SUCCESS for r in exporter.results)
    ok = not session.report_failures() and ok and len(session.exchanges) > 0

    msg = encode_logs(exporter.items)
    res_attrs, scope, pb_logs = {}, None, []
    for rl in msg.resource_logs:
        res_attrs = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            pb_logs.extend(sl.log_records)
    # Both processors export in emit order, so pb_logs lines up with `expected`.
    logs = []
    for rec, (body, extra) in zip(pb_logs, expected):
        sent = attrs(rec.attributes)
        if rec.body.string_value != body or any(sent.get(k) != v for k, v in extra.items()):
            print(f"unexpected record {rec.body.string_value!r} {sent}", file=sys.stderr)
            ok = False
        logs.append({
            "body": rec.body.string_value,
            "severity_text": rec.severity_text,
            "severity_number": int(rec.severity_number),
            "trace_id": rec.trace_id.hex() or None,
            "span_id": rec.span_id.hex() or None,
            "time_unix_nano": rec.time_unix_nano,
            "attributes": {k: sent[k] for k in extra},
            "attribute_keys": sorted(sent),
        })
    summary = {
        "run_id": args.run_id,
        "service": args.service,
        "encoding": args.encoding,
        "resource": res_attrs,
        "scope": scope,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "logs": logs,
        "requests": session.summary(),
    }
    print(json.dumps(summary))
    sys.stdout.flush()
    if not ok:
        print(f"export failed: results={exporter.results} records={len(exporter.items)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
