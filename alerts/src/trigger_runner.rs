//! The triggers' part of [`Alerts`]: which windows are due, evaluating one (the query, the
//! threshold, the state machine [`next_state`]), recording it in the journal before delivering
//! it, and trying a trigger out before it is saved.

use crate::AlertError;
use crate::journal::{Evaluation, GroupValue, Notification, TriggerState};
use crate::notify::RecipientKind;
use crate::triggers::{AlertType, Trigger, TriggerInput};
use eventide_query::QuerySpec;
use serde_json::{Value as Json, json};

use crate::runner::{Alerts, MARKER_TARGET, MAX_CATCHUP, MAX_GROUPS, blocking_err};

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

impl Alerts {
    fn delay_us(&self) -> i64 {
        self.inner.config.delay.as_micros() as i64
    }

    pub(crate) fn schedule_triggers(&self, now_us: i64) {
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
