//! Root context: one per worker VM. Owns the validated configuration and the
//! metric ids, both replaced only by a successful `on_configure`.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::guard::GuardState;
use super::http::Http;
use super::logger;
use super::metrics::{self, RolloutMetrics};
use super::raw;
use super::sync::{self, Feed};
use crate::config::{Config, DEFAULT_CERT_CACHE};
use crate::decision::{self, Peer};
use crate::identity::{CertReject, LabelCache, LabelOid, LabelReject, PeerCert, XfccReject};
use crate::metrics::Kind;
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
    /// Rollouts that had traffic before their metrics were all defined: served first.
    wanted: RefCell<Vec<u32>>,
    /// The longest tick spent defining metrics, in microseconds (logged when all are done).
    longest_define_us: Cell<u64>,
    /// (rollout, slot) with a pending count, so a tick costs what was counted, not every
    /// metric. `UNMATCHED` stands for the unmatched counter.
    dirty: Cell<Vec<(u32, u32)>>,
    /// The memory gauge value last recorded (recorded again only when it changes), and when.
    memory: Cell<u64>,
    memory_at_ns: Cell<u64>,
    /// Each peer certificate parsed once per worker, by digest and certificate group.
    pub peers: RefCell<LabelCache<Rc<CertEntry>>>,
    /// Per rollout: its certificate group (rollouts that read labels alike share parses).
    pub cert_group: Vec<u16>,
    /// Per rollout: its canary guard, if configured.
    pub guards: Vec<Option<GuardState>>,
    /// The host's clock at the last tick, in ms: what requests judge the guard by (no clock
    /// read per request).
    pub now_ms: Cell<u64>,
    /// The flagd sync streams the rollouts follow (`flagd.sync`).
    pub feeds: Vec<Feed>,
}

type PeerMeaning = Rc<Result<Peer, CertReject>>;

/// A parsed peer certificate and what it means to each rollout that has seen it; or why the
/// certificate could not be had from `x-forwarded-client-cert` (cached too: the HCM writes
/// the same element for every request of that certificate).
pub struct CertEntry {
    pub parsed: Result<PeerCert, CertReject>,
    pub xfcc: Option<XfccReject>,
    /// By rollout index, ascending.
    peers: RefCell<Vec<(usize, PeerMeaning)>>,
}

impl CertEntry {
    pub fn new(parsed: Result<PeerCert, CertReject>) -> CertEntry {
        CertEntry {
            parsed,
            xfcc: None,
            peers: RefCell::new(Vec::new()),
        }
    }

