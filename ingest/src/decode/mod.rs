//! Decoders: request bodies → events, one result per item, in request order.
//!
//! This module holds what every decoder shares: the envelope defaults of a request, its
//! decoded-size budget, and the items and per-dataset groups decoders return.
//!
//! # Layout
//! - `json`: JSON values → events: single events (`POST /1/events`), Honeycomb batch items,
//!   and the `NaN`/`Infinity` fallback for Python's JSON.
//! - `columnar`: JSON batches and NDJSON, straight from a reused simd-json tape into Arrow
//!   columns ([`ColumnarBatch`](eventide_model::ColumnarBatch)).
//! - `msgpack`: msgpack batches.
//! - `udp`: UDP datagrams (JSON lines that name their datasets).

mod columnar;
mod json;
mod msgpack;
mod udp;

use std::collections::BTreeMap;

use eventide_model::{Event, Limits};

use crate::error::ApiError;

pub use columnar::{json_batch_into, ndjson_into};
pub use json::{batch_item, json_event, non_finite_to_null};
pub use msgpack::msgpack_batch;
pub use udp::udp_lines;

/// Envelope defaults from request headers.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// `X-Honeycomb-Event-Time`, µs.
    pub time_us: Option<i64>,
    /// `X-Honeycomb-Samplerate`.
    pub samplerate: i64,
    /// When the request arrived, µs.
    pub receive_us: i64,
    /// What the request's events may take decoded ([`eventide_model::budget`]); set once the
    /// body is decompressed.
    pub decoded_budget: usize,
}

impl Defaults {
    /// These defaults for a request whose decompressed body has `body` bytes.
    pub fn for_body(mut self, body: usize, limits: &Limits) -> Self {
        self.decoded_budget = limits.decoded_budget(body);
        self
    }
}

/// The 413 of a request whose events decode to more than its budget.
pub fn over_budget(limit: usize, body: usize, limits: &Limits, hint: &'static str) -> ApiError {
    ApiError::TooLarge(
        eventide_model::budget::BudgetExceeded {
            limit,
            body,
            ratio: limits.max_decoded_ratio,
            floor: limits.min_decoded_bytes,
            hint,
        }
        .to_string(),
    )
}

/// Refuses `items` whole when their events take more than `d`'s budget.
pub fn check_budget(
    items: &[Item],
    body: usize,
    d: &Defaults,
    limits: &Limits,
) -> Result<(), ApiError> {
    let used: usize = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .map(eventide_model::budget::event_cost)
        .sum();
    if used > d.decoded_budget {
        return Err(over_budget(d.decoded_budget, body, limits, ""));
    }
    Ok(())
}

/// One decoded item: an event or why it was refused.
pub type Item = Result<Event, String>;

/// Events of one dataset decoded from a request that carries several datasets (OTLP, UDP).
/// `primary[i]` says whether item `i` counts on its own (a span or log record, a UDP line)
/// rather than being derived from one (a span event or link).
#[derive(Debug, Default)]
pub struct Group {
    pub items: Vec<Item>,
    pub primary: Vec<bool>,
}

/// Decoded events by dataset.
pub type Groups = BTreeMap<String, Group>;

impl Group {
    pub fn push(&mut self, item: Item, primary: bool) {
        self.items.push(item);
        self.primary.push(primary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use eventide_model::{ColumnarBatch, Value};

    pub(super) fn d() -> Defaults {
        Defaults {
            time_us: None,
            samplerate: 1,
            receive_us: 5,
            decoded_budget: usize::MAX,
        }
    }

    pub(super) fn new_batch() -> ColumnarBatch {
        ColumnarBatch::new(eventide_model::DatasetSchema::new(), 10_000, 8)
    }

    pub(super) fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_any()
            .downcast_ref::<T>()
            .unwrap()
    }

    /// Found by the `honeycomb_json_batch` fuzz target: a key repeated inside `data` counts
    /// once, with its last value, on every path (JSON batch, NDJSON, single event, msgpack);
    /// an earlier occurrence is not checked against the limits.
    #[test]
    fn a_key_repeated_inside_data_counts_once_with_its_last_value() {
        let limits = Limits {
            max_string_bytes: 8,
            ..Limits::default()
        };
        let doc = r#"{"k":"far too long","n":{"a":1},"k":"ok","n":null,"m":2}"#;
        let want = vec![
            ("k".to_owned(), Value::Str("ok".into())),
            ("m".to_owned(), Value::Int(2)),
        ];
        let strings = |b: &RecordBatch, name: &str| -> Vec<String> {
            let a = column::<StringArray>(b, name);
            (0..a.len()).map(|i| a.value(i).to_owned()).collect()
        };

        let mut b = new_batch();
        let body = format!("[{{\"data\":{doc}}}]");
        let out = json_batch_into(body.as_bytes(), &d(), &limits, &mut b).unwrap();
        assert_eq!(out, vec![None]);
        let batch = b.finish().unwrap().remove(0);
        assert_eq!(strings(&batch, "k"), ["ok"]);
        assert!(batch.column_by_name("n.a").is_none());

        let mut b = new_batch();
        let out = ndjson_into(doc.as_bytes(), &d(), &limits, &mut b).unwrap();
        assert_eq!(out, vec![(1, None)]);
        assert_eq!(strings(&b.finish().unwrap().remove(0), "k"), ["ok"]);

        let e = json_event(doc.as_bytes(), &d(), &limits).unwrap();
        assert_eq!(e.fields, want);

        let data = rmpv::Value::Map(vec![
            ("k".into(), "far too long".into()),
            ("n".into(), rmpv::Value::Map(vec![("a".into(), 1.into())])),
            ("k".into(), "ok".into()),
            ("n".into(), rmpv::Value::Nil),
            ("m".into(), 2.into()),
        ]);
        let item = rmpv::Value::Map(vec![("data".into(), data)]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &rmpv::Value::Array(vec![item])).unwrap();
        let items = msgpack_batch(&buf, &d(), &limits).unwrap();
        assert_eq!(items[0].as_ref().map(|e| &e.fields), Ok(&want));
    }
}
