//! Metric names. Envoy metrics carry no labels, so labels are encoded in the
//! name as `;label=value` pairs and turned back into tags by the
//! `stats_config.stats_tags` regexes shipped in `envoy-config/`.
//!
//! Every name is built from configuration, never from request data, so the
//! number of metrics is fixed when the configuration is accepted.

use crate::config::{Config, UNKNOWN_VERSION};
use crate::decision::Source;
use crate::flagd::sync::SyncReject;
use crate::grpc::GrpcCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The response class of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClass {
    C1xx,
    C2xx,
    C3xx,
    C4xx,
    C5xx,
    /// The stream ended without a response status (reset, abort).
    Reset,
}

impl CodeClass {
    pub const ALL: [CodeClass; 6] = [
        CodeClass::C1xx,
        CodeClass::C2xx,
        CodeClass::C3xx,
        CodeClass::C4xx,
        CodeClass::C5xx,
        CodeClass::Reset,
    ];

    /// Class of an HTTP status; anything outside 100..=599 counts as a reset.
    pub fn of(status: Option<u16>) -> CodeClass {
        match status {
            Some(100..=199) => CodeClass::C1xx,
            Some(200..=299) => CodeClass::C2xx,
            Some(300..=399) => CodeClass::C3xx,
            Some(400..=499) => CodeClass::C4xx,
            Some(500..=599) => CodeClass::C5xx,
            _ => CodeClass::Reset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CodeClass::C1xx => "1xx",
            CodeClass::C2xx => "2xx",
            CodeClass::C3xx => "3xx",
            CodeClass::C4xx => "4xx",
            CodeClass::C5xx => "5xx",
            CodeClass::Reset => "reset",
        }
    }
}

/// The fixed set of metrics for one configuration, in definition order.
/// The glue defines them once and indexes its ids with the `*_slot` functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub names: Vec<(Kind, String)>,
    versions: usize,
    responses_at: usize,
    grpc_at: usize,
    local_at: usize,
    duration_at: usize,
    rejects_at: usize,
    memory_at: usize,
    /// With a guard: `rollout_guard_tripped` per configured version, then
    /// `rollout_guard_trips_total` per configured version.
    guard_at: Option<usize>,
    /// With `flagd.sync`: `rollout_flag_sync_connected`, `rollout_flag_sync_updates_total`,
    /// then `rollout_flag_sync_errors_total` per reason.
    sync_at: Option<usize>,
}

impl Layout {
    /// `reject_reasons`: every rejection reason label, in the order the glue indexes them.
    pub fn new<R: AsRef<str>>(cfg: &Config, reject_reasons: &[R]) -> Layout {
        let id = &cfg.rollout_id;
        let mut names = Vec::new();
        let labels = version_labels(cfg);
        for v in labels.clone() {
            for s in Source::ALL {
                names.push((
                    Kind::Counter,
                    format!(
                        "rollout_requests_total;rollout={id};version={};source={}",
                        v,
                        s.as_str()
                    ),
                ));
            }
        }
        let responses_at = names.len();
        for v in labels.clone() {
            for c in CodeClass::ALL {
                names.push((
                    Kind::Counter,
                    format!(
                        "rollout_responses_total;rollout={id};version={};code_class={}",
                        v,
                        c.as_str()
                    ),
                ));
            }
        }
        // gRPC calls are counted here, by final gRPC code, instead of by HTTP class.
        let grpc_at = names.len();
        for v in labels.clone() {
            for c in GrpcCode::ALL {
                names.push((
                    Kind::Counter,
                    format!(
                        "rollout_grpc_responses_total;rollout={id};version={v};grpc_code={}",
                        c.as_str()
                    ),
                ));
            }
        }
        let local_at = names.len();
        for v in labels.clone() {
            names.push((
                Kind::Counter,
                format!("rollout_local_replies_total;rollout={id};version={v}"),
            ));
        }
        let duration_at = names.len();
        for v in labels.clone() {
            names.push((
                Kind::Histogram,
                format!("rollout_request_duration_milliseconds;rollout={id};version={v}"),
            ));
        }
        let rejects_at = names.len();
        for r in reject_reasons {
            let r = r.as_ref();
            names.push((
                Kind::Counter,
                format!("rollout_rejected_total;rollout={id};reason={r}"),
            ));
        }
        let memory_at = names.len();
        names.push((Kind::Gauge, format!("rollout_vm_memory_bytes;rollout={id}")));
        let guard_at = cfg.guard.as_ref().map(|_| {
            let at = names.len();
            for (kind, name) in [
                (Kind::Gauge, "rollout_guard_tripped"),
                (Kind::Counter, "rollout_guard_trips_total"),
            ] {
                for v in &cfg.versions {
                    names.push((kind, format!("{name};rollout={id};version={}", v.name)));
                }
            }
            at
        });
        let sync_at = cfg.flagd.as_ref().and_then(|f| f.sync.as_ref()).map(|_| {
            let at = names.len();
            names.push((Kind::Gauge, format!("rollout_flag_sync_connected;rollout={id}")));
            names.push((
                Kind::Counter,
                format!("rollout_flag_sync_updates_total;rollout={id}"),
            ));
            for r in SyncReject::ALL {
                names.push((
                    Kind::Counter,
                    format!(
                        "rollout_flag_sync_errors_total;rollout={id};reason={}",
                        r.as_str()
                    ),
                ));
            }
            at
        });
        Layout {
            guard_at,
            sync_at,
            names,
            versions: labels.count(),
            responses_at,
            grpc_at,
            local_at,
            duration_at,
            rejects_at,
            memory_at,
        }
    }

