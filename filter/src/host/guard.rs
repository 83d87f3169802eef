//! The canary guard's glue: every worker's VM counts its own requests, then on its tick folds
//! them into the state all VMs share (Envoy's shared data, compare-and-swap), and reads back
//! the state every worker acts on. So all workers of one Envoy trip together, within a tick.
//! No host call on the request path: a request reads this worker's copy and adds to its tally.

use std::cell::{Cell, RefCell};

use super::metrics::RolloutMetrics;
use super::raw;
use crate::config::Config;
use crate::guard::{EventKind, Guard, GuardConfig, Outcome, Phase, Tally};

/// Compare-and-swap attempts per tick before leaving the counts for the next one.
const CAS_ATTEMPTS: u32 = 8;

pub struct GuardState {
    /// Shared-data key: the rollout and the configuration's fingerprint, so an old and a new
    /// configuration running side by side during a push never overwrite each other.
    key: String,
    cfg: GuardConfig,
    /// The shared state as last read or written: what requests act on.
    copy: RefCell<Guard>,
    /// Successes not yet shared, by version.
    tally: RefCell<Tally>,
    /// Failures not yet shared, by version.
    failures: RefCell<Vec<u32>>,
    /// `rollout_guard_tripped` as this worker last set it, by version.
    shown: Vec<Cell<Option<bool>>>,
}

impl GuardState {
    pub fn new(cfg: &Config, now_ms: u64) -> Option<GuardState> {
        let g = cfg.guard?;
        Some(GuardState {
            key: format!("rollout-filter/guard/{}/{:016x}", cfg.rollout_id, g.fingerprint()),
            copy: RefCell::new(Guard::new(&g, now_ms)),
            tally: RefCell::new(Tally::new(cfg.versions.len())),
            failures: RefCell::new(vec![0; cfg.versions.len()]),
            shown: cfg.versions.iter().map(|_| Cell::new(None)).collect(),
            cfg: g,
        })
    }

    pub fn baseline(&self) -> usize {
        self.cfg.baseline
    }

    /// Whether a request the split placed on `version` goes to the baseline instead.
    pub fn diverts(&self, version: usize, probe_key: u32, now_ms: u64) -> bool {
        self.copy.borrow().diverts(version, probe_key, now_ms)
    }

    /// A finished request that the split placed (`version` as counted).
    pub fn note(&self, version: usize, failed: bool) {
        if failed {
            if let Some(n) = self.failures.borrow_mut().get_mut(version) {
                *n = n.saturating_add(1);
            }
        } else {
            self.tally.borrow_mut().add(version);
        }
    }

    /// Folds this worker's counts into the shared state and reads it back; logs and counts
    /// what this worker's update caused, and shows each version's state on its gauge.
    pub fn sync(&self, cfg: &Config, m: &RolloutMetrics, count: impl Fn(usize), now_ms: u64) {
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = match raw::shared_data(&self.key) {
                Ok(v) => v,
                Err(status) => {
                    log::warn!(
                        "rollout {}: guard state unreadable (host status {status})",
                        cfg.rollout_id
                    );
                    return;
                }
            };
            let mut guard = bytes
                .as_deref()
                .and_then(|b| Guard::decode(&self.cfg, b).ok())
                .unwrap_or_else(|| Guard::new(&self.cfg, now_ms));
            self.fold_into(&mut guard, now_ms);
            let out = guard.encode();
            if bytes.as_deref() == Some(out.as_slice()) {
                *self.copy.borrow_mut() = guard;
                break;
            }
            match raw::set_shared_data(&self.key, &out, cas) {
                Ok(()) => {
                    self.tally.borrow_mut().clear();
                    self.failures.borrow_mut().iter_mut().for_each(|n| *n = 0);
                    self.report(cfg, &mut guard, m, &count);
                    *self.copy.borrow_mut() = guard;
                    break;
                }
                Err(raw::CAS_MISMATCH) => continue,
                Err(status) => {
                    log::warn!(
                        "rollout {}: guard state not written (host status {status})",
                        cfg.rollout_id
                    );
                    return;
                }
            }
        }
        self.show(m);
    }

    /// This worker's unshared counts added to `guard` (a copy: cleared only once written).
    fn fold_into(&self, guard: &mut Guard, now_ms: u64) {
        guard.absorb(&self.tally.borrow(), now_ms);
        for (v, n) in self.failures.borrow().iter().enumerate() {
            for _ in 0..*n {
                guard.record(v, Outcome::Failure, true, now_ms);
            }
        }
        guard.tick(now_ms);
    }

    /// One log line per trip, probe and close this worker's write caused; trips counted.
    fn report(&self, cfg: &Config, guard: &mut Guard, m: &RolloutMetrics, count: &impl Fn(usize)) {
        let name = |v: usize| cfg.versions.get(v).map_or("?", |x| x.name.as_str());
        let baseline = name(self.cfg.baseline);
        for e in guard.take_events() {
            let line = e.describe(name(e.version), baseline);
            match e.kind {
                EventKind::Tripped => {
                    log::warn!("rollout {}: {line}", cfg.rollout_id);
                    if let Some(slot) = m.layout.guard_trips_slot(e.version, cfg.versions.len()) {
                        count(slot);
                    }
                }
                EventKind::Probing | EventKind::Closed => log::info!("rollout {}: {line}", cfg.rollout_id),
            }
        }
    }

    /// `rollout_guard_tripped`: 1 from a trip until the guard closes again, else 0. Every
    /// worker writes what the shared state says, so they agree.
    fn show(&self, m: &RolloutMetrics) {
        let copy = self.copy.borrow();
        for (v, shown) in self.shown.iter().enumerate() {
            let tripped = copy.phase(v).is_some_and(|p| p != Phase::Closed);
            let Some(slot) = m.layout.guard_tripped_slot(v) else {
                return;
            };
            if shown.get() != Some(tripped) && m.id(slot).is_some() {
                m.record(slot, u64::from(tripped));
                shown.set(Some(tripped));
            }
        }
    }
}
