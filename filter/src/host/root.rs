//! Root context: one per worker VM. Owns the validated configuration and the
//! metric ids, both replaced only by a successful `on_configure`.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};

use super::http::Http;
use super::logger;
use crate::config::Config;
use crate::decision::{self, Peer};
use crate::identity::{CertReject, LabelCache, LabelOid, LabelReject, PeerCert, XfccReject};
use crate::metrics::{Kind, Layout};
use crate::rollouts::FilterConfig;
use crate::trace;

/// What every request of one configuration shares.
pub struct Shared {
    pub filter: FilterConfig,
    /// Per rollout, in `filter.rollouts` order, defined on first use (see [`Shared::metrics`]).
    metrics: Vec<OnceCell<RolloutMetrics>>,
    reasons: Vec<String>,
    /// `rollout_unmatched_requests_total` (multi-rollout form only) and its pending count.
    unmatched: Option<(u32, Cell<u64>)>,
    /// The next rollout whose metrics a tick defines ahead of its traffic.
    next_to_define: Cell<usize>,
    /// (rollout, slot) with a pending count, so a tick costs what was counted, not every
    /// metric. `UNMATCHED` stands for the unmatched counter.
    dirty: Cell<Vec<(u32, u32)>>,
    /// The memory gauge value last recorded (recorded again only when it changes).
    memory: Cell<u64>,
    /// Each peer certificate parsed once per worker, by digest and certificate group.
    pub peers: RefCell<LabelCache<Rc<CertEntry>>>,
    /// Per rollout: its certificate group (rollouts that read labels alike share parses).
    pub cert_group: Vec<u16>,
}

type PeerMeaning = Rc<Result<Peer, CertReject>>;

/// A parsed peer certificate and what it means to each rollout that has seen it.
pub struct CertEntry {
    pub parsed: Result<PeerCert, CertReject>,
    /// By rollout index, ascending.
    peers: RefCell<Vec<(usize, PeerMeaning)>>,
}

impl CertEntry {
    pub fn new(parsed: Result<PeerCert, CertReject>) -> CertEntry {
        CertEntry {
            parsed,
            peers: RefCell::new(Vec::new()),
        }
    }

    /// What the certificate means to rollout `index`, derived once.
    pub fn peer(&self, index: usize, cfg: &Config) -> PeerMeaning {
        let mut peers = self.peers.borrow_mut();
        match peers.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => peers[at].1.clone(),
            Err(at) => {
                let p = Rc::new(match &self.parsed {
                    Ok(cert) => Ok(Peer::from_cert(cfg, cert)),
                    Err(e) => Err(*e),
                });
                peers.insert(at, (index, p.clone()));
                p
            }
        }
    }
}

/// One rollout's metrics: ids from the host and counts not yet handed to it, by slot.
/// Counters are flushed every tick, so a request costs no metric host calls for them.
pub struct RolloutMetrics {
    index: u32,
    layout: Layout,
    ids: Vec<u32>,
    pending: Vec<Cell<u64>>,
}

const UNMATCHED: u32 = u32::MAX;

impl RolloutMetrics {
    /// Every metric of rollout `index`; with `ids` empty when the host refused one (then the
    /// rollout still routes, uncounted, and the error is logged).
    fn define(index: usize, cfg: &Config, reasons: &[String]) -> RolloutMetrics {
        let mut layout = Layout::new(cfg, reasons);
        // The names are needed only here: 1,000 rollouts would keep megabytes of them.
        let names = std::mem::take(&mut layout.names);
        let ids: Vec<u32> = names
            .iter()
            .map(|(kind, name)| define(*kind, name))
            .collect::<Option<_>>()
            .unwrap_or_default();
        RolloutMetrics {
            index: index as u32,
            pending: (0..ids.len()).map(|_| Cell::new(0)).collect(),
            layout,
            ids,
        }
    }

    pub fn request_slot(&self, version: usize, source: decision::Source) -> usize {
        self.layout.request_slot(version, source)
    }

    pub fn response_slot(&self, version: usize, class: crate::metrics::CodeClass) -> usize {
        self.layout.response_slot(version, class)
    }

    pub fn local_reply_slot(&self, version: usize) -> usize {
        self.layout.local_reply_slot(version)
    }

    pub fn grpc_response_slot(&self, version: usize, code: crate::grpc::GrpcCode) -> usize {
        self.layout.grpc_response_slot(version, code)
    }

    pub fn duration_slot(&self, version: usize) -> usize {
        self.layout.duration_slot(version)
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

    pub fn record(&self, slot: usize, value: u64) {
        if let Some(id) = self.ids.get(slot) {
            if let Err(e) = hostcalls::record_metric(*id, value) {
                log::debug!("record_metric failed: {e:?}");
            }
        }
    }
}

fn increment(id: u32, c: &Cell<u64>) {
    let n = c.take();
    if n > 0 {
        if let Err(e) = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX)) {
            log::debug!("increment_metric failed: {e:?}");
        }
    }
}

impl Shared {
    /// Rollout `index`'s metrics, defined on its first request (or a tick ahead of it): a
    /// config of 1,000 rollouts would otherwise define 65,000 metrics in `on_configure`, where
    /// Envoy's tag regexes take seconds. Once per rollout and worker, never per request.
    pub fn metrics(&self, index: usize) -> Option<&RolloutMetrics> {
        let cell = self.metrics.get(index)?;
        let cfg = self.filter.rollouts.get(index)?;
        Some(cell.get_or_init(|| {
            let m = RolloutMetrics::define(index, cfg, &self.reasons);
            m.record(m.layout.memory_slot(), self.memory.get());
            m
        }))
    }

