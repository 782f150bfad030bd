//! The adversarial ingest check: every shape of hostile or unusual traffic (shapes.rs) on
//! every endpoint (encode.rs). Each event is either acknowledged, and then present exactly once
//! after a `kill -9` and a restart, or refused with a 4xx (whole request or its item) whose
//! error names the problem; never a 5xx, never a crash. The server's peak RSS is measured for
//! each shape and endpoint and must stay under `--max-memory-mb`.
//!
//! Prints one line per shape and endpoint: what was stored and refused (with the first error),
//! and the peak RSS.

#[path = "../common/mod.rs"]
mod common;
mod encode;
mod shapes;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{INGEST_KEY, Server, TestClock};
use encode::{Endpoint, Request, Stored};

const MAX_MEMORY_MB: u64 = 2048;

/// What one shape on one endpoint did.
struct Case {
    shape: &'static str,
    endpoint: Endpoint,
    /// Every id sent, with its dataset.
    sent: HashMap<u64, String>,
    acked: HashSet<u64>,
    refused_ids: HashSet<u64>,
    counted: Vec<(Vec<u64>, usize)>,
    refusals: Vec<String>,
    not_applicable: Option<String>,
    peak_rss: u64,
    failures: Vec<String>,
}

async fn metric(s: &Server, name: &str) -> u64 {
    s.metric(name).await as u64
}

