//! Deploy check evidence in sentences: what a developer reads on the deploy page, in the CLI
//! and in webhooks ("error rate of checkout rose from 5.0 % to 10.1 % for version v43, only
//! in eu-west-1").

use serde_json::Value as Json;

use crate::deploy_stats::{Comparison, Decision};
use crate::deploys::Verdict;

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "only in eu-west-1" / "mostly in eu-west-1 (84 %)", from the strongest BubbleUp column
/// where one value holds most of the failing events and few of the rest.
pub fn where_(dims: &[Json]) -> Option<String> {
    let top = dims.first()?;
    let column = top["column"].as_str()?;
    let v = top["values"].as_array()?.first()?;
    let value = v["value"].as_str().unwrap_or("(none)");
    let (sel, rest) = (v["selection"].as_f64()?, v["baseline"].as_f64()?);
    if sel >= 0.95 && rest <= 0.6 {
        Some(format!("only in {column} = {value}"))
    } else if sel >= 0.6 && sel >= rest + 0.2 {
        Some(format!(
            "mostly in {column} = {value} ({:.0} %)",
            sel * 100.0
        ))
    } else {
        None
    }
}

/// One regression as a sentence.
pub fn regression(c: &Comparison, service: &str, version: Option<&str>, dims: &[Json]) -> String {
    let against = if c.against == "old_version" {
        " (against the old version running beside it)"
    } else {
        ""
    };
    let version = version
        .map(|v| format!(" for version {v}"))
        .unwrap_or_default();
    let observed = c.hits as f64 / c.events.max(1) as f64;
    let mut s = if c.metric == "error_rate" {
        let now = c.deployed.unwrap_or(observed);
        format!(
            "error rate of {service} rose from {} to {}{version}{against}",
            pct(c.baseline),
            pct(now)
        )
    } else {
        let q = c.metric.trim_start_matches("latency_");
        match c.deployed {
            Some(d) => format!(
                "{q} latency of {service} rose from {} to {}{version}{against}",
                ms(c.baseline),
                ms(d)
            ),
            None => format!(
                "{q} latency of {service} rose above {}{version}{against}: {} of new events slower, {} expected",
                ms(c.threshold),
                pct(observed),
                pct(c.healthy_rate)
            ),
        }
    };
    if let Some(w) = where_(dims) {
        s.push_str(", ");
        s.push_str(&w);
    }
    s
}

/// The whole check in one paragraph.
pub fn summary(
    verdict: Verdict,
    service: &str,
    version: Option<&str>,
    evidence: &Json,
    d: &Decision,
) -> String {
    let what = match version {
        Some(v) => format!("{service} {v}"),
        None => service.to_owned(),
    };
    let after = count(d.after_events);
    match verdict {
        Verdict::Fail => {
            let t0 = evidence["windows"]["after"]["start"].as_i64().unwrap_or(0);
            let secs = d.detected_at.map(|t| t - t0).unwrap_or(0);
            let list: Vec<String> = evidence["regressions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            format!(
                "{what} failed {secs} s after the deploy: {}.",
                list.join("; ")
            )
        }
        Verdict::Pass => {
            let e = |k: &str| evidence[k]["error_rate"].as_f64();
            let p95 = |k: &str| evidence[k]["p95"].as_f64();
            let mut parts = Vec::new();
            if let (Some(a), Some(b)) = (e("after"), e("before")) {
                parts.push(format!("error rate {} (was {})", pct(a), pct(b)));
            }
            if let (Some(a), Some(b)) = (p95("after"), p95("before")) {
                parts.push(format!("p95 {} (was {})", ms(a), ms(b)));
            }
            format!(
                "{what} passed: {} over {after} events after the warm-up, no regression.",
                parts.join(", ")
            )
        }
        Verdict::Inconclusive => format!(
            "{what} is inconclusive: {}.",
            evidence["reason"].as_str().unwrap_or("too little traffic")
        ),
        Verdict::Pending => format!(
            "{what} is being checked: {after} events after the warm-up so far, no regression yet."
        ),
        Verdict::Recovered => format!("{what} recovered."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sentences_name_the_service_version_and_place() {
        let c = Comparison {
            metric: "error_rate".into(),
            against: "before".into(),
            baseline: 0.05,
            deployed: Some(0.101),
            threshold: 0.057,
            null_rate: 0.057,
            healthy_rate: 0.05,
            events: 1000,
            hits: 101,
            log_lr: 12.0,
            log_lr_needed: 7.6,
            regressed: true,
            detected_at: Some(4),
            threshold_index: None,
        };
        let dims = vec![json!({"column": "region", "score": 0.8, "values": [
            {"value": "eu-west-1", "selection": 0.98, "baseline": 0.17}
        ]})];
        assert_eq!(
            regression(&c, "checkout", Some("v43"), &dims),
            "error rate of checkout rose from 5.0 % to 10.1 % for version v43, only in region = eu-west-1"
        );
        assert_eq!(count(59_800), "59,800");
        assert_eq!(count(999), "999");
    }
}
