//! Triggers, deploy checks and DORA metrics against the real binary: a real webhook receiver
//! (an HTTP server in the test), live traffic sent while the server evaluates, a `kill -9` in
//! the middle, and a scripted deploy history.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use serde_json::{Value as Json, json};

/// A webhook receiver: every JSON body posted to it, in arrival order.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<Json>>>,
}

impl Hook {
    async fn start() -> Hook {
        let got: Arc<Mutex<Vec<Json>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Json>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { url, got }
    }

    fn all(&self) -> Vec<Json> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Json> {
        let deadline = Instant::now() + within;
        loop {
            let all = self.all();
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The clock of this file's servers (`--clock-start`) and of the events they are sent: the
/// time of day never decides an outcome.
static CLOCK: std::sync::LazyLock<common::TestClock> =
    std::sync::LazyLock::new(common::TestClock::new);

fn now_s() -> f64 {
    CLOCK.now_us() as f64 / 1e6
}

/// `--clock-start` for a server started now.
fn clock_args() -> Vec<String> {
    vec!["--clock-start".into(), CLOCK.start_value()]
}

async fn start_with(dir: &std::path::Path, args: &[&str]) -> Server {
    let clock = clock_args();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(clock.iter().map(String::as_str));
    Server::start_with(dir, &all, &[]).await
}

async fn get(server: &Server, path: &str) -> Json {
    let (s, v) = server
        .call(reqwest::Method::GET, path, QUERY_KEY, None)
        .await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// Sends `per_tick` events every 100 ms (event time: now) until `stop` is set, ignoring
/// refusals while the server is down. `make(i)` builds event `i`'s data.
fn traffic(
    url: Arc<Mutex<String>>,
    dataset: &'static str,
    per_tick: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    make: impl Fn(usize) -> Json + Send + 'static,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut i = 0;
        let mut acked = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            let t = now_s();
            let items: Vec<Json> = (0..per_tick)
                .map(|k| json!({"time": t, "data": make(i + k)}))
                .collect();
            let base = url.lock().unwrap().clone();
            let r = client
                .post(format!("{base}/1/batch/{dataset}"))
                .header("X-Honeycomb-Team", INGEST_KEY)
                .json(&items)
                .send()
                .await;
            if matches!(&r, Ok(r) if r.status() == 200) {
                acked += per_tick;
            }
            i += per_tick;
        }
        acked
    })
}

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

/// `n` events of `service` at `version` spread evenly over `[from, to)` seconds, one in
/// `error_every` an error (500), the others 200. Endpoint and duration are set per block of
/// `error_every` events, so they are spread the same way over errors and successes.
fn events(
    service: &str,
    version: &str,
    n: usize,
    from: f64,
    to: f64,
    error_every: usize,
) -> Vec<Json> {
    (0..n)
        .map(|i| {
            let block = i / error_every;
            json!({
                "time": from + (to - from) * i as f64 / n as f64,
                "data": {
                    "service.name": service,
                    "service.version": version,
                    "endpoint": format!("/e{}", block % 5),
                    "duration_ms": 50.0 + ((block * 37) % 100) as f64,
                    "http.status_code": if i % error_every == 0 { 500 } else { 200 },
                }
            })
        })
        .collect()
}

async fn send_all(server: &Server, dataset: &str, items: Vec<Json>) {
    for chunk in items.chunks(2000) {
        server.send_batch(dataset, chunk).await;
    }
}

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
