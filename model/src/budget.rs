//! The decoded-size budget of one request: what its events may take once decoded, in
//! proportion to its body ([`Limits::decoded_budget`]). A request whose events would take
//! more is refused whole (413), before its memory grows out of proportion: an OTLP request
//! copies its resource and scope attributes into every span, so a small body can decode to
//! gigabytes.

use std::cell::Cell;

use crate::event::{Event, Value};
use crate::limits::Limits;

/// Bytes one field costs besides its name and value (its place in the event and the
/// builders).
pub const FIELD_COST: usize = 24;

/// What one decoded field is charged.
pub fn field_cost(name: &str, value_bytes: usize) -> usize {
    name.len() + value_bytes + FIELD_COST
}

/// What `v` takes.
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len(),
        _ => 8,
    }
}

/// What an event is charged.
pub fn event_cost(e: &Event) -> usize {
    e.fields
        .iter()
        .map(|(n, v)| field_cost(n, value_bytes(v)))
        .sum::<usize>()
        + 2 * FIELD_COST
}

/// The budget is spent: the request is refused whole.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "the request's events decode to more than {limit} bytes ({ratio} × its {body} byte body, at least {floor} bytes): \
     send fewer events per request{hint}"
)]
pub struct BudgetExceeded {
    pub limit: usize,
    pub body: usize,
    pub ratio: usize,
    pub floor: usize,
    /// What made it large, when the decoder knows.
    pub hint: &'static str,
}

/// The decoded-size budget of one request (one decoding thread).
#[derive(Debug)]
pub struct DecodeBudget {
    limit: usize,
    body: usize,
    ratio: usize,
    floor: usize,
    used: Cell<usize>,
}

impl DecodeBudget {
    /// The budget of a request whose (decompressed) body has `body` bytes.
    pub fn for_body(body: usize, limits: &Limits) -> Self {
        Self {
            limit: limits.decoded_budget(body),
            body,
            ratio: limits.max_decoded_ratio,
            floor: limits.min_decoded_bytes,
            used: Cell::new(0),
        }
    }

    /// Charges `bytes`; the error once the budget is spent (`hint` says what made it large).
    pub fn charge(&self, bytes: usize, hint: &'static str) -> Result<(), BudgetExceeded> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            return Err(BudgetExceeded {
                limit: self.limit,
                body: self.body,
                ratio: self.ratio,
                floor: self.floor,
                hint,
            });
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}
