//! The benchmark's row (b): the cost of having any Rust proxy-wasm HTTP filter
//! at all. Every request callback is the SDK default (`Action::Continue`).
//!
//! Once per VM, at configure time (never per request), it records its own
//! linear memory size in the gauge `bench_noop_linear_memory_bytes`, which lets
//! `bench/run.py` check its outside reading of VM memory against the inside one.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot));
}}

struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        record_linear_memory();
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopHttp;

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {}

#[cfg(target_arch = "wasm32")]
fn record_linear_memory() {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::MetricType;
    let bytes = core::arch::wasm32::memory_size(0) as u64 * 65536;
    if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, "bench_noop_linear_memory_bytes") {
        let _ = hostcalls::record_metric(id, bytes);
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn record_linear_memory() {}
