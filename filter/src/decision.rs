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
    fn header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// The `:path` pseudo-header, query included.
    fn path(&mut self) -> Option<Vec<u8>>;
    /// Downstream `ip:port`.
    fn source_address(&mut self) -> Option<Vec<u8>>;
    /// A fresh random number, for requests with no sticky key.
    fn random_u32(&mut self) -> u32;
}

/// Why a request went to its version. Also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    OverrideHeader,
    OverrideQuery,
    Sticky,
    Random,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::OverrideHeader,
        Source::OverrideQuery,
        Source::Sticky,
        Source::Random,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::OverrideHeader => "override_header",
            Source::OverrideQuery => "override_query",
            Source::Sticky => "sticky",
            Source::Random => "random",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Inputs the filter ignored on this request, each counted by the glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejections {
    /// The override header named no configured version.
    pub unknown_override_header: bool,
    /// The override query parameter named no configured version.
    pub unknown_override_query: bool,
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
                None => rejected.unknown_override_header = true,
            }
        }
    }
    if let Some(name) = &cfg.r#override.query {
        if let Some(value) = req
            .path()
            .as_deref()
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
                None => rejected.unknown_override_query = true,
            }
        }
    }

    let (hash, source) = match sticky_key(cfg, req) {
        Some(key) => (split::hash(cfg.rollout_id.as_bytes(), &key), Source::Sticky),
        None => (req.random_u32(), Source::Random),
    };
    Decision {
        version: split::pick(hash, &cfg.weights, cfg.total_weight),
        source,
        rejected,
    }
}

/// The first configured sticky key present (and non-empty) on the request.
fn sticky_key(cfg: &Config, req: &mut impl RequestView) -> Option<Vec<u8>> {
    cfg.sticky_keys.iter().find_map(|k| {
        let value = match k {
            StickyKey::Header(name) => req.header(name),
            StickyKey::Cookie(name) => req
                .header("cookie")
                .and_then(|c| keys::cookie(&c, name.as_bytes()).map(<[u8]>::to_vec)),
            StickyKey::SourceAddress => req.source_address().map(|a| keys::source_ip(&a).to_vec()),
        }?;
        (!value.is_empty()).then_some(value)
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
        fn header(&mut self, name: &str) -> Option<Vec<u8>> {
            self.reads.push(name.to_string());
            self.headers.get(name).cloned()
        }
        fn path(&mut self) -> Option<Vec<u8>> {
            self.header(":path")
        }
        fn source_address(&mut self) -> Option<Vec<u8>> {
            self.reads.push("source.address".into());
            self.source.clone()
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
        assert!(d.rejected.unknown_override_header && d.rejected.unknown_override_query);
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
