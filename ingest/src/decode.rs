//! Decoders: request bodies → events, one result per item, in request order.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;

use eventide_model::columnar::tape_scalar;
use eventide_model::event::{parse_samplerate, parse_time_value};
use eventide_model::{ColumnarBatch, Event, EventError, Limits, flatten_object};
use simd_json::tape::{Tape, Value as TapeValue};
use simd_json::{BorrowedValue, StaticNode};

use crate::body::json_too_deep;
use crate::error::ApiError;

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

fn parse_json(bytes: &[u8], limits: &Limits) -> Result<BorrowedValue<'static>, String> {
    if json_too_deep(bytes, limits.max_json_depth) {
        return Err(format!(
            "json nests deeper than {} levels",
            limits.max_json_depth
        ));
    }
    let mut buf = bytes.to_vec();
    match simd_json::to_borrowed_value(&mut buf) {
        Ok(v) => Ok(v.into_static()),
        Err(e) => {
            // Python's json.dumps (libhoney-py) writes NaN and ±Infinity, which JSON lacks.
            // Only a body that fails to parse pays for this second look.
            let Some(mut fixed) = non_finite_to_null(bytes) else {
                return Err(format!("malformed json: {e}"));
            };
            simd_json::to_borrowed_value(&mut fixed)
                .map(|v| v.into_static())
                .map_err(|e| format!("malformed json: {e}"))
        }
    }
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` (outside strings) with `null`,
/// so the field is dropped like any non-finite number. `None` when there are none.
pub fn non_finite_to_null(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let rest = &bytes[i..];
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.extend_from_slice(b"null");
            i += t.len();
            changed = true;
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

fn get<'a>(obj: &'a BorrowedValue<'static>, key: &str) -> Option<&'a BorrowedValue<'static>> {
    match obj {
        BorrowedValue::Object(o) => o.get(key),
        _ => None,
    }
}

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

/// UDP datagrams: one JSON object per line, `{"dataset": "...", "data": {...}, "time"?: ...,
/// "samplerate"?: N}`. Returns the events by dataset and the errors of lines that named no
/// valid dataset or were not JSON objects.
pub fn udp_lines(chunk: &[u8], receive_us: i64, limits: &Limits) -> (Groups, Vec<String>) {
    let d = Defaults {
        time_us: None,
        samplerate: 1,
        receive_us,
        decoded_budget: limits.decoded_budget(chunk.len()),
    };
    let mut groups = Groups::new();
    let mut bad = Vec::new();
    for line in chunk.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = match parse_json(line, limits) {
            Ok(v) => v,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        let dataset = match get(&v, "dataset") {
            Some(BorrowedValue::String(s)) => match eventide_model::DatasetName::new(s) {
                Ok(_) => s.to_string(),
                Err(e) => {
                    bad.push(e.to_string());
                    continue;
                }
            },
            _ => {
                bad.push("udp line has no \"dataset\" string".into());
                continue;
            }
        };
        groups
            .entry(dataset)
            .or_default()
            .push(batch_item(&v, &d, limits), true);
    }
    let used: usize = groups
        .values()
        .flat_map(|g| g.items.iter().filter_map(|i| i.as_ref().ok()))
        .map(eventide_model::budget::event_cost)
        .sum();
    if used > d.decoded_budget {
        // Refused whole, as an HTTP request would be.
        let why = over_budget(d.decoded_budget, chunk.len(), limits, "").to_string();
        let lines: usize = groups.values().map(|g| g.items.len()).sum();
        bad.extend(std::iter::repeat_n(why, lines));
        groups.clear();
    }
    (groups, bad)
}

/// A Honeycomb batch item `{"data": {...}, "time"?: ..., "samplerate"?: N}`.
pub fn batch_item(item: &BorrowedValue<'static>, d: &Defaults, limits: &Limits) -> Item {
    let BorrowedValue::Object(_) = item else {
        return Err("batch item must be an object with a data field".into());
    };
    let data = get(item, "data").ok_or("batch item has no data field")?;
    let time = match get(item, "time") {
        Some(t) => parse_time_value(t).map_err(|e| e.to_string())?,
        None => None,
    };
    let samplerate = match get(item, "samplerate") {
        Some(s) => parse_samplerate(s).map_err(|e| e.to_string())?,
        None => d.samplerate,
    };
    flatten_object(data, time.or(d.time_us), d.receive_us, samplerate, limits)
        .map_err(|e| e.to_string())
}

/// `POST /1/events`: one JSON object.
pub fn json_event(body: &[u8], d: &Defaults, limits: &Limits) -> Result<Event, ApiError> {
    let v = parse_json(body, limits).map_err(ApiError::BadRequest)?;
    flatten_object(&v, d.time_us, d.receive_us, d.samplerate, limits)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// One thread's reusable parser state: simd-json's buffers, the tape, and the padded copy
/// of the document being parsed (simd-json unescapes strings in place).
struct Parser {
    buffers: simd_json::Buffers,
    /// The nesting limit `buffers` enforce (simd-json checks it while it builds the tape).
    max_depth: usize,
    tape: Option<Tape<'static>>,
    input: Vec<u8>,
}

thread_local! {
    /// This thread's parser, reused from one request to the next: no allocation (and no
    /// fresh pages to fault in) per request once warm.
    static PARSER: RefCell<Parser> = RefCell::new(Parser {
        buffers: simd_json::Buffers::default(),
        max_depth: 0,
        tape: Some(Tape::null()),
        input: Vec::new(),
    });
}

/// Buffers above this size are not kept between requests.
const KEEP_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// Parses a copy of `doc` into a tape with this thread's reused buffers and calls `f` with
/// the document's root. Objects and arrays nested deeper than `max_depth` fail the parse
/// (`DepthLimitExceeded`). `f` must not parse JSON itself.
fn with_tape<R>(
    doc: &[u8],
    max_depth: usize,
    f: impl FnOnce(TapeValue<'_, '_>) -> R,
) -> Result<R, simd_json::Error> {
    PARSER.with(|p| {
        let mut p = p.borrow_mut();
        if p.max_depth != max_depth {
            p.buffers = simd_json::Buffers::with_max_depth(0, max_depth);
            p.max_depth = max_depth;
        }
        let Parser {
            buffers,
            tape: slot,
            input,
            ..
        } = &mut *p;
        input.clear();
        input.reserve(doc.len() + simd_json::INPUT_PADDING);
        input.extend_from_slice(doc);
        input.resize(doc.len() + simd_json::INPUT_PADDING, 0);
        let mut tape = slot.take().unwrap_or_else(Tape::null).reset();
        let r = simd_json::fill_tape_padded(input, doc.len(), buffers, &mut tape)
            .map(|()| f(tape.as_value()));
        *slot = Some(tape.reset());
        if input.capacity() > KEEP_INPUT_BYTES {
            *input = Vec::new();
        }
        r
    })
}

/// Parses one JSON document with [`with_tape`] (which enforces the depth limit while it
/// parses, instead of a separate pass over the bytes); a document with `NaN`/`Infinity`
/// tokens is parsed again with them as `null`, as [`parse_json`] does.
fn parse_tape<R>(
    bytes: &[u8],
    limits: &Limits,
    f: impl FnOnce(TapeValue<'_, '_>) -> R,
) -> Result<R, String> {
    let too_deep = || format!("json nests deeper than {} levels", limits.max_json_depth);
    // `f` runs at most once: keep it in an Option so the retry can take it.
    let mut f = Some(f);
    let mut call = |v: TapeValue<'_, '_>| f.take().map(|f| f(v));
    match with_tape(bytes, limits.max_json_depth, &mut call) {
        Ok(r) => r.ok_or_else(|| "json decoder ran twice".to_string()),
        Err(e) if *e.error() == simd_json::ErrorType::DepthLimitExceeded => Err(too_deep()),
        Err(e) => {
            let Some(fixed) = non_finite_to_null(bytes) else {
                return Err(format!("malformed json: {e}"));
            };
            with_tape(&fixed, limits.max_json_depth, &mut call)
                .map_err(|e| match e.error() {
                    simd_json::ErrorType::DepthLimitExceeded => too_deep(),
                    _ => format!("malformed json: {e}"),
                })?
                .ok_or_else(|| "json decoder ran twice".to_string())
        }
    }
}

/// A Honeycomb batch item read from a tape, added to `batch`.
fn batch_item_into(
    item: TapeValue<'_, '_>,
    d: &Defaults,
    limits: &Limits,
    batch: &mut ColumnarBatch,
) -> Result<(), String> {
    let Some(obj) = item.as_object() else {
        return Err("batch item must be an object with a data field".into());
    };
    // A key given twice counts once, with its last value, as in the event path's map (found
    // by the `honeycomb_json_batch` fuzz target: the two paths disagreed on `"time"` twice).
    let last = |key: &str| obj.iter().filter(|(k, _)| *k == key).last().map(|(_, v)| v);
    let data = last("data").ok_or("batch item has no data field")?;
    let time = match last("time") {
        Some(t) => {
            let t = tape_scalar(t).map_err(|json| EventError::BadTime(json).to_string())?;
            parse_time_value(&t).map_err(|e| e.to_string())?
        }
        None => None,
    };
    let samplerate = match last("samplerate") {
        Some(s) => {
            let s = tape_scalar(s).map_err(|json| EventError::BadSampleRate(json).to_string())?;
            parse_samplerate(&s).map_err(|e| e.to_string())?
        }
        None => d.samplerate,
    };
    batch.push_json(data, time.or(d.time_us), d.receive_us, samplerate, limits)
}

/// `POST /1/batch` (JSON) straight into Arrow columns: per item `None` (added to `batch`) or
/// why it was refused. Same rules and messages as the event path
/// ([`batch_item`]).
pub fn json_batch_into(
    body: &[u8],
    d: &Defaults,
    limits: &Limits,
    batch: &mut ColumnarBatch,
) -> Result<Vec<Option<String>>, ApiError> {
    parse_tape(body, limits, |v| {
        let Some(items) = v.as_array() else {
            return Err(ApiError::BadRequest(
                "batch body must be a json array of events".into(),
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            out.push(batch_item_into(item, d, limits, batch).err());
            if batch.decoded_bytes() > d.decoded_budget {
                return Err(over_budget(d.decoded_budget, body.len(), limits, ""));
            }
        }
        Ok(out)
    })
    .map_err(ApiError::BadRequest)?
}

/// `POST /api/v1/ingest` (NDJSON) straight into Arrow columns: `(line number, None or why it
/// was refused)` for every non-blank line. Same rules and messages as the event path.
pub fn ndjson_into(
    body: &[u8],
    d: &Defaults,
    limits: &Limits,
    batch: &mut ColumnarBatch,
) -> Result<Vec<(usize, Option<String>)>, ApiError> {
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let r = parse_tape(line, limits, |v| {
            batch.push_json(v, d.time_us, d.receive_us, d.samplerate, limits)
        })
        .and_then(|r| r);
        out.push((i + 1, r.err()));
        if batch.decoded_bytes() > d.decoded_budget {
            return Err(over_budget(d.decoded_budget, body.len(), limits, ""));
        }
    }
    Ok(out)
}

/// `POST /1/batch` with `Content-Type: application/msgpack`.
pub fn msgpack_batch(body: &[u8], d: &Defaults, limits: &Limits) -> Result<Vec<Item>, ApiError> {
    let mut rd = body;
    let v = rmpv::decode::read_value(&mut rd)
        .map_err(|e| ApiError::BadRequest(format!("malformed msgpack: {e}")))?;
    let rmpv::Value::Array(items) = v else {
        return Err(ApiError::BadRequest(
            "batch body must be a msgpack array of events".into(),
        ));
    };
    Ok(items
        .iter()
        .map(|i| {
            let v = msgpack_to_json(i, 0, limits.max_json_depth)?;
            batch_item(&v, d, limits)
        })
        .collect())
}

/// Converts msgpack to the JSON value model. The timestamp extension (type −1) becomes an
/// RFC3339 string; binary becomes lossy UTF-8 text.
fn msgpack_to_json(
    v: &rmpv::Value,
    depth: usize,
    max: usize,
) -> Result<BorrowedValue<'static>, String> {
    if depth > max {
        return Err(format!("msgpack nests deeper than {max} levels"));
    }
    Ok(match v {
        rmpv::Value::Nil => BorrowedValue::Static(StaticNode::Null),
        rmpv::Value::Boolean(b) => BorrowedValue::Static(StaticNode::Bool(*b)),
        rmpv::Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(x), _) => BorrowedValue::Static(StaticNode::I64(x)),
            (None, Some(x)) => BorrowedValue::Static(StaticNode::U64(x)),
            _ => BorrowedValue::Static(StaticNode::Null),
        },
        rmpv::Value::F32(f) => BorrowedValue::Static(StaticNode::F64(f64::from(*f))),
        rmpv::Value::F64(f) => BorrowedValue::Static(StaticNode::F64(*f)),
        rmpv::Value::String(s) => BorrowedValue::String(Cow::Owned(
            s.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned()),
        )),
        rmpv::Value::Binary(b) => {
            BorrowedValue::String(Cow::Owned(String::from_utf8_lossy(b).into_owned()))
        }
        rmpv::Value::Array(a) => BorrowedValue::Array(Box::new(
            a.iter()
                .map(|x| msgpack_to_json(x, depth + 1, max))
                .collect::<Result<_, _>>()?,
        )),
        rmpv::Value::Map(m) => {
            let mut obj =
                simd_json::borrowed::Object::with_capacity_and_hasher(m.len(), Default::default());
            for (k, v) in m {
                let key = match k {
                    rmpv::Value::String(s) => s
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned()),
                    other => other.to_string(),
                };
                obj.insert(Cow::Owned(key), msgpack_to_json(v, depth + 1, max)?);
            }
            BorrowedValue::Object(Box::new(obj))
        }
        rmpv::Value::Ext(-1, data) => match msgpack_timestamp(data) {
            Some(us) => BorrowedValue::String(Cow::Owned(eventide_model::time::format_micros(us))),
            None => return Err("invalid msgpack timestamp extension".into()),
        },
        rmpv::Value::Ext(..) => BorrowedValue::Static(StaticNode::Null),
    })
}

