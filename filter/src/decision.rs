//! The routing decision: override header > override query > sticky split > random.
//!
//! Pure: the request is read through [`RequestView`], which the host glue
//! implements over proxy-wasm and the tests implement over a map. Sources are
//! read lazily, so a request decided by its override header costs no further reads.

use crate::config::{Config, StickyKey};
use crate::keys;
use crate::split;

/// What the decision needs from a request. Values are raw bytes: they need not be UTF-8.
pub trait RequestView {
    /// The first value of request header `name` (lowercase).
    fn header(&mut self, name: &str) -> Option<&[u8]>;
    /// The `:path` pseudo-header, query included.
    fn path(&mut self) -> Option<&[u8]> {
        self.header(":path")
    }
    /// Downstream `ip:port`.
    fn source_address(&mut self) -> Option<&[u8]>;
    /// A fresh random number, for requests with no sticky key.
    fn random_u32(&mut self) -> u32;
}

/// Why a request went to its version. Also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    OverrideHeader,
    OverrideQuery,
    Certificate,
    Sticky,
    Random,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::OverrideHeader,
        Source::OverrideQuery,
        Source::Certificate,
        Source::Sticky,
        Source::Random,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::OverrideHeader => "override_header",
            Source::OverrideQuery => "override_query",
            Source::Certificate => "certificate",
            Source::Sticky => "sticky",
            Source::Random => "random",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// An input the filter ignored. Also a metric label (`reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The override header named no configured version.
    UnknownOverrideHeader,
    /// The override query parameter named no configured version.
    UnknownOverrideQuery,
}

impl Reject {
    pub const ALL: [Reject; 2] = [Reject::UnknownOverrideHeader, Reject::UnknownOverrideQuery];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::UnknownOverrideHeader => "unknown_override_header",
            Reject::UnknownOverrideQuery => "unknown_override_query",
        }
    }
}

/// The set of inputs ignored on one request, each counted by the glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejections(u16);

impl Rejections {
    pub fn add(&mut self, r: Reject) {
        self.0 |= 1 << (r as u16);
    }

    pub fn contains(self, r: Reject) -> bool {
        self.0 & (1 << (r as u16)) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Reject> {
        Reject::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into `Config::versions`.
    pub version: usize,
    pub source: Source,
    pub rejected: Rejections,
}

pub fn decide(cfg: &Config, req: &mut impl RequestView) -> Decision {
    let mut rejected = Rejections::default();

    if let Some(name) = &cfg.r#override.header {
        if let Some(value) = req.header(name) {
            match cfg.version_index(value.trim_ascii()) {
                Some(version) => {
                    return Decision {
                        version,
                        source: Source::OverrideHeader,
                        rejected,
                    }
                }
                None => rejected.add(Reject::UnknownOverrideHeader),
            }
        }
    }
    if let Some(name) = &cfg.r#override.query {
        if let Some(value) = req
            .path()
            .and_then(|p| keys::query_param(p, name.as_bytes()))
        {
            match cfg.version_index(value) {
                Some(version) => {
                    return Decision {
                        version,
                        source: Source::OverrideQuery,
                        rejected,
                    }
                }
                None => rejected.add(Reject::UnknownOverrideQuery),
            }
        }
    }

    let (hash, source) = match sticky_hash(cfg, req) {
        Some(hash) => (hash, Source::Sticky),
        None => (req.random_u32(), Source::Random),
    };
    Decision {
        version: split::pick(hash, &cfg.weights, cfg.total_weight),
        source,
        rejected,
    }
}

