//! Decoders: request bodies → events, one result per item, in request order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use eventide_model::event::{parse_samplerate, parse_time_value};
use eventide_model::{Event, Limits, flatten_object};
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

/// `POST /1/batch`: a JSON array of batch items.
pub fn json_batch(body: &[u8], d: &Defaults, limits: &Limits) -> Result<Vec<Item>, ApiError> {
    let v = parse_json(body, limits).map_err(ApiError::BadRequest)?;
    let BorrowedValue::Array(items) = v else {
        return Err(ApiError::BadRequest(
            "batch body must be a json array of events".into(),
        ));
    };
    Ok(items.iter().map(|i| batch_item(i, d, limits)).collect())
}

/// `POST /1/events`: one JSON object.
pub fn json_event(body: &[u8], d: &Defaults, limits: &Limits) -> Result<Event, ApiError> {
    let v = parse_json(body, limits).map_err(ApiError::BadRequest)?;
    flatten_object(&v, d.time_us, d.receive_us, d.samplerate, limits)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `POST /api/v1/ingest`: NDJSON. Returns `(line number, item)` for every non-blank line.
pub fn ndjson(body: &[u8], d: &Defaults, limits: &Limits) -> Vec<(usize, Item)> {
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = parse_json(line, limits).and_then(|v| {
            flatten_object(&v, d.time_us, d.receive_us, d.samplerate, limits)
                .map_err(|e| e.to_string())
        });
        out.push((i + 1, item));
    }
    out
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
        }
    }

    #[test]
    fn batch_items_succeed_and_fail_alone() {
        let body = br#"[{"data":{"a":1},"time":"2023-11-14T22:13:20Z","samplerate":10},
            {"nodata":1}, 7, {"data":{"b":"x"},"time":"bogus"}, {"data":{"c":true}}]"#;
        let items = json_batch(body, &d(), &Limits::default()).unwrap();
        assert_eq!(items.len(), 5);
        let e = items[0].as_ref().unwrap();
        assert_eq!((e.timestamp_us, e.samplerate), (1_700_000_000_000_000, 10));
        assert_eq!(
            items[1].as_ref().unwrap_err(),
            "batch item has no data field"
        );
        assert!(items[2].is_err());
        assert!(items[3].as_ref().unwrap_err().contains("bogus"));
        assert_eq!(items[4].as_ref().unwrap().timestamp_us, 5);
        assert!(matches!(
            json_batch(b"{\"a\":1}", &d(), &Limits::default()),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            json_batch(b"[{\"data\":", &d(), &Limits::default()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn python_non_finite_numbers_are_dropped() {
        let body = br#"[{"data":{"a":NaN,"b":Infinity,"c":-Infinity,"s":"NaN Infinity","n":1.5},"time":"2026-11-22T20:00:00Z","samplerate":1}]"#;
        let items = json_batch(body, &d(), &Limits::default()).unwrap();
        let e = items[0].as_ref().unwrap();
        assert_eq!(
            e.fields,
            vec![
                ("n".into(), Value::Float(1.5)),
                ("s".into(), Value::Str("NaN Infinity".into()))
            ]
        );
        assert_eq!(
            non_finite_to_null(br#"{"x":"NaN"}"#),
            None,
            "strings are left alone"
        );
        assert!(json_batch(b"[{\"data\": Nope}]", &d(), &Limits::default()).is_err());
    }

    #[test]
    fn ndjson_lines() {
        let body = b"{\"a\":1}\n\nnot json\n{\"b\":2}\r\n\xff\xfe\n";
        let items = ndjson(body, &d(), &Limits::default());
        let lines: Vec<usize> = items.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 3, 4, 5]);
        assert!(items[0].1.is_ok() && items[2].1.is_ok());
        assert!(
            items[1]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("malformed json")
        );
        assert!(items[3].1.is_err(), "invalid utf-8 is refused");
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
