//! The shapes of traffic the adversarial check sends: each a list of events, an event being an
//! ordered list of (name, value) fields (so a key can appear twice) with a unique `adv_id`.

use serde_json::{Value as Json, json};

/// One event: `adv_id` first, then its fields in order (duplicates allowed).
pub struct Event {
    pub id: u64,
    pub fields: Vec<(String, Json)>,
}

/// A shape: its events, grouped into the requests (batches) they are sent in.
pub struct Shape {
    pub name: &'static str,
    pub batches: Vec<Vec<Event>>,
    /// OTLP only: extra resource attributes of every resource (heavy resources), and how many
    /// resources (datasets) the events are spread over.
    pub resource_attrs: usize,
    pub datasets: usize,
}

fn ev(id: u64, fields: Vec<(String, Json)>) -> Event {
    Event { id, fields }
}

fn nested(depth: usize, leaf: Json) -> Json {
    (0..depth).fold(leaf, |inner, i| json!({ format!("l{i}"): inner }))
}

/// Every shape, with ids from `first` on.
pub fn all(first: u64) -> Vec<Shape> {
    let mut id = first;
    let mut next = || {
        id += 1;
        id
    };
    let mut shapes = Vec::new();

    // 20,000 events of two fields, the first named from 10,000 names (the dataset ends up at
    // its column limit: the events past it are refused by name).
    let sparse: Vec<Event> = (0..20_000u64)
        .map(|i| {
            ev(
                next(),
                vec![
                    (format!("sp{}", i % 10_000), json!(i % 7)),
                    ("seq".into(), json!(i)),
                ],
            )
        })
        .collect();
    shapes.push(Shape {
        name: "sparse-10000-columns",
        batches: sparse.into_iter().fold(Vec::new(), chunk(2_000)),
        resource_attrs: 0,
        datasets: 1,
    });

    // One event of 10,000 fields (more than an event may have), and one of 1,500 (allowed).
    shapes.push(Shape {
        name: "wide-event-10000-fields",
        batches: vec![vec![
            ev(
                next(),
                (0..10_000).map(|c| (format!("w{c}"), json!(c))).collect(),
            ),
            ev(
                next(),
                (0..1_500).map(|c| (format!("w{c}"), json!(c))).collect(),
            ),
        ]],
        resource_attrs: 0,
        datasets: 1,
    });

    // Nesting: 4 levels (flattened), 30 (deeper than flattening: JSON text), 100 (deeper than
    // a body may be: refused).
    shapes.push(Shape {
        name: "deep-nesting",
        batches: vec![
            vec![
                ev(next(), vec![("obj".into(), nested(4, json!("leaf")))]),
                ev(next(), vec![("obj".into(), nested(30, json!(1)))]),
            ],
            vec![ev(next(), vec![("obj".into(), nested(100, json!(true)))])],
        ],
        resource_attrs: 0,
        datasets: 1,
    });

    // Strings of 64 KiB (the longest allowed) and one byte more.
    let big: Vec<Event> = (0..40)
        .map(|i| {
            ev(
                next(),
                vec![(
                    "blob".into(),
                    json!("s".repeat(64 * 1024 + usize::from(i % 10 == 9))),
                )],
            )
        })
        .collect();
    shapes.push(Shape {
        name: "strings-64KiB",
        batches: big.into_iter().fold(Vec::new(), chunk(20)),
        resource_attrs: 0,
        datasets: 1,
    });

    // The same key twice in one event, with values of one type and of two types.
    let dup: Vec<Event> = (0..200u64)
        .map(|i| {
            ev(
                next(),
                vec![
                    ("k".into(), json!(i)),
                    (
                        "k".into(),
                        if i % 2 == 0 {
                            json!(i + 1)
                        } else {
                            json!("text")
                        },
                    ),
                    ("other".into(), json!(true)),
                ],
            )
        })
        .collect();
    shapes.push(Shape {
        name: "duplicated-keys",
        batches: vec![dup],
        resource_attrs: 0,
        datasets: 1,
    });

    // 1,000 datasets (OTLP: one request, one resource each; elsewhere: one request each).
    shapes.push(Shape {
        name: "1000-datasets",
        batches: vec![
            (0..1_000u64)
                .map(|i| ev(next(), vec![("n".into(), json!(i))]))
                .collect(),
        ],
        resource_attrs: 0,
        datasets: 1_000,
    });

    // Heavy resources: 200 attributes of 1 KiB on the resource of 2,000 spans (OTLP), or the
    // same 200 fields in every event elsewhere.
    let heavy: Vec<Event> = (0..2_000u64)
        .map(|i| ev(next(), vec![("i".into(), json!(i))]))
        .collect();
    shapes.push(Shape {
        name: "heavy-resources",
        batches: vec![heavy],
        resource_attrs: 200,
        datasets: 1,
    });

    // A column's type changes between batches: int, then string, float, bool, object, array.
    let values = [
        json!(1),
        json!("one"),
        json!(1.5),
        json!(true),
        json!({"x": 1}),
        json!([1, 2]),
    ];
    shapes.push(Shape {
        name: "type-changes",
        batches: values
            .iter()
            .map(|v| {
                (0..50)
                    .map(|_| ev(next(), vec![("v".into(), v.clone())]))
                    .collect()
            })
            .collect(),
        resource_attrs: 0,
        datasets: 1,
    });
    shapes
}

/// A fold step that cuts a list into batches of `n`.
fn chunk(n: usize) -> impl FnMut(Vec<Vec<Event>>, Event) -> Vec<Vec<Event>> {
    move |mut acc, e| {
        match acc.last_mut() {
            Some(last) if last.len() < n => last.push(e),
            _ => acc.push(vec![e]),
        }
        acc
    }
}

/// The JSON text of an event's data object (keys in order, duplicates kept).
pub fn data_text(e: &Event) -> String {
    let mut s = String::from("{");
    s.push_str(&format!("\"adv_id\":{}", e.id));
    for (k, v) in &e.fields {
        s.push(',');
        s.push_str(&Json::String(k.clone()).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
}
