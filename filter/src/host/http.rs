//! Per-request glue: read what the decision needs, write the route header,
//! and count the request, its response class and its duration.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::root::Shared;
use crate::decision::{self, RequestView};
use crate::metrics::CodeClass;

pub struct Http {
    shared: Option<Rc<Shared>>,
    /// Set once the request is decided; responses are counted only then.
    version: Option<usize>,
    start_ns: u64,
    status: Option<u16>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Http {
            shared,
            version: None,
            start_ns: 0,
            status: None,
        }
    }
}

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The live request, read through handled host calls. Each value read is kept
/// here so the decision can borrow it.
#[derive(Default)]
struct HostRequest {
    values: Vec<Option<Vec<u8>>>,
    source: Option<Option<Vec<u8>>>,
}

impl RequestView for HostRequest {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        // The `_bytes` call: the SDK's string variant panics on non-UTF-8 values.
        let v = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten();
        self.values.push(v);
        self.values.last().and_then(|v| v.as_deref())
    }

    fn source_address(&mut self) -> Option<&[u8]> {
        if self.source.is_none() {
            self.source = Some(hostcalls::get_property(vec!["source", "address"]).ok().flatten());
        }
        self.source.as_ref().and_then(|s| s.as_deref())
    }

    fn random_u32(&mut self) -> u32 {
        fastrand::u32(..)
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.as_deref() else {
            return Action::Continue;
        };
        self.start_ns = now_ns();
        let cfg = &shared.cfg;
        let d = decision::decide(cfg, &mut HostRequest::default());

        for r in d.rejected.iter() {
            log::debug!("ignored input: {}", r.as_str());
            shared.count(shared.reject_slot_decision(r));
        }

        let version = cfg.versions.get(d.version).map_or("", |v| v.name.as_str());
        // Replaces every value a client sent: the route is ours to choose.
        if let Err(e) = hostcalls::set_map_value(MapType::HttpRequestHeaders, &cfg.route_header, Some(version)) {
            log::warn!("cannot set {}: {e:?}", cfg.route_header);
        }
        if shared.explicit_route_clear.get() && hostcalls::call_foreign_function("clear_route_cache", None).is_err() {
            log::info!("host has no clear_route_cache; relying on automatic route refresh");
            shared.explicit_route_clear.set(false);
        }
        shared.count(shared.layout.request_slot(d.version, d.source));
        self.version = Some(d.version);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.version.is_some() {
            self.status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(shared), Some(version)) = (self.shared.as_deref(), self.version) else {
            return;
        };
        let class = CodeClass::of(self.status);
        shared.count(shared.layout.response_slot(version, class));
        // Error responses Envoy made itself (connect failure, timeout) rather than the upstream.
        if self.status.is_some_and(|s| s >= 400) {
            let details = hostcalls::get_property(vec!["response", "code_details"]).ok().flatten();
            if details.as_deref() != Some(b"via_upstream") {
                shared.count(shared.layout.local_reply_slot(version));
            }
        }
        let elapsed_ms = now_ns().saturating_sub(self.start_ns) / 1_000_000;
        shared.record(shared.layout.duration_slot(version), elapsed_ms);
    }
}
