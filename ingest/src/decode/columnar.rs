//! The columnar path: JSON batches (`POST /1/batch`) and NDJSON (`POST /api/v1/ingest`)
//! parsed into a reused simd-json tape per thread and pushed straight into Arrow columns
//! ([`ColumnarBatch`]), without building `Event`s.

use std::cell::RefCell;

use eventide_model::columnar::tape_scalar;
use eventide_model::event::{parse_samplerate, parse_time_value};
use eventide_model::{ColumnarBatch, EventError, Limits};
use simd_json::tape::{Tape, Value as TapeValue};

use super::json::non_finite_to_null;
use super::{Defaults, over_budget};
use crate::error::ApiError;

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
/// tokens is parsed again with them as `null`, as [`parse_json`](super::json::parse_json) does.
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
/// ([`batch_item`](super::batch_item)).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::batch_item;
    use crate::decode::tests::{column, d, new_batch};
    use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};

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
}