    pub fn request_slot(&self, version: usize, source: Source) -> usize {
        version * Source::ALL.len() + source.index()
    }

    pub fn response_slot(&self, version: usize, class: CodeClass) -> usize {
        self.responses_at + version * CodeClass::ALL.len() + class as usize
    }

    pub fn grpc_response_slot(&self, version: usize, code: GrpcCode) -> usize {
        self.grpc_at + version * GrpcCode::ALL.len() + code as usize
    }

    pub fn local_reply_slot(&self, version: usize) -> usize {
        self.local_at + version
    }

    pub fn duration_slot(&self, version: usize) -> usize {
        self.duration_at + version
    }

    /// `reason`: the index into the `reject_reasons` given to [`Layout::new`].
    pub fn reject_slot(&self, reason: usize) -> usize {
        self.rejects_at + reason
    }

    /// The VM's linear memory size, refreshed every second.
    pub fn memory_slot(&self) -> usize {
        self.memory_at
    }

    /// `rollout_guard_tripped` of configured version `version` (a guard is configured).
    pub fn guard_tripped_slot(&self, version: usize) -> Option<usize> {
        self.guard_at.map(|at| at + version)
    }

    /// `rollout_guard_trips_total` of configured version `version`.
    pub fn guard_trips_slot(&self, version: usize, versions: usize) -> Option<usize> {
        self.guard_at.map(|at| at + versions + version)
    }

    /// `rollout_flag_sync_connected` (`flagd.sync` is configured).
    pub fn sync_connected_slot(&self) -> Option<usize> {
        self.sync_at
    }

    pub fn sync_updates_slot(&self) -> Option<usize> {
        self.sync_at.map(|at| at + 1)
    }

    pub fn sync_error_slot(&self, r: SyncReject) -> Option<usize> {
        self.sync_at.map(|at| at + 2 + r as usize)
    }

    pub fn versions(&self) -> usize {
        self.versions
    }
}

