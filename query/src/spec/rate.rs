//! RATE_SUM, RATE_AVG, RATE_MAX: per-bucket values turned into changes per second (see the
//! module docs of `spec`).

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::calculations::CheckedCalculation;
use super::results::series_group;

/// RATE_*: replaces the per-bucket values in the series rows (ordered by time) with their
/// change per second from the previous bucket, and sets each result group's change per
/// second from its first bucket to its last.
pub(super) fn apply_rate(
    calc: &CheckedCalculation,
    g: i64,
    rows: &mut [(String, Map<String, Json>)],
    results: &mut [(String, Map<String, Json>)],
) {
    let bucket_of = |obj: &Map<String, Json>| {
        obj.get("time")
            .and_then(Json::as_str)
            .and_then(eventide_model::time::parse_time_str)
    };
    // Per group: the previous bucket's (time, value), and the first and last valued buckets.
    let mut prev: HashMap<String, (i64, Option<f64>)> = HashMap::new();
    // (time, value) of the first and the last valued bucket.
    type Point = (i64, f64);
    let mut span: HashMap<String, (Point, Point)> = HashMap::new();
    for (key, obj) in rows.iter_mut() {
        let group = series_group(key).to_owned();
        let (Some(t), v) = (bucket_of(obj), obj.get(&calc.name).and_then(Json::as_f64)) else {
            continue;
        };
        let rate = match prev.get(&group) {
            Some((pt, Some(pv))) if *pt == t - g => v.map(|v| (v - pv) / (g as f64 / 1e6)),
            _ => None,
        };
        if let Some(v) = v {
            span.entry(group.clone())
                .and_modify(|s| s.1 = (t, v))
                .or_insert(((t, v), (t, v)));
        }
        prev.insert(group, (t, v));
        obj.insert(
            calc.name.clone(),
            rate.map_or(Json::Null, crate::encode::float),
        );
    }
    for (key, obj) in results.iter_mut() {
        let rate = span.get(key.as_str()).and_then(|((t0, v0), (t1, v1))| {
            (t1 > t0).then(|| (v1 - v0) / ((t1 - t0) as f64 / 1e6))
        });
        obj.insert(
            calc.name.clone(),
            rate.map_or(Json::Null, crate::encode::float),
        );
    }
}
