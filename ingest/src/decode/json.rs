//! JSON values → events: single events (`POST /1/events`) and Honeycomb batch items, parsed
//! into simd-json values, with the fallback that reads Python's `NaN`/`Infinity` as `null`.

use simd_json::BorrowedValue;

use eventide_model::event::{parse_samplerate, parse_time_value};
use eventide_model::{Event, Limits, flatten_object};

use super::{Defaults, Item};
use crate::body::json_too_deep;
use crate::error::ApiError;

pub(super) fn parse_json(bytes: &[u8], limits: &Limits) -> Result<BorrowedValue<'static>, String> {
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

pub(super) fn get<'a>(
    obj: &'a BorrowedValue<'static>,
    key: &str,
) -> Option<&'a BorrowedValue<'static>> {
    match obj {
        BorrowedValue::Object(o) => o.get(key),
        _ => None,
    }
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
