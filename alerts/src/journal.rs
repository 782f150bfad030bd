//! The evaluation journal: every trigger evaluation, appended (and fsync'd) to
//! `DATA/alerts/evaluations.jsonl` before anyone is notified of it, and every delivery once it
//! succeeded. Replaying it after a restart gives each trigger's state and last evaluated window
//! (so no window is evaluated twice or skipped) and the deliveries still owed.
//!
//! A line torn by a crash (the last one) is ignored. The file is rewritten at open when it has
//! grown long, keeping each trigger's recent evaluations and every notification.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::jsonfile::FileError;

/// Evaluations kept in memory (and through a rewrite) per trigger.
pub const RECENT_PER_TRIGGER: usize = 500;
/// Lines after which the file is rewritten at open.
const REWRITE_LINES: usize = 50_000;
/// Notifications kept (for DORA's time to restore).
const MAX_NOTIFICATIONS: usize = 100_000;

/// A trigger's state after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerState {
    #[default]
    Ok,
    Triggered,
}

/// What recipients were told about an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notification {
    Triggered,
    Resolved,
}

/// One group's value (one row of the query; `group` is empty without breakdowns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupValue {
    pub group: serde_json::Map<String, serde_json::Value>,
    pub value: f64,
}

/// One evaluation of one trigger over `[window_start, window_end)` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// `{trigger}@{window_end}`: also the id of its notifications.
    pub id: String,
    pub trigger_id: String,
    pub dataset: String,
    pub evaluated_at: String,
    pub window_start: i64,
    pub window_end: i64,
    /// The worst group's value (largest for `>`/`>=`, smallest for `<`/`<=`); none without
    /// data.
    pub value: Option<f64>,
    /// The groups that crossed the threshold (at most 100, worst first).
    pub breached_groups: Vec<GroupValue>,
    pub breached: bool,
    /// Breaching evaluations in a row, this one included.
    pub consecutive: u32,
    pub state: TriggerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    /// Where the notification goes: webhook URLs, and `marker` for a marker recipient.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The query failed (the state is carried over unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Resolved because the deploy check of this marker saw the fix (not by a window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// When the data showed the fix, for an evaluation resolved by one (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    /// Windows are counted from this time (the fix) while they would reach back before it,
    /// so a trigger resolved by a fix does not fire again on the regression it was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Evaluation(Evaluation),
    /// A target was told about an evaluation (for `marker`: the marker's id).
    Delivered {
        evaluation: String,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        marker_id: Option<String>,
    },
}

#[derive(Debug, Default)]
struct State {
    recent: HashMap<String, VecDeque<Evaluation>>,
    notifications: VecDeque<Evaluation>,
    delivered: HashSet<(String, String)>,
    /// Marker written when a trigger fired: evaluation id → marker id.
    markers: HashMap<String, String>,
    lines: usize,
}

impl State {
    fn apply(&mut self, line: Line) {
        self.lines += 1;
        match line {
            Line::Evaluation(e) => {
                if e.notification.is_some() {
                    self.notifications.push_back(e.clone());
                    if self.notifications.len() > MAX_NOTIFICATIONS {
                        self.notifications.pop_front();
                    }
                }
                let q = self.recent.entry(e.trigger_id.clone()).or_default();
                q.push_back(e);
                if q.len() > RECENT_PER_TRIGGER {
                    q.pop_front();
                }
            }
            Line::Delivered {
                evaluation,
                target,
                marker_id,
            } => {
                if let Some(m) = marker_id {
                    self.markers.insert(evaluation.clone(), m);
                }
                self.delivered.insert((evaluation, target));
            }
        }
    }

    fn lines_to_keep(&self) -> Vec<Line> {
        let mut evals: Vec<&Evaluation> = self.recent.values().flatten().collect();
        let kept: HashSet<&str> = evals.iter().map(|e| e.id.as_str()).collect();
        evals.extend(
            self.notifications
                .iter()
                .filter(|e| !kept.contains(e.id.as_str())),
        );
        evals.sort_by(|a, b| a.evaluated_at.cmp(&b.evaluated_at).then(a.id.cmp(&b.id)));
        let mut out: Vec<Line> = evals.into_iter().cloned().map(Line::Evaluation).collect();
        for (evaluation, target) in &self.delivered {
            out.push(Line::Delivered {
                evaluation: evaluation.clone(),
                target: target.clone(),
                marker_id: self.markers.get(evaluation).cloned(),
            });
        }
        out
    }
}

