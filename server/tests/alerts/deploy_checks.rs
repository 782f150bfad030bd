//! Deploy checks: a doubled error rate fails, a clean deploy passes, a quiet one is
//! inconclusive, and a moved marker is checked again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{ADMIN_KEY, INGEST_KEY};
use crate::support::*;
use serde_json::{Value as Json, json};

#[tokio::test]
async fn deploy_checks_fail_a_doubled_error_rate_pass_a_clean_deploy_and_wait_for_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start().await;
    let server = start_with(dir.path(), &["--alert-delay-ms", "1000"]).await;
    let (s, c) = server
        .call(
            reqwest::Method::PUT,
            "/api/v1/conventions/shop",
            ADMIN_KEY,
            Some(json!({"deploy_check": {
                "baseline_seconds": 60, "warmup_seconds": 2, "observe_seconds": 60,
                "min_events": 100, "recipients": [{"type": "webhook", "target": hook.url}]
            }})),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["conventions"]["service"], "service.name");
    assert_eq!(c["conventions"]["deploy_check"]["z"], 3.3);
    assert_eq!(c["conventions"]["deploy_check"]["warmup_events"], 100);

    // A minute of baseline for each service: 100 events/s, 5 % errors.
    let t0 = now_s().floor();
    for svc in ["checkout", "search"] {
        send_all(&server, "shop", events(svc, "v1", 6000, t0 - 60.0, t0, 20)).await;
    }
    send_all(
        &server,
        "shop",
        events("quiet", "v1", 20, t0 - 60.0, t0, 20),
    )
    .await;
    let mut ids = Vec::new();
    for (svc, version) in [("checkout", "v2"), ("search", "v2"), ("quiet", "v2")] {
        let (s, m) = server
            .call(
                reqwest::Method::POST,
                "/1/markers/shop",
                INGEST_KEY,
                Some(json!({"type": "deploy", "service": svc, "version": version,
                        "message": format!("{svc} {version}"), "start_time": t0 as i64})),
            )
            .await;
        assert_eq!(s, 200, "{m}");
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    let deployed = Instant::now();

    // After the deploy, 200 events/s: checkout runs v1 and v2 side by side and
    // v2 errs twice as often (10 %); search's v2 is as good as v1; quiet stays quiet.
    let url = Arc::new(Mutex::new(server.url.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let live = traffic(url, "shop", 20, stop.clone(), |i| {
        let (svc, version, every) = match i % 4 {
            0 => ("checkout", "v2", 10),
            1 => ("checkout", "v1", 20),
            _ => ("search", "v2", 20),
        };
        let k = i / 4;
        let block = k / every;
        json!({
            "service.name": svc, "service.version": version,
            "endpoint": format!("/e{}", block % 5),
            "duration_ms": 50.0 + ((block * 37) % 100) as f64,
            "http.status_code": if k % every == 0 { 500 } else { 200 },
        })
    });

    // `?wait=` holds each request until the verdict is final (at most 5 minutes, more than
    // the 62 s window these deploys are watched for).
    let verdict = |id: String| {
        let server = &server;
        async move {
            let v = get(server, &format!("/api/v1/deploys/{id}/verdict?wait=5m")).await;
            assert_ne!(v["verdict"], "pending", "still pending after ?wait=5m: {v}");
            v
        }
    };
    let fail = verdict(ids[0].clone()).await;
    let took = deployed.elapsed();
    assert_eq!(fail["verdict"], "fail", "{fail}");
    eprintln!("deploy check: fail after {took:?}");
    let ev = &fail["evidence"];
    let regressions = ev["regressions"].as_array().unwrap();
    assert!(
        regressions.iter().any(|r| r
            .as_str()
            .unwrap()
            .starts_with("error rate of checkout rose")),
        "{ev}"
    );
    assert_eq!(ev["version_column"], "service.version");
    assert!((ev["before"]["error_rate"].as_f64().unwrap() - 0.05).abs() < 1e-9);
    assert!(ev["after"]["error_rate"].as_f64().unwrap() > 0.08, "{ev}");
    assert!(ev["old_version"]["events"].as_u64().unwrap() > 0, "{ev}");
    let dims = ev["dimensions"].as_array().unwrap();
    assert_eq!(dims[0]["column"], "service.version", "{ev}");
    assert!(
        dims.iter().all(|d| d["column"] != "http.status_code"),
        "the error's own columns are left out: {ev}"
    );

    // The clean deploy passes and the quiet one is inconclusive once the window is over.
    let mut finals = Vec::new();
    for id in &ids[1..] {
        finals.push(verdict(id.clone()).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    live.await.unwrap();
    assert_eq!(finals[0]["verdict"], "pass", "{}", finals[0]);
    assert!(
        finals[0]["evidence"]["regressions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(finals[1]["verdict"], "inconclusive", "{}", finals[1]);
    assert!(
        finals[1]["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("too little traffic"),
        "{}",
        finals[1]
    );

    // Every verdict went to the deploy-check webhook, once.
    let got = hook.wait_for(3, Duration::from_secs(20)).await;
    let mut verdicts: Vec<(String, String)> = got
        .iter()
        .map(|p| {
            assert_eq!(p["kind"], "deploy_check");
            (
                p["marker"]["id"].as_str().unwrap().to_owned(),
                p["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    verdicts.sort();
    assert_eq!(
        verdicts,
        vec![
            (ids[0].clone(), "fail".into()),
            (ids[1].clone(), "pass".into()),
            (ids[2].clone(), "inconclusive".into()),
        ]
    );
    let listed = get(&server, "/api/v1/deploys?dataset=shop").await;
    assert_eq!(listed["deploys"].as_array().unwrap().len(), 3);

    // Moving the clean deploy's marker an hour back checks it again against the hour-old
    // window, where there were no events: the baseline the check kept is not reused.
    let moved = t0 as i64 - 3600;
    let (s, m) = server
        .call(
            reqwest::Method::PUT,
            &format!("/1/markers/shop/{}", ids[1]),
            INGEST_KEY,
            Some(json!({"start_time": moved})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    let mut again = Json::Null;
    for _ in 0..3000 {
        again = get(&server, &format!("/api/v1/deploys/{}/verdict", ids[1])).await;
        if again["evidence"]["windows"]["before"]["end"] == moved && again["verdict"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again["evidence"]["before"]["events"], 0, "{again}");
    assert_eq!(again["verdict"], "inconclusive", "{again}");
}
