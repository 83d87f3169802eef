//! rollout-filter: routes each request to a version (stable, canary, …) by a
//! trusted override or a sticky weighted split, for progressive delivery.
//!
//! The pure core (everything but `host`) never touches proxy-wasm and is tested
//! on the host and on wasm32. `host` is the only code that talks to Envoy.

pub mod baggage;
pub mod cluster;
pub mod config;
pub mod decision;
pub mod flagd;
pub mod grpc;
pub mod guard;
pub mod headers;
pub mod identity;
pub mod inputs;
pub mod json_path;
pub mod keys;
pub mod lane;
pub mod metrics;
pub mod rollouts;
pub mod split;
pub mod trace;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub mod host;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
proxy_wasm::main! {{
    host::start();
}}
