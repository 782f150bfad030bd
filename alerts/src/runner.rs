//! The alerts runner: evaluates triggers on their schedule and deploy checks while they are
//! pending, with bounded concurrency, and delivers what they find.
//!
//! # Schedule
//! A trigger with `frequency` F is evaluated over the windows ending at multiples of F (Unix
//! time), each once its end is `delay` in the past (so the window's events are visible). The
//! last evaluated window of each trigger comes from the journal, so after a restart the windows
//! missed while down are evaluated in order (at most [`MAX_CATCHUP`] of them) and none twice.
//! Deploy checks are event-driven: a pending check (or a failed one watched for its fix) is
//! evaluated again as soon as the store has applied new events, at most every
//! `deploy_check_gap`, and every `deploy_check_every` where this process applies no log (a
//! query process).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventide_query::{QueryEngine, QuerySpec};
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;

use crate::AlertError;
use crate::conventions::ConventionsStore;
use crate::deploy_check::Carry;
use crate::deploys::{DeployCheck, DeployChecks};
use crate::journal::{Evaluation, GroupValue, Journal, Notification, TriggerState};
use crate::markers::{MarkerInput, Markers};
use crate::notify::{Notifier, RecipientKind};
use crate::triggers::{AlertType, Trigger, TriggerInput, Triggers};

/// Most missed windows of one trigger evaluated after a pause.
pub const MAX_CATCHUP: i64 = 100;
/// Breaching groups kept per evaluation.
const MAX_GROUPS: usize = 100;
/// The target name of a marker recipient in the journal.
pub(crate) const MARKER_TARGET: &str = "marker";

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How long after a window ends it is evaluated (the log-to-query freshness bound).
    pub delay: Duration,
    /// Evaluations (trigger windows, deploy checks) running at once.
    pub concurrency: usize,
    /// How often the schedule is looked at.
    pub tick: Duration,
    /// How often a pending deploy check is evaluated again when no new events are applied here.
    pub deploy_check_every: Duration,
    /// Least time between two evaluations of the deploy checks when new events keep coming.
    pub deploy_check_gap: Duration,
    /// The address users reach the UI at, for links in notifications.
    pub public_url: String,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(2),
            concurrency: 4,
            tick: Duration::from_millis(250),
            deploy_check_every: Duration::from_secs(1),
            deploy_check_gap: Duration::from_millis(200),
            public_url: "http://127.0.0.1:4080".into(),
        }
    }
}

/// A trigger's state machine: from the previous state and breach streak, and whether this
/// evaluation breached, the new streak, state and notification. It fires after
/// `exceeded_limit` breaches in a row, stays firing while it breaches, resolves at the first
/// evaluation that does not; `on_true` also notifies at every breaching evaluation while firing.
pub fn next_state(
    prev: TriggerState,
    prev_consecutive: u32,
    breached: bool,
    exceeded_limit: u32,
    alert_type: AlertType,
) -> (u32, TriggerState, Option<Notification>) {
    let consecutive = if breached {
        prev_consecutive.saturating_add(1)
    } else {
        0
    };
    let state = if breached && (consecutive >= exceeded_limit || prev == TriggerState::Triggered) {
        TriggerState::Triggered
    } else {
        TriggerState::Ok
    };
    let notification = match (prev, state, alert_type) {
        (TriggerState::Ok, TriggerState::Triggered, _)
        | (TriggerState::Triggered, TriggerState::Triggered, AlertType::OnTrue) => {
            Some(Notification::Triggered)
        }
        (TriggerState::Triggered, TriggerState::Ok, _) => Some(Notification::Resolved),
        _ => None,
    };
    (consecutive, state, notification)
}

pub(crate) struct Inner {
    pub(crate) engine: QueryEngine,
    pub(crate) markers: Markers,
    pub(crate) triggers: Triggers,
    pub(crate) conventions: ConventionsStore,
    pub(crate) journal: Journal,
    pub(crate) deploys: DeployChecks,
    pub(crate) notifier: Notifier,
    pub(crate) config: RunnerConfig,
    pub(crate) busy: Mutex<HashSet<String>>,
    pub(crate) permits: Semaphore,
    /// The latest evaluation of each check still pending, in memory only: final verdicts are
    /// what is kept, and rewriting the verdicts file at every look at a pending deploy would
    /// cost more than the check.
    pub(crate) pending: Mutex<HashMap<String, DeployCheck>>,
    /// What each check keeps between evaluations, by marker and dataset.
    pub(crate) carry: Mutex<HashMap<(String, String), Carry>>,
    /// Bumped whenever a deploy check changes (for `?wait=`).
    pub(crate) changed: tokio::sync::watch::Sender<u64>,
}

