//! The sequential test of one version against the baseline, updated once per failure.
//!
//! Reference: Lindon & Malek, "Anytime-valid inference for multinomial count data" (NeurIPS 2022,
//! arXiv 2011.03567), as implemented in `assuncaolfi/savvi` (commit de1d0d2), `src/savvi/multinomial.py`:
//!
//! - the null multinomial share θ0 and the Dirichlet prior α0 = k·θ0, k = 100 by default (lines 40, 46);
//! - the posterior α_n = α0 + counts (line 64);
//! - `update_odds` (lines 90-97): ln BF += ln B(α_n) − ln B(α_n − x) − Σ x_i ln θ0_i, with
//!   ln B(v) = Σ lgamma(v_i) − lgamma(Σ v_i) (`special.py` lines 6-7). For one observation x = e_i
//!   this is ln(α_i / Σα) − ln θ0_i with α before the update (Γ(a+1) = aΓ(a)): the posterior
//!   predictive over the null, so no lgamma is needed;
//! - the p-value is 1 / odds (lines 116-117): tripping at ln BF ≥ ln(1/α) is p ≤ α.
//!
//! The canary case is `InhomogeneousPoissonProcess` (lines 237-267, which uses exactly
//! `Multinomial.update_odds`) and `examples/InhomogeneousPoissonProcess.qmd`: failures of the two
//! versions are Poisson processes with intensities ρ_i·e^{δ_i}·λ(t) sharing any λ(t), so each
//! failure is version i's with θ_i = ρ_i e^{δ_i} / Σ_j ρ_j e^{δ_j} (lines 19-25), whatever λ(t)
//! does. The reference tests θ0 = ρ (δ equal, lines 40-49). Here ρ = (1 − w, w) with w the version's
//! share of requests and the null allows the version up to `minRatio` = r times the baseline's
//! rate, e^{δ_v − δ_b} ≤ r, so θ0 = w·r / (w·r + 1 − w).
//!
//! Three departures, each keeping the product a test supermartingale under the null, so by Ville's
//! inequality P(ln BF ever ≥ ln 1/α) ≤ α:
//! 1. **w moves** (measured over a recent window): each failure uses the θ0 in force and the prior
//!    re-centred on it, α0 = k·θ0_j (the reference's step with `theta_0` and `alpha_0` set before
//!    each update). A predictable predictive over the null is a martingale factor whatever w does.
//! 2. **One-sided**: the null is "at most r times", not "exactly". A step whose predictive share q
//!    is below θ0 counts as 1 (ln 0): then E[factor] = 1 + (p − θ0)(q/θ0 − (1−q)/(1−θ0)) ≤ 1 for
//!    every true share p ≤ θ0. The two-sided reference step grows on evidence that the version
//!    fails *less* than r times the baseline, and with the "share of failures > share of requests"
//!    condition it trips on two versions failing alike (see the tests).
//! 3. **Bounded memory**: past [`MEMORY`] failures the predictive's counts are scaled down, so a
//!    version healthy for hours is still caught within tens of failures when it breaks. Below
//!    [`MEMORY`] failures the step is the reference's exactly.

/// The reference's default prior concentration k (multinomial.py lines 40, 46; the example uses it).
pub const PRIOR_CONCENTRATION: f64 = 100.0;
/// Failures the predictive remembers (geometric forgetting beyond).
pub const MEMORY: f64 = 200.0;

/// θ0: the largest share of the pair's failures the version may have under the null,
/// for its share `w` of the pair's requests and `min_ratio` r.
pub fn null_share(w: f64, min_ratio: f64) -> f64 {
    let a = w * min_ratio;
    a / (a + (1.0 - w))
}

/// The reference's `update_odds` increment (multinomial.py lines 90-97) for one failure, with
/// α = k·θ0 + counts before it: `c` of the pair's `n` failures so far were the version's.
pub fn reference_step(c: f64, n: f64, theta0: f64, k: f64, is_version: bool) -> f64 {
    let q = (k * theta0 + c) / (k + n);
    if is_version {
        (q / theta0).ln()
    } else {
        ((1.0 - q) / (1.0 - theta0)).ln()
    }
}

/// The evidence since the test (re)started: O(1), updated once per failure of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Evidence {
    /// Failures of the version counted.
    pub version_failures: u32,
    /// Failures of the baseline counted.
    pub baseline_failures: u32,
    /// ln of the Bayes factor (the reference's `log(odds)`).
    pub ln_bf: f64,
    /// Σ w over the counted failures: the version's failures expected if it failed like the baseline.
    pub expected: f64,
    /// The predictive's counts (= the failures until [`MEMORY`], then forgetting).
    pub(crate) c: f64,
    pub(crate) n: f64,
}

