//! The benchmark's row (b): the cost of having any Rust proxy-wasm HTTP filter
//! at all. Without a probe configured, every request callback returns at once.
//!
//! Once per VM, at configure time (never per request), it records its own
//! linear memory size in the gauge `bench_noop_linear_memory_bytes`, which lets
//! `bench/run.py` check its outside reading of VM memory against the inside one.
//!
//! With the configuration `probe:<call>*<n>` (the `h-*` rows of `BENCH_HOSTCALLS=1`)
//! it makes one kind of host call `n` times per request, so the bench can price
//! each host call the real filter makes against this same no-op. `probe:seq_c` and
//! `probe:seq_f` make exactly the host calls rollout-filter makes in rows (c) and (f),
//! in the same callbacks, with none of its logic: the floor for those features.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot::default()));
}}

#[derive(Clone, Copy, Default)]
enum Call {
    #[default]
    None,
    HeaderPairs,
    GetHeader,
    SetHeader,
    ClearRouteCache,
    PropertyDuration,
    PropertySource,
    PropertyCode,
    Counter,
    Histogram,
    ResponseStatus,
    /// The host calls of rollout-filter's row (c); with `trace`, of row (f).
    Sequence {
        trace: bool,
    },
}

#[derive(Clone, Copy, Default)]
struct Probe {
    call: Call,
    repeat: u32,
    counter: u32,
    histogram: u32,
}

#[derive(Default)]
struct NoopRoot {
    probe: Probe,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        record_linear_memory();
        let config = hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Some(spec) = std::str::from_utf8(&config)
            .ok()
            .and_then(|s| s.strip_prefix("probe:"))
        else {
            return true;
        };
        let (name, n) = spec.split_once('*').unwrap_or((spec, "1"));
        let call = match name {
            "header_pairs" => Call::HeaderPairs,
            "get_header" => Call::GetHeader,
            "set_header" => Call::SetHeader,
            "clear_route_cache" => Call::ClearRouteCache,
            "property_duration" => Call::PropertyDuration,
            "property_source" => Call::PropertySource,
            "property_code" => Call::PropertyCode,
            "counter" => Call::Counter,
            "histogram" => Call::Histogram,
            "response_status" => Call::ResponseStatus,
            "seq_c" => Call::Sequence { trace: false },
            "seq_f" => Call::Sequence { trace: true },
            _ => return false,
        };
        self.probe = Probe {
            call,
            repeat: match n.parse() {
                Ok(n) => n,
                Err(_) => return false,
            },
            counter: hostcalls::define_metric(MetricType::Counter, "bench_probe_counter").unwrap_or(0),
            histogram: hostcalls::define_metric(MetricType::Histogram, "bench_probe_histogram").unwrap_or(0),
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp(self.probe)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopHttp(Probe);

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let p = self.0;
        for _ in 0..p.repeat {
            match p.call {
                // Priced where the filter would make them: after the response.
                Call::None | Call::ResponseStatus | Call::PropertyCode => {}
                Call::Sequence { trace } => {
                    request_header_map();
                    // (c) writes the route and rollout-id headers; (f) also a new traceparent
                    // (the load sends none) and the baggage member. No clear_route_cache: the
                    // filter relies on Envoy's refresh on every request-header write.
                    let owned = if trace {
                        &SEQUENCE_HEADERS[..]
                    } else {
                        &SEQUENCE_HEADERS[..2]
                    };
                    for (name, value) in owned {
                        replace_request_header(name, value);
                    }
                }
                Call::HeaderPairs => request_header_map(),
                Call::GetHeader => drop(hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-user-id")),
                Call::SetHeader => replace_request_header("x-probe", "v"),
                Call::ClearRouteCache => drop(hostcalls::call_foreign_function("clear_route_cache", None)),
                Call::PropertyDuration => drop(property(b"request\0duration")),
                Call::PropertySource => drop(property(b"source\0address")),
                Call::Counter => drop(hostcalls::increment_metric(p.counter, 1)),
                Call::Histogram => drop(hostcalls::record_metric(p.histogram, 3)),
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Call::Sequence { .. } = self.0.call {
            drop(std::hint::black_box(response_status()));
        }
        if let Call::ResponseStatus = self.0.call {
            for _ in 0..self.0.repeat {
                drop(std::hint::black_box(response_status()));
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Call::Sequence { .. } = self.0.call {
            drop(std::hint::black_box(property(b"request\0duration")));
            let _ = hostcalls::record_metric(self.0.histogram, 3);
        }
        if let Call::PropertyCode = self.0.call {
            for _ in 0..self.0.repeat {
                drop(std::hint::black_box(property(b"response\0code")));
            }
        }
    }
}

/// The request headers rollout-filter owns, in the order it writes them.
const SEQUENCE_HEADERS: [(&str, &str); 4] = [
    ("x-rollout-version", "canary"),
    ("x-rollout-id", "checkout-2026-11"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
    ),
    ("baggage", "rollout.checkout-2026-11=canary"),
];

// The calls as rollout-filter's glue makes them: straight over the ABI, paths pre-serialized.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

/// Owns what the host returned (allocated through our `proxy_on_memory_allocate`).
///
/// # Safety
/// `data`/`size` must come from the host call that returned `status`.
unsafe fn owned(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    (status == 0 && !data.is_null()).then(|| Vec::from_raw_parts(data, size, size))
}

fn property(path: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: see `owned`.
    unsafe {
        owned(
            proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size),
            data,
            size,
        )
    }
}

fn response_status() -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    let name = ":status";
    // SAFETY: see `owned`.
    unsafe {
        let status = proxy_get_header_map_value(
            MapType::HttpResponseHeaders as u32,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        );
        owned(status, data, size)
    }
}

fn replace_request_header(name: &str, value: &str) {
    // SAFETY: the host only reads the buffers during the call.
    unsafe {
        proxy_replace_header_map_value(
            MapType::HttpRequestHeaders as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        );
    }
}

/// The request header map in one call, kept as the host wrote it: what rollout-filter's
/// glue does (the SDK's `get_map_bytes` would also copy every pair).
fn request_header_map() {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through our
    // `proxy_on_memory_allocate` (a Vec allocation of exactly that size), or nothing.
    unsafe {
        let status = proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
        if status == 0 && !data.is_null() {
            drop(std::hint::black_box(Vec::from_raw_parts(data, size, size)));
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn record_linear_memory() {
    let bytes = core::arch::wasm32::memory_size(0) as u64 * 65536;
    if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, "bench_noop_linear_memory_bytes") {
        let _ = hostcalls::record_metric(id, bytes);
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn record_linear_memory() {}
