//! `GET /api/v1/tail/{dataset}` against a real server: a sparse batch that lacks the filtered
//! column, events of another dataset and non-matching events are all passed over without an
//! error, and the matching events arrive, each once, in the order they were sent.

mod common;

use std::time::Duration;

use common::{QUERY_KEY, Server};
use serde_json::{Value as Json, json};

/// A server-sent event stream read message by message.
struct Sse {
    response: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next message (`event`, parsed `data`), comments skipped. A guard of a minute keeps a
    /// broken server from hanging the suite; no timing is asserted.
    async fn next(&mut self) -> (String, Json) {
        tokio::time::timeout(Duration::from_secs(60), self.next_inner())
            .await
            .expect("a server-sent event within a minute")
    }

    async fn next_inner(&mut self) -> (String, Json) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (event, serde_json::from_str(&data).expect("JSON data"));
            }
            let chunk = self
                .response
                .chunk()
                .await
                .expect("read the stream")
                .expect("the stream stays open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn open(server: &Server, dataset: &str, filters: &Json, any: bool) -> Sse {
    let mut query = vec![("filters", filters.to_string())];
    if any {
        query.push(("filter_combination", "OR".into()));
    }
    let response = server
        .client
        .get(format!("{}/api/v1/tail/{dataset}", server.url))
        .header("X-Honeycomb-Team", QUERY_KEY)
        .query(&query)
        .send()
        .await
        .expect("open the tail");
    assert_eq!(response.status(), 200);
    let mut sse = Sse {
        response,
        buf: String::new(),
    };
    let (event, data) = sse.next().await;
    assert_eq!(event, "ready", "{data}");
    sse
}

fn ids(data: &Json) -> Vec<i64> {
    data["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["n"].as_i64().expect("n"))
        .collect()
}

#[tokio::test]
async fn tail_passes_over_sparse_batches_and_other_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    // The dataset's columns: region and status exist before the tail opens.
    server
        .send_batch(
            "shop",
            &[json!({"data": {"n": 0, "region": "eu", "status": 200}})],
        )
        .await;
    assert_eq!(server.wait_count("shop", 1).await, 1);

    let filters = json!([{"column": "region", "op": "=", "value": "eu"}]);
    let mut tail = open(&server, "shop", &filters, false).await;
    let either = json!([
        {"column": "region", "op": "=", "value": "us"},
        {"column": "status", "op": ">=", "value": 500}
    ]);
    let mut any = open(&server, "shop", &either, true).await;

    // A batch without the filtered column, one for another dataset, a batch with a column
    // the dataset never had, then the matching ones.
    server
        .send_batch("shop", &[json!({"data": {"n": 1, "other": "x"}})])
        .await;
    server
        .send_batch("elsewhere", &[json!({"data": {"n": 2, "region": "eu"}})])
        .await;
    server
        .send_batch(
            "shop",
            &[json!({"data": {"n": 3, "brand_new": true, "status": 503}})],
        )
        .await;
    server
        .send_batch(
            "shop",
            &[
                json!({"data": {"n": 4, "region": "us", "status": 200}}),
                json!({"data": {"n": 5, "region": "eu", "status": 500}}),
            ],
        )
        .await;
    server
        .send_batch("shop", &[json!({"data": {"n": 6, "region": "eu"}})])
        .await;

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (event, data) = tail.next().await;
        assert_eq!(event, "events", "{data}");
        assert_eq!(data["matched"].as_u64(), Some(ids(&data).len() as u64));
        seen.extend(ids(&data));
    }
    assert_eq!(seen, vec![5, 6], "region = eu, in order, each once");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (event, data) = any.next().await;
        assert_eq!(event, "events", "{data}");
        seen.extend(ids(&data));
    }
    assert_eq!(seen, vec![3, 4, 5], "region = us OR status >= 500");
}

#[tokio::test]
async fn tail_refuses_bad_filters_with_a_named_problem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    server
        .send_batch("shop", &[json!({"data": {"n": 0, "region": "eu"}})])
        .await;
    assert_eq!(server.wait_count("shop", 1).await, 1);
    for (filters, combination, want) in [
        ("not json", "AND", "filters must be a JSON array"),
        (
            r#"[{"column":"region","op":"nope","value":1}]"#,
            "AND",
            "nope",
        ),
        ("[]", "XOR", "filter_combination"),
    ] {
        let r = server
            .client
            .get(format!("{}/api/v1/tail/shop", server.url))
            .header("X-Honeycomb-Team", QUERY_KEY)
            .query(&[("filters", filters), ("filter_combination", combination)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{filters}");
        let body: Json = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{filters}: {body}");
    }
}