impl Evidence {
    /// One failure of the pair: the version's (`is_version`) or the baseline's, with `w` the
    /// version's share of the pair's requests before it. A `w` outside (0, 1) is not counted.
    pub fn update(&mut self, is_version: bool, w: f64, min_ratio: f64) {
        if !(w > 0.0 && w < 1.0) {
            return;
        }
        let theta0 = null_share(w, min_ratio);
        let q = (PRIOR_CONCENTRATION * theta0 + self.c) / (PRIOR_CONCENTRATION + self.n);
        if q >= theta0 {
            self.ln_bf += reference_step(self.c, self.n, theta0, PRIOR_CONCENTRATION, is_version);
        }
        if self.n + 1.0 > MEMORY {
            let keep = (MEMORY - 1.0) / self.n;
            self.c *= keep;
            self.n *= keep;
        }
        self.n += 1.0;
        if is_version {
            self.c += 1.0;
            self.version_failures = self.version_failures.saturating_add(1);
        } else {
            self.baseline_failures = self.baseline_failures.saturating_add(1);
        }
        self.expected += w;
    }

    /// ln BF has reached ln(1/α) and the version has more failures than its share of requests
    /// would give it at the baseline's rate.
    pub fn tripped(&self, ln_threshold: f64) -> bool {
        self.ln_bf >= ln_threshold && f64::from(self.version_failures) > self.expected
    }

