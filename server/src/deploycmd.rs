//! `eventide deploy`: posts a deploy marker and, with `--wait`, waits for its check's verdict
//! without polling (`GET /api/v1/deploys/{id}/verdict?wait=`), prints the evidence in one
//! paragraph and exits with the verdict's code: 0 pass, 1 fail, 2 inconclusive, 3 when no
//! verdict came before `--timeout` or the server could not be asked.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value as Json, json};

/// Flags of `eventide deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// URL of a running Eventide server.
    #[arg(long, env = "EVENTIDE_URL", default_value = "http://127.0.0.1:4080")]
    pub url: String,
    /// API key that may post markers (ingest or admin scope).
    #[arg(long, env = "EVENTIDE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// API key that may read the verdict (query or admin scope; default: --key).
    #[arg(long, env = "EVENTIDE_QUERY_KEY", hide_env_values = true)]
    pub query_key: Option<String>,
    /// Dataset the service's events go to (`__all__`: every dataset).
    #[arg(long)]
    pub dataset: String,
    /// The service deployed.
    #[arg(long)]
    pub service: String,
    /// The version deployed (as the events' version column shows it).
    #[arg(long)]
    pub version: Option<String>,
    /// Marker message (default: "deploy SERVICE VERSION").
    #[arg(long)]
    pub message: Option<String>,
    /// Marker type: `deploy` is checked; `rollback` is a fix of an earlier failed deploy.
    #[arg(long = "type", default_value = "deploy")]
    pub kind: String,
    /// Commit deployed, and its time (RFC 3339 or Unix seconds) for DORA's lead time.
    #[arg(long)]
    pub commit: Option<String>,
    #[arg(long)]
    pub commit_time: Option<String>,
    /// When the deploy happened (Unix seconds or RFC 3339; default: now), to record a past one.
    #[arg(long)]
    pub start_time: Option<String>,
    /// Environment (production, staging, …).
    #[arg(long)]
    pub environment: Option<String>,
    /// Wait for the verdict and exit with its code.
    #[arg(long)]
    pub wait: bool,
    /// Longest wait for the verdict, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Print the verdict's JSON instead of the paragraph.
    #[arg(long)]
    pub json: bool,
}

/// The exit code when no verdict came.
pub const NO_VERDICT: i32 = 3;

fn pct(v: &Json) -> String {
    v.as_f64()
        .map_or_else(|| "?".into(), |v| format!("{:.1} %", v * 100.0))
}

fn ms(v: &Json) -> String {
    v.as_f64()
        .map_or_else(|| "?".into(), |v| format!("{v:.0} ms"))
}

/// The verdict in one paragraph: the summary, then the figures it rests on.
pub fn paragraph(v: &Json) -> String {
    let verdict = v["verdict"].as_str().unwrap_or("pending");
    let mut out = format!("{}: ", verdict.to_uppercase());
    let summary = v["summary"].as_str().unwrap_or("");
    out.push_str(summary);
    let ev = &v["evidence"];
    let parts: Vec<&Json> = match ev["datasets"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![ev],
    };
    for e in parts {
        if e["before"].is_null() {
            continue;
        }
        let n = |k: &str| e[k]["events"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            " In {}: before the deploy {} events, error rate {}, p95 {}; after it {} events, error rate {}, p95 {}",
            e["dataset"].as_str().unwrap_or("?"),
            n("before"),
            pct(&e["before"]["error_rate"]),
            ms(&e["before"]["p95"]),
            n("after"),
            pct(&e["after"]["error_rate"]),
            ms(&e["after"]["p95"]),
        ));
        if !e["old_version"].is_null() {
            out.push_str(&format!(
                "; the old version beside it {} events, error rate {}",
                n("old_version"),
                pct(&e["old_version"]["error_rate"])
            ));
        }
        out.push('.');
        if let Some(dims) = e["dimensions"].as_array().filter(|d| !d.is_empty()) {
            let shown: Vec<String> = dims
                .iter()
                .take(3)
                .filter_map(|d| {
                    let top = d["values"].as_array()?.first()?;
                    Some(format!(
                        "{} = {} ({:.0} % of the failing events, {:.0} % of the rest)",
                        d["column"].as_str()?,
                        top["value"].as_str().unwrap_or("(none)"),
                        top["selection"].as_f64()? * 100.0,
                        top["baseline"].as_f64()? * 100.0
                    ))
                })
                .collect();
            if !shown.is_empty() {
                out.push_str(&format!(" What sets them apart: {}.", shown.join(", ")));
            }
        }
        if let Some(r) = e["reason"].as_str().filter(|r| !summary.contains(r)) {
            out.push_str(&format!(" {r}."));
        }
    }
    out
}

