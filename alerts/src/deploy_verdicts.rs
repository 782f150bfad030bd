//! The deploy checks' verdicts as [`Alerts`] serves them: waiting for a final one (`?wait=`),
//! notifying it, one verdict, the deploy list, its charts, and DORA metrics.

use std::collections::HashMap;
use std::time::Duration;

use eventide_query::QuerySpec;
use serde_json::{Value as Json, json};

use crate::AlertError;
use crate::deploys::{self, DeployCheck, Verdict};
use crate::markers::{ALL_DATASETS, Marker};
use crate::runner::{Alerts, blocking_err};

/// The key under which delivering verdict `v` to `target` is noted (a recovery is told too).
pub(crate) fn notified_key(v: Verdict, target: &str) -> String {
    if v == Verdict::Recovered {
        format!("{target}#recovered")
    } else {
        target.to_owned()
    }
}

impl Alerts {
    /// The verdict of `marker_id` once it is final, waiting at most `max` (the current one
    /// then); `None` when no such marker exists.
    pub async fn wait_verdict(&self, marker_id: &str, max: Duration) -> Option<Json> {
        let deadline = tokio::time::Instant::now() + max;
        let mut rx = self.inner.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let v = self.verdict(marker_id)?;
            let done = v["verdict"]
                .as_str()
                .is_some_and(|s| s != Verdict::Pending.as_str());
            if done || tokio::time::Instant::now() >= deadline {
                return Some(v);
            }
            // Woken by any check's change (or, for a marker just posted, by the next look).
            let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
        }
    }

    pub(crate) fn pending_checks(&self) -> std::sync::MutexGuard<'_, HashMap<String, DeployCheck>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deploy checks being watched (no final verdict yet).
    pub fn pending_deploy_checks(&self) -> usize {
        self.pending_checks().len()
    }

    /// A deploy's latest check: the pending evaluation, else the kept verdict.
    pub(crate) fn current_check(&self, marker_id: &str) -> Option<DeployCheck> {
        let pending = self.pending_checks().get(marker_id).cloned();
        pending.or_else(|| self.inner.deploys.get(marker_id))
    }

    /// Webhooks configured for the deploy checks of the marker's dataset(s).
    pub(crate) fn verdict_targets(&self, m: &Marker) -> Vec<String> {
        let datasets = if m.dataset == ALL_DATASETS {
            self.inner.engine.store().datasets()
        } else {
            vec![m.dataset.clone()]
        };
        let mut out: Vec<String> = Vec::new();
        for ds in datasets {
            for r in self.inner.conventions.get(&ds).deploy_check.recipients {
                if let Some(t) = r.target
                    && !out.contains(&t)
                {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The webhook payload of a deploy verdict.
    pub fn verdict_payload(&self, m: &Marker, c: &DeployCheck) -> Json {
        let conv = self.inner.conventions.get(&m.dataset);
        let service_filter = json!([{"column": conv.service, "op": "=", "value": c.service}]);
        let spec: QuerySpec = serde_json::from_value(json!({
            "calculations": [{"op": "COUNT"}, {"op": "P95", "column": conv.latency}],
            "filters": service_filter,
            "breakdowns": conv.version.first().map(|v| vec![v.clone()]).unwrap_or_default(),
        }))
        .unwrap_or_default();
        let s = &conv.deploy_check;
        let url = (m.dataset != ALL_DATASETS).then(|| {
            self.query_link(
                &m.dataset,
                &spec,
                m.start_time - s.baseline_seconds as i64,
                m.start_time + (s.warmup_seconds + s.observe_seconds) as i64,
            )
        });
        json!({
            "id": format!("deploy-{}", m.id),
            "kind": "deploy_check",
            "verdict": c.verdict,
            "marker": m,
            "evidence": c.evidence,
            "decided_at": c.decided_at,
            "url": url,
        })
    }

    pub(crate) async fn notify_verdict(&self, m: &Marker, mut c: DeployCheck) {
        let targets = self.verdict_targets(m);
        if let Some(saved) = self.inner.deploys.get(&m.id) {
            c.notified = saved.notified;
        }
        let payload = self.verdict_payload(m, &c);
        let mut delivered = false;
        let owed: Vec<&String> = targets
            .iter()
            .filter(|t| !c.notified.contains(&notified_key(c.verdict, t)))
            .collect();
        for t in owed {
            match self.inner.notifier.post(t, &payload).await {
                Ok(()) => {
                    c.notified.push(notified_key(c.verdict, t));
                    delivered = true;
                }
                Err(e) => {
                    tracing::error!(marker = %m.id, target = %t, error = %e, "deploy verdict not delivered")
                }
            }
        }
        if delivered {
            let deploys = self.inner.deploys.clone();
            let done = tokio::task::spawn_blocking(move || deploys.put(c)).await;
            if let Err(e) = done.map_err(blocking_err).and_then(|r| r) {
                tracing::error!(marker = %m.id, error = %e, "deploy verdict delivery not recorded");
            }
        }
    }

    /// The verdict of deploy marker `marker_id`: stored, or `pending` for a checked deploy not
    /// evaluated yet; `None` when no such marker exists.
    pub fn verdict(&self, marker_id: &str) -> Option<Json> {
        let m = self
            .inner
            .markers
            .all()
            .into_iter()
            .find(|m| m.id == marker_id)?;
        Some(match self.current_check(marker_id) {
            Some(c) => json!({
                "marker_id": m.id,
                "marker": m,
                "verdict": c.verdict,
                "summary": c.evidence["summary"],
                "evidence": c.evidence,
                "failed_at": c.failed_at,
                "recovered_at": c.recovered_at,
                "decided_at": c.decided_at,
                "updated_at": c.updated_at,
            }),
            None if deploys::is_checked(&m) => json!({
                "marker_id": m.id, "marker": m, "verdict": Verdict::Pending, "evidence": {},
                "summary": "waiting for the first look at the deploy's events",
            }),
            None => json!({
                "marker_id": m.id,
                "verdict": Verdict::Inconclusive,
                "evidence": {"reason": format!(
                    "only markers of type {:?} that name a service are checked",
                    deploys::DEPLOY_TYPE
                )},
            }),
        })
    }

    /// Deploy markers (newest first) with their verdicts.
    pub fn deploys(&self, service: Option<&str>, dataset: Option<&str>, limit: usize) -> Vec<Json> {
        let mut checks: HashMap<String, DeployCheck> = self
            .inner
            .deploys
            .all()
            .into_iter()
            .map(|c| (c.marker_id.clone(), c))
            .collect();
        checks.extend(
            self.pending_checks()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let mut list: Vec<Marker> = self
            .inner
            .markers
            .all()
            .into_iter()
            .filter(|m| m.kind == deploys::DEPLOY_TYPE)
            .filter(|m| service.is_none_or(|s| m.service.as_deref() == Some(s)))
            .filter(|m| dataset.is_none_or(|d| m.dataset == d))
            .collect();
        list.sort_by(|a, b| (b.start_time, &b.id).cmp(&(a.start_time, &a.id)));
        list.into_iter()
            .take(limit)
            .map(|m| {
                let c = checks.get(&m.id);
                let verdict = match c {
                    Some(c) => c.verdict,
                    None if deploys::is_checked(&m) => Verdict::Pending,
                    None => Verdict::Inconclusive,
                };
                json!({
                    "checked": deploys::is_checked(&m),
                    "marker": m,
                    "verdict": verdict,
                    "regressions": c.map(|c| c.evidence["regressions"].clone()),
                    "summary": c.map(|c| c.evidence["summary"].clone()),
                    "failed_at": c.and_then(|c| c.failed_at),
                    "recovered_at": c.and_then(|c| c.recovered_at),
                    "decided_at": c.and_then(|c| c.decided_at.clone()),
                })
            })
            .collect()
    }

    /// DORA metrics of `service` over the `window_s` seconds before now.
    pub fn dora(&self, service: &str, window_s: i64, rules: &crate::dora::DoraRules) -> Json {
        let checks = self.inner.deploys.all();
        let recoveries: HashMap<String, (i64, Option<i64>)> = checks
            .iter()
            .filter_map(|c| Some((c.marker_id.clone(), (c.failed_at?, c.recovered_at))))
            .collect();
        let verdicts: HashMap<String, Verdict> = checks
            .into_iter()
            .map(|c| (c.marker_id, c.verdict))
            .collect();
        let triggers = self.inner.triggers.all();
        let services: HashMap<String, Option<String>> = triggers
            .iter()
            .map(|t| {
                let col = self.inner.conventions.get(&t.dataset).service;
                (t.id.clone(), t.service_for(&col))
            })
            .collect();
        crate::dora::compute(&crate::dora::History {
            service,
            now_s: self
                .inner
                .engine
                .store()
                .clock()
                .now_micros()
                .div_euclid(1_000_000),
            window_s,
            markers: &self.inner.markers.all(),
            verdicts: &verdicts,
            recoveries: &recoveries,
            notifications: &self.inner.journal.notifications(),
            trigger_services: &services,
            rules,
        })
    }
}

impl Alerts {
    /// The charts of deploy `marker_id` (one entry per dataset it was checked in); `None` when
    /// no such marker exists.
    pub async fn deploy_series(&self, marker_id: &str) -> Result<Option<Json>, AlertError> {
        let Some(m) = self
            .inner
            .markers
            .all()
            .into_iter()
            .find(|m| m.id == marker_id)
        else {
            return Ok(None);
        };
        let check = self.current_check(marker_id);
        let datasets = if m.dataset == ALL_DATASETS {
            self.inner.engine.store().datasets()
        } else {
            vec![m.dataset.clone()]
        };
        let now_s = self
            .inner
            .engine
            .store()
            .clock()
            .now_micros()
            .div_euclid(1_000_000);
        let mut out = Vec::new();
        for ds in datasets {
            let conv = self.inner.conventions.get(&ds);
            let has_service = self
                .inner
                .engine
                .store()
                .snapshot(&ds)
                .is_some_and(|s| s.schema.field_with_name(&conv.service).is_ok());
            if m.dataset == ALL_DATASETS && !has_service {
                continue;
            }
            out.push(
                crate::deploy_series::series(
                    &self.inner.engine,
                    &conv,
                    &ds,
                    &m,
                    check.as_ref(),
                    now_s,
                )
                .await?,
            );
        }
        Ok(Some(json!({
            "marker": m,
            "verdict": check.as_ref().map(|c| c.verdict),
            "summary": check.as_ref().map(|c| c.evidence["summary"].clone()),
            "datasets": out,
        })))
    }
}
