//! Metric names. Envoy metrics carry no labels, so labels are encoded in the
//! name as `;label=value` pairs and turned back into tags by the
//! `stats_config.stats_tags` regexes shipped in `envoy-config/`.
//!
//! Every name is built from configuration, never from request data, so the
//! number of metrics is fixed when the configuration is accepted.

use crate::config::Config;
use crate::decision::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
}

/// Inputs the filter ignored, counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    UnknownOverrideHeader,
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

/// The fixed set of metrics for one configuration, in definition order.
/// The glue defines them once and indexes its ids with the `*_slot` functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub names: Vec<(Kind, String)>,
    versions: usize,
}

impl Layout {
    pub fn new(cfg: &Config) -> Layout {
        let id = &cfg.rollout_id;
        let mut names = Vec::new();
        for v in &cfg.versions {
            for s in Source::ALL {
                names.push((
                    Kind::Counter,
                    format!(
                        "rollout_requests_total;rollout={id};version={};source={}",
                        v.name,
                        s.as_str()
                    ),
                ));
            }
        }
        for r in Reject::ALL {
            names.push((
                Kind::Counter,
                format!("rollout_rejected_total;rollout={id};reason={}", r.as_str()),
            ));
        }
        Layout {
            names,
            versions: cfg.versions.len(),
        }
    }

    pub fn request_slot(&self, version: usize, source: Source) -> usize {
        version * Source::ALL.len() + source.index()
    }

    pub fn reject_slot(&self, reason: Reject) -> usize {
        self.versions * Source::ALL.len() + reason as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::tests::config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn slots_point_at_their_names() {
        let cfg = config();
        let l = Layout::new(&cfg);
        assert_eq!(
            l.names[l.request_slot(1, Source::Sticky)].1,
            "rollout_requests_total;rollout=checkout-2026-11;version=canary;source=sticky"
        );
        assert_eq!(
            l.names[l.request_slot(0, Source::OverrideHeader)].1,
            "rollout_requests_total;rollout=checkout-2026-11;version=stable;source=override_header"
        );
        assert_eq!(
            l.names[l.reject_slot(Reject::UnknownOverrideQuery)].1,
            "rollout_rejected_total;rollout=checkout-2026-11;reason=unknown_override_query"
        );
        assert_eq!(l.names.len(), 2 * 4 + 2);
        let mut uniq: Vec<_> = l.names.iter().map(|n| &n.1).collect();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), l.names.len());
    }
}