    pub fn xfcc_failed(reject: XfccReject) -> CertEntry {
        CertEntry {
            xfcc: Some(reject),
            ..CertEntry::new(Err(CertReject::ALL[0]))
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

const UNMATCHED: u32 = u32::MAX;

impl RolloutMetrics {
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
}

impl Shared {
    /// Rollout `index`'s metrics, made on its first request (or a tick ahead of it): names
    /// this VM defined before get their ids at once, new ones a few per tick (see
    /// [`metrics`]); counts wait until then. No metric is defined on a request.
    pub fn metrics(&self, index: usize) -> Option<&RolloutMetrics> {
        let cell = self.metrics.get(index)?;
        let cfg = self.filter.rollouts.get(index)?;
        Some(cell.get_or_init(|| {
            let m = RolloutMetrics::new(index, cfg, &self.reasons);
            if !m.fully_defined() {
                self.wanted.borrow_mut().push(index as u32);
            }
            if self.memory_at_ns.get() != 0 {
                m.set_memory(self.memory.get());
            }
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

    /// Hand every pending count whose metric is defined to the host; the others wait.
    pub fn flush(&self) {
        let mut dirty = self.dirty.take();
        dirty.retain(|&(rollout, slot)| {
            if rollout == UNMATCHED {
                if let Some((id, c)) = &self.unmatched {
                    metrics::increment(*id, c);
                }
                return false;
            }
            let Some(m) = self.metrics.get(rollout as usize).and_then(OnceCell::get) else {
                return false;
            };
            match (m.id(slot as usize), m.pending.get(slot as usize)) {
                (Some(id), Some(c)) => {
                    metrics::increment(id, c);
                    false
                }
                (None, Some(_)) => true,
                _ => false,
            }
        });
        // Keep the allocation (and what still waits) for the next tick.
        self.dirty.set(dirty);
    }

    /// The VM's memory on every defined rollout's gauge, when it changed since last recorded.
    /// Only VMs that serve requests record it: Envoy also configures VMs it then drops
    /// without `on_done` (a new configuration is tried on the main thread first), whose
    /// share would stay in the sum.
    fn record_memory(&self, now_ns: u64) {
        let first = self.memory_at_ns.get() == 0;
        if !first && now_ns.saturating_sub(self.memory_at_ns.get()) < MEMORY_PERIOD_NS {
            return;
        }
        self.memory_at_ns.set(now_ns.max(1));
        let bytes = linear_memory_bytes();
        if self.memory.replace(bytes) != bytes || first {
            for m in self.metrics.iter().filter_map(OnceCell::get) {
                m.set_memory(bytes);
            }
        }
    }

    /// Defines new names for up to `DEFINE_NANOS_PER_TICK`: rollouts with traffic first, then
    /// the others in order, so idle rollouts show up too. `true` while names may remain.
    fn define_some(&self) -> bool {
        let started = raw::now_nanos().unwrap_or(0);
        let mut budget = 0;
        loop {
            if budget == 0 {
                // A few names at a time until the tick's time is spent.
                let spent = raw::now_nanos().unwrap_or(u64::MAX).saturating_sub(started);
                if spent >= DEFINE_NANOS_PER_TICK {
                    return true;
                }
                budget = DEFINE_STEP;
            }
            // No borrow held across `metrics`, which may add to `wanted`.
            let first = self.wanted.borrow().first().copied();
            let Some(index) = first.map(|i| i as usize).or_else(|| self.next_undefined()) else {
                return false;
            };
            let Some(m) = self.metrics(index) else {
                return false;
            };
            if let Err(status) = m.define_some(&mut budget) {
                log::error!("rollout {index}: metrics not defined (host status {status}); it is not counted");
                self.next_to_define.set(self.metrics.len());
                self.wanted.borrow_mut().clear();
                return false;
            }
            if m.fully_defined() {
                if self.memory_at_ns.get() != 0 {
                    m.set_memory(self.memory.get());
                }
                self.wanted.borrow_mut().retain(|i| *i as usize != index);
            }
        }
    }

    /// Every guard of a rollout this worker has served: its counts shared, the state read back.
    fn sync_guards(&self) {
        let now_ms = self.now_ms.get();
        for (i, g) in self.guards.iter().enumerate() {
            let (Some(g), Some(cfg)) = (g, self.filter.rollouts.get(i)) else {
                continue;
            };
            let Some(m) = self.metrics.get(i).and_then(OnceCell::get) else {
                continue;
            };
            g.sync(cfg, m, |slot| self.count(m, slot), now_ms);
        }
    }

    /// The first rollout, from `next_to_define` on, whose metrics are not all defined.
    fn next_undefined(&self) -> Option<usize> {
        let mut i = self.next_to_define.get();
        while let Some(cell) = self.metrics.get(i) {
            if cell.get().is_none_or(|m| !m.fully_defined()) {
                self.next_to_define.set(i);
                return Some(i);
            }
            i += 1;
        }
        self.next_to_define.set(i);
        None
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
const FLUSH_PERIOD_MS: u32 = 100;
/// While metrics wait to be defined: a short tick that defines names for at most 3 ms, so no
/// tick stalls the worker's requests for long (about 100 µs per new name in Envoy), checking
/// the clock every few names.
const DEFINE_PERIOD_MS: u32 = 10;
const DEFINE_NANOS_PER_TICK: u64 = 3_000_000;
const DEFINE_STEP: usize = 4;
/// The memory gauge is refreshed once a second.
const MEMORY_PERIOD_NS: u64 = 1_000_000_000;

/// Envoy keeps a timer for every root context that ever set a tick, for the VM's life, and
/// re-arms it even after the context is gone (its `Wasm::setTimerPeriod` and `tickHandler`
/// never erase an entry): so a root context ticks only once it has work (metrics to define,
/// traffic to count, a flagd stream to follow), and stops its timer when it is done. The main
/// thread's VM, which serves no request, ticks only while it defines a `rollouts[]` config's
/// metrics or follows flagd, and a config push leaves a stopped timer per worker.
#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// The tick period in force (0: none).
    period_ms: Cell<u32>,
    /// A request was made under this root context: counts need flushing from now on.
    served: Cell<bool>,
}

impl Root {
    fn set_period(&self, ms: u32) {
        if self.period_ms.get() != ms {
            match raw::set_tick_period_ms(ms) {
                Ok(()) => self.period_ms.set(ms),
                Err(s) => log::warn!("no tick (host status {s}): counters reach Envoy only on reconfigure"),
            }
        }
    }
}

thread_local! {
    /// Root contexts of this VM holding a configuration.
    static CONFIGURED_ROOTS: Cell<u32> = const { Cell::new(0) };
}

impl Root {
    /// A tick's work; `on_configure` runs it too (`real` false: not the flagd stream, which a
    /// VM Envoy only tries the config on must not take).
    fn work(&mut self, real: bool) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = raw::now_nanos().unwrap_or(0);
        shared.now_ms.set(now / 1_000_000);
        if self.served.get() {
            shared.sync_guards();
            shared.record_memory(now);
        }
        if real {
            shared.tick_feeds(now / 1_000_000);
        }
        shared.flush();
        let more = shared.define_some();
        if let Some(end) = raw::now_nanos() {
            let us = end.saturating_sub(now) / 1000;
            if us > shared.longest_define_us.get() {
                shared.longest_define_us.set(us);
            }
        }
        if !more && self.period_ms.get() == DEFINE_PERIOD_MS && shared.filter.multi {
            log::info!(
                "metrics of {} rollouts defined; longest tick {} us",
                shared.filter.rollouts.len(),
                shared.longest_define_us.get()
            );
        }
        self.set_period(match (more, self.served.get() || !shared.feeds.is_empty()) {
            (true, _) => DEFINE_PERIOD_MS,
            (false, true) => FLUSH_PERIOD_MS,
            (false, false) => 0,
        });
    }

    fn feed_of(&self, token: u32) -> Option<(Rc<Shared>, usize)> {
        let shared = self.shared.clone()?;
        let at = shared.feeds.iter().position(|f| f.owns(token))?;
        Some((shared, at))
    }
}

impl Context for Root {
    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        let Some((shared, at)) = self.feed_of(token_id) else {
            return;
        };
        let msg = raw::buffer(BufferType::GrpcReceiveBuffer, 0, message_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some(feed) = shared.feeds.get(at) {
            shared.on_sync_message(feed, &msg);
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        if let Some((shared, at)) = self.feed_of(token_id) {
            let now_ms = raw::now_nanos().unwrap_or(0) / 1_000_000;
            if let Some(feed) = shared.feeds.get(at) {
                feed.closed(now_ms, status_code);
            }
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(shared) = self.shared.take() {
            shared.flush();
            shared.release_feeds();
            let left = CONFIGURED_ROOTS.with(|n| {
                n.set(n.get().saturating_sub(1));
                n.get()
            });
            if left == 0 {
                metrics::release_shares();
            }
        }
        self.set_period(0);
        true
    }
}

/// The plugin configuration's bytes; `None` (logged) when the host will not give them.
fn configuration() -> Option<Vec<u8>> {
    match raw::buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
        Ok(b) => Some(b.unwrap_or_default()),
        Err(status) => {
            log::error!("invalid configuration: cannot read it: host status {status}");
            None
        }
    }
}

/// One log line per rollout (debug in the `rollouts[]` form), and the warnings.
fn log_configured(filter: &FilterConfig, took_ms: u64) {
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
        log::info!(
            "{} rollouts configured in {took_ms} ms (metrics defined in the background)",
            filter.rollouts.len()
        );
    }
}

/// Certificates parsed once per worker: as many as the largest `certificate.cacheSize`, or
/// the default when only a trust check reads the peer (override or lane `trustedPeers`, a
/// `peerIdentity` key), so two callers taking turns do not re-parse on every request.
fn peer_cache_size(filter: &FilterConfig) -> usize {
    let sized = filter
        .rollouts
        .iter()
        .filter_map(|c| c.certificate.as_ref().map(|c| c.cache_size));
    let reads_peer = filter
        .rollouts
        .iter()
        .any(|c| c.needs_peer || c.lane.as_ref().is_some_and(|l| !l.trusted_peers.is_empty()));
    sized
        .max()
        .unwrap_or(if reads_peer { DEFAULT_CERT_CACHE } else { 0 })
}

impl Shared {
    fn new(filter: FilterConfig, unmatched: Option<(u32, Cell<u64>)>) -> Shared {
        let now_ms = raw::now_nanos().unwrap_or(0) / 1_000_000;
        Shared {
            guards: filter
                .rollouts
                .iter()
                .map(|c| GuardState::new(c, now_ms))
                .collect(),
            now_ms: Cell::new(now_ms),
            metrics: filter.rollouts.iter().map(|_| OnceCell::new()).collect(),
            reasons: reject_reasons(),
            unmatched,
            next_to_define: Cell::new(0),
            wanted: RefCell::new(Vec::new()),
            longest_define_us: Cell::new(0),
            dirty: Cell::new(Vec::new()),
            memory: Cell::new(linear_memory_bytes()),
            memory_at_ns: Cell::new(0),
            peers: RefCell::new(LabelCache::new(peer_cache_size(&filter))),
            cert_group: cert_groups(&filter.rollouts),
            feeds: sync::feeds(&filter.rollouts),
            filter,
        }
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
                raw::now_nanos().unwrap_or(0)
            }
        };
        fastrand::seed(seed);
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        logger::refresh_level();
        let Some(bytes) = configuration() else {
            return false;
        };
        let started = raw::now_nanos();
        let filter = match FilterConfig::from_json(&bytes) {
            Ok(f) => f,
            Err(e) => {
                log::error!("invalid configuration: {e}");
                return false;
            }
        };
        let took_ms = started
            .zip(raw::now_nanos())
            .map_or(0, |(a, b)| b.saturating_sub(a) / 1_000_000);
        log_configured(&filter, took_ms);
        // A refused definition refuses the configuration: the counter of the `rollouts[]`
        // form here, every metric of the single form below.
        let unmatched = if filter.multi {
            match metrics::define(Kind::Counter, "rollout_unmatched_requests_total") {
                Ok(id) => Some((id, Cell::new(0))),
                Err(_) => return false,
            }
        } else {
            None
        };
        let shared = Rc::new(Shared::new(filter, unmatched));
        // The single form defines its metrics now, as ever (after a push, from this VM's
        // ids without a host call).
        if !shared.filter.multi {
            let m = shared.metrics(0);
            let mut all = usize::MAX;
            match m {
                Some(m) if m.define_some(&mut all).is_ok() => {}
                _ => {
                    log::error!("invalid configuration: the host refused its metrics");
                    return false;
                }
            }
            shared.wanted.borrow_mut().clear();
        }
        for feed in &shared.feeds {
            // A snapshot this Envoy already has (before a push, say) serves at once.
            shared.adopt_current(feed);
        }
        let follows_flagd = !shared.feeds.is_empty();
        match self.shared.replace(shared) {
            Some(old) => {
                old.flush();
                old.release_feeds();
            }
            None => CONFIGURED_ROOTS.with(|n| n.set(n.get().saturating_add(1))),
        }
        if self.shared.as_ref().is_some_and(|s| s.filter.multi) {
            // Names this VM has not defined yet are defined in the background.
            self.work(false);
        }
        if follows_flagd && self.period_ms.get() == 0 {
            // The stream opens on a real tick: a VM Envoy only tries the config on is dropped
            // before its first, so it never takes the stream.
            self.set_period(FLUSH_PERIOD_MS);
        }
        true
    }

    fn on_tick(&mut self) {
        self.work(true);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if !self.served.replace(true) && self.period_ms.get() == 0 {
            // The first request: its counts need the flush tick (the host files it under
            // this root context).
            self.set_period(FLUSH_PERIOD_MS);
        }
        // Always a context: the SDK panics on None. Without a config it passes through.
        Some(Box::new(Http::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
