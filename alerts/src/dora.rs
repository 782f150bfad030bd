//! DORA metrics of a service, from its markers, deploy verdicts and trigger firings.
//!
//! # Rules (the defaults; each can be changed per request)
//! - **Deploys**: markers of a deploy type (`deploy`) whose `service` is the service, with
//!   `start_time` in the window.
//! - **Deployment frequency**: deploys in the window, and per day.
//! - **Lead time for changes**: per deploy with a `commit_time`, `start_time - commit_time`;
//!   the median (and mean) over the window's deploys.
//! - **Change failure rate**: failed deploys ÷ deploys. A deploy failed when its deploy check's
//!   verdict is `fail`, or a rollback marker (type `rollback`) of the service, or a firing of a
//!   trigger of the service, follows it within `failure_window` and before the service's next
//!   deploy.
//! - **Time to restore**: per incident, from a failed deploy check's failure to its recovery
//!   (both as seen in the data), from a trigger of the service firing to its resolution,
//!   and from the start to the end of an incident marker (type `incident`) of the service; the
//!   median over incidents that started in the window and are resolved (open ones are listed).
//!   A trigger is of a service when it says so (`service`) or its query filters on
//!   `{service column} = service`.
//!
//! Every figure lists the markers, triggers and evaluations it came from.

use std::collections::HashMap;

use serde_json::{Value as Json, json};

use crate::deploys::Verdict;
use crate::journal::{Evaluation, Notification};
use crate::markers::Marker;

/// What counts as what.
#[derive(Debug, Clone)]
pub struct DoraRules {
    /// A deploy failed when a failure follows it within this many seconds.
    pub failure_window_s: i64,
    pub deploy_types: Vec<String>,
    pub rollback_types: Vec<String>,
    pub incident_types: Vec<String>,
}

impl Default for DoraRules {
    fn default() -> Self {
        Self {
            failure_window_s: 3600,
            deploy_types: vec!["deploy".into()],
            rollback_types: vec!["rollback".into()],
            incident_types: vec!["incident".into()],
        }
    }
}

/// Everything DORA metrics are computed from.
pub struct History<'a> {
    pub service: &'a str,
    pub now_s: i64,
    pub window_s: i64,
    pub markers: &'a [Marker],
    pub verdicts: &'a HashMap<String, Verdict>,
    /// Failed deploy checks: when the failure and (if seen) the fix reached the data.
    pub recoveries: &'a HashMap<String, (i64, Option<i64>)>,
    /// Trigger evaluations that notified, oldest first.
    pub notifications: &'a [Evaluation],
    /// Each trigger's service, if it has one.
    pub trigger_services: &'a HashMap<String, Option<String>>,
    pub rules: &'a DoraRules,
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn time(s: i64) -> String {
    eventide_model::time::format_micros(s.saturating_mul(1_000_000))
}

/// A trigger firing and its resolution.
struct Firing<'a> {
    fired: &'a Evaluation,
    resolved: Option<&'a Evaluation>,
}

/// The firings of the service's triggers (a firing: `triggered` after `ok`; repeats of an
/// on_true trigger are the same firing).
fn firings<'a>(h: &History<'a>) -> Vec<Firing<'a>> {
    let mut open: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Firing<'a>> = Vec::new();
    for e in h.notifications {
        let ours = h
            .trigger_services
            .get(&e.trigger_id)
            .and_then(|s| s.as_deref())
            == Some(h.service);
        if !ours {
            continue;
        }
        match e.notification {
            Some(Notification::Triggered) if !open.contains_key(e.trigger_id.as_str()) => {
                open.insert(&e.trigger_id, out.len());
                out.push(Firing {
                    fired: e,
                    resolved: None,
                });
            }
            Some(Notification::Resolved) => {
                if let Some(i) = open.remove(e.trigger_id.as_str()) {
                    out[i].resolved = Some(e);
                }
            }
            _ => {}
        }
    }
    out
}

