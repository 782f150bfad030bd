//! Client compatibility with the real, unmodified PyPI packages: libhoney-py and the
//! OpenTelemetry Python SDK with its OTLP/HTTP exporter (protobuf, and OTLP/JSON built from the
//! SDK's own encoder). The clients send from `tests/compat/*.py` in a virtualenv that
//! `scripts/compat-venv.sh` creates (pinned versions); every test queries the data back and
//! checks exact counts and field values against what the script reports it sent.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{ADMIN_KEY, INGEST_KEY, QUERY_KEY, Server};
use serde_json::Value as Json;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The virtualenv's python, created once per test binary (the script is idempotent and locks).
fn python() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/compat-venv.sh"))
            .output()
            .expect("run scripts/compat-venv.sh");
        assert!(
            out.status.success(),
            "scripts/compat-venv.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("python path").trim())
    })
}

/// Runs a client script and returns its summary (the last line of stdout).
fn run_client(script: &str, args: &[&str]) -> Json {
    let out = Command::new(python())
        .arg(repo_root().join("tests/compat").join(script))
        .args(args)
        .output()
        .expect("run the client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().expect("summary line")).expect("summary json")
}

fn f(v: &Json) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn libhoney_py_with_sampling_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let summary = run_client(
        "libhoney_send.py",
        &[
            "--endpoint",
            &server.url,
            "--key",
            INGEST_KEY,
            "--dataset",
            "py-hny",
            "--n",
            "3000",
            "--samplerate",
            "4",
            "--run-id",
            "r1",
            "--seed",
            "11",
        ],
    );
    assert_eq!(summary["gzip"], true, "{summary}");
    let sent: Vec<u64> = serde_json::from_value(summary["sent_ids"].clone()).unwrap();
    let sampled_out = summary["sampled_out"].as_u64().unwrap();
    assert_eq!(sent.len() as u64 + sampled_out, 3000);
    // Client-side sampling at 1/4 keeps roughly a quarter.
    assert!((500..1000).contains(&sent.len()), "kept {}", sent.len());

    let n = sent.len() as u64;
    assert_eq!(server.wait_count("\"py-hny\"", n).await, n);
    let agg = server
        .rows(
            "SELECT count(*), sum(_samplerate), count(DISTINCT id), sum(id), min(_samplerate), \
             max(_samplerate) FROM \"py-hny\" WHERE run_id = 'r1'",
        )
        .await;
    let ids_sum: u64 = sent.iter().sum();
    assert_eq!(agg[0][0], n);
    assert_eq!(agg[0][1], 4 * n, "every kept event stands for 4");
    assert_eq!(agg[0][2], n, "each id exactly once");
    assert_eq!(agg[0][3], ids_sum);
    assert_eq!((agg[0][4].as_u64(), agg[0][5].as_u64()), (Some(4), Some(4)));

    // Field values and types, event by event.
    let rows = server
        .rows(
            "SELECT id, name, duration_ms, ok, \"http.status\", \"http.route\", run_id \
             FROM \"py-hny\" ORDER BY id",
        )
        .await;
    let got_ids: Vec<u64> = rows.iter().map(|r| r[0].as_u64().unwrap()).collect();
    let mut want_ids = sent.clone();
    want_ids.sort_unstable();
    assert_eq!(got_ids, want_ids);
    for r in &rows {
        let i = r[0].as_u64().unwrap();
        assert_eq!(r[1], format!("event-{i}"));
        assert_eq!(f(&r[2]), i as f64 * 0.5);
        assert_eq!(r[3], i % 2 == 0);
        assert_eq!(r[4], 200 + i % 3);
        assert_eq!(r[5], format!("/r/{}", i % 5));
        assert_eq!(r[6], "r1");
    }
    // libhoney's `time` (isoformat + "Z") is the event time.
    let t = server
        .rows("SELECT min(timestamp), max(timestamp) FROM \"py-hny\"")
        .await;
    let lo = summary["time_min"].as_str().unwrap();
    let hi = summary["time_max"].as_str().unwrap();
    assert!(
        t[0][0].as_str().unwrap() >= &lo[..19] && t[0][1].as_str().unwrap() <= hi,
        "stored times {t:?} outside [{lo}, {hi}]"
    );
}