    /// Whether the values are ones `update` can produce (for decoding shared data).
    pub(crate) fn is_sane(&self) -> bool {
        self.ln_bf.is_finite()
            && self.expected.is_finite()
            && self.expected >= 0.0
            && self.c >= 0.0
            && self.n >= self.c
            && self.n <= MEMORY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// examples/InhomogeneousPoissonProcess.qmd: ρ = [0.8, 0.2], δ = [1.5, 2], 1000 draws after
    /// `np.random.seed(1)`. The draws (bit i = draw i is category 1, LSB first) and the ln odds
    /// below come from running the reference's own `InhomogeneousPoissonProcess.update` and
    /// `calculate_p_value` (savvi de1d0d2, numpy 2.4.6, scipy 1.17.1; cvxpy stubbed: the
    /// confidence intervals are not reproduced).
    const EXAMPLE_DRAWS: &str = "02203023a14b000050d2a50841297990480d88c8088840228f050b863a8112aa700184a30a34c0900048f6d0d054204184282b50052854f0f021453402880704800d74201441841850a501628a20891502502456ce69180204144a1295260b4215a0248829500400081884012b001440a5043648808802000b29407088";

    fn example_draws() -> Vec<bool> {
        let bytes: Vec<u8> = (0..EXAMPLE_DRAWS.len() / 2)
            .map(|i| u8::from_str_radix(&EXAMPLE_DRAWS[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        (0..1000).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect()
    }

    #[test]
    fn reproduces_the_reference_example() {
        let draws = example_draws();
        assert_eq!(draws.iter().filter(|d| **d).count(), 290);
        let expected = [
            (1, 1.2878587085650985e-13),
            (10, -0.0015327146263878371),
            (50, 0.07284261001389812),
            (100, 0.14319999364146294),
            (210, 3.088294334195476),
            (500, 13.779120310525151),
            (1000, 19.760041223909994),
        ];
        let (mut c, mut ln_bf, mut stop) = (0.0, 0.0, None);
        for (i, d) in draws.iter().enumerate() {
            ln_bf += reference_step(c, i as f64, 0.2, PRIOR_CONCENTRATION, *d);
            c += f64::from(u8::from(*d));
            // The example stops at the first p ≤ 0.05: n = 210, p = 0.045579631759249686.
            if stop.is_none() && ln_bf >= 20f64.ln() {
                stop = Some((i + 1, (-ln_bf).exp()));
            }
            if let Some((_, want)) = expected.iter().find(|(n, _)| *n == i + 1) {
                assert!((ln_bf - want).abs() < 1e-9, "n = {}: {ln_bf} vs {want}", i + 1);
            }
        }
        let (n, p) = stop.unwrap();
        assert_eq!(n, 210);
        assert!((p - 0.045579631759249686).abs() < 1e-9);
    }

    /// The reference's `Multinomial(θ0 = null_share(0.1, 2))` fed only version failures
    /// (same run as above): ln odds after 1..5, 31, 32 and 40 updates; it first reaches ln 1e6 at 32.
    #[test]
    fn reproduces_the_reference_on_a_failing_version() {
        let want = [
            (1, -2.153832667772827e-14),
            (2, 0.04359043607492151),
            (3, 0.12814782410293118),
            (4, 0.2513101088790952),
            (5, 0.4109402544709784),
            (31, 13.20213765823691),
            (32, 13.927212433322321),
            (40, 20.15186402004434),
        ];
        let mut e = Evidence::default();
        let mut first = None;
        for n in 1..=40 {
            e.update(true, 0.1, 2.0);
            if let Some((_, v)) = want.iter().find(|(m, _)| *m == n) {
                assert!(close(e.ln_bf, *v), "n = {n}: {} vs {v}", e.ln_bf);
            }
            if first.is_none() && e.tripped(1e6f64.ln()) {
                first = Some(n);
            }
        }
        assert_eq!(first, Some(32));
    }

    /// w moving from failure to failure: the reference's `Multinomial.update` with `theta_0` and
    /// `alpha_0 = 100 * theta_0` set to the null in force before each update (same run as above).
    #[test]
    fn reproduces_the_reference_with_a_moving_share() {
        let ws = [0.1, 0.1, 0.2, 0.5, 0.5, 0.3, 0.05, 0.9, 0.5, 0.25, 0.1, 0.6];
        let labels = [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1];
        let want = [
            -2.153832667772827e-14,
            0.04359043607492151,
            0.02378780877861106,
            0.023787808778672207,
            0.014125897866928966,
            0.028310532858941972,
            0.3206984963481701,
            0.5751233470434066,
            0.5704829674868912,
            0.6240672136208983,
            0.564767471339545,
            0.549638589743185,
        ];
        let (mut c, mut ln_bf) = (0.0, 0.0);
        let mut e = Evidence::default();
        let mut clamped = 0.0;
        for (i, ((w, l), v)) in ws.iter().zip(labels).zip(want).enumerate() {
            let theta0 = null_share(*w, 2.0);
            let step = reference_step(c, i as f64, theta0, PRIOR_CONCENTRATION, l == 1);
            ln_bf += step;
            assert!(close(ln_bf, v), "step {i}: {ln_bf} vs {v}");
            // The one-sided test takes the same step unless the predictive is below θ0.
            if (PRIOR_CONCENTRATION * theta0 + c) / (PRIOR_CONCENTRATION + i as f64) >= theta0 {
                clamped += step;
            }
            e.update(l == 1, *w, 2.0);
            assert!(close(e.ln_bf, clamped), "step {i}");
            c += f64::from(l);
        }
    }

    /// The one-sided factor has expectation at most 1 under every null share p ≤ θ0.
    #[test]
    fn one_sided_steps_are_supermartingale_factors() {
        for w in [0.01, 0.1, 0.5, 0.9] {
            for r in [1.0, 2.0, 5.0] {
                let theta0 = null_share(w, r);
                for (c, n) in [
                    (0.0, 0.0),
                    (0.0, 50.0),
                    (30.0, 40.0),
                    (199.0, 199.0),
                    (3.0, 199.0),
                ] {
                    let mut hit = Evidence {
                        c,
                        n,
                        ..Evidence::default()
                    };
                    hit.update(true, w, r);
                    let mut miss = Evidence {
                        c,
                        n,
                        ..Evidence::default()
                    };
                    miss.update(false, w, r);
                    for p in [0.0, theta0 * 0.3, theta0 * 0.9, theta0] {
                        let mean = p * hit.ln_bf.exp() + (1.0 - p) * miss.ln_bf.exp();
                        assert!(mean <= 1.0 + 1e-12, "w {w} r {r} c {c} n {n} p {p}: {mean}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_null_share() {
        assert!(close(null_share(0.1, 1.0), 0.1));
        assert!(close(null_share(0.1, 2.0), 0.2 / 1.1));
        assert!(close(null_share(0.5, 2.0), 2.0 / 3.0));
        // The example's formula: θ = ρ e^δ / Σ ρ e^δ with δ_v − δ_b = ln r.
        let (rho, r) = (0.2f64, 3.0f64);
        let theta = rho * r.ln().exp() / (rho * r.ln().exp() + (1.0 - rho));
        assert!(close(null_share(rho, r), theta));
    }

    #[test]
    fn memory_bounds_the_predictive() {
        let mut e = Evidence::default();
        for i in 0..1000 {
            e.update(i % 10 == 0, 0.1, 2.0);
            assert!(e.is_sane());
        }
        assert!(close(e.n, MEMORY));
        assert_eq!((e.version_failures, e.baseline_failures), (100, 900));
        // Healthy for 1000 failures, then only the version fails: still tripped within tens.
        let trip = (1..).find(|_| {
            e.update(true, 0.1, 2.0);
            e.tripped(1e6f64.ln())
        });
        assert!(trip.unwrap() < 80, "{trip:?}");
    }

    #[test]
    fn shares_outside_the_open_interval_are_not_counted() {
        let mut e = Evidence::default();
        for w in [0.0, 1.0, f64::NAN, -1.0] {
            e.update(true, w, 2.0);
        }
        assert_eq!(e, Evidence::default());
    }
}
