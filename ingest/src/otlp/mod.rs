//! OTLP/HTTP receivers: `POST /v1/traces` and `POST /v1/logs`, protobuf or JSON.
//!
//! Spans and log records become wide events the way Honeycomb maps them, so queries written
//! for Honeycomb work unchanged:
//! - dataset = the resource's `service.name` (`unknown_service` when blank), or the
//!   `X-Honeycomb-Dataset` header when a client sets it;
//! - a span → one event at its start time with `trace.trace_id`, `trace.span_id`,
//!   `trace.parent_id`, `name`, `span.kind`, `duration_ms`, `status_code`, `status_message`,
//!   `error`, `span.num_events`, `span.num_links`, `library.name`/`library.version`, and the
//!   resource, scope and span attributes; the first `exception` span event's attributes are
//!   copied onto the span;
//! - each span event and each link → its own event (`meta.annotation_type` `span_event` /
//!   `link`, `trace.parent_id` = the span, `parent_name` = the span's name);
//! - a log record → one event with `body`, `severity_text`, `severity_number`, `severity`,
//!   `trace.trace_id`, `trace.span_id`, `event_name` and the attributes;
//! - every event has `meta.signal_type` (`trace` or `log`);
//! - a `sampleRate` (or `SampleRate`) attribute becomes `_samplerate` and is not stored as a
//!   field.
//!
//! Attribute values map to columns: strings, bools, ints and doubles as themselves; bytes as
//! base64 text; arrays as JSON text; key/value lists flattened to dotted names like nested
//! JSON objects. Ids are lowercase hex. OTLP/JSON ids should be hex; base64 ids (what
//! protobuf's own JSON mapping writes) are accepted as a fallback, as are enum names
//! (`"SPAN_KIND_SERVER"`) where the spec wants numbers.
//!
//! # Layout
//! - `request`: the two encodings ([`Encoding`]) and the decoding of an export request from
//!   protobuf or (lenient) JSON.
//! - `traces` ([`decode_traces`]) and `logs` ([`decode_logs`]): spans and log records →
//!   events grouped by dataset.
//! - `resource`: a resource's dataset and the fields its resource and scope give every item.
//! - `attributes`: attribute values (`AnyValue`) → fields, ids, times, the sample rate.
//! - `budget`: what decoded items are charged against the request's decoded-size budget.
//! - `reply`: the export reply, with its partial success (what was refused, and why).
//! - `receiver`: the `POST /v1/traces` and `POST /v1/logs` handlers.

mod attributes;
mod budget;
#[cfg(test)]
mod fixtures;
mod logs;
mod receiver;
mod reply;
mod request;
mod resource;
mod traces;

pub use logs::decode_logs;
pub(crate) use receiver::{post_logs, post_traces};
pub use request::Encoding;
pub use traces::decode_traces;

/// Dataset of telemetry whose resource has no usable `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The OTLP signal a request carries.
#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Logs,
}
