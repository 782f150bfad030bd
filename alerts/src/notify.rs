//! Recipients of alerts and deploy verdicts, and delivery to webhooks.
//!
//! A webhook gets `POST`ed JSON with `Content-Type: application/json`. Every payload carries an
//! `id` that stays the same when a delivery is retried (after a timeout, a 5xx, or a restart of
//! Eventide between the evaluation and the delivery), so a receiver can drop repeats.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    #[serde(rename = "type")]
    pub kind: RecipientKind,
    /// The webhook's URL (`http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientKind {
    /// `POST` the JSON payload to `target`.
    Webhook,
    /// Write a marker on the trigger's dataset when it fires (its end when it resolves).
    Marker,
}

impl Recipient {
    /// Checks the recipient; `marker` recipients only where `markers_allowed`.
    pub fn validate(&self, markers_allowed: bool) -> Result<(), String> {
        match self.kind {
            RecipientKind::Webhook => {
                let t = self.target.as_deref().unwrap_or_default();
                let rest = t
                    .strip_prefix("http://")
                    .or_else(|| t.strip_prefix("https://"));
                match rest {
                    Some(r) if !r.is_empty() && !r.starts_with('/') && t.len() <= 2048 => Ok(()),
                    _ => Err(format!(
                        "webhook target must be an http:// or https:// url, got {t:?}"
                    )),
                }
            }
            RecipientKind::Marker if markers_allowed => Ok(()),
            RecipientKind::Marker => Err("marker recipients are only for triggers".into()),
        }
    }
}

/// Attempts per delivery, and the first pause between them (doubled each time).
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// Sends webhooks.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("eventide/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { client }
    }

    /// Posts `payload` to `url`, retrying timeouts, connection errors, 408, 429 and 5xx
    /// replies. Err: why the last attempt failed.
    pub async fn post(&self, url: &str, payload: &serde_json::Value) -> Result<(), String> {
        let mut pause = FIRST_PAUSE;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.client.post(url).json(payload).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let s = r.status();
                    last = format!("{url} answered {s}");
                    if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 {
                        return Err(last);
                    }
                }
                Err(e) => last = format!("{url}: {e}"),
            }
            if attempt < ATTEMPTS {
                tracing::warn!(%url, attempt, error = %last, "webhook delivery failed, retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked() {
        let hook = |t: &str| Recipient {
            kind: RecipientKind::Webhook,
            target: Some(t.into()),
        };
        assert!(hook("http://127.0.0.1:9/x").validate(false).is_ok());
        assert!(hook("https://hooks.example.com/a").validate(false).is_ok());
        assert!(hook("ftp://x").validate(false).is_err());
        assert!(hook("http://").validate(false).is_err());
        let marker = Recipient {
            kind: RecipientKind::Marker,
            target: None,
        };
        assert!(marker.validate(true).is_ok());
        assert!(marker.validate(false).is_err());
    }
}