    pub fn count(&self, m: &RolloutMetrics, slot: usize) {
        self.count_n(m, slot, 1);
    }

    pub fn count_n(&self, m: &RolloutMetrics, slot: usize, n: u64) {
        if let Some(c) = m.pending.get(slot) {
            self.add(c, (m.index, slot as u32), n);
        }
    }

    pub fn count_unmatched(&self) {
        if let Some((_, c)) = &self.unmatched {
            self.add(c, (UNMATCHED, 0), 1);
        }
    }

    fn add(&self, c: &Cell<u64>, at: (u32, u32), n: u64) {
        let old = c.get();
        if old == 0 && n > 0 {
            let mut dirty = self.dirty.take();
            dirty.push(at);
            self.dirty.set(dirty);
        }
        c.set(old.saturating_add(n));
    }

    /// Hand every pending count to the host.
    pub fn flush(&self) {
        let mut dirty = self.dirty.take();
        for (rollout, slot) in dirty.drain(..) {
            if rollout == UNMATCHED {
                if let Some((id, c)) = &self.unmatched {
                    increment(*id, c);
                }
                continue;
            }
            let m = self.metrics.get(rollout as usize).and_then(OnceCell::get);
            if let Some((id, c)) =
                m.and_then(|m| Some((m.ids.get(slot as usize)?, m.pending.get(slot as usize)?)))
            {
                increment(*id, c);
            }
        }
        // Keep the allocation for the next tick.
        self.dirty.set(dirty);
    }

    /// The VM's memory on every defined rollout's gauge, when it changed since last recorded.
    fn record_memory(&self) {
        let bytes = linear_memory_bytes();
        if self.memory.replace(bytes) != bytes {
            for m in self.metrics.iter().filter_map(OnceCell::get) {
                m.record(m.layout.memory_slot(), bytes);
            }
        }
    }

    /// Define the next rollout's metrics ahead of its traffic, one rollout per tick, so idle
    /// rollouts show up too without a long `on_configure`.
    fn define_ahead(&self) {
        let mut i = self.next_to_define.get();
        while let Some(cell) = self.metrics.get(i) {
            i += 1;
            if cell.get().is_none() {
                self.metrics(i - 1);
                break;
            }
        }
        self.next_to_define.set(i);
    }
}

/// Rollouts that read certificates alike (labels or not, which OID) share one parse.
fn cert_groups(rollouts: &[Config]) -> Vec<u16> {
    let mut groups: Vec<Option<Option<&LabelOid>>> = Vec::new();
    rollouts
        .iter()
        .map(|c| {
            let key = c.certificate.as_ref().map(|c| c.label_oid.as_ref());
            let at = groups.iter().position(|g| *g == key).unwrap_or_else(|| {
                groups.push(key);
                groups.len() - 1
            });
            u16::try_from(at).unwrap_or(u16::MAX)
        })
        .collect()
}

/// Define one metric; a failure is logged and refuses the configuration.
fn define(kind: Kind, name: &str) -> Option<u32> {
    let t = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    match hostcalls::define_metric(t, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::error!("cannot define metric {name}: {e:?}");
            None
        }
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
        let started = hostcalls::get_current_time().ok();
        let filter = match FilterConfig::from_json(&bytes) {
            Ok(f) => f,
            Err(e) => {
                log::error!("invalid configuration: {e}");
                return false;
            }
        };
        let per_rollout = !filter.multi || log::log_enabled!(log::Level::Debug);
        for cfg in &filter.rollouts {
            for w in &cfg.warnings {
                if filter.multi {
                    log::warn!("configuration: rollout {}: {w}", cfg.rollout_id);
                } else {
                    log::warn!("configuration: {w}");
                }
            }
            if !per_rollout {
                continue;
            }
            let line = format!(
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
            if filter.multi {
                log::debug!("{line}");
            } else {
                log::info!("{line}");
            }
        }
        if filter.multi {
            let took = started
                .zip(hostcalls::get_current_time().ok())
                .and_then(|(a, b)| b.duration_since(a).ok())
                .unwrap_or_default();
            log::info!(
                "{} rollouts configured in {} ms (metrics defined on first use)",
                filter.rollouts.len(),
                u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
            );
        }
        let cache_size = filter
            .rollouts
            .iter()
            .filter_map(|c| c.certificate.as_ref().map(|c| c.cache_size))
            .max()
            .unwrap_or(1);
        if let Err(e) = hostcalls::set_tick_period(FLUSH_PERIOD) {
            log::warn!("no tick: counters reach Envoy only on reconfigure ({e:?})");
        }
        let unmatched = if filter.multi {
            match define(Kind::Counter, "rollout_unmatched_requests_total") {
                Some(id) => Some((id, Cell::new(0))),
                None => return false,
            }
        } else {
            None
        };
        let shared = Rc::new(Shared {
            metrics: filter.rollouts.iter().map(|_| OnceCell::new()).collect(),
            reasons: reject_reasons(),
            unmatched,
            next_to_define: Cell::new(0),
            dirty: Cell::new(Vec::new()),
            memory: Cell::new(linear_memory_bytes()),
            peers: RefCell::new(LabelCache::new(cache_size)),
            cert_group: cert_groups(&filter.rollouts),
            filter,
        });
        // The single form defines its metrics now, as ever, and refuses a config the host
        // cannot count.
        if !shared.filter.multi && shared.metrics(0).is_none_or(|m| m.ids.is_empty()) {
            return false;
        }
        if let Some(old) = self.shared.replace(shared) {
            old.flush();
        }
        self.on_tick();
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.flush();
            self.ticks = self.ticks.wrapping_add(1);
            if self.ticks % MEMORY_EVERY_TICKS == 1 {
                shared.record_memory();
            }
            shared.define_ahead();
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