async fn send_udp(s: &Server, case: &mut Case, reqs: &[Request]) {
    let addr = s.udp.expect("udp address");
    let names = [
        "eventide_udp_lines_accepted_total",
        "eventide_udp_lines_rejected_total",
        "eventide_udp_lines_dropped_total",
    ];
    let mut before = [0u64; 3];
    for (b, n) in before.iter_mut().zip(names) {
        *b = metric(s, n).await;
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let lines: usize = reqs.iter().map(|r| r.ids.len()).sum();
    for r in reqs {
        sock.send_to(&r.body, addr).expect("send a datagram");
        // Paced, so the kernel's receive buffer never overflows (those drops are not counted).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = [0u64; 3];
    loop {
        for (v, n) in now.iter_mut().zip(names) {
            *v = metric(s, n).await;
        }
        let seen: u64 = now.iter().zip(before).map(|(a, b)| a - b).sum();
        if seen >= lines as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let [accepted, rejected, dropped] =
        [now[0] - before[0], now[1] - before[1], now[2] - before[2]];
    if accepted + rejected + dropped != lines as u64 {
        case.failures.push(format!(
            "udp: {lines} lines sent, {accepted} accepted + {rejected} rejected + {dropped} dropped"
        ));
    }
    if dropped > 0 {
        case.failures.push(format!(
            "udp: {dropped} lines dropped by a log that should keep up"
        ));
    }
    if rejected > 0 {
        case.refusals.push(format!(
            "{rejected} lines rejected (eventide_udp_lines_rejected_total)"
        ));
    }
    let ids: Vec<u64> = reqs
        .iter()
        .flat_map(|r| r.ids.iter().map(|(id, _)| *id))
        .collect();
    case.counted.push((ids, accepted as usize));
}

async fn send_http(s: &Server, case: &mut Case, reqs: Vec<Request>) {
    for r in reqs {
        let reply = s
            .post(&r.path, INGEST_KEY)
            .header("content-type", r.content_type)
            .body(r.body)
            .send()
            .await;
        let reply = match reply {
            Ok(x) => x,
            Err(e) => {
                case.failures.push(format!("no reply: {e}"));
                continue;
            }
        };
        let status = reply.status().as_u16();
        let body = reply.bytes().await.unwrap_or_default();
        let ids: Vec<u64> = r.ids.iter().map(|(id, _)| *id).collect();
        match status {
            200 | 202 => match encode::stored(case.endpoint, &r.ids, &body) {
                Ok(Stored::Known { acked, refused }) => {
                    case.refused_ids
                        .extend(ids.iter().filter(|id| !acked.contains(id)));
                    case.acked.extend(acked);
                    check_named(case, &refused);
                    case.refusals.extend(refused);
                }
                Ok(Stored::Count { n, refused }) => {
                    check_named(case, &refused);
                    case.refusals.extend(refused);
                    case.counted.push((ids, n));
                }
                Err(e) => case
                    .failures
                    .push(format!("{status} reply not understood: {e}")),
            },
            400..=499 => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let msg = v["error"].as_str().unwrap_or_default().to_owned();
                case.refused_ids.extend(ids);
                check_named(case, std::slice::from_ref(&msg));
                case.refusals.push(format!("{status} {msg}"));
            }
            s => case.failures.push(format!(
                "answered {s}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
        }
    }
}

/// A refusal must say what was wrong.
fn check_named(case: &mut Case, messages: &[String]) {
    for m in messages {
        if m.trim().len() < 10 {
            case.failures
                .push(format!("a refusal without a clear error: {m:?}"));
        }
    }
}

/// Reads the ids stored in `ds` (`None` when the dataset does not exist: nothing stored).
async fn stored_ids(s: &Server, ds: &str) -> Result<Vec<u64>, String> {
    let (status, body) = s.try_sql(&format!("SELECT adv_id FROM \"{ds}\"")).await;
    match status {
        200 => Ok(body["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r[0].as_u64())
            .collect()),
        // A dataset that nothing was stored in does not exist (or has no adv_id column).
        400 | 404 => Ok(Vec::new()),
        _ => Err(format!("reading {ds} answered {status}: {body}")),
    }
}

async fn verify(s: &Server, case: &mut Case) {
    let datasets: HashSet<&String> = case.sent.values().collect();
    let mut count: HashMap<u64, usize> = HashMap::new();
    for ds in datasets {
        match stored_ids(s, ds).await {
            Ok(ids) => ids
                .into_iter()
                .for_each(|id| *count.entry(id).or_default() += 1),
            Err(e) => case.failures.push(e),
        }
    }
    let twice = count.values().filter(|n| **n > 1).count();
    let unknown = count
        .keys()
        .filter(|id| !case.sent.contains_key(id))
        .count();
    let lost = case
        .acked
        .iter()
        .filter(|id| !count.contains_key(id))
        .count();
    let refused_kept = case
        .refused_ids
        .iter()
        .filter(|id| count.contains_key(id))
        .count();
    for (what, n) in [
        ("stored twice", twice),
        ("stored but never sent", unknown),
        ("acknowledged and lost", lost),
        ("refused but stored", refused_kept),
    ] {
        if n > 0 {
            case.failures.push(format!("{n} events {what}"));
        }
    }
    for (ids, n) in &case.counted {
        let present = ids.iter().filter(|id| count.contains_key(id)).count();
        if present != *n {
            case.failures.push(format!(
                "{n} of {} events acknowledged, {present} stored",
                ids.len()
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_shape_on_every_endpoint_is_stored_exactly_once_or_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let max = MAX_MEMORY_MB.to_string();
    let args = [
        "--udp",
        "127.0.0.1:0",
        "--max-memory-mb",
        max.as_str(),
        "--flush-seconds",
        "2",
    ];
    let at = clock.start_value();
    let mut s =
        Server::start_with(dir.path(), &args, &[("EVENTIDE_CLOCK_START", at.as_str())]).await;
    let mut cases = Vec::new();
    for (k, ep) in encode::ALL.into_iter().enumerate() {
        for shape in shapes::all(k as u64 * 10_000_000) {
            let mut case = Case {
                shape: shape.name,
                endpoint: ep,
                sent: HashMap::new(),
                acked: HashSet::new(),
                refused_ids: HashSet::new(),
                counted: Vec::new(),
                refusals: Vec::new(),
                not_applicable: None,
                peak_rss: 0,
                failures: Vec::new(),
            };
            let reqs = match encode::requests(&shape, ep) {
                Ok(r) => r,
                Err(why) => {
                    case.not_applicable = Some(why);
                    cases.push(case);
                    continue;
                }
            };
            drop(shape);
            case.sent = reqs.iter().flat_map(|r| r.ids.iter().cloned()).collect();
            s.reset_peak_rss();
            if ep == Endpoint::Udp {
                send_udp(&s, &mut case, &reqs).await;
            } else {
                send_http(&s, &mut case, reqs).await;
            }
            case.peak_rss = s.peak_rss();
            if case.peak_rss >= MAX_MEMORY_MB << 20 {
                case.failures.push(format!(
                    "peak RSS {} MiB, over --max-memory-mb {MAX_MEMORY_MB}",
                    case.peak_rss >> 20
                ));
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "the server died on {} via {}: {status}",
                    case.shape,
                    ep.name()
                );
            }
            cases.push(case);
        }
    }
    // Everything acknowledged must survive a kill -9.
    s.kill9();
    let at = clock.start_value();
    s = Server::start_with(dir.path(), &args, &[("EVENTIDE_CLOCK_START", at.as_str())]).await;
    let mut failed = 0;
    for case in &mut cases {
        if case.not_applicable.is_none() {
            verify(&s, case).await;
        }
        let stored = case.acked.len() + case.counted.iter().map(|(_, n)| n).sum::<usize>();
        let outcome = match &case.not_applicable {
            Some(why) => format!("n/a: {why}"),
            None => format!(
                "{} sent, {stored} stored, {} refused{}; peak RSS {} MiB",
                case.sent.len(),
                case.refused_ids.len()
                    + case
                        .counted
                        .iter()
                        .map(|(ids, n)| ids.len() - n)
                        .sum::<usize>(),
                case.refusals
                    .first()
                    .map(|r| format!(" (first: {:.160})", r))
                    .unwrap_or_default(),
                case.peak_rss >> 20
            ),
        };
        println!(
            "{:<24} {:<14} {outcome}{}",
            case.shape,
            case.endpoint.name(),
            if case.failures.is_empty() {
                String::new()
            } else {
                format!(" FAILED: {}", case.failures.join("; "))
            }
        );
        failed += usize::from(!case.failures.is_empty());
    }
    s.kill9();
    assert_eq!(
        failed, 0,
        "{failed} shape × endpoint cases failed (see above)"
    );
}
