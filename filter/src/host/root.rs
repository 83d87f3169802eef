//! Root context: one per worker VM. Owns the validated configuration and the
//! metric ids, both replaced only by a successful `on_configure`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};

use super::http::Http;
use super::logger;
use crate::config::Config;
use crate::decision::{self, Peer};
use crate::identity::{CertReject, LabelCache, LabelReject, XfccReject};
use crate::metrics::{Kind, Layout};
use crate::trace;

/// What every request of one configuration shares.
pub struct Shared {
    pub cfg: Config,
    pub layout: Layout,
    pub metric_ids: Vec<u32>,
    /// Cleared after the host says it has no `clear_route_cache`; Envoy then
    /// clears the cache itself on header changes (ABI 0.2.1).
    pub explicit_route_clear: Cell<bool>,
    /// Counts not yet handed to the host, by slot: flushed every tick, so a request
    /// costs no metric host calls for its counters.
    pending: Vec<Cell<u64>>,
    /// What each peer certificate means, by digest: parsed once per worker.
    pub peers: RefCell<LabelCache<Rc<Result<Peer, CertReject>>>>,
}

impl Shared {
    pub fn count(&self, slot: usize) {
        self.count_n(slot, 1);
    }

    pub fn count_n(&self, slot: usize, n: u64) {
        if let Some(c) = self.pending.get(slot) {
            c.set(c.get().saturating_add(n));
        }
    }

    /// Hand every pending count to the host.
    pub fn flush(&self) {
        for (c, id) in self.pending.iter().zip(&self.metric_ids) {
            let n = c.take();
            if n > 0 {
                if let Err(e) = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX)) {
                    log::debug!("increment_metric failed: {e:?}");
                }
            }
        }
    }

    pub fn record(&self, slot: usize, value: u64) {
        if let Some(id) = self.metric_ids.get(slot) {
            if let Err(e) = hostcalls::record_metric(*id, value) {
                log::debug!("record_metric failed: {e:?}");
            }
        }
    }

    pub fn reject_slot_decision(&self, r: decision::Reject) -> usize {
        self.layout.reject_slot(r as usize)
    }

    pub fn reject_slot_trace(&self, r: trace::TraceReject) -> usize {
        self.layout.reject_slot(TRACE_AT + r.index())
    }

    pub fn reject_slot_cert(&self, r: CertReject) -> usize {
        self.layout.reject_slot(CERT_AT + position(&CertReject::ALL, r))
    }

    pub fn reject_slot_label(&self, r: LabelReject) -> usize {
        self.layout.reject_slot(LABEL_AT + position(&LabelReject::ALL, r))
    }

    pub fn reject_slot_xfcc(&self, r: XfccReject) -> usize {
        self.layout.reject_slot(XFCC_AT + position(&XfccReject::ALL, r))
    }
}

fn position<T: PartialEq>(all: &[T], r: T) -> usize {
    all.iter().position(|x| *x == r).unwrap_or(0)
}

const TRACE_AT: usize = decision::Reject::ALL.len();
const CERT_AT: usize = TRACE_AT + trace::TraceReject::ALL.len();
const LABEL_AT: usize = CERT_AT + CertReject::ALL.len();
const XFCC_AT: usize = LABEL_AT + LabelReject::ALL.len();

/// The VM's linear memory in bytes (what grows if the filter leaks).
fn linear_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size(0) as u64).saturating_mul(65_536)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Every rejection reason label, in slot order (see the `*_AT` offsets).
fn reject_reasons() -> Vec<String> {
    let mut out: Vec<String> = decision::Reject::ALL
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    out.extend(trace::TraceReject::ALL.iter().map(|r| r.as_str().to_string()));
    out.extend(CertReject::ALL.iter().map(|r| format!("cert_{}", r.as_str())));
    out.extend(LabelReject::ALL.iter().map(|r| format!("label_{}", r.as_str())));
    out.extend(XfccReject::ALL.iter().map(|r| format!("xfcc_{}", r.as_str())));
    out
}

/// How often counters are handed to Envoy: what `/stats` may lag behind.
const FLUSH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);
/// The memory gauge is refreshed once a second.
const MEMORY_EVERY_TICKS: u32 = 10;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    ticks: u32,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            shared.flush();
        }
        true
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        logger::refresh_level();
        let mut seed = [0u8; 8];
        let seed = match getrandom::getrandom(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(e) => {
                log::warn!("no host randomness ({e}); random splits use a time seed");
                hostcalls::get_current_time()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64)
            }
        };
        fastrand::seed(seed);
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        logger::refresh_level();
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(e) => {
                log::error!("invalid configuration: cannot read it: {e:?}");
                return false;
            }
        };
        let cfg = match Config::from_json(&bytes) {
            Ok(cfg) => cfg,
            Err(e) => {
                log::error!("invalid configuration: {e}");
                return false;
            }
        };
        for w in &cfg.warnings {
            log::warn!("configuration: {w}");
        }
        let layout = Layout::new(&cfg, &reject_reasons());
        let mut metric_ids = Vec::with_capacity(layout.names.len());
        for (kind, name) in &layout.names {
            let t = match kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            match hostcalls::define_metric(t, name) {
                Ok(id) => metric_ids.push(id),
                Err(e) => {
                    log::error!("cannot define metric {name}: {e:?}");
                    return false;
                }
            }
        }
        log::info!(
            "rollout {} configured: {}{}",
            cfg.rollout_id,
            cfg.versions
                .iter()
                .map(|v| format!("{}={}", v.name, v.weight))
                .collect::<Vec<_>>()
                .join(" "),
            // The weights above are 0 there: the route's weights pick.
            if cfg.route_weights.is_some() {
                " (route weights)"
            } else {
                ""
            }
        );
        let cache_size = cfg.certificate.as_ref().map_or(1, |c| c.cache_size);
        if let Err(e) = hostcalls::set_tick_period(FLUSH_PERIOD) {
            log::warn!("no tick: counters reach Envoy only on reconfigure ({e:?})");
        }
        if let Some(old) = self.shared.take() {
            old.flush();
        }
        self.shared = Some(Rc::new(Shared {
            pending: (0..metric_ids.len()).map(|_| Cell::new(0)).collect(),
            peers: RefCell::new(LabelCache::new(cache_size)),
            cfg,
            layout,
            metric_ids,
            explicit_route_clear: Cell::new(true),
        }));
        self.on_tick();
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.flush();
            self.ticks = self.ticks.wrapping_add(1);
            if self.ticks % MEMORY_EVERY_TICKS == 1 {
                shared.record(shared.layout.memory_slot(), linear_memory_bytes());
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Always a context: the SDK panics on None. Without a config it passes through.
        Some(Box::new(Http::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
