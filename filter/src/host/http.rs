//! Per-request glue: read what the decision needs, write the route header.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::root::Shared;
use crate::decision::{self, RequestView};
use crate::metrics::Reject;

pub struct Http {
    shared: Option<Rc<Shared>>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Http { shared }
    }
}

/// The live request, read through handled host calls.
struct HostRequest;

impl RequestView for HostRequest {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        // The `_bytes` call: the SDK's string variant panics on non-UTF-8 values.
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn path(&mut self) -> Option<Vec<u8>> {
        self.header(":path")
    }

    fn source_address(&mut self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
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
        let cfg = &shared.cfg;
        let d = decision::decide(cfg, &mut HostRequest);

        if d.rejected.unknown_override_header {
            log::debug!("ignored override header naming no configured version");
            shared.count(shared.layout.reject_slot(Reject::UnknownOverrideHeader));
        }
        if d.rejected.unknown_override_query {
            log::debug!("ignored override query naming no configured version");
            shared.count(shared.layout.reject_slot(Reject::UnknownOverrideQuery));
        }

        let version = cfg.versions.get(d.version).map_or("", |v| v.name.as_str());
        // Replaces every value a client sent: the route is ours to choose.
        if let Err(e) = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            &cfg.route_header,
            Some(version),
        ) {
            log::warn!("cannot set {}: {e:?}", cfg.route_header);
        }
        if shared.explicit_route_clear.get()
            && hostcalls::call_foreign_function("clear_route_cache", None).is_err()
        {
            log::info!("host has no clear_route_cache; relying on automatic route refresh");
            shared.explicit_route_clear.set(false);
        }
        shared.count(shared.layout.request_slot(d.version, d.source));
        Action::Continue
    }
}
