//! The [`Guard`] as bytes, for Envoy's shared data (one key per rollout), so every worker VM of
//! an Envoy counts into, and decides from, the same state.
//!
//! How the host glue is meant to use it (nothing is lost between workers):
//!
//! ```text
//! successes:  tally.add(version)                            (local, no shared-data call)
//! a failure, or the timer (every ~0.5 s) with a non-empty tally or a hold/probe to end:
//!   loop {
//!     (bytes, cas) = get_shared_data(key)
//!     g = decode(cfg, bytes) or Guard::new(cfg, now)      (absent, another config, corrupt)
//!     g.absorb(&tally, now); g.record(version, Failure, true, now)    (or g.tick(now))
//!     set_shared_data(key, g.encode(), cas): Ok → tally.clear(), keep g for `diverts`,
//!                                            log/count g.take_events(); CasMismatch → again
//!   }
//! ```
//!
//! A write only lands on the state it was computed from, so each worker's deltas are added to
//! everyone else's exactly once, and failures enter the sequential test in the order their writes
//! land, each seeing all earlier ones (the w it uses is the shared one at that moment).
//!
//! Format 1, little-endian: `"RG"`, format, versions, baseline, fingerprint (u64), then per version
//! (the baseline's included, unused): phase (u8), until_ms, hold_ms (u64), trips, version and
//! baseline failures (u32), ln BF, expected, predictive c and n (f64), window last_ms (u64),
//! version and baseline requests (f64). Decoding checks the length and every value, never panics.

use super::config::GuardConfig;
use super::evidence::Evidence;
use super::state::{Guard, Pair, Phase};
use super::window::Window;

const MAGIC: [u8; 2] = *b"RG";
pub const FORMAT: u8 = 1;
const HEADER: usize = 2 + 1 + 1 + 1 + 8;
const RECORD: usize = 1 + 8 + 8 + 4 + 4 + 4 + 8 * 4 + 8 * 3;

/// Why shared bytes were not taken: the caller starts a fresh guard in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not this encoding, or another format version.
    Format,
    /// Written under another configuration (a reload resets the guard).
    OtherConfig,
    /// The length does not match the header.
    Length,
    /// A value no update can produce.
    Value,
}

