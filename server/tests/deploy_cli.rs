//! `eventide deploy` and `GET /api/v1/deploys/{id}/verdict?wait=`: the CLI exits with the
//! verdict's code (0 pass, 1 fail, 2 inconclusive), and `?wait=` answers as soon as the
//! verdict is final. Deploys are recorded in the past (`--start-time`) over seeded events, so
//! their windows are over and nothing depends on how fast this machine is.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

/// `service` events from `from` for `secs` seconds, 20 a second, one error in `every`, at
/// `version`.
fn events(service: &str, version: &str, from: i64, secs: i64, every: i64) -> Vec<Json> {
    (0..secs * 20)
        .map(|i| {
            json!({"time": from as f64 + i as f64 / 20.0, "data": {
                "service.name": service,
                "service.version": version,
                "duration_ms": 20.0 + (i % 40) as f64,
                "http.status_code": if i % every == 0 { 500 } else { 200 },
            }})
        })
        .collect()
}

fn deploy(s: &Server, dataset: &str, version: &str, at: i64) -> (i32, String) {
    let out = Command::new(common::binary())
        .args([
            "deploy",
            "--url",
            &s.url,
            "--key",
            INGEST_KEY,
            "--query-key",
            QUERY_KEY,
        ])
        .args([
            "--dataset",
            dataset,
            "--service",
            "api",
            "--version",
            version,
        ])
        .args([
            "--start-time",
            &at.to_string(),
            "--wait",
            "--timeout",
            "120",
        ])
        .output()
        .expect("run eventide deploy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exits_with_the_verdicts_code_and_wait_returns_once_final() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]).await;
    let now = chrono::Utc::now().timestamp();
    let t0 = now - 300;
    for ds in ["good", "bad", "quiet"] {
        let (status, c) = s
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/conventions/{ds}"),
                ADMIN_KEY,
                Some(json!({"deploy_check": {"baseline_seconds": 120, "observe_seconds": 60}})),
            )
            .await;
        assert_eq!(status, 200, "{c}");
        s.send_batch(ds, &events("api", "v1", t0 - 120, 120, 20))
            .await;
    }
    // After the deploy: the same traffic, four times the errors, and none at all.
    s.send_batch("good", &events("api", "v2", t0, 60, 20)).await;
    s.send_batch("bad", &events("api", "v2", t0, 60, 5)).await;
    for (ds, want) in [("good", 3_600), ("bad", 3_600), ("quiet", 2_400)] {
        assert_eq!(s.wait_count(ds, want).await, want);
    }

    let (code, out) = deploy(&s, "good", "v2", t0);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("PASS: api v2 passed"), "{out}");
    let (code, out) = deploy(&s, "bad", "v2", t0);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error rate of api rose from 5.0 % to 20.0 % for version v2"),
        "{out}"
    );
    let (code, out) = deploy(&s, "quiet", "v2", t0);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("INCONCLUSIVE:") && out.contains("too little traffic"),
        "{out}"
    );

    // A deploy whose window is still open: `?wait=1s` gives up and says `pending`...
    let (status, c) = s
        .call(
            reqwest::Method::PUT,
            "/api/v1/conventions/quiet",
            ADMIN_KEY,
            Some(json!({"deploy_check": {"baseline_seconds": 120, "observe_seconds": 5}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let (status, m) = s
        .call(
            reqwest::Method::POST,
            "/1/markers/quiet",
            INGEST_KEY,
            Some(json!({"type": "deploy", "service": "api", "version": "v3"})),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    let id = m["id"].as_str().unwrap();
    let path = format!("/api/v1/deploys/{id}/verdict");
    let (status, v) = s
        .call(
            reqwest::Method::GET,
            &format!("{path}?wait=1s"),
            QUERY_KEY,
            None,
        )
        .await;
    assert_eq!(
        (status, v["verdict"].as_str()),
        (200, Some("pending")),
        "{v}"
    );
    // ...and `?wait=300s` answers with the final verdict once the 5 s window has closed,
    // long before its wait ends.
    let waited = tokio::time::timeout(
        Duration::from_secs(200),
        s.call(
            reqwest::Method::GET,
            &format!("{path}?wait=300s"),
            QUERY_KEY,
            None,
        ),
    )
    .await
    .expect("?wait= answered once the verdict was final");
    assert_eq!(waited.0, 200, "{}", waited.1);
    assert_eq!(waited.1["verdict"], "inconclusive", "{}", waited.1);
    // A bad wait is a 400 that says so.
    let (status, e) = s
        .call(
            reqwest::Method::GET,
            &format!("{path}?wait=soon"),
            QUERY_KEY,
            None,
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("wait"), "{e}");
}
