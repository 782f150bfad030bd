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

use eventide_query::QueryEngine;
use tokio::sync::Semaphore;

use crate::AlertError;
use crate::conventions::ConventionsStore;
use crate::deploy_check::Carry;
use crate::deploys::{DeployCheck, DeployChecks};
use crate::journal::Journal;
use crate::markers::Markers;
use crate::notify::Notifier;
use crate::triggers::{Trigger, Triggers};

/// Most missed windows of one trigger evaluated after a pause.
pub const MAX_CATCHUP: i64 = 100;
/// Breaching groups kept per evaluation.
pub(crate) const MAX_GROUPS: usize = 100;
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
}
