//! Golden tests of the query spec and SQL: every calculation, filter op, breakdown, having,
//! order and granularity of docs/API.md (`POST /api/v1/query/{dataset}`), over a fixture whose first half is in a Parquet
//! segment and second half in the hot tail. Expected values are computed by hand in the
//! comments next to them.

use std::sync::Arc;

use eventide_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Position};
use eventide_model::{DatasetSchema, Event, Value, encode_records, events_to_batches};
use eventide_query::{QueryEngine, QuerySpec};
use eventide_store::compact::TimeWindowPolicy;
use eventide_store::{Store, StoreConfig};
use serde_json::{Value as Json, json};

/// 2023-11-14T22:13:20Z
const T0: i64 = 1_700_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: QueryEngine,
}

fn event(t: i64, sr: i64, fields: Vec<(&str, Value)>) -> Event {
    let mut fields: Vec<(String, Value)> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Event {
        timestamp_us: (T0 + t) * 1_000_000,
        samplerate: sr,
        fields,
    }
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

/// The shop fixture:
///
/// | # | t   | service | endpoint | status | duration_ms | user | sr | flag  |
/// |---|-----|---------|----------|--------|-------------|------|----|-------|
/// | 1 | 0   | api     | /a       | 200    | 10          | u1   | 1  | true  |
/// | 2 | 10  | api     | /a       | 200    | 20          | u2   | 1  |       |
/// | 3 | 20  | api     | /b       | 500    | 30          | u1   | 2  |       |
/// | 4 | 70  | web     | /a       | 200    | 40          | u3   | 1  | false |
/// | 5 | 80  | web     | /b       | 404    | 50          | u4   | 5  |       |
/// | 6 | 130 | db      | /q       | 200    | 60          |      | 1  |       |
/// | 7 | 140 | api     | /b       | 200    |             | u5   | 1  |       |
/// | 8 | 150 | web     | /a       | 503    | 100         | u1   | 1  |       |
///
/// Events 1–4 are flushed to a Parquet segment; 5–8 stay in the hot tail.
fn shop() -> Vec<Vec<Event>> {
    let row = |t, svc, ep, status, dur: Option<f64>, user: Option<&str>, sr, flag: Option<bool>| {
        let mut f = vec![
            ("service.name", s(svc)),
            ("endpoint", s(ep)),
            ("status", Value::Int(status)),
        ];
        if let Some(d) = dur {
            f.push(("duration_ms", Value::Float(d)));
        }
        if let Some(u) = user {
            f.push(("user", s(u)));
        }
        if let Some(b) = flag {
            f.push(("flag", Value::Bool(b)));
        }
        event(t, sr, f)
    };
    vec![
        vec![
            row(0, "api", "/a", 200, Some(10.0), Some("u1"), 1, Some(true)),
            row(10, "api", "/a", 200, Some(20.0), Some("u2"), 1, None),
            row(20, "api", "/b", 500, Some(30.0), Some("u1"), 2, None),
            row(70, "web", "/a", 200, Some(40.0), Some("u3"), 1, Some(false)),
        ],
        vec![
            row(80, "web", "/b", 404, Some(50.0), Some("u4"), 5, None),
            row(130, "db", "/q", 200, Some(60.0), None, 1, None),
            row(140, "api", "/b", 200, None, Some("u5"), 1, None),
            row(150, "web", "/a", 503, Some(100.0), Some("u1"), 1, None),
        ],
    ]
}

/// The spans fixture, for CONCURRENCY and RATE_*:
///
/// | # | t (s) | service | duration_ms | in progress | x  |
/// |---|-------|---------|-------------|-------------|----|
/// | 1 | 0     | a       | 2500        | [0, 2.5)    | 10 |
/// | 2 | 1     | a       | 500         | [1, 1.5)    | 20 |
/// | 3 | 1     | a       | 3200        | [1, 4.2)    | 5  |
/// | 4 | 2     | b       | 0           | the instant 2 | 7 |
/// | 5 | 3     | b       | 1000        | [3, 4)      | 1  |
fn spans() -> Vec<Event> {
    [
        (0, "a", 2500.0, 10),
        (1, "a", 500.0, 20),
        (1, "a", 3200.0, 5),
        (2, "b", 0.0, 7),
        (3, "b", 1000.0, 1),
    ]
    .into_iter()
    .map(|(t, svc, dur, x)| {
        event(
            t,
            1,
            vec![
                ("service.name", s(svc)),
                ("duration_ms", Value::Float(dur)),
                ("x", Value::Int(x)),
            ],
        )
    })
    .collect()
}

/// 400 events a second apart for BubbleUp: the last 100 are build `b2` and slow (200 ms), the
/// first 300 build `b1` and fast (10 ms); `region` alternates eu/us and `cpu` is i % 10 in both.
fn bubble() -> Vec<Event> {
    (0..400)
        .map(|i| {
            let late = i >= 300;
            event(
                i,
                1,
                vec![
                    ("build_id", s(if late { "b2" } else { "b1" })),
                    ("duration_ms", Value::Float(if late { 200.0 } else { 10.0 })),
                    ("region", s(if i % 2 == 0 { "eu" } else { "us" })),
                    ("cpu", Value::Float((i % 10) as f64)),
                ],
            )
        })
        .collect()
}

/// 100,000 events with unique `user_id` and `trace_id`, and `value` = i.
fn high_cardinality() -> Vec<Event> {
    (0..100_000)
        .map(|i| {
            event(
                i % 3000,
                1,
                vec![
                    ("user_id", s(&format!("user-{i:05}"))),
                    ("trace_id", s(&format!("trace-{i:07}"))),
                    ("value", Value::Int(i)),
                ],
            )
        })
        .collect()
}

async fn append(
    log: &EmbeddedLog,
    schema: &mut DatasetSchema,
    ds: &str,
    mut events: Vec<Event>,
) -> Position {
    for e in &mut events {
        schema.admit(e, 10_000).unwrap();
    }
    let batches = events_to_batches(schema, &events).unwrap();
    let records = encode_records(&batches, 8 << 20).unwrap();
    let payloads = records
        .into_iter()
        .map(|(b, _)| eventide_eventlog::NewRecord::new(ds, b))
        .collect();
    log.append_all(payloads).await.unwrap().pop().unwrap()
}

/// The golden data. `compacted`: every append flushed to its own segment, then the store
/// compacted until no merge is due; otherwise the first half of `shop` in Parquet and the
/// second half hot.
async fn fixture(compacted: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let mut config = StoreConfig::new(dir.path());
    config.merge_policy = Some(Arc::new(TimeWindowPolicy {
        grace_us: 0,
        ..TimeWindowPolicy::default()
    }));
    // The test compacts explicitly.
    config.compaction_interval = std::time::Duration::from_secs(3600);
    let store = Store::open(config, log.clone() as Arc<dyn EventLog>)
        .await
        .unwrap();
    let mut spans_schema = DatasetSchema::new();
    let o = append(&log, &mut spans_schema, "spans", spans()).await;
    store.wait_applied(o).await;
    let mut bubble_schema = DatasetSchema::new();
    let o = append(&log, &mut bubble_schema, "bubble", bubble()).await;
    store.wait_applied(o).await;
    if compacted {
        store.flush_all().await.unwrap();
        let mut shop_schema = DatasetSchema::new();
        let mut hc_schema = DatasetSchema::new();
        for part in shop() {
            let o = append(&log, &mut shop_schema, "shop", part).await;
            store.wait_applied(o).await;
            store.flush_all().await.unwrap();
        }
        for chunk in high_cardinality().chunks(5_000) {
            let o = append(&log, &mut hc_schema, "hc", chunk.to_vec()).await;
            store.wait_applied(o).await;
            store.flush_all().await.unwrap();
        }
        let before = store.snapshot("hc").unwrap().segments.len();
        while store.compact_now().await.unwrap() > 0 {}
        let after = store.snapshot("hc").unwrap();
        assert!(
            after.segments.len() < before && after.hot.is_empty(),
            "compacted {before} segments into {}",
            after.segments.len()
        );
        assert!(after.segments.iter().all(|s| s.level > 0));
        return Fixture {
            _dir: dir,
            engine: QueryEngine::new(store).unwrap(),
        };
    }
    let mut shop_schema = DatasetSchema::new();
    let mut parts = shop().into_iter();
    let first = parts.next().unwrap();
    let o = append(&log, &mut shop_schema, "shop", first).await;
    let mut hc_schema = DatasetSchema::new();
    let events = high_cardinality();
    let mut last = o;
    for chunk in events.chunks(25_000) {
        last = append(&log, &mut hc_schema, "hc", chunk.to_vec()).await;
    }
    store.wait_applied(last).await;
    store.flush_all().await.unwrap();
    let o = append(&log, &mut shop_schema, "shop", parts.next().unwrap()).await;
    store.wait_applied(o).await;
    let snap = store.snapshot("shop").unwrap();
    assert_eq!(snap.segments.len(), 1, "first half in parquet");
    assert_eq!(
        snap.hot.iter().map(|b| b.num_rows()).sum::<usize>(),
        4,
        "second half hot"
    );
    Fixture {
        _dir: dir,
        engine: QueryEngine::new(store).unwrap(),
    }
}

fn near(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            // DataFusion's percentile_cont interpolation carries ~1e-6 relative error.
            (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0)
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| near(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| near(v, w)))
        }
        _ => a == b,
    }
}

