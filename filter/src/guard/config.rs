//! The `guard` section of a rollout:
//! `{ "baseline": "stable", "alpha": 1e-6, "minRatio": 2, "holdSeconds": 300 }`, every field optional.
//!
//! Wiring into [`crate::config`]: a field `guard: Option<RawGuard>` (with `#[serde(default)]`) in
//! `RawConfig`, then `raw.guard.map(|g| g.validate(&names)).transpose()?` with the version names.
//! [`crate::json_path`] then names type errors `guard.alpha`, and [`RawGuard::validate`] names the
//! rest the same way; the `rollouts[]` form inherits a top-level `guard` like any other field.

use serde::Deserialize;

use crate::config::ConfigError;

pub const DEFAULT_ALPHA: f64 = 1e-6;
pub const MAX_ALPHA: f64 = 0.1;
pub const DEFAULT_MIN_RATIO: f64 = 2.0;
/// Above this the null share is ~1 and the guard could never trip: surely a typo.
pub const MAX_MIN_RATIO: f64 = 1000.0;
pub const DEFAULT_HOLD_SECONDS: u64 = 300;
/// One day: a longer hold is a typo, and the doubling is capped anyway.
pub const MAX_HOLD_SECONDS: u64 = 86_400;

/// The section as written. Numbers are `Number`s so that `-1` or `"x"` get our message.
/// Only a JSON object: derived structs also take arrays (`[]` would be every default).
#[derive(Debug, Default)]
pub struct RawGuard {
    pub fields: RawFields,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawFields {
    #[serde(default)]
    pub baseline: Option<String>,
    #[serde(default)]
    pub alpha: Option<serde_json::Number>,
    #[serde(default)]
    pub min_ratio: Option<serde_json::Number>,
    #[serde(default)]
    pub hold_seconds: Option<serde_json::Number>,
}

impl<'de> Deserialize<'de> for RawGuard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectOnly)
    }
}

struct ObjectOnly;

impl<'de> serde::de::Visitor<'de> for ObjectOnly {
    type Value = RawGuard;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a guard object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawGuard, A::Error> {
        let fields = RawFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(RawGuard { fields })
    }
}

/// The validated guard of one rollout. Plain numbers, so it is `Copy`.
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    /// Index of the baseline in the rollout's versions.
    pub baseline: usize,
    /// How many versions the rollout has (the baseline included).
    pub versions: usize,
    /// The bound on the probability of ever tripping a healthy version (per (re)start).
    pub alpha: f64,
    /// The null: the version fails at most `min_ratio` times as often as the baseline.
    pub min_ratio: f64,
    /// How long a trip diverts the version before probing (doubled on a re-trip).
    pub hold_ms: u64,
    fingerprint: u64,
}

// f64 fields compared bit for bit, so the runtime `Config` can stay `Eq`.
impl PartialEq for GuardConfig {
    fn eq(&self, o: &Self) -> bool {
        self.fingerprint == o.fingerprint
            && self.baseline == o.baseline
            && self.versions == o.versions
            && self.alpha.to_bits() == o.alpha.to_bits()
            && self.min_ratio.to_bits() == o.min_ratio.to_bits()
            && self.hold_ms == o.hold_ms
    }
}

impl Eq for GuardConfig {}

impl GuardConfig {
    /// Trip when ln BF reaches this: ln(1/α).
    pub fn ln_threshold(&self) -> f64 {
        -self.alpha.ln()
    }

    /// Identifies this configuration in shared data: a decoder with another one starts afresh
    /// (a configuration change resets the guard).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Mixes more of the configuration (e.g. a hash of the whole rollout) into the fingerprint.
    pub fn with_generation(mut self, generation: u64) -> GuardConfig {
        self.fingerprint = fnv(self.fingerprint, &generation.to_le_bytes());
        self
    }
}

impl RawGuard {
    /// Validates against the rollout's version names (in configuration order).
    pub fn validate(self, versions: &[&str]) -> Result<GuardConfig, ConfigError> {
        let f = self.fields;
        if versions.len() < 2 {
            return Err(err(
                "guard",
                "needs at least two versions (the baseline and one to guard)",
            ));
        }
        let baseline = match f.baseline {
            None => 0,
            Some(b) => versions.iter().position(|v| *v == b).ok_or_else(|| {
                err(
                    "guard.baseline",
                    format!("must name a version, got {:?}", crate::config::one_line(&b)),
                )
            })?,
        };
        let alpha = number(
            f.alpha,
            DEFAULT_ALPHA,
            "guard.alpha",
            "must be in (0, 0.1]",
            |a| a > 0.0 && a <= MAX_ALPHA,
        )?;
        let min_ratio = number(
            f.min_ratio,
            DEFAULT_MIN_RATIO,
            "guard.minRatio",
            "must be a number from 1 to 1000",
            |r| (1.0..=MAX_MIN_RATIO).contains(&r),
        )?;
        let hold_seconds = match f.hold_seconds {
            None => DEFAULT_HOLD_SECONDS,
            Some(n) => n
                .as_u64()
                .filter(|s| (1..=MAX_HOLD_SECONDS).contains(s))
                .ok_or_else(|| {
                    err(
                        "guard.holdSeconds",
                        format!("must be whole seconds from 1 to 86400, got {}", show(&n)),
                    )
                })?,
        };
        Ok(GuardConfig {
            baseline,
            versions: versions.len(),
            alpha,
            min_ratio,
            hold_ms: hold_seconds * 1000,
            fingerprint: fingerprint(versions, baseline, alpha, min_ratio, hold_seconds),
        })
    }
}

