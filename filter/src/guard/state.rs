//! Per version (each but the baseline): Closed (counting) → Tripped (its split users go to the
//! baseline until the hold ends) → Probing (a tenth of its users come back, with fresh counts) →
//! Closed after a probe window without a trip, or Tripped again with the hold doubled (at most
//! 30 min, or the configured hold if longer).
//!
//! Time is passed in (ms since the epoch, the host's clock); nothing here reads a clock. The whole
//! [`Guard`] is the state the workers share (see `codec`): each applies its changes under CAS.

use super::config::GuardConfig;
use super::evidence::Evidence;
use super::window::Window;

/// Of a tripped version's users, those probing once the hold ends: ‰ of the probe key space.
pub const PROBE_PERMILLE: u32 = 100;
/// How long a probe lasts without a trip before the guard closes: the trip's hold, at most
/// this.
pub const PROBE_WINDOW_MS: u64 = 60_000;
/// The doubling of the hold stops here (unless the configured hold is longer).
pub const MAX_HOLD_MS: u64 = 30 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// What the success rate counts as a failure (5xx, reset, gRPC failure codes).
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Counting; the split places users as configured.
    Closed,
    /// Every split user of the version goes to the baseline until `until_ms`.
    Tripped,
    /// Only probing users reach the version, until `until_ms`.
    Probing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Tripped,
    Probing,
    Closed,
}

/// Something to log and count, produced by the update that caused it (once per shared state).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub version: usize,
    pub kind: EventKind,
    pub at_ms: u64,
    /// Tripped: the evidence that tripped it. Closed: the probe's. Probing: empty.
    pub evidence: Evidence,
    /// Tripped: how long it diverts. Otherwise the hold a trip would take now.
    pub hold_ms: u64,
    /// Trips since the configuration was loaded.
    pub trips: u32,
}

/// The state of one version against the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub phase: Phase,
    /// Tripped: when the hold ends. Probing: when the probe window ends.
    pub until_ms: u64,
    /// The hold of the current or last trip.
    pub hold_ms: u64,
    pub trips: u32,
    pub evidence: Evidence,
    pub window: Window,
}

impl Pair {
    pub(super) fn new(hold_ms: u64, now_ms: u64) -> Pair {
        Pair {
            phase: Phase::Closed,
            until_ms: 0,
            hold_ms,
            trips: 0,
            evidence: Evidence::default(),
            window: Window::new(now_ms),
        }
    }

    /// One request of the pair: w is read before it joins the window (the update is predictable).
    fn count(&mut self, is_version: bool, failure: bool, now_ms: u64, min_ratio: f64) {
        let w = self.window.share(now_ms);
        self.window
            .add(now_ms, u32::from(is_version), u32::from(!is_version));
        if failure && self.phase != Phase::Tripped {
            if let Some(w) = w {
                self.evidence.update(is_version, w, min_ratio);
            }
        }
    }
}

/// Requests a worker has not shared yet (successes only; a failure is shared at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    requests: Vec<u32>,
}

impl Tally {
    pub fn new(versions: usize) -> Tally {
        Tally {
            requests: vec![0; versions],
        }
    }

    /// A successful request the split placed on `version`.
    pub fn add(&mut self, version: usize) {
        if let Some(n) = self.requests.get_mut(version) {
            *n = n.saturating_add(1);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.iter().all(|n| *n == 0)
    }

    pub fn clear(&mut self) {
        self.requests.iter_mut().for_each(|n| *n = 0);
    }
}

/// The guard of one rollout: one [`Pair`] per version (the baseline's unused).
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub(super) cfg: GuardConfig,
    pub(super) pairs: Vec<Pair>,
    /// Not shared: the events of this worker's updates.
    events: Vec<Event>,
}

impl Guard {
    pub fn new(cfg: &GuardConfig, now_ms: u64) -> Guard {
        let pairs = (0..cfg.versions)
            .map(|_| Pair::new(cfg.hold_ms, now_ms))
            .collect();
        Guard::from_parts(*cfg, pairs)
    }