/// Checks one OTel trace export against what the script sent.
async fn check_traces(server: &Server, encoding: &str) {
    let service = format!("py-otel-{encoding}");
    let summary = run_client(
        "otel_traces.py",
        &[
            "--endpoint",
            &server.url,
            "--key",
            INGEST_KEY,
            "--encoding",
            encoding,
            "--service",
            &service,
            "--run-id",
            encoding,
        ],
    );
    let trace_id = summary["trace_id"].as_str().expect("one trace").to_owned();
    let spans = summary["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 4);
    let events: u64 = spans.iter().map(|s| s["events"].as_u64().unwrap()).sum();
    let links: u64 = spans.iter().map(|s| s["links"].as_u64().unwrap()).sum();
    assert_eq!((events, links), (2, 1));
    let total = 4 + events + links;
    let table = format!("\"{service}\"");
    assert_eq!(
        server
            .wait_count(
                &format!("{table} WHERE \"trace.trace_id\" = '{trace_id}'"),
                total
            )
            .await,
        total
    );

    // The spans: ids, parents, kinds, durations, status, error.
    let rows = server
        .rows(&format!(
            "SELECT name, \"trace.span_id\", \"trace.parent_id\", \"span.kind\", duration_ms, \
             status_code, error, \"span.num_events\", \"span.num_links\", run_id, \
             \"service.name\", \"deployment.environment\", \"meta.signal_type\" \
             FROM {table} WHERE \"trace.trace_id\" = '{trace_id}' \
             AND \"meta.annotation_type\" IS NULL"
        ))
        .await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let by_name: BTreeMap<&str, &Vec<Json>> =
        rows.iter().map(|r| (r[0].as_str().unwrap(), r)).collect();
    for s in spans {
        let name = s["name"].as_str().unwrap();
        let r = by_name
            .get(name)
            .unwrap_or_else(|| panic!("span {name} stored"));
        assert_eq!(r[1], s["span_id"], "{name}");
        assert_eq!(r[2], s["parent_span_id"], "{name}");
        let kind = match s["kind"].as_u64().unwrap() {
            1 => "internal",
            2 => "server",
            3 => "client",
            k => panic!("kind {k}"),
        };
        assert_eq!(r[3], kind, "{name}");
        assert!(
            (f(&r[4]) - f(&s["duration_ms"])).abs() < 1e-6,
            "{name}: duration {} vs {}",
            r[4],
            s["duration_ms"]
        );
        assert_eq!(r[5], s["status_code"], "{name}");
        assert_eq!(r[6], s["status_code"] == 2, "{name}");
        assert_eq!(r[7], s["events"], "{name}");
        assert_eq!(r[8], s["links"], "{name}");
        assert_eq!(r[9], encoding);
        assert_eq!(r[10], service.as_str());
        assert_eq!(r[11], "test");
        assert_eq!(r[12], "trace");
    }

    // Span attributes with their types; the exception copied onto its span.
    let root = server
        .rows(&format!(
            "SELECT \"http.status_code\", \"http.route\", \"customer.tier\", \"feature.flags\" \
             FROM {table} WHERE \"trace.trace_id\" = '{trace_id}' AND name = 'GET /checkout'"
        ))
        .await;
    assert_eq!(
        root[0],
        vec![
            Json::from(500),
            Json::from("/checkout"),
            Json::from("gold"),
            Json::from(r#"["a","b"]"#)
        ]
    );
    let charge = server
        .rows(&format!(
            "SELECT status_message, \"exception.type\", \"exception.message\", error \
             FROM {table} WHERE \"trace.trace_id\" = '{trace_id}' AND name = 'charge-card'"
        ))
        .await;
    assert_eq!(charge[0][0], "card declined");
    assert_eq!(charge[0][1], "ValueError");
    assert_eq!(charge[0][2], "card declined");
    assert_eq!(charge[0][3], true);

    // Span events and the link as their own events.
    let load_cart = spans.iter().find(|s| s["name"] == "load-cart").unwrap();
    let charge_span = spans.iter().find(|s| s["name"] == "charge-card").unwrap();
    let ann = server
        .rows(&format!(
            "SELECT \"meta.annotation_type\", name, parent_name, \"trace.parent_id\", \"key\", \
             \"trace.link.span_id\", \"trace.link.trace_id\" FROM {table} \
             WHERE \"trace.trace_id\" = '{trace_id}' AND \"meta.annotation_type\" IS NOT NULL \
             ORDER BY \"meta.annotation_type\", name"
        ))
        .await;
    assert_eq!(ann.len(), 3, "{ann:?}");
    assert_eq!(ann[0][0], "link");
    assert_eq!(ann[0][2], "charge-card");
    assert_eq!(ann[0][3], charge_span["span_id"]);
    assert_eq!(ann[0][5], load_cart["span_id"]);
    assert_eq!(ann[0][6], trace_id.as_str());
    assert_eq!(
        (&ann[1][0], &ann[1][1], &ann[1][2]),
        (
            &Json::from("span_event"),
            &Json::from("cache-miss"),
            &Json::from("load-cart")
        )
    );
    assert_eq!(ann[1][3], load_cart["span_id"]);
    assert_eq!(ann[1][4], "cart:42");
    assert_eq!(
        (&ann[2][1], &ann[2][2]),
        (&Json::from("exception"), &Json::from("charge-card"))
    );
}

#[tokio::test]
async fn opentelemetry_sdk_traces_protobuf_json_and_base64_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    for encoding in ["protobuf", "json", "json-base64"] {
        check_traces(&server, encoding).await;
    }
}

#[tokio::test]
async fn opentelemetry_sdk_logs_protobuf_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    for encoding in ["protobuf", "json"] {
        let service = format!("py-logs-{encoding}");
        let summary = run_client(
            "otel_logs.py",
            &[
                "--endpoint",
                &server.url,
                "--key",
                INGEST_KEY,
                "--encoding",
                encoding,
                "--service",
                &service,
                "--run-id",
                encoding,
            ],
        );
        let logs = summary["logs"].as_array().unwrap();
        assert_eq!(logs.len(), 5);
        let table = format!("\"{service}\"");
        assert_eq!(server.wait_count(&table, 5).await, 5);
        let rows = server
            .rows(&format!(
                "SELECT body, severity_text, severity_number, severity, \"trace.trace_id\", \
                 \"trace.span_id\", run_id, \"meta.signal_type\", \"service.name\" \
                 FROM {table} ORDER BY timestamp, body"
            ))
            .await;
        assert_eq!(rows.len(), 5);
        let mut want: Vec<&Json> = logs.iter().collect();
        want.sort_by_key(|l| {
            (
                l["time_unix_nano"].as_u64().unwrap() / 1000,
                l["body"].to_string(),
            )
        });
        for (r, l) in rows.iter().zip(want) {
            assert_eq!(r[0], l["body"], "{r:?}");
            assert_eq!(r[1], l["severity_text"]);
            assert_eq!(r[2], l["severity_number"]);
            assert_eq!(
                r[3],
                l["severity_text"].as_str().unwrap().to_ascii_lowercase()
            );
            assert_eq!(r[4], l["trace_id"]);
            assert_eq!(r[5], l["span_id"]);
            assert_eq!(r[6], encoding);
            assert_eq!(r[7], "log");
            assert_eq!(r[8], service.as_str());
        }
        let with_trace = rows.iter().filter(|r| !r[4].is_null()).count();
        assert_eq!(with_trace, 3, "the three logs inside a span carry its ids");
        let order_ids = server
            .rows(&format!(
                "SELECT sum(\"order.id\"), count(\"order.id\") FROM {table}"
            ))
            .await;
        let want_sum: i64 = logs
            .iter()
            .filter_map(|l| l["attributes"]["order.id"].as_i64())
            .sum();
        assert_eq!(order_ids[0][0], want_sum);
        assert_eq!(order_ids[0][1], 3);
    }
}

