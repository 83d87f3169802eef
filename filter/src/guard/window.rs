//! w: a version's share of the pair's requests (the version's and the baseline's), measured.
//!
//! Exponentially decayed counts, one pair of floats and a timestamp: O(1) memory and bytes in shared
//! data (a ring of per-second counts would be 2·N numbers to copy on every CAS), no boundary
//! jumps, and adding from several workers commutes. The share is a ratio, so decay cancels out of
//! it; the decay only ages old traffic out. Both counts restart together (probe, close), which
//! makes the ratio unbiased from the first request instead of lagging behind the new split.

/// The decay time constant: a weight change is followed within about one τ.
pub const TAU_MS: f64 = 10_000.0;
/// Below this many (decayed) requests of the pair, w is not known and failures are not counted.
/// With τ = 10 s that is a pair receiving at least one request a second.
pub const MIN_REQUESTS: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    /// When the counts were last decayed (ms).
    pub last_ms: u64,
    /// The version's requests, decayed to `last_ms`.
    pub version: f64,
    /// The baseline's requests, decayed to `last_ms`.
    pub baseline: f64,
}

impl Window {
    /// An empty window starting at `now_ms`.
    pub fn new(now_ms: u64) -> Window {
        Window {
            last_ms: now_ms,
            ..Window::default()
        }
    }

    /// Adds requests at `now_ms`. A clock behind `last_ms` (another worker's) adds without decay.
    pub fn add(&mut self, now_ms: u64, version: u32, baseline: u32) {
        if now_ms > self.last_ms {
            let f = self.decay(now_ms);
            self.version *= f;
            self.baseline *= f;
            self.last_ms = now_ms;
        }
        self.version += f64::from(version);
        self.baseline += f64::from(baseline);
    }

    /// The version's share of the pair's requests, once there are enough of them.
    pub fn share(&self, now_ms: u64) -> Option<f64> {
        let total = self.version + self.baseline;
        if total * self.decay(now_ms) < MIN_REQUESTS {
            return None;
        }
        let w = self.version / total;
        (w > 0.0 && w < 1.0).then_some(w)
    }

    fn decay(&self, now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(self.last_ms) as f64;
        (-dt / TAU_MS).exp()
    }

    pub(crate) fn is_sane(&self) -> bool {
        self.version.is_finite() && self.baseline.is_finite() && self.version >= 0.0 && self.baseline >= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn share_needs_enough_requests() {
        let mut w = Window::new(0);
        w.add(0, 1, 8);
        assert_eq!(w.share(0), None);
        w.add(0, 0, 1);
        assert_eq!(w.share(0), Some(0.1));
        // Twenty seconds later the same ten requests weigh e^-2 of that: not enough.
        assert_eq!(w.share(20_000), None);
    }

    #[test]
    fn follows_a_weight_change_within_a_few_tau() {
        let mut w = Window::new(0);
        for s in 0..60 {
            w.add(s * 1000, 10, 90);
        }
        assert!((w.share(60_000).unwrap() - 0.1).abs() < 1e-9);
        for s in 60..90 {
            w.add(s * 1000, 50, 50);
        }
        let got = w.share(90_000).unwrap();
        assert!((0.47..0.5).contains(&got), "{got}");
    }

    #[test]
    fn only_one_side_is_no_share() {
        let mut w = Window::new(0);
        w.add(0, 0, 100);
        assert_eq!(w.share(0), None);
        let mut w = Window::new(0);
        w.add(0, 100, 0);
        assert_eq!(w.share(0), None);
    }

    #[test]
    fn a_clock_behind_still_adds() {
        let mut w = Window::new(5_000);
        w.add(4_000, 5, 5);
        assert_eq!((w.last_ms, w.version, w.baseline), (5_000, 5.0, 5.0));
        assert_eq!(w.share(1_000), Some(0.5));
    }
}