    pub(super) fn from_parts(cfg: GuardConfig, pairs: Vec<Pair>) -> Guard {
        Guard {
            cfg,
            pairs,
            events: Vec::new(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// A finished request. Only the split's placements count (`placed_by_split`): overrides and
    /// pins are no share of the traffic. A failure may trip its version (see [`Guard::take_events`]).
    pub fn record(&mut self, version: usize, outcome: Outcome, placed_by_split: bool, now_ms: u64) {
        self.tick(now_ms);
        if !placed_by_split {
            return;
        }
        let failure = outcome == Outcome::Failure;
        let (baseline, r) = (self.cfg.baseline, self.cfg.min_ratio);
        if version == baseline {
            for (_, p) in self.pairs.iter_mut().enumerate().filter(|(v, _)| *v != baseline) {
                p.count(false, failure, now_ms, r);
            }
            // A baseline failure only ever lowers ln BF: no trip to check.
            return;
        }
        let Some(p) = self.pairs.get_mut(version) else {
            return;
        };
        p.count(true, failure, now_ms, r);
        if failure && p.phase != Phase::Tripped && p.evidence.tripped(self.cfg.ln_threshold()) {
            self.trip(version, now_ms);
        }
    }

    /// Adds a worker's unshared successes (before its failure, or on its timer).
    pub fn absorb(&mut self, tally: &Tally, now_ms: u64) {
        self.tick(now_ms);
        let baseline = self.cfg.baseline;
        let at_baseline = tally.requests.get(baseline).copied().unwrap_or(0);
        for (v, p) in self.pairs.iter_mut().enumerate().filter(|(v, _)| *v != baseline) {
            let own = tally.requests.get(v).copied().unwrap_or(0);
            if own > 0 || at_baseline > 0 {
                p.window.add(now_ms, own, at_baseline);
            }
        }
    }

    /// Ends holds (→ Probing) and probe windows (→ Closed) that are over. `record` and `absorb`
    /// call it; a worker's timer should too, so a quiet version still comes back.
    pub fn tick(&mut self, now_ms: u64) {
        for v in 0..self.pairs.len() {
            if v == self.cfg.baseline {
                continue;
            }
            let Some(p) = self.pairs.get_mut(v) else { continue };
            if p.phase == Phase::Closed || now_ms < p.until_ms {
                continue;
            }
            let finished = p.evidence;
            let kind = if p.phase == Phase::Tripped {
                p.phase = Phase::Probing;
                p.until_ms = now_ms.saturating_add(p.hold_ms.min(PROBE_WINDOW_MS));
                EventKind::Probing
            } else {
                p.phase = Phase::Closed;
                p.hold_ms = self.cfg.hold_ms;
                EventKind::Closed
            };
            // Fresh counts, and a window that starts with the new split (no lag behind it).
            p.evidence = Evidence::default();
            p.window = Window::new(now_ms);
            let evidence = if kind == EventKind::Closed {
                finished
            } else {
                Evidence::default()
            };
            let (hold_ms, trips) = (p.hold_ms, p.trips);
            self.events.push(Event {
                version: v,
                kind,
                at_ms: now_ms,
                evidence,
                hold_ms,
                trips,
            });
        }
    }

    fn trip(&mut self, version: usize, now_ms: u64) {
        let cap = MAX_HOLD_MS.max(self.cfg.hold_ms);
        let Some(p) = self.pairs.get_mut(version) else {
            return;
        };
        p.hold_ms = match p.phase {
            Phase::Probing => p.hold_ms.saturating_mul(2).min(cap),
            _ => self.cfg.hold_ms,
        };
        p.phase = Phase::Tripped;
        p.until_ms = now_ms.saturating_add(p.hold_ms);
        p.trips = p.trips.saturating_add(1);
        let (evidence, hold_ms, trips) = (p.evidence, p.hold_ms, p.trips);
        let kind = EventKind::Tripped;
        self.events.push(Event {
            version,
            kind,
            at_ms: now_ms,
            evidence,
            hold_ms,
            trips,
        });
    }

    /// Whether a request the split placed on `version` must go to the baseline instead.
    /// `probe_key`: the user's split hash (murmur3), so a probing user stays probing; its low
    /// bits are independent of the bucket (the high bits). A hold that is over probes already,
    /// before a `tick` records it.
    pub fn diverts(&self, version: usize, probe_key: u32, now_ms: u64) -> bool {
        let Some(p) = self.pairs.get(version) else {
            return false;
        };
        match p.phase {
            _ if version == self.cfg.baseline => false,
            Phase::Closed => false,
            Phase::Tripped if now_ms < p.until_ms => true,
            Phase::Tripped | Phase::Probing => !is_probe(probe_key),
        }
    }

    /// The version's phase (`None` for an index out of range).
    pub fn phase(&self, version: usize) -> Option<Phase> {
        self.pairs.get(version).map(|p| p.phase)
    }

    /// The version's whole state (the baseline's is unused).
    pub fn pair(&self, version: usize) -> Option<&Pair> {
        self.pairs.get(version)
    }

    /// The events of this worker's updates since the last call. With shared data, take them only
    /// after the CAS that wrote the update succeeded, so each is logged once.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

fn is_probe(probe_key: u32) -> bool {
    probe_key % 1000 < PROBE_PERMILLE
}

impl Event {
    /// One log line, numbers in tenths (no float printer in the module).
    pub fn describe(&self, version: &str, baseline: &str) -> String {
        let e = &self.evidence;
        let counts = format!(
            "{} {version} failures, {} {baseline} failures ({} of {version}'s expected at {baseline}'s rate), ln BF {}",
            e.version_failures,
            e.baseline_failures,
            tenths(e.expected),
            tenths(e.ln_bf)
        );
        match self.kind {
            EventKind::Tripped => format!(
                "guard tripped: {version} sends its users to {baseline} for {} s (trip {}): {counts}",
                self.hold_ms / 1000,
                self.trips
            ),
            EventKind::Probing => format!(
                "guard probing: {} % of {version}'s users go back to it for {} s",
                PROBE_PERMILLE / 10,
                self.hold_ms.min(PROBE_WINDOW_MS) / 1000
            ),
            EventKind::Closed => format!("guard closed: {version} is back on the split: probe had {counts}"),
        }
    }
}

/// `x` to one decimal with integer formatting.
fn tenths(x: f64) -> String {
    let t = (x * 10.0).round() as i64;
    let sign = if t < 0 { "-" } else { "" };
    format!("{sign}{}.{}", t.unsigned_abs() / 10, t.unsigned_abs() % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const S: usize = 0;
    const C: usize = 1;

    fn cfg(json: &str) -> GuardConfig {
        super::super::config::parse(json.as_bytes(), &["stable", "canary"]).unwrap()
    }

    /// Ten seconds of 90/10 traffic, all successful.
    fn warm(g: &mut Guard, from_ms: u64) -> u64 {
        let mut t = from_ms;
        for _ in 0..10 {
            for i in 0..100 {
                g.record(if i % 10 == 0 { C } else { S }, Outcome::Success, true, t);
            }
            t += 1000;
        }
        t
    }

    /// 90/10 traffic in which every canary request fails, until it trips; returns the time of the trip.
    fn fail_canary(g: &mut Guard, mut t: u64) -> u64 {
        for _ in 0..500 {
            for _ in 0..9 {
                g.record(S, Outcome::Success, true, t);
            }
            g.record(C, Outcome::Failure, true, t);
            if g.phase(C) == Some(Phase::Tripped) {
                return t;
            }
            t += 100;
        }
        panic!("never tripped: {:?}", g.pair(C));
    }

    #[test]
    fn trips_holds_probes_and_closes() {
        let mut g = Guard::new(&cfg(r#"{"holdSeconds": 60}"#), 0);
        let t = warm(&mut g, 0);
        let tripped = fail_canary(&mut g, t);
        let ev = g.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].kind, ev[0].version, ev[0].hold_ms, ev[0].trips),
            (EventKind::Tripped, C, 60_000, 1)
        );
        assert!(ev[0].evidence.ln_bf >= 1e6f64.ln());
        assert!(ev[0]
            .describe("canary", "stable")
            .starts_with("guard tripped: canary sends its users to stable for 60 s (trip 1): "));
        // Every split user diverts during the hold; the baseline never does.
        assert!((0..1000).all(|k| g.diverts(C, k, tripped + 59_999)));
        assert!(!g.diverts(S, 7, tripped + 1));
        // Hold over: the probing tenth comes back at once, the tick records it.
        assert!(!g.diverts(C, 5, tripped + 60_000) && g.diverts(C, 500, tripped + 60_000));
        g.tick(tripped + 60_000);
        assert_eq!(g.phase(C), Some(Phase::Probing));
        assert_eq!(g.take_events()[0].kind, EventKind::Probing);
        assert_eq!(g.pair(C).unwrap().evidence, Evidence::default());
        let probe = (0..1000).filter(|k| !g.diverts(C, *k, tripped + 60_001)).count();
        assert_eq!(probe, 100);
        // A quiet probe window closes it; the hold is back to the configured one.
        g.tick(tripped + 60_000 + PROBE_WINDOW_MS);
        assert_eq!(g.phase(C), Some(Phase::Closed));
        let ev = g.take_events();
        assert_eq!(ev[0].kind, EventKind::Closed);
        assert!(ev[0]
            .describe("canary", "stable")
            .starts_with("guard closed: canary is back on the split"));
        assert!(!g.diverts(C, 500, tripped + 200_000));
    }

    #[test]
    fn a_failing_probe_doubles_the_hold_up_to_the_cap() {
        let mut g = Guard::new(&cfg(r#"{"holdSeconds": 600}"#), 0);
        let warmed = warm(&mut g, 0);
        fail_canary(&mut g, warmed);
        let mut t;
        let mut holds = vec![g.pair(C).unwrap().hold_ms];
        for _ in 0..3 {
            t = g.pair(C).unwrap().until_ms;
            g.tick(t);
            assert_eq!(g.phase(C), Some(Phase::Probing));
            // The probe: a tenth of the canary's users, still failing.
            let mut n = 0;
            while g.phase(C) == Some(Phase::Probing) {
                for i in 0..100 {
                    let v = if i == 0 { C } else { S };
                    g.record(
                        v,
                        if v == C {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        },
                        true,
                        t,
                    );
                }
                t += 1000;
                n += 1;
                assert!(n < 60, "the probe never tripped");
            }
            holds.push(g.pair(C).unwrap().hold_ms);
        }
        assert_eq!(holds, vec![600_000, 1_200_000, 1_800_000, 1_800_000]);
        assert_eq!(g.pair(C).unwrap().trips, 4);
    }

    #[test]
    fn only_split_placements_count() {
        let mut g = Guard::new(&cfg("{}"), 0);
        let t = warm(&mut g, 0);
        let before = *g.pair(C).unwrap();
        for i in 0..1000 {
            g.record(C, Outcome::Failure, false, t + i);
        }
        assert_eq!(g.pair(C).unwrap().evidence, before.evidence);
        assert_eq!(g.pair(C).unwrap().window, before.window);
    }

    #[test]
    fn a_tally_counts_like_records() {
        let c = cfg("{}");
        let (mut a, mut b) = (Guard::new(&c, 0), Guard::new(&c, 0));
        let mut tally = Tally::new(2);
        for i in 0..50 {
            let v = if i % 5 == 0 { C } else { S };
            a.record(v, Outcome::Success, true, 1000);
            tally.add(v);
        }
        assert!(!tally.is_empty());
        b.absorb(&tally, 1000);
        assert_eq!(a.pair(C).unwrap().window, b.pair(C).unwrap().window);
        tally.clear();
        assert!(tally.is_empty());
        tally.add(9);
        assert!(tally.is_empty());
    }

    #[test]
    fn failures_before_w_is_known_are_not_counted() {
        let mut g = Guard::new(&cfg("{}"), 0);
        for _ in 0..9 {
            g.record(C, Outcome::Failure, true, 0);
        }
        g.record(S, Outcome::Success, true, 0);
        assert_eq!(g.pair(C).unwrap().evidence, Evidence::default());
    }

    #[test]
    fn out_of_range_versions_are_ignored() {
        let mut g = Guard::new(&cfg("{}"), 0);
        let before = g.clone();
        g.record(7, Outcome::Failure, true, 0);
        assert_eq!(g, before);
        assert!(!g.diverts(7, 0, 0));
        assert_eq!(g.phase(7), None);
    }

    #[test]
    fn tenths_round() {
        assert_eq!(tenths(13.816), "13.8");
        assert_eq!(tenths(-0.26), "-0.3");
        assert_eq!(tenths(0.0), "0.0");
    }
}
