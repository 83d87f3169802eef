//! The glue between the pure core and the proxy-wasm host. Every host call's
//! `Result` is handled here: a failed read is an absent value, a failed write is
//! logged, and nothing on the request path can panic.

mod guard;
mod http;
mod logger;
mod metrics;
mod raw;
mod root;
mod sync;

pub fn start() {
    logger::install();
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}