fn assert_near(actual: &Json, expected: &Json, what: &str) {
    assert!(
        near(actual, expected),
        "{what}\n  actual:   {actual}\n  expected: {expected}"
    );
}

async fn spec(f: &Fixture, ds: &str, mut spec: Json) -> Json {
    if spec.get("start_time").is_none() && spec.get("end_time").is_none() {
        spec["start_time"] = json!(T0);
        spec["end_time"] = json!(T0 + 3600);
    }
    let parsed: QuerySpec = serde_json::from_value(spec.clone()).unwrap();
    let r = f
        .engine
        .run_spec(ds, &parsed)
        .await
        .unwrap_or_else(|e| panic!("{spec}: {e}"));
    serde_json::to_value(&r).unwrap()
}

async fn results(f: &Fixture, s: Json) -> Json {
    spec(f, "shop", s).await["results"].clone()
}

async fn count_where(f: &Fixture, filters: Json, combination: Option<&str>) -> Json {
    let mut s = json!({"calculations": [{"op": "COUNT"}], "filters": filters});
    if let Some(c) = combination {
        s["filter_combination"] = json!(c);
    }
    results(f, s).await[0]["COUNT"].clone()
}

async fn sql(f: &Fixture, q: &str) -> Json {
    let r = f.engine.sql(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    serde_json::to_value(&r.rows).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden() {
    golden_suite(fixture(false).await).await;
}

/// The same suite, the same answers, after the data went through many small segments and
/// compaction (merged, re-sorted, split by time window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_after_compaction() {
    golden_suite(fixture(true).await).await;
}

async fn golden_suite(f: Fixture) {
    // Every calculation, no breakdown.
    let calcs = [
        "COUNT",
        "SUM",
        "AVG",
        "MIN",
        "MAX",
        "COUNT_DISTINCT",
        "P001",
        "P01",
        "P05",
        "P10",
        "P25",
        "P50",
        "P75",
        "P90",
        "P95",
        "P99",
        "P999",
    ];
    let list: Vec<Json> = calcs
        .iter()
        .map(|op| match *op {
            "COUNT" => json!({"op": "COUNT"}),
            "COUNT_DISTINCT" => json!({"op": op, "column": "user"}),
            _ => json!({"op": op, "column": "duration_ms"}),
        })
        .collect();
    let r = results(&f, json!({"calculations": list})).await;
    // Weighted: COUNT = 1+1+2+1+5+1+1+1; SUM = 10+20+2·30+40+5·50+60+100; AVG = 540 / 12 (the
    // event without duration_ms does not count); percentiles interpolate over the 7 raw values
    // [10, 20, 30, 40, 50, 60, 100] at rank q·6.
    assert_near(
        &r,
        &json!([{
            "COUNT": 13, "SUM(duration_ms)": 540.0, "AVG(duration_ms)": 45.0,
            "MIN(duration_ms)": 10.0, "MAX(duration_ms)": 100.0, "COUNT_DISTINCT(user)": 5,
            "P001(duration_ms)": 10.06, "P01(duration_ms)": 10.6, "P05(duration_ms)": 13.0,
            "P10(duration_ms)": 16.0, "P25(duration_ms)": 25.0, "P50(duration_ms)": 40.0,
            "P75(duration_ms)": 55.0, "P90(duration_ms)": 76.0, "P95(duration_ms)": 88.0,
            "P99(duration_ms)": 97.6, "P999(duration_ms)": 99.76
        }]),
        "all calculations",
    );
    // SQL sees raw rows: 8 events, not 13.
    assert_eq!(sql(&f, "SELECT count(*) FROM shop").await, json!([[8]]));

    // Every filter op.
    let cases = [
        (json!([{"column": "status", "op": "=", "value": 200}]), 5),
        (json!([{"column": "status", "op": "!=", "value": 200}]), 8),
        (json!([{"column": "status", "op": ">", "value": 404}]), 3),
        (json!([{"column": "status", "op": ">=", "value": 404}]), 8),
        (json!([{"column": "status", "op": "<", "value": 404}]), 5),
        (
            json!([{"column": "status", "op": "<=", "value": "404"}]),
            10,
        ),
        (
            json!([{"column": "endpoint", "op": "starts-with", "value": "/a"}]),
            4,
        ),
        (
            json!([{"column": "endpoint", "op": "does-not-start-with", "value": "/a"}]),
            9,
        ),
        (
            json!([{"column": "endpoint", "op": "contains", "value": "b"}]),
            8,
        ),
        (
            json!([{"column": "endpoint", "op": "does-not-contain", "value": "b"}]),
            5,
        ),
        (json!([{"column": "user", "op": "exists"}]), 12),
        (json!([{"column": "user", "op": "does-not-exist"}]), 1),
        (
            json!([{"column": "duration_ms", "op": "does-not-exist"}]),
            1,
        ),
        (json!([{"column": "flag", "op": "exists"}]), 2),
        (json!([{"column": "flag", "op": "=", "value": true}]), 1),
        (json!([{"column": "nope", "op": "exists"}]), 0),
        (json!([{"column": "nope", "op": "does-not-exist"}]), 13),
        (
            json!([{"column": "service.name", "op": "in", "value": ["api", "db"]}]),
            6,
        ),
        (
            json!([{"column": "service.name", "op": "not-in", "value": ["api", "db"]}]),
            7,
        ),
        (
            json!([{"column": "duration_ms", "op": ">", "value": 45}, {"column": "status", "op": "=", "value": 200}]),
            1,
        ),
    ];
    for (filters, want) in cases {
        let got = count_where(&f, filters.clone(), None).await;
        assert_eq!(got, json!(want), "COUNT where {filters}");
    }
    let got = count_where(
        &f,
        json!([{"column": "service.name", "op": "=", "value": "db"}, {"column": "status", "op": "=", "value": 503}]),
        Some("OR"),
    )
    .await;
    assert_eq!(got, json!(2), "OR combination");

    // Breakdown, default order (first calculation descending).
    let r = results(
        &f,
        json!({"calculations": [{"op": "COUNT"}], "breakdowns": ["service.name"]}),
    )
    .await;
    assert_eq!(
        r,
        json!([{"service.name": "web", "COUNT": 7}, {"service.name": "api", "COUNT": 5}, {"service.name": "db", "COUNT": 1}])
    );
    // Two breakdowns.
    let r = results(&f, json!({"breakdowns": ["service.name", "endpoint"], "orders": [{"column": "service.name"}, {"column": "endpoint"}]})).await;
    assert_eq!(
        r,
        json!([
            {"service.name": "api", "endpoint": "/a", "COUNT": 2},
            {"service.name": "api", "endpoint": "/b", "COUNT": 3},
            {"service.name": "db", "endpoint": "/q", "COUNT": 1},
            {"service.name": "web", "endpoint": "/a", "COUNT": 2},
            {"service.name": "web", "endpoint": "/b", "COUNT": 5}
        ])
    );
    // Order by a breakdown ascending, by a calculation descending, having, limit.
    let r = results(&f, json!({"breakdowns": ["service.name"], "orders": [{"column": "service.name", "order": "ascending"}]})).await;
    let names: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service.name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "db", "web"]);
    let r = results(
        &f,
        json!({"calculations": [{"op": "AVG", "column": "duration_ms"}], "breakdowns": ["service.name"],
               "orders": [{"op": "AVG", "column": "duration_ms", "order": "descending"}]}),
    )
    .await;
    // db 60/1; web (40+5·50+100)/7; api (10+20+2·30)/4.
    assert_near(
        &r,
        &json!([{"service.name": "db", "AVG(duration_ms)": 60.0}, {"service.name": "web", "AVG(duration_ms)": 390.0 / 7.0}, {"service.name": "api", "AVG(duration_ms)": 22.5}]),
        "order by AVG descending",
    );
    let r = results(&f, json!({"breakdowns": ["service.name"], "havings": [{"calculate_op": "COUNT", "op": ">", "value": 4}]})).await;
    assert_eq!(
        r,
        json!([{"service.name": "web", "COUNT": 7}, {"service.name": "api", "COUNT": 5}])
    );
    let r = results(&f, json!({"breakdowns": ["service.name"], "havings": [{"calculate_op": "MAX", "column": "duration_ms", "op": "<", "value": 61}]})).await;
    assert_eq!(
        r,
        json!([{"service.name": "api", "COUNT": 5}, {"service.name": "db", "COUNT": 1}])
    );
    let r = results(&f, json!({"breakdowns": ["service.name"], "limit": 1})).await;
    assert_eq!(r, json!([{"service.name": "web", "COUNT": 7}]));

    // Granularity: 60 s buckets aligned to the epoch. T0 = …000 lies in the bucket starting at
    // …22:13:00 (events at +0,+10,+20 → 1+1+2), then 22:14:00 (+70,+80 → 1+5), 22:15:00 (+130,
    // +140,+150 → 1+1+1).
    let r = spec(&f, "shop", json!({"granularity": 60})).await;
    assert_eq!(r["results"], json!([{"COUNT": 13}]));
    assert_eq!(
        r["series"],
        json!([
            {"time": "2023-11-14T22:13:00.000000Z", "COUNT": 4},
            {"time": "2023-11-14T22:14:00.000000Z", "COUNT": 6},
            {"time": "2023-11-14T22:15:00.000000Z", "COUNT": 3}
        ])
    );
    let r = spec(
        &f,
        "shop",
        json!({"granularity": 60, "breakdowns": ["service.name"], "limit": 1}),
    )
    .await;
    assert_eq!(
        r["series"],
        json!([{"time": "2023-11-14T22:14:00.000000Z", "service.name": "web", "COUNT": 6},
               {"time": "2023-11-14T22:15:00.000000Z", "service.name": "web", "COUNT": 1}]),
        "series holds only the top groups"
    );
    // Time range: the last 100 s of the fixture (ends at T0+151) holds events at +80..+150.
    let r = spec(&f, "shop", json!({"end_time": T0 + 151, "time_range": 100})).await;
    assert_eq!(r["results"], json!([{"COUNT": 9}]));
    let r = spec(
        &f,
        "shop",
        json!({"start_time": T0 + 70, "end_time": T0 + 71}),
    )
    .await;
    assert_eq!(
        r["results"],
        json!([{"COUNT": 1}]),
        "end is exclusive, start inclusive"
    );

    // HEATMAP: min 10, max 100, width 90/40 = 2.25; bucket = floor((v-10)/2.25), capped at 39.
    let r = results(
        &f,
        json!({"calculations": [{"op": "HEATMAP", "column": "duration_ms"}]}),
    )
    .await;
    let b = |lower: f64, count: i64| json!({"lower": lower, "upper": lower + 2.25, "count": count});
    assert_near(
        &r,
        &json!([{"HEATMAP(duration_ms)": {"min": 10.0, "max": 100.0, "bucket_width": 2.25, "buckets": [
            b(10.0, 1), b(19.0, 1), b(28.0, 2), b(39.25, 1), b(48.25, 5), b(59.5, 1), b(97.75, 1)
        ]}}]),
        "heatmap",
    );

    // CONCURRENCY over 1 s buckets [T0, T0+5), from the spans table above. Breakdown a:
    // bucket 0: #1; 1: #1 #2 #3; 2: #1 #3; 3: #3; 4: #3 (until 4.2). b: 2: #4 (an instant);
    // 3: #5 (ends at 4, exclusive).
    let window = |extra: Json| {
        let mut s = json!({"start_time": T0, "end_time": T0 + 5, "granularity": 1});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let t = |i: i64| {
        chrono::DateTime::from_timestamp(T0 + i, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    let r = spec(
        &f,
        "spans",
        window(json!({"calculations": [{"op": "CONCURRENCY"}], "breakdowns": ["service.name"], "orders": [{"column": "service.name"}]})),
    )
    .await;
    assert_eq!(
        r["results"],
        json!([{"service.name": "a", "CONCURRENCY": 3}, {"service.name": "b", "CONCURRENCY": 1}]),
        "peak concurrency per group"
    );
    let c =
        |i: i64, svc: &str, n: i64| json!({"time": t(i), "service.name": svc, "CONCURRENCY": n});
    assert_eq!(
        r["series"],
        json!([
            c(0, "a", 1),
            c(1, "a", 3),
            c(2, "a", 2),
            c(2, "b", 1),
            c(3, "a", 1),
            c(3, "b", 1),
            c(4, "a", 1)
        ]),
        "events in progress per bucket, including buckets where none starts"
    );
    let r = spec(
        &f,
        "spans",
        window(json!({"calculations": [{"op": "COUNT"}, {"op": "CONCURRENCY", "column": "duration_ms"}]})),
    )
    .await;
    assert_eq!(r["results"], json!([{"COUNT": 5, "CONCURRENCY": 3}]));
    assert_eq!(
        r["series"],
        json!([
            {"time": t(0), "COUNT": 1, "CONCURRENCY": 1},
            {"time": t(1), "COUNT": 2, "CONCURRENCY": 3},
            {"time": t(2), "COUNT": 1, "CONCURRENCY": 3},
            {"time": t(3), "COUNT": 1, "CONCURRENCY": 2},
            {"time": t(4), "CONCURRENCY": 1}
        ])
    );
    // RATE_*: per bucket SUM(x) 10, 25, 7, 1; AVG(x) 10, 12.5, 7, 1; MAX(x) 10, 20, 7, 1 at
    // 0..3 s; the series holds the change per second from the bucket before, the results the
    // change per second from the first bucket to the last: (1 - 10) / 3 s = -3.
    let r = spec(
        &f,
        "spans",
        window(json!({"calculations": [{"op": "RATE_SUM", "column": "x"}, {"op": "RATE_AVG", "column": "x"}, {"op": "RATE_MAX", "column": "x"}]})),
    )
    .await;
    assert_eq!(
        r["results"],
        json!([{"RATE_SUM(x)": -3.0, "RATE_AVG(x)": -3.0, "RATE_MAX(x)": -3.0}])
    );
    let rate = |i: i64, sum: Json, avg: Json, max: Json| json!({"time": t(i), "RATE_SUM(x)": sum, "RATE_AVG(x)": avg, "RATE_MAX(x)": max});
    assert_eq!(
        r["series"],
        json!([
            rate(0, Json::Null, Json::Null, Json::Null),
            rate(1, json!(15.0), json!(2.5), json!(10.0)),
            rate(2, json!(-18.0), json!(-5.5), json!(-13.0)),
            rate(3, json!(-6.0), json!(-6.0), json!(-6.0))
        ])
    );
    // Without granularity the rate uses automatic buckets (1 s over 5 s) for the results.
    let r = spec(
        &f,
        "spans",
        json!({"start_time": T0, "end_time": T0 + 5, "calculations": [{"op": "RATE_SUM", "column": "x"}], "breakdowns": ["service.name"], "orders": [{"column": "service.name"}]}),
    )
    .await;
    // a: SUM 10 at 0, 25 at 1: +15/s; b: 7 at 2, 1 at 3: -6/s.
    assert_eq!(
        r["results"],
        json!([{"service.name": "a", "RATE_SUM(x)": 15.0}, {"service.name": "b", "RATE_SUM(x)": -6.0}])
    );
    assert!(r.get("series").is_none());

    // BubbleUp: the slow events (a heatmap region) differ from the rest by build: all b2
    // against all b1 (score 1); regions are alike (score 0). The column the selection is
    // defined by is left out.
    let bubbleup = |req: Json| {
        let engine = &f.engine;
        async move {
            let req: eventide_query::BubbleUpRequest = serde_json::from_value(req).unwrap();
            serde_json::to_value(engine.bubbleup("bubble", &req).await.unwrap()).unwrap()
        }
    };
    let r = bubbleup(json!({"start_time": T0, "end_time": T0 + 3600, "selection": {"filters": [{"column": "duration_ms", "op": ">=", "value": 100}]}})).await;
    assert_eq!(
        (r["selection_count"].clone(), r["baseline_count"].clone()),
        (json!(100), json!(300))
    );
    let names: Vec<&str> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "build_id", "{r}");
    assert!(!names.contains(&"duration_ms"));
    assert_eq!(r["columns"][0]["score"], json!(1.0));
    assert_eq!(
        r["columns"][0]["values"],
        json!([
            {"value": "b1", "selection_count": 0, "baseline_count": 300, "selection": 0.0, "baseline": 1.0},
            {"value": "b2", "selection_count": 100, "baseline_count": 0, "selection": 1.0, "baseline": 0.0}
        ])
    );
    let region = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "region")
        .unwrap();
    assert_eq!(region["score"], json!(0.0), "{region}");
    // cpu (i % 10) is spread the same in both: its deciles differ little.
    let cpu = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "cpu")
        .unwrap();
    assert!(cpu["score"].as_f64().unwrap() < 0.05, "{cpu}");
    // A time range as the selection (a stretch of a chart): the same events; now duration_ms
    // is compared too and differs as much (ties go by name).
    let r = bubbleup(
        json!({"start_time": T0, "end_time": T0 + 3600, "selection": {"start_time": T0 + 300}}),
    )
    .await;
    assert_eq!(r["selection_count"], json!(100));
    assert_eq!(r["columns"][0]["column"], json!("build_id"));
    assert_eq!(r["columns"][1]["column"], json!("duration_ms"));
    assert_eq!(r["columns"][1]["score"], json!(1.0));

    // High-cardinality breakdown: 100,000 distinct user_id values.
    let r = spec(
        &f,
        "hc",
        json!({"breakdowns": ["user_id"], "limit": 100_000}),
    )
    .await;
    let rows = r["results"].as_array().unwrap();
    assert_eq!(rows.len(), 100_000);
    assert!(rows.iter().all(|r| r["COUNT"] == json!(1)));
    assert_eq!(rows[0]["user_id"], json!("user-00000"));
    assert_eq!(rows[99_999]["user_id"], json!("user-99999"));
    let r = spec(&f, "hc", json!({"calculations": [{"op": "MAX", "column": "value"}, {"op": "COUNT_DISTINCT", "column": "user_id"}], "breakdowns": ["user_id"], "orders": [{"op": "MAX", "column": "value", "order": "descending"}], "limit": 3})).await;
    assert_eq!(
        r["results"],
        json!([{"user_id": "user-99999", "MAX(value)": 99999, "COUNT_DISTINCT(user_id)": 1},
               {"user_id": "user-99998", "MAX(value)": 99998, "COUNT_DISTINCT(user_id)": 1},
               {"user_id": "user-99997", "MAX(value)": 99997, "COUNT_DISTINCT(user_id)": 1}])
    );
    let r = spec(
        &f,
        "hc",
        json!({"calculations": [{"op": "COUNT_DISTINCT", "column": "user_id"}]}),
    )
    .await;
    assert_eq!(r["results"], json!([{"COUNT_DISTINCT(user_id)": 100_000}]));

    // Needle lookups by a unique id, through both endpoints.
    let r = spec(&f, "hc", json!({"calculations": [{"op": "MAX", "column": "value"}], "filters": [{"column": "trace_id", "op": "=", "value": "trace-0042424"}]})).await;
    assert_eq!(r["results"], json!([{"MAX(value)": 42424}]));
    assert_eq!(
        sql(
            &f,
            "SELECT user_id, value, timestamp FROM hc WHERE trace_id = 'trace-0042424'"
        )
        .await,
        // 42424 % 3000 = 424 s after T0.
        json!([["user-42424", 42424, "2023-11-14T22:20:24.000000Z"]])
    );

    // SQL over the union of segment and hot tail, sparse columns as nulls.
    assert_eq!(
        sql(
            &f,
            "SELECT \"service.name\", flag FROM shop WHERE flag IS NOT NULL ORDER BY timestamp"
        )
        .await,
        json!([["api", true], ["web", false]])
    );
    assert_eq!(
        sql(&f, "SELECT \"service.name\", count(*) AS n, sum(_samplerate) AS w FROM shop GROUP BY 1 ORDER BY 1").await,
        json!([["api", 4, 5], ["db", 1, 1], ["web", 3, 7]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_problem() {
    let f = fixture(false).await;
    let bad_spec = |s: Json| {
        let f = &f;
        async move {
            let parsed: QuerySpec = serde_json::from_value(s).unwrap();
            match f.engine.run_spec("shop", &parsed).await {
                Err(eventide_query::QueryError::BadRequest(m)) => m,
                other => panic!("expected a bad request, got {other:?}"),
            }
        }
    };
    assert_eq!(
        bad_spec(json!({"filters": [{"column": "nope", "op": "=", "value": 1}]})).await,
        "unknown column \"nope\" in dataset \"shop\""
    );
    assert_eq!(
        bad_spec(json!({"orders": [{"op": "P99", "column": "duration_ms"}]})).await,
        "order by P99(duration_ms) which is not among the calculations"
    );
    assert_eq!(
        bad_spec(
            json!({"calculations": [{"op": "CONCURRENCY"}], "orders": [{"op": "CONCURRENCY"}]})
        )
        .await,
        "results cannot be ordered by CONCURRENCY"
    );
    assert_eq!(
        bad_spec(json!({"calculations": [{"op": "RATE_AVG", "column": "duration_ms"}], "havings": [{"calculate_op": "RATE_AVG", "column": "duration_ms", "op": ">", "value": 1}]})).await,
        "RATE_AVG(duration_ms) cannot be used in a having"
    );
    assert_eq!(
        bad_spec(json!({"calculations": [{"op": "RATE_SUM", "column": "endpoint"}]})).await,
        "calculation RATE_SUM(endpoint) needs a numeric column, \"endpoint\" is string"
    );
    assert_eq!(
        bad_spec(json!({"calculations": [{"op": "HEATMAP", "column": "duration_ms"}], "orders": [{"op": "HEATMAP", "column": "duration_ms"}]})).await,
        "results cannot be ordered by HEATMAP(duration_ms)"
    );
    match f.engine.run_spec("nosuch", &QuerySpec::default()).await {
        Err(eventide_query::QueryError::BadRequest(m)) => {
            assert_eq!(m, "unknown dataset \"nosuch\"")
        }
        other => panic!("{other:?}"),
    }
    for (q, needle) in [
        ("SELECT * FROM nosuch", "nosuch"),
        ("SELECT nope FROM shop", "nope"),
        ("SELEC 1", "selec"),
        ("DROP TABLE shop", "ddl"),
        ("INSERT INTO shop SELECT * FROM shop", "dml"),
    ] {
        match f.engine.sql(q).await {
            Err(eventide_query::QueryError::BadRequest(m)) => {
                assert!(m.to_lowercase().contains(needle), "{q}: {m}")
            }
            other => panic!("{q}: expected a bad request, got {other:?}"),
        }
    }
}
