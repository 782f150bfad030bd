//! Every route × every kind of key, from one table: a key without the route's scope gets 403,
//! an unknown or missing key 401, a key limited to datasets `alpha*` gets 403 on another
//! dataset and on routes that span datasets, and every allowed call gets past the guard.

mod common;

use std::process::Command;

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use reqwest::Method;
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Ingest,
    Query,
    Admin,
    /// `GET /1/auth`: any valid key.
    Any,
}

/// One route: method, path (`{ds}` is the dataset, in the path or in the body), body, the
/// scope it needs, and whether it spans datasets (dataset-limited keys refused).
struct Route {
    method: Method,
    path: &'static str,
    body: Option<Json>,
    need: Need,
    spans: bool,
}

fn routes() -> Vec<Route> {
    let r = |method: Method, path, body: Option<Json>, need, spans| Route {
        method,
        path,
        body,
        need,
        spans,
    };
    let batch = json!([{"data": {"a": 1}}]);
    let service =
        json!({"attributes": [{"key": "service.name", "value": {"stringValue": "{ds}"}}]});
    let spec = json!({"calculations": [{"op": "COUNT"}], "time_range": 60});
    let trigger = json!({"name": "t", "query": {"calculations": [{"op": "COUNT"}]},
                         "threshold": {"op": ">", "value": 1}, "frequency": 60});
    use Method as M;
    use Need::*;
    vec![
        r(M::GET, "/1/auth", None, Any, false),
        r(M::POST, "/1/batch/{ds}", Some(batch), Ingest, false),
        r(
            M::POST,
            "/1/events/{ds}",
            Some(json!({"a": 1})),
            Ingest,
            false,
        ),
        r(
            M::POST,
            "/api/v1/ingest/{ds}",
            Some(json!({"a": 1})),
            Ingest,
            false,
        ),
        // OTLP names its datasets in the body (`service.name`).
        r(
            M::POST,
            "/v1/traces",
            Some(
                json!({"resourceSpans": [{"resource": service, "scopeSpans": [{"spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                "name": "GET /", "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000001000000"}]}]}]}),
            ),
            Ingest,
            false,
        ),
        r(
            M::POST,
            "/v1/logs",
            Some(
                json!({"resourceLogs": [{"resource": service, "scopeLogs": [{"logRecords": [
                {"body": {"stringValue": "hello"}}]}]}]}),
            ),
            Ingest,
            false,
        ),
        r(
            M::POST,
            "/api/v1/sql",
            Some(json!({"sql": "SELECT 1"})),
            Query,
            true,
        ),
        r(
            M::POST,
            "/api/v1/query/{ds}",
            Some(spec.clone()),
            Query,
            false,
        ),
        r(
            M::POST,
            "/api/v1/bubbleup/{ds}",
            Some(json!({"time_range": 60, "selection": {"start_time": 1}})),
            Query,
            false,
        ),
        r(M::GET, "/api/v1/datasets", None, Admin, true),
        r(
            M::PUT,
            "/api/v1/datasets/{ds}",
            Some(json!({"retention_days": 30})),
            Admin,
            false,
        ),
        r(M::DELETE, "/api/v1/datasets/{ds}", None, Admin, false),
        r(M::GET, "/api/v1/datasets/{ds}/columns", None, Query, false),
        r(
            M::POST,
            "/1/markers/{ds}",
            Some(json!({"message": "m"})),
            Ingest,
            false,
        ),
        r(
            M::PUT,
            "/1/markers/{ds}/m999999",
            Some(json!({"message": "m"})),
            Ingest,
            false,
        ),
        r(M::DELETE, "/1/markers/{ds}/m999999", None, Ingest, false),
        r(M::GET, "/1/markers/{ds}", None, Query, false),
        r(M::GET, "/1/triggers/{ds}", None, Query, false),
        r(M::GET, "/1/triggers/{ds}/t999999", None, Query, false),
        r(
            M::GET,
            "/1/triggers/{ds}/t999999/evaluations",
            None,
            Query,
            false,
        ),
        r(
            M::POST,
            "/1/triggers/{ds}",
            Some(trigger.clone()),
            Admin,
            false,
        ),
        r(
            M::PUT,
            "/1/triggers/{ds}/t999999",
            Some(trigger),
            Admin,
            false,
        ),
        r(M::DELETE, "/1/triggers/{ds}/t999999", None, Admin, false),
        r(M::GET, "/api/v1/conventions/{ds}", None, Query, false),
        r(
            M::PUT,
            "/api/v1/conventions/{ds}",
            Some(json!({})),
            Admin,
            false,
        ),
        r(M::DELETE, "/api/v1/conventions/{ds}", None, Admin, false),
        r(M::GET, "/api/v1/deploys", None, Query, true),
        r(M::GET, "/api/v1/deploys/m999999/verdict", None, Query, true),
        r(M::GET, "/api/v1/deploys/m999999/series", None, Query, true),
        r(M::GET, "/api/v1/dora?service=x", None, Query, true),
    ]
}

/// A key created with `eventide keys create` (stored hashed in the data directory).
fn create_key(dir: &std::path::Path, scope: &str, dataset: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_eventide"))
        .args([
            "keys",
            "create",
            "--scope",
            scope,
            "--dataset",
            dataset,
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .expect("run eventide keys create");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_the_scope_and_dataset_of_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let limited: Vec<(Need, String)> = [
        (Need::Ingest, "ingest"),
        (Need::Query, "query"),
        (Need::Admin, "admin"),
    ]
    .into_iter()
    .map(|(n, s)| (n, create_key(dir.path(), s, "alpha*")))
    .collect();
    let server = Server::start(dir.path(), &[]).await;
    // Both datasets exist, so dataset routes answer past the guard.
    for ds in ["alpha-1", "beta"] {
        server
            .send_batch(ds, &[json!({"data": {"service.name": "x"}})])
            .await;
        assert_eq!(server.wait_count(&format!("\"{ds}\""), 1).await, 1);
    }

    let mut checked = 0;
    let mut failures = Vec::new();
    for route in routes() {
        // (key, its scope, limited to alpha*?)
        let mut keys: Vec<(String, Need, bool)> = vec![
            (INGEST_KEY.into(), Need::Ingest, false),
            (QUERY_KEY.into(), Need::Query, false),
            (ADMIN_KEY.into(), Need::Admin, false),
        ];
        keys.extend(limited.iter().map(|(n, k)| (k.clone(), *n, true)));
        let body_names_ds = route
            .body
            .as_ref()
            .is_some_and(|b| b.to_string().contains("{ds}"));
        for ds in ["alpha-1", "beta"] {
            if !route.path.contains("{ds}") && !body_names_ds && ds == "beta" {
                continue;
            }
            let path = route.path.replace("{ds}", ds);
            let body = route.body.as_ref().map(|b| {
                serde_json::from_str::<Json>(&b.to_string().replace("{ds}", ds)).expect("body")
            });
            for (key, scope, is_limited) in &keys {
                let scope_ok = match route.need {
                    Need::Any => true,
                    need => *scope == need || *scope == Need::Admin,
                };
                let dataset_ok = !is_limited
                    || route.need == Need::Any
                    || (!route.spans && ds.starts_with("alpha"));
                let (status, answer) = server
                    .call(route.method.clone(), &path, key, body.clone())
                    .await;
                checked += 1;
                let allowed = scope_ok && dataset_ok;
                let ok = if allowed {
                    status != 401 && status != 403
                } else {
                    status == 403 && answer["error"].as_str().is_some_and(|e| !e.is_empty())
                };
                if !ok {
                    failures.push(format!(
                        "{} {path} with a {scope:?} key{}: {status} {answer}",
                        route.method,
                        if *is_limited {
                            " limited to alpha*"
                        } else {
                            ""
                        }
                    ));
                }
            }
            // No key, and an unknown key: 401, with a message.
            for key in ["", "not-a-key"] {
                let (status, answer) = server
                    .call(route.method.clone(), &path, key, body.clone())
                    .await;
                checked += 1;
                if status != 401 || answer["error"].as_str().is_none() {
                    failures.push(format!(
                        "{} {path} with key {key:?}: {status} {answer}",
                        route.method
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} calls wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "route × key checks: {checked} calls over {} routes",
        routes().len()
    );
}