/// The section alone (tests, tools): errors are named `guard.<field>` as in the whole config.
pub fn parse(bytes: &[u8], versions: &[&str]) -> Result<GuardConfig, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let raw: RawGuard = serde::Deserialize::deserialize(&mut *de).map_err(|e| {
        let inner = crate::json_path::at(bytes, e.line(), e.column());
        let path = if inner == "." {
            "guard".to_string()
        } else {
            format!("guard.{inner}")
        };
        err(
            crate::config::one_line(&path),
            crate::config::one_line(&e.to_string()),
        )
    })?;
    de.end().map_err(|e| err("guard", e.to_string()))?;
    raw.validate(versions)
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// An optional float field: its default, or the value if `ok` accepts it.
fn number(
    n: Option<serde_json::Number>,
    default: f64,
    path: &str,
    rule: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, ConfigError> {
    let Some(n) = n else { return Ok(default) };
    match n.as_f64() {
        Some(x) if x.is_finite() && ok(x) => Ok(x),
        _ => Err(err(path, format!("{rule}, got {}", show(&n)))),
    }
}

fn fingerprint(versions: &[&str], baseline: usize, alpha: f64, min_ratio: f64, hold: u64) -> u64 {
    let mut h = fnv(0xcbf2_9ce4_8422_2325, b"guard/1");
    for v in versions {
        h = fnv(h, v.as_bytes());
        h = fnv(h, &[0]);
    }
    for word in [baseline as u64, alpha.to_bits(), min_ratio.to_bits(), hold] {
        h = fnv(h, &word.to_le_bytes());
    }
    h
}

/// FNV-1a 64: stable across builds and workers (std's hasher is randomly keyed).
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A JSON number for an error message: integers as written, anything else only named (a
/// float printer costs the module kilobytes, for an error message).
fn show(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    "a fraction or a number out of range".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const VERSIONS: [&str; 3] = ["stable", "canary", "preview"];

    fn err(json: &str) -> String {
        parse(json.as_bytes(), &VERSIONS).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let g = parse(b"{}", &VERSIONS).unwrap();
        assert_eq!(g.baseline, 0);
        assert_eq!(g.versions, 3);
        assert_eq!(g.alpha, 1e-6);
        assert_eq!(g.min_ratio, 2.0);
        assert_eq!(g.hold_ms, 300_000);
        assert!((g.ln_threshold() - 13.815_510_557_964_274).abs() < 1e-12);
    }

    #[test]
    fn the_documented_example() {
        let json = br#"{ "baseline": "canary", "alpha": 0.01, "minRatio": 1.5, "holdSeconds": 60 }"#;
        let g = parse(json, &VERSIONS).unwrap();
        assert_eq!(
            (g.baseline, g.alpha, g.min_ratio, g.hold_ms),
            (1, 0.01, 1.5, 60_000)
        );
        // Integers are numbers too.
        let g = parse(br#"{ "minRatio": 1, "alpha": 0.1 }"#, &VERSIONS).unwrap();
        assert_eq!((g.min_ratio, g.alpha), (1.0, 0.1));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(r#"{"alpha": 0.5}"#),
            "guard.alpha: must be in (0, 0.1], got a fraction or a number out of range"
        );
        assert_eq!(err(r#"{"alpha": 0}"#), "guard.alpha: must be in (0, 0.1], got 0");
        assert_eq!(
            err(r#"{"alpha": -1e-7}"#),
            "guard.alpha: must be in (0, 0.1], got a fraction or a number out of range"
        );
        assert_eq!(
            err(r#"{"minRatio": 0.9}"#),
            "guard.minRatio: must be a number from 1 to 1000, got a fraction or a number out of range"
        );
        assert_eq!(
            err(r#"{"minRatio": 1e9}"#),
            "guard.minRatio: must be a number from 1 to 1000, got a fraction or a number out of range"
        );
        assert_eq!(
            err(r#"{"holdSeconds": 1.5}"#),
            "guard.holdSeconds: must be whole seconds from 1 to 86400, got a fraction or a number out of range"
        );
        assert_eq!(
            err(r#"{"holdSeconds": 0}"#),
            "guard.holdSeconds: must be whole seconds from 1 to 86400, got 0"
        );
        assert_eq!(
            err(r#"{"baseline": "blue"}"#),
            "guard.baseline: must name a version, got \"blue\""
        );
        assert!(err(r#"{"alpha": "small"}"#).starts_with("guard.alpha: invalid type: string"));
        let unknown = err(r#"{"hold": 5}"#);
        assert!(
            unknown.starts_with("guard.hold: unknown field `hold`, expected one of"),
            "{unknown}"
        );
        assert!(err("[]").starts_with("guard: invalid type"));
        assert!(err("{} x").starts_with("guard: trailing characters"));
    }

    #[test]
    fn needs_a_version_besides_the_baseline() {
        let e = parse(b"{}", &["stable"]).unwrap_err();
        assert_eq!(e.path, "guard");
    }

    #[test]
    fn the_fingerprint_follows_the_configuration() {
        let a = parse(b"{}", &VERSIONS).unwrap();
        assert_eq!(a, parse(b"{}", &VERSIONS).unwrap());
        assert_eq!(a.fingerprint(), parse(b"{}", &VERSIONS).unwrap().fingerprint());
        for other in [
            parse(br#"{"holdSeconds": 301}"#, &VERSIONS).unwrap(),
            parse(br#"{"baseline": "canary"}"#, &VERSIONS).unwrap(),
            parse(b"{}", &["stable", "canary"]).unwrap(),
            a.with_generation(7),
        ] {
            assert_ne!(a.fingerprint(), other.fingerprint());
            assert_ne!(a, other);
        }
    }
}