/// Unix seconds from a number of them or an RFC 3339 time.
fn unix_seconds(t: &str) -> anyhow::Result<i64> {
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    eventide_model::time::parse_time_str(t)
        .map(|us| us.div_euclid(1_000_000))
        .with_context(|| format!("{t:?} is neither Unix seconds nor an RFC 3339 time"))
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Json> {
    let resp = req.send().await.context("could not reach the server")?;
    let status = resp.status();
    let body: Json = resp.json().await.context("server reply is not json")?;
    if !status.is_success() {
        bail!(
            "server answered {status}: {}",
            body["error"].as_str().unwrap_or("unknown error")
        );
    }
    Ok(body)
}

/// Runs the command; the process's exit code.
pub async fn run(a: DeployArgs) -> i32 {
    match deploy(&a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            NO_VERDICT
        }
    }
}

async fn deploy(a: &DeployArgs) -> anyhow::Result<i32> {
    let base = a.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let with_key = |r: reqwest::RequestBuilder, k: &Option<String>| match k {
        Some(k) => r.header("X-Honeycomb-Team", k),
        None => r,
    };
    let mut body = json!({
        "type": a.kind,
        "message": a.message.clone().unwrap_or_else(|| {
            format!("{} {} {}", a.kind, a.service, a.version.clone().unwrap_or_default()).trim().to_owned()
        }),
        "service": a.service,
    });
    for (k, v) in [
        ("version", &a.version),
        ("commit", &a.commit),
        ("environment", &a.environment),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    for (k, v) in [
        ("start_time", &a.start_time),
        ("commit_time", &a.commit_time),
    ] {
        if let Some(t) = v {
            body[k] = json!(unix_seconds(t).with_context(|| format!("--{}", k.replace('_', "-")))?);
        }
    }
    let path = format!(
        "{base}/1/markers/{}",
        percent_encoding::utf8_percent_encode(&a.dataset, percent_encoding::NON_ALPHANUMERIC)
    );
    let marker = send(with_key(client.post(path).json(&body), &a.key)).await?;
    let id = marker["id"]
        .as_str()
        .context("the server's marker has no id")?
        .to_owned();
    if !a.wait {
        println!("{id}");
        return Ok(0);
    }
    eprintln!("marker {id} posted; waiting for the deploy check's verdict");
    let query_key = a.query_key.clone().or_else(|| a.key.clone());
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let wait = left.clamp(1, 60);
        let url = format!("{base}/api/v1/deploys/{id}/verdict?wait={wait}s");
        let v = send(with_key(client.get(url), &query_key)).await?;
        let verdict = v["verdict"].as_str().unwrap_or("pending");
        if verdict != "pending" {
            if a.json {
                println!("{v}");
            } else {
                println!("{}", paragraph(&v));
            }
            return Ok(match verdict {
                "pass" => 0,
                "fail" | "recovered" => 1,
                _ => 2,
            });
        }
        if Instant::now() >= deadline {
            println!(
                "no verdict within {} s: {}",
                a.timeout,
                v["summary"].as_str().unwrap_or("still pending")
            );
            return Ok(NO_VERDICT);
        }
    }
}
