//! A trigger fires once and resolves once, across a `kill -9`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY};
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn trigger_notifies_once_when_it_fires_and_once_when_it_resolves_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start().await;
    let mut server = start_with(dir.path(), &["--alert-delay-ms", "1000"]).await;
    let url = Arc::new(Mutex::new(server.url.clone()));

    // Some traffic first, so the dataset exists and the query is checked against it.
    server
        .send_batch(
            "shop",
            &[json!({"data": {"service.name": "api", "http.status_code": 200}})],
        )
        .await;
    // Queryable once the store has read it from the log (milliseconds, more under load).
    assert_eq!(server.wait_count("shop", 1).await, 1);
    let deploy_time = now_s() as i64 - 1;
    let (s, deploy) = server.call(
        reqwest::Method::POST,
        "/1/markers/shop",
        INGEST_KEY,
        Some(json!({"type": "deploy", "service": "api", "message": "api v7", "start_time": deploy_time})),
    )
    .await;
    assert_eq!(s, 200, "{deploy}");

    // Bad definitions are refused with the field named.
    let (s, e) = server
        .call(
            reqwest::Method::POST,
            "/1/triggers/shop",
            ADMIN_KEY,
            Some(
                json!({"name": "x", "query": {"calculations": [{"op": "P99", "column": "nope"}]},
                    "threshold": {"op": ">", "value": 1}, "frequency": 1}),
            ),
        )
        .await;
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("nope"), "{e}");
    let (s, _) = server
        .call(
            reqwest::Method::POST,
            "/1/triggers/shop",
            QUERY_KEY,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "a query key cannot manage triggers");

    let (s, trigger) = server
        .call(
            reqwest::Method::POST,
            "/1/triggers/shop",
            ADMIN_KEY,
            Some(json!({
                "name": "api 5xx",
                "query": {"calculations": [{"op": "COUNT"}], "time_range": 6,
                          "filters": [{"column": "service.name", "op": "=", "value": "api"},
                                      {"column": "http.status_code", "op": ">=", "value": 500}]},
                "threshold": {"op": ">", "value": 5},
                "frequency": 1,
                "alert_type": "on_change",
                "recipients": [{"type": "webhook", "target": hook.url}, {"type": "marker"}]
            })),
        )
        .await;
    assert_eq!(s, 200, "{trigger}");
    let id = trigger["id"].as_str().unwrap().to_owned();
    assert_eq!(trigger["triggered"], false);

    // Errors: 20 a second.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors = traffic(
        url.clone(),
        "shop",
        2,
        stop.clone(),
        |i| json!({"service.name": "api", "http.status_code": 503, "n": i}),
    );
    let fired = hook.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(fired.len(), 1, "one notification when it fires: {fired:?}");
    let n = &fired[0];
    assert_eq!(n["kind"], "trigger");
    assert_eq!(n["status"], "triggered");
    assert_eq!(n["trigger"]["id"], id.as_str());
    assert_eq!(n["trigger"]["name"], "api 5xx");
    assert_eq!(n["threshold"]["op"], ">");
    assert!(n["value"].as_f64().unwrap() > 5.0, "{n}");
    assert!(n["window"]["end"].as_str().unwrap().ends_with('Z'));
    let link = n["url"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/#", server.url)), "{link}");

    // kill -9 while firing; the errors go on through the restart.
    server.kill9();
    let mut server = start_with(dir.path(), &["--alert-delay-ms", "1000"]).await;
    *url.lock().unwrap() = server.url.clone();
    let v = get(&server, &format!("/1/triggers/shop/{id}")).await;
    assert_eq!(v["triggered"], true, "state survives the restart: {v}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hook.all().len(), 1, "no second firing after the restart");

    // Errors stop: one resolution.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(errors.await.unwrap() > 0);
    let all = hook.wait_for(2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all_after = hook.all();
    assert_eq!(all_after.len(), 2, "fired once, resolved once: {all:?}");
    assert_eq!(all_after[1]["status"], "resolved");
    assert_ne!(all_after[0]["id"], all_after[1]["id"]);

    // Every evaluation is recorded, newest first; exactly one firing and one resolution.
    let evals = get(
        &server,
        &format!("/1/triggers/shop/{id}/evaluations?limit=500"),
    )
    .await;
    let list = evals["evaluations"].as_array().unwrap();
    assert!(list.len() >= 5, "{evals}");
    let notes: Vec<&str> = list
        .iter()
        .filter_map(|e| e["notification"].as_str())
        .collect();
    assert_eq!(notes, ["resolved", "triggered"]);
    let ends: Vec<i64> = list
        .iter()
        .map(|e| e["window_end"].as_i64().unwrap())
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] - w[1] == 1),
        "each window once, none skipped, across the kill: {ends:?}"
    );
    let fired_at = list
        .iter()
        .find(|e| e["notification"] == "triggered")
        .unwrap()["window_end"]
        .as_i64()
        .unwrap();
    let resolved_at = list
        .iter()
        .find(|e| e["notification"] == "resolved")
        .unwrap()["window_end"]
        .as_i64()
        .unwrap();

    // The marker recipient wrote a marker spanning the incident.
    let markers = get(&server, "/1/markers/shop").await;
    let m = markers
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "trigger")
        .expect("a trigger marker");
    assert_eq!(m["start_time"].as_i64(), Some(fired_at));
    assert_eq!(m["end_time"].as_i64(), Some(resolved_at));

    // DORA counts the firing against the deploy before it and as an incident of the service.
    let d = get(&server, "/api/v1/dora?service=api&window=1d").await;
    assert_eq!(d["deployment_frequency"]["deploys"], 1);
    assert_eq!(d["change_failure_rate"]["rate"], 1.0, "{d}");
    assert_eq!(
        d["change_failure_rate"]["failures"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "trigger")
            .unwrap()["trigger"],
        id.as_str()
    );
    assert_eq!(
        d["time_to_restore"]["median_seconds"].as_f64(),
        Some((resolved_at - fired_at) as f64)
    );
    assert_eq!(d["time_to_restore"]["incidents"][0]["trigger"], id.as_str());
    server.stop();
}
