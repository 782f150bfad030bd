//! Delivering what triggers find: the payload (with a link to the query), webhooks and the
//! other recipients, and markers written as a trigger's recipient.

use crate::AlertError;
use crate::journal::{Evaluation, Notification};
use crate::markers::MarkerInput;
use crate::triggers::Trigger;
use eventide_query::QuerySpec;
use serde_json::{Value as Json, json};

use crate::runner::{Alerts, MARKER_TARGET, blocking_err};

impl Alerts {
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
}