/// The four metrics, with what each came from.
pub fn compute(h: &History<'_>) -> Json {
    let r = h.rules;
    let start = h.now_s - h.window_s;
    let ours: Vec<&Marker> = h
        .markers
        .iter()
        .filter(|m| m.service.as_deref() == Some(h.service))
        .collect();
    let is = |m: &Marker, types: &[String]| types.contains(&m.kind);
    let mut all_deploys: Vec<&Marker> = ours
        .iter()
        .copied()
        .filter(|m| is(m, &r.deploy_types))
        .collect();
    all_deploys.sort_by(|a, b| (a.start_time, &a.id).cmp(&(b.start_time, &b.id)));
    let deploys: Vec<&Marker> = all_deploys
        .iter()
        .copied()
        .filter(|m| m.start_time >= start && m.start_time <= h.now_s)
        .collect();
    let n = deploys.len();
    let days = h.window_s as f64 / 86_400.0;

    // Lead time.
    let leads: Vec<(String, f64)> = deploys
        .iter()
        .filter_map(|m| {
            m.commit_time
                .filter(|c| *c <= m.start_time)
                .map(|c| (m.id.clone(), (m.start_time - c) as f64))
        })
        .collect();
    let lead_values: Vec<f64> = leads.iter().map(|(_, s)| *s).collect();

    // Change failures.
    let firings = firings(h);
    let rollbacks: Vec<&Marker> = ours
        .iter()
        .copied()
        .filter(|m| is(m, &r.rollback_types))
        .collect();
    let mut failures = Vec::new();
    for d in &deploys {
        let next = all_deploys
            .iter()
            .find(|o| (o.start_time, &o.id) > (d.start_time, &d.id))
            .map_or(i64::MAX, |o| o.start_time);
        let horizon = (d.start_time + r.failure_window_s).min(next);
        let mut reasons = Vec::new();
        if let Some(v @ (Verdict::Fail | Verdict::Recovered)) = h.verdicts.get(&d.id) {
            reasons.push(json!({"kind": "deploy_check", "verdict": v}));
        }
        for rb in &rollbacks {
            if rb.start_time >= d.start_time && rb.start_time <= horizon {
                reasons.push(json!({"kind": "rollback", "marker": rb.id}));
            }
        }
        for f in &firings {
            let t = f.fired.window_end;
            if t >= d.start_time && t < horizon {
                reasons.push(json!({
                    "kind": "trigger", "trigger": f.fired.trigger_id,
                    "evaluation": f.fired.id, "fired_at": time(t),
                }));
            }
        }
        if !reasons.is_empty() {
            failures.push(json!({"marker": d.id, "reasons": reasons}));
        }
    }

    // Time to restore.
    let mut incidents = Vec::new();
    let mut open = Vec::new();
    let mut restore = Vec::new();
    for f in &firings {
        let t = f.fired.window_end;
        if t < start || t > h.now_s {
            continue;
        }
        match f.resolved {
            Some(res) => {
                // Resolved by a deploy's fix: when the data showed it.
                let end = res.resolved_at.unwrap_or(res.window_end).max(t);
                let secs = (end - t) as f64;
                restore.push(secs);
                incidents.push(json!({
                    "kind": "trigger", "trigger": f.fired.trigger_id,
                    "fired": f.fired.id, "resolved": res.id,
                    "start": time(t), "end": time(end), "seconds": secs,
                }));
            }
            None => open.push(json!({
                "kind": "trigger", "trigger": f.fired.trigger_id,
                "fired": f.fired.id, "start": time(t),
            })),
        }
    }
    // Failed deploy checks: from the failure seen in the data to the fix seen in it.
    for d in &deploys {
        let Some(&(failed, recovered)) = h.recoveries.get(&d.id) else {
            continue;
        };
        if failed < start || failed > h.now_s {
            continue;
        }
        match recovered {
            Some(end) => {
                let secs = (end - failed) as f64;
                restore.push(secs);
                incidents.push(json!({
                    "kind": "deploy_check", "marker": d.id,
                    "start": time(failed), "end": time(end), "seconds": secs,
                }));
            }
            None => open.push(json!({
                "kind": "deploy_check", "marker": d.id, "start": time(failed),
            })),
        }
    }
    for m in ours.iter().filter(|m| is(m, &r.incident_types)) {
        if m.start_time < start || m.start_time > h.now_s {
            continue;
        }
        match m.end_time {
            Some(end) => {
                let secs = (end - m.start_time) as f64;
                restore.push(secs);
                incidents.push(json!({
                    "kind": "incident_marker", "marker": m.id,
                    "start": time(m.start_time), "end": time(end), "seconds": secs,
                }));
            }
            None => open.push(json!({
                "kind": "incident_marker", "marker": m.id, "start": time(m.start_time),
            })),
        }
    }

    json!({
        "service": h.service,
        "window": {"start": time(start), "end": time(h.now_s), "seconds": h.window_s},
        "deployment_frequency": {
            "deploys": n,
            "per_day": n as f64 / days,
            "markers": deploys.iter().map(|m| &m.id).collect::<Vec<_>>(),
        },
        "lead_time_for_changes": {
            "median_seconds": median(lead_values.clone()),
            "mean_seconds": mean(&lead_values),
            "deploys": leads.iter().map(|(id, s)| json!({"marker": id, "seconds": s})).collect::<Vec<_>>(),
        },
        "change_failure_rate": {
            "rate": (n > 0).then(|| failures.len() as f64 / n as f64),
            "failed": failures.len(),
            "deploys": n,
            "failures": failures,
        },
        "time_to_restore": {
            "median_seconds": median(restore.clone()),
            "mean_seconds": mean(&restore),
            "incidents": incidents,
            "unresolved": open,
        },
        "rules": {
            "failure_window_seconds": r.failure_window_s,
            "deploy_types": r.deploy_types,
            "rollback_types": r.rollback_types,
            "incident_types": r.incident_types,
        },
    })
}

/// Parses a window like `30d`, `12h`, `90m`, `2w` or plain seconds.
pub fn parse_window(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("window {s:?} is not a number with a unit (s, m, h, d, w)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("window {s:?} has an unknown unit (s, m, h, d, w)")),
    };
    let secs = n.saturating_mul(mult);
    if !(60..=366 * 86_400).contains(&secs) {
        return Err("window must be between 1 minute and 366 days".into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_windows() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(parse_window("30d"), Ok(30 * 86_400));
        assert_eq!(parse_window("90m"), Ok(5400));
        assert_eq!(parse_window("3600"), Ok(3600));
        assert!(parse_window("5y").is_err());
        assert!(parse_window("10s").is_err());
    }
}
