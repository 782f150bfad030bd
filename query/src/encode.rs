//! Arrow results → JSON: numbers as numbers, booleans as booleans, timestamps as RFC3339 UTC
//! strings with microseconds, missing values as `null`.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Number, Value as Json};

/// A short, stable type name for a result column.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "bool".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "int64".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "uint64".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "float64".into(),
        DataType::Decimal128(..) | DataType::Decimal256(..) => "decimal".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Null => "null".into(),
        other => other.to_string().to_lowercase(),
    }
}

pub(crate) fn float(f: f64) -> Json {
    Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null)
}

/// Encodes one cell.
pub fn cell(array: &ArrayRef, row: usize) -> Json {
    if array.is_null(row) {
        return Json::Null;
    }
    match array.data_type() {
        DataType::Boolean => Json::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Json::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Json::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Json::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Json::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Json::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Json::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Json::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Json::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Json::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Json::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Json::String(array.as_string_view().value(row).to_owned()),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => {
                    array
                        .as_primitive::<arrow::datatypes::TimestampSecondType>()
                        .value(row)
                        * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array
                        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                        .value(row)
                        * 1_000
                }
                TimeUnit::Microsecond => array
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(row),
                TimeUnit::Nanosecond => array
                    .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1_000),
            };
            Json::String(eventide_model::time::format_micros(v))
        }
        // Whole decimals (exact integer sums) as integers where JSON's integers hold them.
        DataType::Decimal128(_, 0) => {
            let v = array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(row);
            match (i64::try_from(v), u64::try_from(v)) {
                (Ok(i), _) => Json::from(i),
                (_, Ok(u)) => Json::from(u),
                _ => float(v as f64),
            }
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            match arrow::compute::cast(&array.slice(row, 1), &DataType::Float64) {
                Ok(a) => float(a.as_primitive::<Float64Type>().value(0)),
                Err(_) => display(array, row),
            }
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            Json::Array((0..list.len()).map(|i| cell(&list, i)).collect())
        }
        _ => display(array, row),
    }
}

fn display(array: &ArrayRef, row: usize) -> Json {
    match ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()) {
        Ok(f) => Json::String(f.value(row).to_string()),
        Err(_) => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn encodes_cells() {
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_001), None])
                .with_timezone("UTC"),
        );
        assert_eq!(
            cell(&ts, 0),
            Json::String("2023-11-14T22:13:20.000001Z".into())
        );
        assert_eq!(cell(&ts, 1), Json::Null);
        let f: ArrayRef = Arc::new(Float64Array::from(vec![1.5, f64::NAN]));
        assert_eq!(cell(&f, 0), serde_json::json!(1.5));
        assert_eq!(cell(&f, 1), Json::Null);
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert_eq!(cell(&s, 0), serde_json::json!("a"));
        assert_eq!(type_name(ts.data_type()), "timestamp");
    }
}