/// Triggers, deploy checks and what they found (cheap to clone).
#[derive(Clone)]
pub struct Alerts {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn blocking_err(e: tokio::task::JoinError) -> AlertError {
    AlertError::Query(format!("background task failed: {e}"))
}

impl Alerts {
    /// Opens the alert state of the data directory `dir`.
    pub fn open(
        dir: &Path,
        engine: QueryEngine,
        markers: Markers,
        config: RunnerConfig,
    ) -> Result<Self, AlertError> {
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                markers,
                triggers: Triggers::open(dir)?,
                conventions: ConventionsStore::open(dir)?,
                journal: Journal::open(dir)?,
                deploys: DeployChecks::open(dir)?,
                notifier: Notifier::new(),
                permits: Semaphore::new(config.concurrency.max(1)),
                config,
                busy: Mutex::new(HashSet::new()),
                pending: Mutex::new(HashMap::new()),
                carry: Mutex::new(HashMap::new()),
                changed: tokio::sync::watch::channel(0).0,
            }),
        })
    }

    pub fn triggers(&self) -> &Triggers {
        &self.inner.triggers
    }

    pub fn conventions(&self) -> &ConventionsStore {
        &self.inner.conventions
    }

    pub fn markers(&self) -> &Markers {
        &self.inner.markers
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    pub fn deploy_checks(&self) -> &DeployChecks {
        &self.inner.deploys
    }

    /// Runs the schedule until the task is dropped: first the deliveries a previous run still
    /// owed, then triggers and deploy checks as they come due.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            for (eval, target) in this.inner.journal.pending() {
                let t = this.trigger_by_id(&eval.trigger_id);
                let me = this.clone();
                tokio::spawn(async move { me.deliver(t.as_ref(), &eval, &target).await });
            }
            let mut tick = tokio::time::interval(this.inner.config.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let store = this.inner.engine.store().clone();
            let mut seen = store.applied_generation();
            let mut checked = seen;
            let mut last_deploys: Option<tokio::time::Instant> = None;
            let every = this.inner.config.deploy_check_every;
            let gap = this.inner.config.deploy_check_gap;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    g = store.applied_changed(seen) => seen = g,
                }
                let now = this.inner.engine.store().clock().now_micros();
                this.schedule_triggers(now);
                let since = last_deploys.map(|t| t.elapsed());
                let due = since.is_none_or(|e| e >= every || (seen != checked && e >= gap));
                if due {
                    checked = seen;
                    last_deploys = Some(tokio::time::Instant::now());
                    this.schedule_deploys(now);
                }
            }
        })
    }

    fn trigger_by_id(&self, id: &str) -> Option<Trigger> {
        self.inner.triggers.all().into_iter().find(|t| t.id == id)
    }

    /// Marks `key` busy; false when it already was.
    pub(crate) fn claim(&self, key: &str) -> bool {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned())
    }

    pub(crate) fn release(&self, key: &str) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn delay_us(&self) -> i64 {
        self.inner.config.delay.as_micros() as i64
    }

    fn schedule_triggers(&self, now_us: i64) {
        for t in self.inner.triggers.all() {
            if t.disabled {
                continue;
            }
            let f = t.frequency as i64;
            let due = (now_us - self.delay_us()).div_euclid(f * 1_000_000) * f;
            let last = self.inner.journal.last(&t.id).map(|e| e.window_end);
            if last.is_some_and(|l| l >= due) || !self.claim(&t.id) {
                continue;
            }
            let first = match last {
                Some(l) => (l + f).max(due - (MAX_CATCHUP - 1) * f),
                None => due,
            };
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = this.inner.permits.acquire().await;
                let mut end = first;
                while end <= due {
                    if let Err(e) = this.evaluate_and_record(&t, end).await {
                        tracing::error!(trigger = %t.id, error = %e, "trigger evaluation not recorded");
                        break;
                    }
                    end += f;
                }
                this.release(&t.id);
            });
        }
    }

    /// Evaluates one window, records it, and starts its deliveries.
    async fn evaluate_and_record(&self, t: &Trigger, end: i64) -> Result<(), AlertError> {
        let prev = self.inner.journal.last(&t.id);
        let eval = self.evaluate(t, end, prev.as_ref()).await;
        let journal = self.inner.journal.clone();
        let recorded = eval.clone();
        tokio::task::spawn_blocking(move || journal.record(vec![recorded]))
            .await
            .map_err(blocking_err)??;
        if eval.notification.is_some() {
            tracing::info!(trigger = %t.id, state = ?eval.state, value = ?eval.value, "trigger notification");
            for target in eval.targets.clone() {
                let (me, t, e) = (self.clone(), t.clone(), eval.clone());
                tokio::spawn(async move { me.deliver(Some(&t), &e, &target).await });
            }
        }
        Ok(())
    }

    /// The evaluation of trigger `t` over the window ending at `end` (Unix seconds).
    pub async fn evaluate(&self, t: &Trigger, end: i64, prev: Option<&Evaluation>) -> Evaluation {
        let range = t.query.time_range.unwrap_or(t.frequency as i64);
        // After a fix resolved the trigger, windows start at the fix until they no longer
        // reach back before it.
        let since = prev.and_then(|p| p.since).filter(|s| *s > end - range);
        let start = since.map_or(end - range, |s| s.min(end));
        let prev_state = prev.map(|p| p.state).unwrap_or_default();
        let prev_consecutive = prev.map(|p| p.consecutive).unwrap_or(0);
        let mut eval = Evaluation {
            id: format!("{}@{end}", t.id),
            trigger_id: t.id.clone(),
            dataset: t.dataset.clone(),
            evaluated_at: crate::now_rfc3339(),
            window_start: start,
            window_end: end,
            value: None,
            breached_groups: Vec::new(),
            breached: false,
            consecutive: prev_consecutive,
            state: prev_state,
            notification: None,
            targets: Vec::new(),
            error: None,
            resolved_by: None,
            resolved_at: None,
            since,
        };
        let groups = match self.trigger_values(t, start, end).await {
            Ok(g) => g,
            Err(e) => {
                eval.error = Some(e);
                return eval;
            }
        };
        let op = t.threshold.op;
        let worse = |a: f64, b: f64| if op.upward() { a > b } else { a < b };
        eval.value = groups
            .iter()
            .map(|g| g.value)
            .reduce(|a, b| if worse(b, a) { b } else { a });
        let mut breached: Vec<GroupValue> = groups
            .into_iter()
            .filter(|g| op.holds(g.value, t.threshold.value))
            .collect();
        breached.sort_by(|a, b| {
            let o = a.value.total_cmp(&b.value);
            if op.upward() { o.reverse() } else { o }
        });
        breached.truncate(MAX_GROUPS);
        eval.breached = !breached.is_empty();
        eval.breached_groups = breached;
        (eval.consecutive, eval.state, eval.notification) = next_state(
            prev_state,
            prev_consecutive,
            eval.breached,
            t.threshold.exceeded_limit,
            t.alert_type,
        );
        if eval.notification.is_some() {
            for r in &t.recipients {
                match r.kind {
                    RecipientKind::Webhook => eval.targets.extend(r.target.clone()),
                    RecipientKind::Marker => eval.targets.push(MARKER_TARGET.into()),
                }
            }
        }
        eval
    }

    /// The trigger's calculation per group over `[start, end)`.
    async fn trigger_values(
        &self,
        t: &Trigger,
        start: i64,
        end: i64,
    ) -> Result<Vec<GroupValue>, String> {
        let is_count = t
            .query
            .calculations
            .first()
            .is_some_and(|c| c.op.eq_ignore_ascii_case("COUNT"));
        let known = self
            .inner
            .engine
            .store()
            .datasets()
            .iter()
            .any(|d| d == &t.dataset);
        if !known {
            // No events yet: a count is 0, anything else has no value.
            return Ok(if is_count && t.query.breakdowns.is_empty() {
                vec![GroupValue {
                    group: Default::default(),
                    value: 0.0,
                }]
            } else {
                Vec::new()
            });
        }
        let spec = QuerySpec {
            time_range: None,
            start_time: Some(start as f64),
            end_time: Some(end as f64),
            granularity: None,
            ..t.query.clone()
        };
        let r = self
            .inner
            .engine
            .run_spec(&t.dataset, &spec)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in r.results {
            let mut group = serde_json::Map::new();
            let mut value = None;
            for (k, v) in row {
                if t.query.breakdowns.contains(&k) {
                    group.insert(k, v);
                } else if value.is_none() {
                    value = v.as_f64();
                }
            }
            if let Some(v) = value {
                out.push(GroupValue { group, value: v });
            }
        }
        if out.is_empty() && is_count && t.query.breakdowns.is_empty() {
            out.push(GroupValue {
                group: Default::default(),
                value: 0.0,
            });
        }
        Ok(out)
    }

    /// A link to the trigger's query over the window, in the UI.
    pub(crate) fn query_link(
        &self,
        dataset: &str,
        spec: &QuerySpec,
        start: i64,
        end: i64,
    ) -> String {
        let t = |s: i64| {
            let text = eventide_model::time::format_micros(s.saturating_mul(1_000_000));
            text.chars().take(19).collect::<String>()
        };
        let state = json!({
            "dataset": dataset,
            "calculations": spec.calculations,
            "filters": spec.filters,
            "filter_combination": spec.filter_combination.clone().unwrap_or_else(|| "AND".into()),
            "breakdowns": spec.breakdowns,
            "orders": [],
            "havings": [],
            "limit": 100,
            "time": {"start": t(start), "end": t(end)},
        });
        let encoded = percent_encoding::utf8_percent_encode(
            &state.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        format!(
            "{}/#{encoded}",
            self.inner.config.public_url.trim_end_matches('/')
        )
    }

    /// The webhook payload of a trigger evaluation.
    pub fn trigger_payload(&self, t: Option<&Trigger>, e: &Evaluation) -> Json {
        let time = |s: i64| eventide_model::time::format_micros(s.saturating_mul(1_000_000));
        let (trigger, url) = match t {
            Some(t) => (
                json!({
                    "id": t.id, "name": t.name, "description": t.description,
                    "dataset": t.dataset, "query": t.query, "threshold": t.threshold,
                    "frequency": t.frequency, "alert_type": t.alert_type,
                }),
                // A little before and after the window, so the change is in view.
                Some(self.query_link(
                    &t.dataset,
                    &t.query,
                    e.window_start - (e.window_end - e.window_start),
                    e.window_end + t.frequency as i64,
                )),
            ),
            None => (json!({"id": e.trigger_id, "dataset": e.dataset}), None),
        };
        json!({
            "id": e.id,
            "kind": "trigger",
            "status": e.notification,
            "trigger": trigger,
            "value": e.value,
            "threshold": t.map(|t| json!(t.threshold)),
            "breached_groups": e.breached_groups,
            "window": {"start": time(e.window_start), "end": time(e.window_end)},
            "evaluated_at": e.evaluated_at,
            "url": url,
        })
    }

    /// Tells `target` about evaluation `e`, then notes it in the journal.
    pub(crate) async fn deliver(&self, t: Option<&Trigger>, e: &Evaluation, target: &str) {
        let marker_id = if target == MARKER_TARGET {
            match self.write_marker(t, e) {
                Ok(m) => m,
                Err(err) => {
                    tracing::error!(evaluation = %e.id, error = %err, "trigger marker not written");
                    return;
                }
            }
        } else {
            let payload = self.trigger_payload(t, e);
            if let Err(err) = self.inner.notifier.post(target, &payload).await {
                tracing::error!(evaluation = %e.id, %target, error = %err, "webhook not delivered (retried at the next start)");
                return;
            }
            None
        };
        let journal = self.inner.journal.clone();
        let (id, target) = (e.id.clone(), target.to_owned());
        let done =
            tokio::task::spawn_blocking(move || journal.delivered(&id, &target, marker_id)).await;
        if let Err(err) = done
            .map_err(blocking_err)
            .and_then(|r| r.map_err(Into::into))
        {
            tracing::error!(evaluation = %e.id, error = %err, "delivery not recorded");
        }
    }

    /// A firing writes a marker; its resolution sets that marker's end.
    fn write_marker(
        &self,
        t: Option<&Trigger>,
        e: &Evaluation,
    ) -> Result<Option<String>, AlertError> {
        let name = t.map_or(e.trigger_id.as_str(), |t| t.name.as_str());
        match e.notification {
            Some(Notification::Triggered) => {
                let value = e.value.map_or("no data".into(), |v| format!("{v}"));
                let m = self.inner.markers.create(
                    &e.dataset,
                    MarkerInput {
                        start_time: Some(e.window_end),
                        message: Some(format!("trigger {name:?} fired: {value}")),
                        kind: Some("trigger".into()),
                        ..Default::default()
                    },
                )?;
                Ok(Some(m.id))
            }
            Some(Notification::Resolved) => {
                let fired = self
                    .inner
                    .journal
                    .notifications()
                    .into_iter()
                    .rev()
                    .find(|n| {
                        n.trigger_id == e.trigger_id
                            && n.window_end < e.window_end
                            && n.notification == Some(Notification::Triggered)
                    })
                    .and_then(|n| self.inner.journal.marker_of(&n.id));
                if let Some(mid) = fired {
                    let input = MarkerInput {
                        end_time: Some(e.window_end),
                        ..Default::default()
                    };
                    if let Err(err) = self.inner.markers.update(&e.dataset, &mid, input) {
                        tracing::warn!(marker = %mid, error = %err, "could not end the trigger's marker");
                    }
                }
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Runs the trigger's query once now (a definition check before storing it).
    pub async fn try_trigger(&self, dataset: &str, input: &TriggerInput) -> Result<(), AlertError> {
        if !self
            .inner
            .engine
            .store()
            .datasets()
            .iter()
            .any(|d| d == dataset)
        {
            return Ok(());
        }
        let now = self.inner.engine.store().clock().now_micros() / 1_000_000;
        let spec = QuerySpec {
            time_range: None,
            start_time: Some((now - input.query.time_range.unwrap_or(60)) as f64),
            end_time: Some(now as f64),
            ..input.query.clone()
        };
        self.inner
            .engine
            .run_spec(dataset, &spec)
            .await
            .map(|_| ())
            .map_err(|e| AlertError::Invalid(format!("query: {e}")))
    }

    /// A trigger as the API shows it: the definition, `triggered`, and its last evaluation.
    pub fn trigger_view(&self, t: &Trigger) -> Json {
        let last = self.inner.journal.last(&t.id);
        let mut v = json!(t);
        v["triggered"] = json!(
            last.as_ref()
                .is_some_and(|e| e.state == TriggerState::Triggered)
        );
        v["last_evaluation"] = json!(last);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a sequence of breached/not breached evaluations; the notifications sent.
    fn run(breaches: &[bool], limit: u32, kind: AlertType) -> Vec<Option<Notification>> {
        let (mut state, mut streak) = (TriggerState::Ok, 0);
        breaches
            .iter()
            .map(|&b| {
                let (c, s, n) = next_state(state, streak, b, limit, kind);
                (streak, state) = (c, s);
                n
            })
            .collect()
    }

    #[test]
    fn on_change_fires_once_and_resolves_once() {
        use Notification::*;
        assert_eq!(
            run(
                &[false, true, true, true, false, false],
                1,
                AlertType::OnChange
            ),
            [None, Some(Triggered), None, None, Some(Resolved), None]
        );
    }

    #[test]
    fn exceeded_limit_needs_breaches_in_a_row() {
        use Notification::*;
        assert_eq!(
            run(
                &[true, false, true, true, true, false],
                3,
                AlertType::OnChange
            ),
            [None, None, None, None, Some(Triggered), Some(Resolved)]
        );
    }

    #[test]
    fn on_true_notifies_every_breach_while_firing() {
        use Notification::*;
        assert_eq!(
            run(&[true, true, true, false, true], 2, AlertType::OnTrue),
            [None, Some(Triggered), Some(Triggered), Some(Resolved), None]
        );
    }
}
