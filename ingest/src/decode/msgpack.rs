//! Msgpack batches (`POST /1/batch` with `Content-Type: application/msgpack`): msgpack is
//! converted to the JSON value model, then each item decodes as a JSON batch item does.

use std::borrow::Cow;

use eventide_model::Limits;
use simd_json::{BorrowedValue, StaticNode};

use super::json::batch_item;
use super::{Defaults, Item};
use crate::error::ApiError;

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
    use crate::decode::tests::d;
    use eventide_model::Value;

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