impl Guard {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + RECORD * self.pairs.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out` (a buffer the caller reuses).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        // versions ≤ 16 and baseline < versions (config limits), so they fit in a byte.
        out.extend_from_slice(&[FORMAT, self.cfg.versions as u8, self.cfg.baseline as u8]);
        out.extend_from_slice(&self.cfg.fingerprint().to_le_bytes());
        for p in &self.pairs {
            let phase: u8 = match p.phase {
                Phase::Closed => 0,
                Phase::Tripped => 1,
                Phase::Probing => 2,
            };
            out.push(phase);
            for x in [p.until_ms, p.hold_ms] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            let e = &p.evidence;
            for x in [p.trips, e.version_failures, e.baseline_failures] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            for x in [e.ln_bf, e.expected, e.c, e.n] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out.extend_from_slice(&p.window.last_ms.to_le_bytes());
            for x in [p.window.version, p.window.baseline] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }

    /// The shared state written by [`Guard::encode`] under the same configuration.
    pub fn decode(cfg: &GuardConfig, bytes: &[u8]) -> Result<Guard, DecodeError> {
        let mut r = Reader(bytes);
        if r.take::<2>() != Some(MAGIC) || r.u8() != Some(FORMAT) {
            return Err(DecodeError::Format);
        }
        let (versions, baseline) = (r.u8(), r.u8());
        let fingerprint = r.u64();
        if versions != Some(cfg.versions as u8)
            || baseline != Some(cfg.baseline as u8)
            || fingerprint != Some(cfg.fingerprint())
        {
            return Err(DecodeError::OtherConfig);
        }
        if bytes.len() != HEADER + RECORD * cfg.versions {
            return Err(DecodeError::Length);
        }
        let pairs = (0..cfg.versions)
            .map(|_| pair(&mut r).ok_or(DecodeError::Value))
            .collect::<Result<Vec<Pair>, DecodeError>>()?;
        Ok(Guard::from_parts(*cfg, pairs))
    }
}

fn pair(r: &mut Reader) -> Option<Pair> {
    let phase = match r.u8()? {
        0 => Phase::Closed,
        1 => Phase::Tripped,
        2 => Phase::Probing,
        _ => return None,
    };
    let (until_ms, hold_ms, trips) = (r.u64()?, r.u64()?, r.u32()?);
    let (version_failures, baseline_failures) = (r.u32()?, r.u32()?);
    let (ln_bf, expected, c, n) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
    let evidence = Evidence {
        version_failures,
        baseline_failures,
        ln_bf,
        expected,
        c,
        n,
    };
    let window = Window {
        last_ms: r.u64()?,
        version: r.f64()?,
        baseline: r.f64()?,
    };
    let p = Pair {
        phase,
        until_ms,
        hold_ms,
        trips,
        evidence,
        window,
    };
    (evidence.is_sane() && window.is_sane()).then_some(p)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn f64(&mut self) -> Option<f64> {
        self.take().map(f64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::parse;
    use super::super::state::{Outcome, Tally};
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const VERSIONS: [&str; 3] = ["stable", "canary", "preview"];

    fn cfg() -> GuardConfig {
        parse(br#"{"holdSeconds": 30}"#, &VERSIONS).unwrap()
    }

    /// A guard with a bit of everything: counts, a trip.
    fn busy(now: &mut u64) -> Guard {
        let mut g = Guard::new(&cfg(), *now);
        for i in 0..2000u64 {
            let v = (i % 10).min(2) as usize;
            let failing = v == 1 && i > 500;
            let outcome = if failing {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            g.record(v, outcome, true, *now);
            *now += 10;
        }
        g
    }

    #[test]
    fn round_trips() {
        let mut now = 0;
        let g = busy(&mut now);
        assert_eq!(g.phase(1), Some(Phase::Tripped));
        let bytes = g.encode();
        assert_eq!(bytes.len(), HEADER + 3 * RECORD);
        let mut back = Guard::decode(&cfg(), &bytes).unwrap();
        // Events are the writer's own: they do not travel.
        let mut g = g;
        assert!(!g.take_events().is_empty());
        assert!(back.take_events().is_empty());
        assert_eq!(back, g);
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let mut now = 0;
        let bytes = busy(&mut now).encode();
        assert_eq!(Guard::decode(&cfg(), &[]), Err(DecodeError::Format));
        assert_eq!(Guard::decode(&cfg(), b"XG\x01"), Err(DecodeError::Format));
        let mut newer = bytes.clone();
        newer[2] = 2;
        assert_eq!(Guard::decode(&cfg(), &newer), Err(DecodeError::Format));
        let other = parse(br#"{"holdSeconds": 31}"#, &VERSIONS).unwrap();
        assert_eq!(Guard::decode(&other, &bytes), Err(DecodeError::OtherConfig));
        let two = parse(b"{}", &["stable", "canary"]).unwrap();
        assert_eq!(Guard::decode(&two, &bytes), Err(DecodeError::OtherConfig));
        for cut in 0..bytes.len() {
            assert!(Guard::decode(&cfg(), &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Guard::decode(&cfg(), &longer), Err(DecodeError::Length));
        let mut bad_phase = bytes.clone();
        bad_phase[HEADER + RECORD] = 3;
        assert_eq!(Guard::decode(&cfg(), &bad_phase), Err(DecodeError::Value));
        let mut nan = bytes.clone();
        let ln_bf_at = HEADER + RECORD + 1 + 8 + 8 + 4 + 4 + 4;
        nan[ln_bf_at..ln_bf_at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(Guard::decode(&cfg(), &nan), Err(DecodeError::Value));
    }

    /// Two workers interleaving on one store with CAS: every count lands once.
    #[test]
    fn concurrent_workers_lose_nothing() {
        struct Store {
            bytes: Vec<u8>,
            cas: u32,
        }
        let c = cfg();
        let mut store = Store {
            bytes: Vec::new(),
            cas: 0,
        };
        let mut tallies = [Tally::new(3), Tally::new(3)];
        // One instant: no decay, so the counts compare exactly.
        let (mut mismatches, now) = (0, 7u64);
        for round in 0..200 {
            // Both read, then both try to write what they computed.
            let seen: Vec<(Guard, u32)> = (0..2)
                .map(|w| {
                    let mut g = Guard::decode(&c, &store.bytes).unwrap_or_else(|_| Guard::new(&c, now));
                    tallies[w].add(if round % 2 == 0 { 0 } else { 2 });
                    g.absorb(&tallies[w], now);
                    (g, store.cas)
                })
                .collect();
            let mut order: Vec<(usize, (Guard, u32))> = seen.into_iter().enumerate().collect();
            if round % 3 == 0 {
                order.reverse();
            }
            for (w, (g, cas)) in order {
                if cas == store.cas {
                    store.bytes = g.encode();
                    store.cas += 1;
                    tallies[w].clear();
                } else {
                    mismatches += 1; // retried on a later round with its tally intact
                }
            }
        }
        // Flush the leftovers one at a time.
        for t in &mut tallies {
            let mut g = Guard::decode(&c, &store.bytes).unwrap();
            g.absorb(t, now);
            store.bytes = g.encode();
            t.clear();
        }
        assert!(mismatches > 0);
        let g = Guard::decode(&c, &store.bytes).unwrap();
        // 200 rounds × 2 workers, one request each, half to the baseline, half to preview.
        let w = g.pair(2).unwrap().window;
        assert_eq!((w.version, w.baseline), (200.0, 200.0));
        assert_eq!(
            (
                g.pair(1).unwrap().window.version,
                g.pair(1).unwrap().window.baseline
            ),
            (0.0, 200.0)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Guard::decode(&cfg(), &bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(at in 0usize..300, to in any::<u8>()) {
            let mut now = 0;
            let mut bytes = busy(&mut now).encode();
            if let Some(b) = bytes.get_mut(at) {
                *b = to;
            }
            if let Ok(g) = Guard::decode(&cfg(), &bytes) {
                let _ = g.diverts(1, 5, now);
                let _ = g.encode();
            }
        }
    }
}
