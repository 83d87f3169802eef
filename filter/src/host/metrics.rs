//! Metric ids for the VM's life, and one rollout's metrics.
//!
//! Envoy's `proxy_define_metric` hands out a new id, and keeps a new entry, on every call,
//! even for a name it knows; so every name is defined once per VM and its id reused by every
//! later configuration. A new name costs Envoy its tag regexes (about 130 µs each), so names
//! are defined a few per tick, never on a request: counts wait in cells until their id exists.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use proxy_wasm::types::MetricType;

use super::raw;
use crate::config::Config;
use crate::metrics::{Kind, Layout};

thread_local! {
    /// Every name this VM has defined, by a 64-bit hash of the name (65,000 names of a
    /// 1,000-rollout config would keep megabytes as strings).
    static DEFINED: RefCell<HashMap<u64, u32>> = RefCell::new(HashMap::new());
    /// Gauges summed over workers, by id: what this VM has added.
    static SHARES: RefCell<HashMap<u32, u64>> = RefCell::new(HashMap::new());
}

fn name_key(name: &str) -> u64 {
    // SipHash with fixed keys: the same name always gives the same key.
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// The id of a name this VM defined before, if any: no host call.
fn known(name: &str) -> Option<u32> {
    DEFINED.with(|d| d.borrow().get(&name_key(name)).copied())
}

/// The name's id, defined with the host only the first time in this VM. `Err`: the host's
/// refusal, logged.
pub fn define(kind: Kind, name: &str) -> Result<u32, u32> {
    if let Some(id) = known(name) {
        return Ok(id);
    }
    let t = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    let id = raw::define_metric(t, name)
        .inspect_err(|status| log::error!("cannot define metric {name}: host status {status}"))?;
    DEFINED.with(|d| d.borrow_mut().insert(name_key(name), id));
    Ok(id)
}

/// Sets this VM's share of a gauge summed over every worker's VM: adds the change since the
/// share last set (each worker has its own VM, and a plain set would show the last writer).
pub fn set_share(id: u32, value: u64) {
    let delta = SHARES.with(|s| {
        let mut s = s.borrow_mut();
        let added = s.entry(id).or_insert(0);
        let delta = i64::try_from(value).ok()? - i64::try_from(*added).ok()?;
        *added = value;
        Some(delta)
    });
    if let Some(delta) = delta.filter(|d| *d != 0) {
        if let Err(s) = raw::increment_metric(id, delta) {
            log::debug!("gauge update failed: status {s}");
        }
    }
}

/// Takes this VM's shares out of every summed gauge: its last root context is going, and
/// the VM may go with it (Envoy replaces VMs on some configuration changes).
pub fn release_shares() {
    let ids: Vec<u32> = SHARES.with(|s| s.borrow().keys().copied().collect());
    for id in ids {
        set_share(id, 0);
    }
}

pub fn increment(id: u32, c: &Cell<u64>) {
    let n = c.take();
    if n > 0 {
        if let Err(s) = raw::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX)) {
            log::debug!("increment_metric failed: status {s}");
        }
    }
}

const UNDEFINED: u32 = u32::MAX;
/// Histogram samples kept per rollout while their metric is not yet defined (a rollout is
/// defined within a few hundred milliseconds of its first request).
const MAX_WAITING_SAMPLES: usize = 4096;

/// One rollout's metrics: ids from the host as they get defined, and counts not yet handed
/// to it, by slot. Counters are flushed every tick, so a request makes no metric host call
/// for them.
pub struct RolloutMetrics {
    pub index: u32,
    pub layout: Layout,
    ids: Vec<Cell<u32>>,
    pub pending: Vec<Cell<u64>>,
    /// Slots before this one have their id.
    next: Cell<usize>,
    /// Histogram samples waiting for their id: (slot, value).
    waiting: RefCell<Vec<(u32, u64)>>,
    /// Samples were dropped while waiting (logged once).
    dropped: Cell<bool>,
}

impl RolloutMetrics {
    /// The rollout's layout, with every name this VM already knows given its id (after a
    /// configuration push, all of them): no host call.
    pub fn new(index: usize, cfg: &Config, reasons: &[String]) -> RolloutMetrics {
        let layout = Layout::new(cfg, reasons);
        let n = layout.names.len();
        let m = RolloutMetrics {
            index: index as u32,
            ids: (0..n).map(|_| Cell::new(UNDEFINED)).collect(),
            pending: (0..n).map(|_| Cell::new(0)).collect(),
            layout,
            next: Cell::new(0),
            waiting: RefCell::new(Vec::new()),
            dropped: Cell::new(false),
        };
        let mut all = usize::MAX;
        // Stops at the first unknown name; nothing to refuse without a host call.
        let _ = m.advance(|_, name| known(name).ok_or(0), &mut all, true);
        m
    }

    /// Defines up to `budget` names, lowering it by what was defined. `Err`: the host refused.
    pub fn define_some(&self, budget: &mut usize) -> Result<(), u32> {
        self.advance(define, budget, false)
    }

    /// Gives ids to slots from `next` on while `get` answers and `budget` lasts.
    fn advance(
        &self,
        get: impl Fn(Kind, &str) -> Result<u32, u32>,
        budget: &mut usize,
        only_known: bool,
    ) -> Result<(), u32> {
        let mut at = self.next.get();
        while *budget > 0 {
            let Some((kind, name)) = self.layout.names.get(at) else {
                break;
            };
            let id = match get(*kind, name) {
                Ok(id) => id,
                Err(_) if only_known => break,
                Err(s) => return Err(s),
            };
            if let Some(c) = self.ids.get(at) {
                c.set(id);
            }
            at += 1;
            *budget -= 1;
        }
        self.next.set(at);
        self.record_waiting();
        Ok(())
    }

    pub fn fully_defined(&self) -> bool {
        self.next.get() >= self.ids.len()
    }

    pub fn id(&self, slot: usize) -> Option<u32> {
        self.ids.get(slot).map(Cell::get).filter(|id| *id != UNDEFINED)
    }

    pub fn record(&self, slot: usize, value: u64) {
        match self.id(slot) {
            Some(id) => {
                if let Err(s) = raw::record_metric(id, value) {
                    log::debug!("record_metric failed: status {s}");
                }
            }
            None => {
                let mut w = self.waiting.borrow_mut();
                if w.len() < MAX_WAITING_SAMPLES {
                    w.push((slot as u32, value));
                } else if !self.dropped.replace(true) {
                    log::warn!(
                        "rollout {}: duration samples dropped until its metrics are defined",
                        self.index
                    );
                }
            }
        }
    }

    fn record_waiting(&self) {
        if self.waiting.borrow().is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for (slot, value) in waiting {
            self.record(slot as usize, value);
        }
    }

    /// This VM's memory on the rollout's gauge, once it is defined.
    pub fn set_memory(&self, bytes: u64) {
        if let Some(id) = self.id(self.layout.memory_slot()) {
            set_share(id, bytes);
        }
    }
}
