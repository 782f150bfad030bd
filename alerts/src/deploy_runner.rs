//! The deploy checks' part of [`Alerts`] that runs them: scheduling checks as events arrive,
//! watching failed deploys for their fix, resolving the triggers a fix ends. What reads their
//! verdicts (waiting for one, notifying it, the deploy list, charts, DORA) is
//! [`deploy_verdicts`](crate::deploy_verdicts).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::AlertError;
use crate::deploy_check::Carry;
use crate::deploy_verdicts::notified_key;
use crate::deploys::{self, DeployCheck, Verdict};
use crate::journal::{Notification, TriggerState};
use crate::markers::{ALL_DATASETS, Marker};
use crate::notify::RecipientKind;
use crate::runner::{Alerts, MARKER_TARGET, blocking_err};

/// Later deploy and rollback markers of `m`'s service (time, id): where its fix may be.
fn later_fixes(all: &[Marker], m: &Marker) -> Vec<(i64, String)> {
    all.iter()
        .filter(|o| o.id != m.id && o.service == m.service && o.start_time >= m.start_time)
        .filter(|o| o.kind == deploys::DEPLOY_TYPE || o.kind == "rollback")
        .map(|o| (o.start_time, o.id.clone()))
        .collect()
}

impl Alerts {
    pub(crate) fn schedule_deploys(&self, now_us: i64) {
        let markers: Vec<Marker> = self
            .inner
            .markers
            .all()
            .into_iter()
            .filter(deploys::is_checked)
            .collect();
        let live: HashSet<String> = markers.iter().map(|m| m.id.clone()).collect();
        self.pending_checks().retain(|k, _| live.contains(k));
        self.carries().retain(|(k, _), _| live.contains(k));
        if let Err(e) = self.inner.deploys.retain(&live) {
            tracing::error!(error = %e, "deploy checks of deleted markers not dropped");
        }
        let now_s = now_us.div_euclid(1_000_000);
        for m in &markers {
            let existing = self.inner.deploys.get(&m.id);
            let unchanged = existing.as_ref().is_some_and(|c| {
                c.deploy_time == m.start_time
                    && c.service == m.service.clone().unwrap_or_default()
                    && c.version == m.version
                    && c.dataset == m.dataset
            });
            if unchanged
                && let Some(c) = &existing
                && c.verdict.is_final()
            {
                let watch = self.watch_seconds(m);
                if c.verdict == Verdict::Fail
                    && c.failed_at.is_some_and(|f| now_s <= f + watch)
                    && self.claim(&format!("deploy:{}", m.id))
                {
                    let (me, m, c) = (self.clone(), m.clone(), c.clone());
                    let later = later_fixes(&self.inner.markers.all(), &m);
                    tokio::spawn(async move {
                        let _permit = me.inner.permits.acquire().await;
                        match me.recover_deploy(&m, c, &later, now_s).await {
                            Ok(Some(c)) => me.notify_verdict(&m, c).await,
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(marker = %m.id, error = %e, "recovery check failed")
                            }
                        }
                        me.release(&format!("deploy:{}", m.id));
                    });
                    continue;
                }
                if self
                    .verdict_targets(m)
                    .iter()
                    .any(|t| !c.notified.contains(&notified_key(c.verdict, t)))
                    && self.claim(&format!("notify:{}", m.id))
                {
                    let (me, m, c) = (self.clone(), m.clone(), c.clone());
                    tokio::spawn(async move {
                        me.notify_verdict(&m, c).await;
                        me.release(&format!("notify:{}", m.id));
                    });
                }
                continue;
            }
            let key = format!("deploy:{}", m.id);
            if !self.claim(&key) {
                continue;
            }
            let (this, m) = (self.clone(), m.clone());
            tokio::spawn(async move {
                let _permit = this.inner.permits.acquire().await;
                match this.check_deploy(&m, now_us).await {
                    Ok(c) if c.verdict.is_final() => this.notify_verdict(&m, c).await,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(marker = %m.id, error = %e, "deploy check failed"),
                }
                this.release(&key);
            });
        }
    }

    /// How long a failed deploy of `m`'s dataset(s) is watched for its fix.
    fn watch_seconds(&self, m: &Marker) -> i64 {
        let ds = if m.dataset == ALL_DATASETS {
            self.inner.engine.store().datasets()
        } else {
            vec![m.dataset.clone()]
        };
        ds.iter()
            .map(|d| self.inner.conventions.get(d).deploy_check.recovery_seconds as i64)
            .max()
            .unwrap_or(0)
    }

    fn carries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Carry>> {
        self.inner.carry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Evaluates a deploy's check now and stores the result.
    pub async fn check_deploy(&self, m: &Marker, now_us: i64) -> Result<DeployCheck, AlertError> {
        let datasets: Vec<String> = if m.dataset == ALL_DATASETS {
            self.inner.engine.store().datasets()
        } else {
            vec![m.dataset.clone()]
        };
        let now_s = now_us.div_euclid(1_000_000);
        let mut outcomes = Vec::new();
        for ds in &datasets {
            let conv = self.inner.conventions.get(ds);
            if m.dataset == ALL_DATASETS
                && self
                    .inner
                    .engine
                    .store()
                    .snapshot(ds)
                    .is_none_or(|s| s.schema.field_with_name(&conv.service).is_err())
            {
                continue;
            }
            let key = (m.id.clone(), ds.clone());
            let mut carry = self.carries().get(&key).cloned().unwrap_or_default();
            let outcome = crate::deploy_check::check_dataset(
                &self.inner.engine,
                &conv,
                ds,
                m,
                now_s,
                &mut carry,
            )
            .await?;
            self.carries().insert(key, carry);
            outcomes.push(outcome);
        }
        let outcome = deploys::combine(m, outcomes);
        let check = DeployCheck {
            marker_id: m.id.clone(),
            dataset: m.dataset.clone(),
            service: m.service.clone().unwrap_or_default(),
            version: m.version.clone(),
            deploy_time: m.start_time,
            verdict: outcome.verdict,
            evidence: outcome.evidence,
            failed_at: outcome.detected_at,
            recovered_at: None,
            decided_at: outcome.verdict.is_final().then(crate::now_rfc3339),
            updated_at: crate::now_rfc3339(),
            notified: Vec::new(),
        };
        if !check.verdict.is_final() {
            self.pending_checks().insert(m.id.clone(), check.clone());
            self.bump();
            return Ok(check);
        }
        tracing::info!(marker = %m.id, verdict = check.verdict.as_str(), "deploy check decided");
        self.save_check(check.clone()).await?;
        self.pending_checks().remove(&m.id);
        self.carries().retain(|(k, _), _| k != &m.id);
        self.bump();
        Ok(check)
    }

    async fn save_check(&self, check: DeployCheck) -> Result<(), AlertError> {
        let deploys = self.inner.deploys.clone();
        tokio::task::spawn_blocking(move || deploys.put(check))
            .await
            .map_err(blocking_err)?
    }

    /// Looks for the fix of failed deploy `m` (check `c`): `Some` with the recovered check when
    /// every failed dataset is healthy again.
    pub async fn recover_deploy(
        &self,
        m: &Marker,
        mut c: DeployCheck,
        later: &[(i64, String)],
        now_s: i64,
    ) -> Result<Option<DeployCheck>, AlertError> {
        let Some(failed_at) = c.failed_at else {
            return Ok(None);
        };
        let failed: Vec<Json> = match c.evidence["datasets"].as_array() {
            Some(list) => list
                .iter()
                .filter(|e| e["detected_at"].is_i64())
                .cloned()
                .collect(),
            None => vec![c.evidence.clone()],
        };
        let mut found = Vec::new();
        for ev in &failed {
            let ds = ev["dataset"].as_str().unwrap_or_default();
            let conv = self.inner.conventions.get(ds);
            let r = crate::deploy_check::recover_dataset(
                &self.inner.engine,
                &conv,
                ev,
                m,
                later,
                failed_at,
                now_s,
            )
            .await?;
            match r {
                Some(r) => found.push(r),
                None => return Ok(None),
            }
        }
        let Some(last) = found.iter().max_by_key(|r| r.recovered_at).cloned() else {
            return Ok(None);
        };
        let fix = found
            .iter()
            .map(|r| r.fix.time)
            .min()
            .unwrap_or(last.fix.time);
        c.verdict = Verdict::Recovered;
        c.recovered_at = Some(last.recovered_at);
        c.updated_at = crate::now_rfc3339();
        let by = match &last.fix.marker_id {
            Some(id) => format!("marker {id}"),
            None => "the metrics (no marker)".to_owned(),
        };
        let sentence = format!(
            "{} recovered {} s after the fix ({by}) reached the data, {} s after the deploy failed.",
            c.service,
            last.recovered_at - fix,
            last.recovered_at - failed_at
        );
        c.evidence["recovery"] = json!({
            "fix": last.fix,
            "fix_time": fix,
            "recovered_at": last.recovered_at,
            "seconds_after_fix": last.recovered_at - fix,
            "seconds_after_failure": last.recovered_at - failed_at,
            "datasets": found,
        });
        c.evidence["failure_summary"] = c.evidence["summary"].clone();
        c.evidence["summary"] = json!(sentence);
        tracing::info!(marker = %m.id, after_fix_s = last.recovered_at - fix, "deploy recovered");
        self.save_check(c.clone()).await?;
        self.resolve_triggers(m, &c, fix, last.recovered_at).await;
        self.bump();
        Ok(Some(c))
    }

    /// Resolves the firing triggers of the recovered deploy's service: their regression was
    /// the deploy's, and its fix is in the data. Their windows are counted from the fix on
    /// until they no longer reach back before it.
    async fn resolve_triggers(&self, m: &Marker, c: &DeployCheck, fix: i64, at: i64) {
        for t in self.inner.triggers.all() {
            let col = self.inner.conventions.get(&t.dataset).service;
            if t.service_for(&col).as_deref() != Some(c.service.as_str()) {
                continue;
            }
            if m.dataset != ALL_DATASETS && t.dataset != m.dataset {
                continue;
            }
            let Some(last) = self.inner.journal.last(&t.id) else {
                continue;
            };
            if last.state != TriggerState::Triggered {
                continue;
            }
            // An evaluation of the trigger may be running: wait for it (it records first).
            let mut claimed = false;
            for _ in 0..100 {
                if self.claim(&t.id) {
                    claimed = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let still = self.inner.journal.last(&t.id);
            if !claimed
                || still
                    .as_ref()
                    .is_none_or(|l| l.state != TriggerState::Triggered)
            {
                if claimed {
                    self.release(&t.id);
                }
                continue;
            }
            let last = still.unwrap_or(last);
            let mut eval = last.clone();
            eval.id = format!("{}@{}~recovered-{}", t.id, last.window_end, m.id);
            eval.evaluated_at = crate::now_rfc3339();
            eval.breached = false;
            eval.breached_groups = Vec::new();
            eval.consecutive = 0;
            eval.state = TriggerState::Ok;
            eval.notification = Some(Notification::Resolved);
            eval.error = None;
            eval.resolved_by = Some(m.id.clone());
            eval.resolved_at = Some(at);
            eval.since = Some(fix);
            eval.targets = Vec::new();
            for r in &t.recipients {
                match r.kind {
                    RecipientKind::Webhook => eval.targets.extend(r.target.clone()),
                    RecipientKind::Marker => eval.targets.push(MARKER_TARGET.into()),
                }
            }
            let journal = self.inner.journal.clone();
            let recorded = eval.clone();
            let done = tokio::task::spawn_blocking(move || journal.record(vec![recorded])).await;
            match done
                .map_err(blocking_err)
                .and_then(|r| r.map_err(AlertError::from))
            {
                Ok(()) => {
                    tracing::info!(trigger = %t.id, marker = %m.id, "trigger resolved by the deploy's fix");
                    for target in eval.targets.clone() {
                        let (me, t, e) = (self.clone(), t.clone(), eval.clone());
                        tokio::spawn(async move { me.deliver(Some(&t), &e, &target).await });
                    }
                }
                Err(e) => {
                    tracing::error!(trigger = %t.id, error = %e, "trigger resolution not recorded")
                }
            }
            self.release(&t.id);
        }
    }
}