/// The `version` label values: every version, and in route-weights mode also
/// [`UNKNOWN_VERSION`] (index `versions.len()`) for a cluster that serves none of them.
fn version_labels(cfg: &Config) -> impl Iterator<Item = &str> + Clone {
    let unknown = cfg.route_weights.is_some().then_some(UNKNOWN_VERSION);
    cfg.versions.iter().map(|v| v.name.as_str()).chain(unknown)
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
        let l = Layout::new(&cfg, &["a", "b"]);
        let name = |slot: usize| l.names[slot].1.as_str();
        assert_eq!(
            name(l.request_slot(1, Source::Sticky)),
            "rollout_requests_total;rollout=checkout-2026-11;version=canary;source=sticky"
        );
        assert_eq!(
            name(l.request_slot(0, Source::OverrideHeader)),
            "rollout_requests_total;rollout=checkout-2026-11;version=stable;source=override_header"
        );
        assert_eq!(
            name(l.response_slot(1, CodeClass::C5xx)),
            "rollout_responses_total;rollout=checkout-2026-11;version=canary;code_class=5xx"
        );
        assert_eq!(
            name(l.response_slot(0, CodeClass::Reset)),
            "rollout_responses_total;rollout=checkout-2026-11;version=stable;code_class=reset"
        );
        assert_eq!(
            name(l.grpc_response_slot(1, GrpcCode::Unavailable)),
            "rollout_grpc_responses_total;rollout=checkout-2026-11;version=canary;grpc_code=UNAVAILABLE"
        );
        assert_eq!(
            name(l.grpc_response_slot(0, GrpcCode::Reset)),
            "rollout_grpc_responses_total;rollout=checkout-2026-11;version=stable;grpc_code=reset"
        );
        assert_eq!(
            name(l.local_reply_slot(1)),
            "rollout_local_replies_total;rollout=checkout-2026-11;version=canary"
        );
        assert_eq!(
            l.names[l.duration_slot(1)],
            (
                Kind::Histogram,
                "rollout_request_duration_milliseconds;rollout=checkout-2026-11;version=canary".to_string()
            )
        );
        assert_eq!(
            name(l.reject_slot(1)),
            "rollout_rejected_total;rollout=checkout-2026-11;reason=b"
        );
        assert_eq!(
            l.names.len(),
            2 * Source::ALL.len() + 2 * 6 + 2 * 19 + 2 + 2 + 2 + 1
        );
        assert_eq!(
            name(l.memory_slot()),
            "rollout_vm_memory_bytes;rollout=checkout-2026-11"
        );
        let mut uniq: Vec<_> = l.names.iter().map(|n| &n.1).collect();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), l.names.len());
    }

    #[test]
    fn route_weights_mode_has_an_unknown_version_label() {
        let cfg = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"stable"},{"name":"canary"}],"routeWeights":{}}"#,
        )
        .unwrap();
        let l = Layout::new(&cfg, &["a"]);
        assert_eq!(l.versions(), 3);
        assert_eq!(
            l.names[l.request_slot(2, Source::Sticky)].1,
            "rollout_requests_total;rollout=r;version=unknown;source=sticky"
        );
        assert_eq!(
            l.names[l.duration_slot(2)].1,
            "rollout_request_duration_milliseconds;rollout=r;version=unknown"
        );
        assert_eq!(
            l.names[l.grpc_response_slot(2, GrpcCode::ALL[0])].1,
            format!(
                "rollout_grpc_responses_total;rollout=r;version=unknown;grpc_code={}",
                GrpcCode::ALL[0].as_str()
            )
        );
        assert_eq!(
            l.names[l.local_reply_slot(2)].1,
            "rollout_local_replies_total;rollout=r;version=unknown"
        );
        assert_eq!(
            l.names[l.reject_slot(0)].1,
            "rollout_rejected_total;rollout=r;reason=a"
        );
    }

    #[test]
    fn a_synced_flag_has_its_sync_series() {
        let cfg = Config::from_json(
            br#"{"flagd": {"flagKey": "f", "variants": {"off": "stable", "on": "canary"},
                "context": {"targetingKey": {"header": "x-user-id"}}, "sync": {"cluster": "c"}}}"#,
        )
        .unwrap();
        let l = Layout::new(&cfg, &["a"]);
        let name = |slot: Option<usize>| l.names[slot.unwrap()].clone();
        assert_eq!(
            name(l.sync_connected_slot()),
            (Kind::Gauge, "rollout_flag_sync_connected;rollout=f".to_string())
        );
        assert_eq!(
            name(l.sync_updates_slot()),
            (
                Kind::Counter,
                "rollout_flag_sync_updates_total;rollout=f".to_string()
            )
        );
        assert_eq!(
            name(l.sync_error_slot(SyncReject::RefusedFlag)).1,
            "rollout_flag_sync_errors_total;rollout=f;reason=refused_flag"
        );
        assert_eq!(
            l.sync_error_slot(SyncReject::RefusedFlag).unwrap() + 1,
            l.names.len()
        );
        assert_eq!(Layout::new(&config(), &["a"]).sync_connected_slot(), None);
    }

    #[test]
    fn code_classes() {
        assert_eq!(CodeClass::of(Some(200)), CodeClass::C2xx);
        assert_eq!(CodeClass::of(Some(503)), CodeClass::C5xx);
        assert_eq!(CodeClass::of(Some(101)), CodeClass::C1xx);
        assert_eq!(CodeClass::of(Some(600)), CodeClass::Reset);
        assert_eq!(CodeClass::of(None), CodeClass::Reset);
    }
}