/// The bucketing hash of the first configured sticky key present (and non-empty).
fn sticky_hash(cfg: &Config, req: &mut impl RequestView) -> Option<u32> {
    let prefix = cfg.rollout_id.as_bytes();
    cfg.sticky_keys.iter().find_map(|k| {
        let value = match k {
            StickyKey::Header(name) => req.header(name),
            StickyKey::Cookie(name) => req
                .header("cookie")
                .and_then(|c| keys::cookie(c, name.as_bytes())),
            StickyKey::SourceAddress => req.source_address().map(keys::source_ip),
        }?;
        (!value.is_empty()).then(|| split::hash(prefix, value))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A request as a map of headers, counting every read.
    #[derive(Default)]
    pub struct FakeRequest {
        pub headers: HashMap<String, Vec<u8>>,
        pub source: Option<Vec<u8>>,
        pub random: u32,
        pub reads: Vec<String>,
    }

    impl FakeRequest {
        pub fn with(headers: &[(&str, &[u8])]) -> Self {
            FakeRequest {
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
                ..Default::default()
            }
        }
    }

    impl RequestView for FakeRequest {
        fn header(&mut self, name: &str) -> Option<&[u8]> {
            self.reads.push(name.to_string());
            self.headers.get(name).map(Vec::as_slice)
        }
        fn source_address(&mut self) -> Option<&[u8]> {
            self.reads.push("source.address".into());
            self.source.as_deref()
        }
        fn random_u32(&mut self) -> u32 {
            self.random
        }
    }

    pub fn config() -> Config {
        Config::from_json(
            br#"{
            "rolloutId": "checkout-2026-11",
            "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
            "override": { "header": "x-rollout-pin", "query": "rollout-version" }
        }"#,
        )
        .unwrap()
    }

    fn version(cfg: &Config, d: Decision) -> &str {
        &cfg.versions[d.version].name
    }

    #[test]
    fn override_header_wins_and_reads_nothing_else() {
        let cfg = config();
        let mut req = FakeRequest::with(&[("x-rollout-pin", b"canary"), ("x-user-id", b"user-1")]);
        let d = decide(&cfg, &mut req);
        assert_eq!(
            (version(&cfg, d), d.source),
            ("canary", Source::OverrideHeader)
        );
        assert_eq!(req.reads, vec!["x-rollout-pin"]);
    }

    #[test]
    fn header_beats_query() {
        let cfg = config();
        let mut req = FakeRequest::with(&[
            ("x-rollout-pin", b"stable"),
            (":path", b"/?rollout-version=canary"),
        ]);
        let d = decide(&cfg, &mut req);
        assert_eq!(
            (version(&cfg, d), d.source),
            ("stable", Source::OverrideHeader)
        );
    }

    #[test]
    fn query_override() {
        let cfg = config();
        let mut req = FakeRequest::with(&[(":path", b"/a?x=1&rollout-version=canary")]);
        let d = decide(&cfg, &mut req);
        assert_eq!(
            (version(&cfg, d), d.source),
            ("canary", Source::OverrideQuery)
        );
    }

    #[test]
    fn unknown_overrides_are_flagged_and_ignored() {
        let cfg = config();
        // "user-1" is stable in the flagd vectors.
        let mut req = FakeRequest::with(&[
            ("x-rollout-pin", b"CANARY"),
            (":path", b"/?rollout-version=nope"),
            ("x-user-id", b"user-1"),
        ]);
        let d = decide(&cfg, &mut req);
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::Sticky));
        assert!(
            d.rejected.contains(Reject::UnknownOverrideHeader)
                && d.rejected.contains(Reject::UnknownOverrideQuery)
        );
        assert_eq!(d.rejected.iter().count(), 2);
    }

    #[test]
    fn sticky_keys_in_configured_order() {
        let cfg = config();
        // alice and bob are canary, carol stable (flagd vectors).
        let mut req = FakeRequest::with(&[("x-user-id", b"alice"), ("cookie", b"uid=carol")]);
        assert_eq!(version(&cfg, decide(&cfg, &mut req)), "canary");
        let mut req = FakeRequest::with(&[("cookie", b"a=b; uid=carol")]);
        assert_eq!(version(&cfg, decide(&cfg, &mut req)), "stable");
        let mut req = FakeRequest::with(&[("x-user-id", b""), ("cookie", b"uid=bob")]);
        assert_eq!(version(&cfg, decide(&cfg, &mut req)), "canary");
        let mut req = FakeRequest {
            source: Some(b"10.0.0.7:4242".to_vec()),
            ..Default::default()
        };
        let d = decide(&cfg, &mut req);
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::Sticky));
    }

    #[test]
    fn no_key_is_random() {
        let cfg = config();
        let mut req = FakeRequest {
            random: u32::MAX,
            ..Default::default()
        };
        let d = decide(&cfg, &mut req);
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Random));
        let mut req = FakeRequest {
            random: 0,
            ..Default::default()
        };
        assert_eq!(version(&cfg, decide(&cfg, &mut req)), "stable");
    }

    #[test]
    fn non_utf8_keys_are_keys() {
        let cfg = config();
        let mut req = FakeRequest::with(&[("x-user-id", b"\xfc\xff")]);
        let d = decide(&cfg, &mut req);
        assert_eq!(d.source, Source::Sticky);
    }
}