/// Decodes the msgpack timestamp extension (32, 64 or 96 bit) to Unix microseconds.
fn msgpack_timestamp(data: &[u8]) -> Option<i64> {
    match data.len() {
        4 => Some(i64::from(u32::from_be_bytes(data.try_into().ok()?)) * 1_000_000),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            let nanos = (v >> 34) as i64;
            let secs = (v & 0x3_ffff_ffff) as i64;
            Some(secs * 1_000_000 + nanos / 1_000)
        }
        12 => {
            let nanos = i64::from(u32::from_be_bytes(data[0..4].try_into().ok()?));
            let secs = i64::from_be_bytes(data[4..12].try_into().ok()?);
            secs.checked_mul(1_000_000)?.checked_add(nanos / 1_000)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventide_model::Value;

    fn d() -> Defaults {
        Defaults {
            time_us: None,
            samplerate: 1,
            receive_us: 5,
            decoded_budget: usize::MAX,
        }
    }

    fn new_batch() -> ColumnarBatch {
        ColumnarBatch::new(eventide_model::DatasetSchema::new(), 10_000, 8)
    }

    fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_any()
            .downcast_ref::<T>()
            .unwrap()
    }

    use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::record_batch::RecordBatch;

    /// Found by the `honeycomb_json_batch` fuzz target: a key given twice in a batch item
    /// counts with its last value on both paths.
    #[test]
    fn a_repeated_envelope_key_counts_with_its_last_value() {
        let body = br#"[{"data":{"a":1},"time":"garbage","time":"2026-11-23T10:00:00Z"},
                       {"data":{"a":1},"time":"2026-11-23T10:00:00Z","time":"garbage"}]"#;
        let mut b = new_batch();
        let out = json_batch_into(body, &d(), &Limits::default(), &mut b).unwrap();
        assert_eq!(out[0], None);
        assert!(
            out[1].as_deref().unwrap_or_default().contains("garbage"),
            "{out:?}"
        );
        let mut copy = body.to_vec();
        let v = simd_json::to_borrowed_value(&mut copy)
            .unwrap()
            .into_static();
        let items = simd_json::prelude::ValueAsArray::as_array(&v).unwrap();
        assert!(batch_item(&items[0], &d(), &Limits::default()).is_ok());
        assert!(batch_item(&items[1], &d(), &Limits::default()).is_err());
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

    #[test]
    fn batch_items_succeed_and_fail_alone() {
        let body = br#"[{"data":{"a":1},"time":"2023-11-14T22:13:20Z","samplerate":10},
            {"nodata":1}, 7, {"data":{"b":"x"},"time":"bogus"}, {"data":{"c":true}},
            {"data":{"a":2},"samplerate":[1]}]"#;
        let mut b = new_batch();
        let out = json_batch_into(body, &d(), &Limits::default(), &mut b).unwrap();
        assert_eq!(out.len(), 6);
        assert_eq!(out[0], None);
        assert_eq!(out[1].as_deref(), Some("batch item has no data field"));
        assert_eq!(
            out[2].as_deref(),
            Some("batch item must be an object with a data field")
        );
        assert!(out[3].as_deref().unwrap().contains("bogus"));
        assert_eq!(out[4], None);
        assert_eq!(
            out[5].as_deref(),
            Some("samplerate must be a positive integer, got [1]")
        );
        let batch = b.finish().unwrap().remove(0);
        assert_eq!(batch.num_rows(), 2);
        let ts = column::<TimestampMicrosecondArray>(&batch, "timestamp");
        assert_eq!((ts.value(0), ts.value(1)), (1_700_000_000_000_000, 5));
        let rates = column::<Int64Array>(&batch, "_samplerate");
        assert_eq!((rates.value(0), rates.value(1)), (10, 1));
        let a = column::<Int64Array>(&batch, "a");
        assert!(a.value(0) == 1 && a.is_null(1));
        for bad in [&b"{\"a\":1}"[..], b"[{\"data\":"] {
            assert!(matches!(
                json_batch_into(bad, &d(), &Limits::default(), &mut new_batch()),
                Err(ApiError::BadRequest(_))
            ));
        }
    }

    #[test]
    fn python_non_finite_numbers_are_dropped() {
        let body = br#"[{"data":{"a":NaN,"b":Infinity,"c":-Infinity,"s":"NaN Infinity","n":1.5},"time":"2026-11-22T20:00:00Z","samplerate":1}]"#;
        let mut b = new_batch();
        let out = json_batch_into(body, &d(), &Limits::default(), &mut b).unwrap();
        assert_eq!(out, vec![None]);
        let batch = b.finish().unwrap().remove(0);
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["timestamp", "_samplerate", "n", "s"]);
        assert_eq!(column::<Float64Array>(&batch, "n").value(0), 1.5);
        assert_eq!(column::<StringArray>(&batch, "s").value(0), "NaN Infinity");
        assert_eq!(
            non_finite_to_null(br#"{"x":"NaN"}"#),
            None,
            "strings are left alone"
        );
        assert!(
            json_batch_into(
                b"[{\"data\": Nope}]",
                &d(),
                &Limits::default(),
                &mut new_batch()
            )
            .is_err()
        );
    }

    #[test]
    fn nesting_limit_is_enforced_while_parsing() {
        let limits = Limits {
            max_json_depth: 3,
            ..Limits::default()
        };
        // [ {data: {a: …}} ]: three levels pass, a fourth does not.
        let ok = br#"[{"data":{"a":1}}]"#;
        let deep = br#"[{"data":{"a":[1]}}]"#;
        assert_eq!(
            json_batch_into(ok, &d(), &limits, &mut new_batch()).unwrap(),
            vec![None]
        );
        assert!(matches!(
            json_batch_into(deep, &d(), &limits, &mut new_batch()),
            Err(ApiError::BadRequest(m)) if m == "json nests deeper than 3 levels"
        ));
        // Brackets inside strings do not count.
        let text = br#"[{"data":{"a":"[[[[["}}]"#;
        assert_eq!(
            json_batch_into(text, &d(), &limits, &mut new_batch()).unwrap(),
            vec![None]
        );
        let mut b = new_batch();
        let lines = ndjson_into(
            b"{\"a\":{\"b\":{\"c\":[1]}}}\n{\"a\":1}\n",
            &d(),
            &limits,
            &mut b,
        )
        .unwrap();
        assert_eq!(
            lines[0].1.as_deref(),
            Some("json nests deeper than 3 levels")
        );
        assert_eq!(lines[1].1, None);
    }

    #[test]
    fn ndjson_lines() {
        let body = b"{\"a\":1}\n\nnot json\n{\"b\":2}\r\n\xff\xfe\n{\"a\":\"x\"}\n";
        let mut b = new_batch();
        let items = ndjson_into(body, &d(), &Limits::default(), &mut b).unwrap();
        let lines: Vec<usize> = items.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 3, 4, 5, 6]);
        assert!(items[0].1.is_none() && items[2].1.is_none());
        assert!(items[1].1.as_deref().unwrap().starts_with("malformed json"));
        assert!(items[3].1.is_some(), "invalid utf-8 is refused");
        assert_eq!(
            items[4].1.as_deref(),
            Some("field \"a\" is string but the column is int64")
        );
        assert_eq!(b.finish().unwrap().remove(0).num_rows(), 2);
    }

    #[test]
    fn msgpack_with_timestamp_extension() {
        // [{"data": {"a": 1, "s": "x"}, "time": Timestamp(1700000000, 500000000 ns), "samplerate": 3}]
        let ts_ext = {
            let v: u64 = (500_000_000u64 << 34) | 1_700_000_000u64;
            rmpv::Value::Ext(-1, v.to_be_bytes().to_vec())
        };
        let item = rmpv::Value::Map(vec![
            (
                "data".into(),
                rmpv::Value::Map(vec![("a".into(), 1.into()), ("s".into(), "x".into())]),
            ),
            ("time".into(), ts_ext),
            ("samplerate".into(), 3.into()),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &rmpv::Value::Array(vec![item])).unwrap();
        let items = msgpack_batch(&buf, &d(), &Limits::default()).unwrap();
        let e = items[0].as_ref().unwrap();
        assert_eq!(e.timestamp_us, 1_700_000_000_500_000);
        assert_eq!(e.samplerate, 3);
        assert_eq!(
            e.fields,
            vec![
                ("a".into(), Value::Int(1)),
                ("s".into(), Value::Str("x".into()))
            ]
        );
        assert!(msgpack_batch(b"\xc1", &d(), &Limits::default()).is_err());
    }
}
