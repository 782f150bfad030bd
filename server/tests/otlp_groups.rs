//! An OTLP request carries several datasets (one per resource `service.name`): a resource
//! whose name makes no valid dataset refuses its own spans only, and the rest of the request
//! is stored, all of it together.

mod common;

use common::{INGEST_KEY, Server};
use serde_json::{Value as Json, json};

fn resource(service: &str, spans: usize, from: usize) -> Json {
    let spans: Vec<Json> = (from..from + spans)
        .map(|i| {
            json!({"traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
                "name": "op", "startTimeUnixNano": "1781519400000000000",
                "endTimeUnixNano": "1781519400001000000",
                "attributes": [{"key": "seq", "value": {"intValue": i.to_string()}}]})
        })
        .collect();
    json!({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_names_no_dataset_refuses_only_its_own_spans() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    let body = json!({"resourceSpans": [
        resource("checkout", 30, 0),
        // A leading dot survives the name's cleaning and is no dataset name.
        resource(".hidden", 20, 30),
        resource("search", 10, 50),
    ]});
    let r = s
        .post("/v1/traces", INGEST_KEY)
        .header("content-type", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reply: Json = r.json().await.unwrap();
    assert_eq!(
        reply["partialSuccess"]["rejectedSpans"],
        json!("20"),
        "{reply}"
    );
    let msg = reply["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.contains(".hidden"),
        "names the resource's dataset: {msg}"
    );
    assert_eq!(s.wait_count("checkout", 30).await, 30);
    assert_eq!(s.wait_count("search", 10).await, 10);
}
