//! DORA metrics of a scripted deploy history.

use std::time::{Duration, Instant};

use crate::common::{INGEST_KEY, QUERY_KEY};
use crate::support::*;
use serde_json::{Value as Json, json};

#[tokio::test]
async fn dora_metrics_of_a_scripted_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &[]).await;
    let now = now_s().floor() as i64;
    let day = 86_400;
    let t3 = now - 5 * day;
    // Traffic around d3: errors up from 5 % to 20 % after it, so its check fails.
    send_all(
        &server,
        "api-prod",
        events("api", "v3", 1000, (t3 - 600) as f64, t3 as f64, 20),
    )
    .await;
    send_all(
        &server,
        "api-prod",
        events("api", "v4", 1000, (t3 + 10) as f64, (t3 + 300) as f64, 5),
    )
    .await;
    let marker = |body: Json| {
        let server = &server;
        async move {
            let (s, m) = server
                .call(
                    reqwest::Method::POST,
                    "/1/markers/api-prod",
                    INGEST_KEY,
                    Some(body),
                )
                .await;
            assert_eq!(s, 200, "{m}");
            m["id"].as_str().unwrap().to_owned()
        }
    };
    let _d0 =
        marker(json!({"type": "deploy", "service": "api", "start_time": now - 40 * day})).await;
    let d1 = marker(
        json!({"type": "deploy", "service": "api", "start_time": now - 10 * day,
                           "commit_time": now - 10 * day - 3600}),
    )
    .await;
    let d2 = marker(
        json!({"type": "deploy", "service": "api", "start_time": now - 8 * day,
                           "commit_time": now - 8 * day - 7200}),
    )
    .await;
    let rb =
        marker(json!({"type": "rollback", "service": "api", "start_time": now - 8 * day + 600}))
            .await;
    let i1 = marker(
        json!({"type": "incident", "service": "api", "start_time": now - 8 * day + 300,
                           "end_time": now - 8 * day + 900}),
    )
    .await;
    let d3 = marker(
        json!({"type": "deploy", "service": "api", "version": "v4", "start_time": t3,
                           "commit_time": t3 - 1800}),
    )
    .await;
    let d4 = marker(json!({"type": "deploy", "service": "api", "start_time": now - 2 * day})).await;
    let i2 = marker(
        json!({"type": "incident", "service": "api", "start_time": now - day,
                           "end_time": now - day + 1200}),
    )
    .await;
    let _other =
        marker(json!({"type": "deploy", "service": "web", "start_time": now - 3 * day})).await;

    // d3's check is decided from the stored events alone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get(&server, &format!("/api/v1/deploys/{d3}/verdict")).await;
        if v["verdict"] != "pending" {
            assert_eq!(v["verdict"], "fail", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The others had no traffic: inconclusive, which is not a failure.
    let v = get(&server, &format!("/api/v1/deploys/{d1}/verdict")).await;
    assert!(["inconclusive", "pending"].contains(&v["verdict"].as_str().unwrap()));

    let d = get(&server, "/api/v1/dora?service=api&window=30d").await;
    assert_eq!(d["deployment_frequency"]["deploys"], 4, "{d}");
    assert_eq!(
        d["deployment_frequency"]["per_day"].as_f64(),
        Some(4.0 / 30.0)
    );
    assert_eq!(
        d["deployment_frequency"]["markers"],
        json!([d1, d2, d3, d4])
    );
    assert_eq!(d["lead_time_for_changes"]["median_seconds"], 3600.0);
    assert_eq!(d["lead_time_for_changes"]["mean_seconds"], 4200.0);
    assert_eq!(d["change_failure_rate"]["rate"], 0.5);
    let failures = &d["change_failure_rate"]["failures"];
    assert_eq!(failures[0]["marker"], d2.as_str());
    assert_eq!(
        failures[0]["reasons"][0],
        json!({"kind": "rollback", "marker": rb})
    );
    assert_eq!(failures[1]["marker"], d3.as_str());
    assert_eq!(failures[1]["reasons"][0]["kind"], "deploy_check");
    assert_eq!(d["time_to_restore"]["median_seconds"], 900.0);
    let incidents: Vec<&str> = d["time_to_restore"]["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["marker"].as_str().unwrap())
        .collect();
    assert_eq!(incidents, [i1.as_str(), i2.as_str()]);

    // The rules are parameters: a 5-minute failure window no longer reaches the rollback.
    let d = get(
        &server,
        "/api/v1/dora?service=api&window=30d&failure_window=5m",
    )
    .await;
    assert_eq!(d["change_failure_rate"]["rate"], 0.25, "{d}");
    let (s, e) = server
        .call(
            reqwest::Method::GET,
            "/api/v1/dora?window=30d",
            QUERY_KEY,
            None,
        )
        .await;
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("service"));
    let (s, _) = server
        .call(
            reqwest::Method::GET,
            "/api/v1/deploys/m999999/verdict",
            QUERY_KEY,
            None,
        )
        .await;
    assert_eq!(s, 404);
}