/// A CI job with the real clients: libhoney sends history and live traffic, requests posts the
/// deploy marker and polls the verdict; the new version errs twice as often.
#[tokio::test]
async fn libhoney_ci_job_posts_a_deploy_and_gets_a_fail_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--alert-delay-ms", "1000"], &[]).await;
    let (status, c) = server
        .call(
            reqwest::Method::PUT,
            "/api/v1/conventions/ci",
            ADMIN_KEY,
            Some(serde_json::json!({"deploy_check": {
                "baseline_seconds": 60, "warmup_seconds": 2, "observe_seconds": 60, "min_events": 100
            }})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let out = run_client(
        "deploy_ci.py",
        &[
            "--endpoint",
            &server.url,
            "--ingest-key",
            INGEST_KEY,
            "--query-key",
            QUERY_KEY,
            "--dataset",
            "ci",
            "--service",
            "checkout",
        ],
    );
    eprintln!(
        "libhoney CI job: verdict {} after {:.1} s, {} polls",
        out["verdict"],
        f(&out["seconds"]),
        out["polls"]
    );
    assert_eq!(out["verdict"], "fail", "{out}");
    assert!(f(&out["seconds"]) < 30.0, "{out}");
    let ev = &out["evidence"];
    assert!(
        ev["regressions"][0]
            .as_str()
            .unwrap()
            .starts_with("error rate of checkout rose from"),
        "{ev}"
    );
    assert_eq!(ev["dimensions"][0]["column"], "service.version", "{ev}");
    // The marker the job posted carries its commit: DORA's lead time sees it.
    let (status, d) = server
        .call(
            reqwest::Method::GET,
            "/api/v1/dora?service=checkout&window=1d",
            QUERY_KEY,
            None,
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["lead_time_for_changes"]["median_seconds"], 900.0, "{d}");
    assert_eq!(d["change_failure_rate"]["rate"], 1.0, "{d}");
}

/// The five-second loop with real clients (tests/compat/deploy_loop.py): libhoney sends the
/// events, `eventide deploy --wait` fails the deploy of a version that errs twice as often
/// (exit 1), a trigger on the service fires, the rollback (`eventide deploy --type rollback`)
/// turns the check `recovered` and resolves the trigger. States and their order are asserted;
/// the times are printed (the benchmark figures are in docs/OPERATIONS.md).
#[tokio::test]
async fn libhoney_and_the_cli_fail_a_deploy_then_see_its_rollback_recover() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--alert-delay-ms", "1000"], &[]).await;
    let (status, c) = server
        .call(
            reqwest::Method::PUT,
            "/api/v1/conventions/loop",
            ADMIN_KEY,
            Some(serde_json::json!({"deploy_check": {
                "baseline_seconds": 60, "observe_seconds": 120
            }})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let bin = common::binary();
    let out = run_client(
        "deploy_loop.py",
        &[
            "--endpoint",
            &server.url,
            "--eventide",
            bin.to_str().unwrap(),
            "--ingest-key",
            INGEST_KEY,
            "--query-key",
            QUERY_KEY,
            "--admin-key",
            ADMIN_KEY,
            "--dataset",
            "loop",
            "--service",
            "checkout",
        ],
    );
    eprintln!(
        "deploy loop: `eventide deploy --wait` exited {} after {:.1} s; trigger fired {:.1} s after the deploy; \
         recovered {:.1} s and trigger resolved {:.1} s after the rollback; {} events sent\n{}",
        out["deploy_exit"],
        f(&out["deploy_seconds"]),
        f(&out["trigger_fired_after_s"]),
        f(&out["recovered_after_rollback_s"]),
        f(&out["trigger_resolved_after_rollback_s"]),
        out["events_sent"],
        out["deploy_output"].as_str().unwrap_or_default(),
    );
    assert_eq!(out["deploy_exit"], 1, "{out}");
    let printed = out["deploy_output"].as_str().unwrap();
    assert!(printed.starts_with("FAIL: checkout v2 failed"), "{printed}");
    assert!(
        printed.contains("error rate of checkout rose from"),
        "{printed}"
    );
    let v = &out["failed_verdict"];
    assert_eq!(v["verdict"], "recovered", "{v}");
    let (failed_at, recovered_at) = (
        v["failed_at"].as_i64().unwrap(),
        v["recovered_at"].as_i64().unwrap(),
    );
    let rec = &v["evidence"]["recovery"];
    let fix = rec["fix_time"].as_i64().unwrap();
    assert!(
        failed_at <= fix && fix <= recovered_at,
        "failure {failed_at}, fix {fix}, recovery {recovered_at}"
    );
    assert!(
        rec["fix"]["marker_id"].is_string(),
        "the rollback marker is the fix: {rec}"
    );
    let r = &out["trigger_resolution"];
    assert_eq!(r["resolved_by"], out["marker_id"], "{r}");
    assert_eq!(r["state"], "ok", "{r}");
    // DORA: the failed deploy counts as a change failure, restored when it recovered.
    let (status, d) = server
        .call(
            reqwest::Method::GET,
            "/api/v1/dora?service=checkout&window=1d",
            QUERY_KEY,
            None,
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["change_failure_rate"]["failed"], 1, "{d}");
    let incidents = d["time_to_restore"]["incidents"].as_array().unwrap();
    let check = incidents
        .iter()
        .find(|i| i["kind"] == "deploy_check")
        .expect("the deploy check's incident");
    assert_eq!(check["seconds"], (recovered_at - failed_at) as f64, "{d}");
}