/// The journal (cheap to clone).
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    inner: Arc<Mutex<(std::fs::File, State)>>,
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Self, FileError> {
        let path = dir.join("alerts").join("evaluations.jsonl");
        let io = |source| FileError {
            path: path.clone(),
            source,
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let mut state = State::default();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        // Bytes up to the end of the last whole line.
        let mut good = 0usize;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            let last = !complete || line.len() + 1 == rest.len();
            match serde_json::from_slice::<Line>(line) {
                Ok(l) if complete => {
                    state.apply(l);
                    good += line.len() + 1;
                }
                // The last line may be torn by a crash; anything else is damage.
                Ok(_) | Err(_) if last => {
                    tracing::warn!("dropping a torn last line of the evaluation journal");
                    break;
                }
                Ok(_) => unreachable!("an incomplete line is the last one"),
                Err(e) => {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("unreadable line: {e}"),
                    )));
                }
            }
            rest = &rest[(line.len() + 1).min(rest.len())..];
        }
        if good < bytes.len() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io)?;
            f.set_len(good as u64).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        if state.lines > REWRITE_LINES {
            let keep = state.lines_to_keep();
            let mut bytes = Vec::new();
            for l in &keep {
                serde_json::to_writer(&mut bytes, l).map_err(|e| io(e.into()))?;
                bytes.push(b'\n');
            }
            eventide_durable::replace(&path, &bytes).map_err(io)?;
            state.lines = keep.len();
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(Self {
            path,
            inner: Arc::new(Mutex::new((file, state))),
        })
    }

    fn write(&self, lines: Vec<Line>) -> Result<(), FileError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::new();
        for l in &lines {
            serde_json::to_writer(&mut buf, l).map_err(|e| FileError {
                path: self.path.clone(),
                source: e.into(),
            })?;
            buf.push(b'\n');
        }
        let (file, state) = &mut *g;
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|source| FileError {
                path: self.path.clone(),
                source,
            })?;
        for l in lines {
            state.apply(l);
        }
        Ok(())
    }

    /// Appends evaluations (durably, before their notifications go out).
    pub fn record(&self, evals: Vec<Evaluation>) -> Result<(), FileError> {
        self.write(evals.into_iter().map(Line::Evaluation).collect())
    }

    /// Notes that `target` was told about `evaluation`.
    pub fn delivered(
        &self,
        evaluation: &str,
        target: &str,
        marker_id: Option<String>,
    ) -> Result<(), FileError> {
        self.write(vec![Line::Delivered {
            evaluation: evaluation.to_owned(),
            target: target.to_owned(),
            marker_id,
        }])
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.inner.lock().unwrap_or_else(|p| p.into_inner()).1)
    }

    /// The trigger's latest evaluation.
    pub fn last(&self, trigger_id: &str) -> Option<Evaluation> {
        self.read(|s| s.recent.get(trigger_id).and_then(|q| q.back().cloned()))
    }

    /// The trigger's latest evaluations, newest first.
    pub fn recent(&self, trigger_id: &str, limit: usize) -> Vec<Evaluation> {
        self.read(|s| {
            s.recent
                .get(trigger_id)
                .map(|q| q.iter().rev().take(limit).cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Every evaluation that notified, oldest first.
    pub fn notifications(&self) -> Vec<Evaluation> {
        self.read(|s| s.notifications.iter().cloned().collect())
    }

    /// Deliveries still owed: (evaluation, target).
    pub fn pending(&self) -> Vec<(Evaluation, String)> {
        self.read(|s| {
            s.notifications
                .iter()
                .flat_map(|e| e.targets.iter().map(move |t| (e, t)))
                .filter(|(e, t)| !s.delivered.contains(&(e.id.clone(), (*t).clone())))
                .map(|(e, t)| (e.clone(), t.clone()))
                .collect()
        })
    }

    /// The marker written when the evaluation `id` fired.
    pub fn marker_of(&self, id: &str) -> Option<String> {
        self.read(|s| s.markers.get(id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(trigger: &str, end: i64, n: Option<Notification>) -> Evaluation {
        Evaluation {
            id: format!("{trigger}@{end}"),
            trigger_id: trigger.into(),
            dataset: "d".into(),
            evaluated_at: format!("2026-01-01T00:00:{:02}Z", end % 60),
            window_start: end - 10,
            window_end: end,
            value: Some(1.0),
            breached_groups: vec![],
            breached: n == Some(Notification::Triggered),
            consecutive: 0,
            state: TriggerState::Ok,
            notification: n,
            targets: if n.is_some() {
                vec!["http://h/x".into(), "marker".into()]
            } else {
                vec![]
            },
            error: None,
            resolved_by: None,
            resolved_at: None,
            since: None,
        }
    }

    #[test]
    fn replays_state_pending_deliveries_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.record(vec![
            eval("t1", 10, None),
            eval("t1", 20, Some(Notification::Triggered)),
        ])
        .unwrap();
        j.delivered("t1@20", "marker", Some("m000001".into()))
            .unwrap();
        assert_eq!(j.pending().len(), 1);
        drop(j);
        // A crash in the middle of a line.
        let path = dir.path().join("alerts/evaluations.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"evaluation\":{\"id\":\"t1@3").unwrap();
        drop(f);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.last("t1").unwrap().window_end, 20);
        assert_eq!(j.recent("t1", 10).len(), 2);
        assert_eq!(j.marker_of("t1@20").as_deref(), Some("m000001"));
        let pending = j.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1, "http://h/x");
        j.record(vec![eval("t1", 30, None)]).unwrap();
        j.delivered("t1@20", "http://h/x", None).unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.last("t1").unwrap().window_end, 30);
        assert!(j.pending().is_empty());
        assert_eq!(j.notifications().len(), 1);
    }

    #[test]
    fn a_long_journal_is_rewritten_keeping_recent_and_notifications() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut batch = Vec::new();
        for end in 0..(REWRITE_LINES as i64 + 10) {
            let n = (end == 5).then_some(Notification::Triggered);
            batch.push(eval("t1", end, n));
        }
        j.record(batch).unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        let path = dir.path().join("alerts/evaluations.jsonl");
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, RECENT_PER_TRIGGER + 1);
        assert_eq!(j.notifications()[0].window_end, 5);
        assert_eq!(j.last("t1").unwrap().window_end, REWRITE_LINES as i64 + 9);
        assert_eq!(j.pending().len(), 2);
    }
}
