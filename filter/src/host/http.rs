//! Per-request glue: read the request headers once, decide, write the route,
//! trace and rollout-id headers, and count the request, its response class (or,
//! for a gRPC call, its final gRPC code) and its duration.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::metrics::RolloutMetrics;
use super::raw;
use super::root::{CertEntry, Shared};
use crate::baggage;
use crate::cluster;
use crate::config::{self, CertSource, Config};
use crate::decision::{self, Peer, RequestView};
use crate::grpc::{GrpcCode, Protocol, ResponseSeen, WebTrailerScanner};
use crate::headers::{HeaderChange, SerializedMap};
use crate::identity::{self, CertReject};
use crate::keys;
use crate::lane;
use crate::metrics::CodeClass;
use crate::trace;

pub struct Http {
    shared: Option<Rc<Shared>>,
    /// Index of the request's rollout (valid once `version` is set).
    rollout: usize,
    /// Set once the request is decided; responses are counted only then. In route-weights
    /// mode the version label the request phase knows (an override or pin; else `unknown`),
    /// replaced at response time by the version of the cluster Envoy picked.
    version: Option<usize>,
    /// Route-weights mode: the decision's source, counted once the picked cluster is known.
    route_source: Option<decision::Source>,
    /// Route-weights mode: `version` is the cluster Envoy used (read once per request).
    resolved: bool,
    /// The split placed the request (what the canary guard counts).
    split: bool,
    /// With `filterState`: the decision's source, recorded again once the route picked.
    source: Option<decision::Source>,
    status: Option<u16>,
    /// Kept only when a trace-id response header is configured.
    trace_id: Option<String>,
    /// `Set-Cookie` value for a visitor issued a fresh id, added to the response.
    set_cookie: Option<String>,
    /// Set for a gRPC call: what its response has shown so far.
    grpc: Option<GrpcCall>,
}

struct GrpcCall {
    seen: ResponseSeen,
    /// gRPC-Web only: the status may come in a trailer frame of the body.
    web: Option<Box<WebTrailerScanner>>,
}

fn response_grpc_status(map: MapType) -> Option<Vec<u8>> {
    raw::header_value(map, "grpc-status")
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Http {
            shared,
            rollout: 0,
            version: None,
            route_source: None,
            resolved: false,
            split: false,
            source: None,
            status: None,
            trace_id: None,
            set_cookie: None,
            grpc: None,
        }
    }
}

/// `request.duration` (int64 nanoseconds) in whole milliseconds, rounded up so a request
/// lands in the first histogram bucket at or above its duration (a 0.8 ms request is counted
/// as 1 ms, never in the 0.5 ms bucket): from the first byte of the request to the end of
/// the stream, measured by Envoy, so no clock reads of ours.
fn request_duration_ms() -> Option<u64> {
    let raw = raw::property(raw::REQUEST_DURATION)?;
    let ns = i64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    Some(u64::try_from(ns).unwrap_or(0).div_ceil(1_000_000))
}

/// The live request: its headers fetched once, properties read on demand.
struct HostRequest<'h> {
    headers: &'h [u8],
    source: Option<Option<Vec<u8>>>,
}

impl<'h> HostRequest<'h> {
    fn map(&self) -> SerializedMap<'h> {
        SerializedMap::new(self.headers)
    }
}

impl RequestView for HostRequest<'_> {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        self.map().get(name)
    }

    fn cookie(&mut self, name: &[u8]) -> Option<&[u8]> {
        self.map().get_all("cookie").find_map(|c| keys::cookie(c, name))
    }

    fn source_address(&mut self) -> Option<&[u8]> {
        if self.source.is_none() {
            self.source = Some(raw::property(raw::SOURCE_ADDRESS));
        }
        self.source.as_ref().and_then(|s| s.as_deref())
    }

    fn random_u32(&mut self) -> u32 {
        fastrand::u32(..)
    }

    fn random_id(&mut self) -> Option<[u8; decision::ID_BYTES]> {
        // WASI random_get: the host's CSPRNG, not the seeded fastrand stream.
        let mut id = [0u8; decision::ID_BYTES];
        match getrandom::getrandom(&mut id) {
            Ok(()) => Some(id),
            Err(e) => {
                log::warn!("no host randomness ({e}); no cookie issued, random bucket");
                None
            }
        }
    }
}

/// Whether the visitor came over TLS, for the cookie's `Secure`. The HCM fills
/// `x-forwarded-proto` before filters run: from this connection at an edge
/// (`use_remote_address` without trusted hops), else kept from the hop before, so a sidecar
/// behind a TLS-terminating gateway still answers `https` and one behind a plain-HTTP gateway
/// `http` despite its own mTLS hop. It is in the header map already read: no host call. A
/// client that lies about it only spoils its own cookie. Absent: the connection's TLS version.
fn visitor_used_tls(req: &HostRequest) -> bool {
    match req.map().get("x-forwarded-proto") {
        Some(proto) => proto.trim_ascii().eq_ignore_ascii_case(b"https"),
        None => raw::property(raw::TLS_VERSION).is_some_and(|v| !v.is_empty()),
    }
}

/// The listener's `traffic_direction`: `xds.listener_direction` on Envoy 1.40, top-level
/// `listener_direction` on older proxies. Read per request that carries a lane, not cached per
/// root context: Envoy gives each listener's filter its own direction, but listeners whose
/// plugin configs are identical share one root context.
fn listener_direction() -> Option<i64> {
    raw::property(raw::LISTENER_DIRECTION)
        .or_else(|| raw::property(raw::LISTENER_DIRECTION_OLD))
        .and_then(|d| lane::parse_direction(&d))
}

/// The meaning of the verified peer certificate to rollout `index`, from the per-worker
/// cache or parsed once. `None` without a verified client certificate.
fn peer(
    shared: &Shared,
    index: usize,
    cfg: &Config,
    m: &RolloutMetrics,
    req: &HostRequest,
) -> Option<Rc<Result<Peer, CertReject>>> {
    // The digest exists exactly when `connection.mtls` is true (the peer presented a
    // certificate, which the listener's validation context verified): one read, not two.
    let mut key = raw::property(raw::PEER_DIGEST)?;
    let digest_len = key.len();
    let group = shared.cert_group.get(index).copied().unwrap_or(0);
    key.extend_from_slice(&group.to_le_bytes());
    if let Some(hit) = shared.peers.borrow().get(&key) {
        return Some(hit.peer(index, cfg));
    }
    let digest = &key[..digest_len];
    let source = cfg.certificate.as_ref().map_or(CertSource::Auto, |c| c.source);
    let from_attribute = match source {
        CertSource::Auto => raw::property(raw::PEER_CERTIFICATE),
        CertSource::Xfcc => None,
    };
    let pem = match from_attribute {
        Some(pem) => pem,
        None => xfcc_pem(shared, m, req, &key, digest)?,
    };
    let label_oid = cfg.certificate.as_ref().and_then(|c| c.label_oid.as_ref());
    let parsed = identity::parse_certificate(&pem, label_oid).map(|mut cert| {
        if cfg.certificate.is_none() {
            // Identity only: labels are read when `certificate` is configured.
            cert.labels.clear();
            cert.label_rejects.clear();
        }
        cert
    });
    match &parsed {
        Ok(_) => log::debug!(
            "peer certificate parsed ({} cached)",
            shared.peers.borrow().len() + 1
        ),
        Err(e) => log::debug!("peer certificate not usable: {}", e.as_str()),
    }
    let entry = Rc::new(CertEntry::new(parsed));
    shared.peers.borrow_mut().insert(&key, entry.clone());
    Some(entry.peer(index, cfg))
}

/// Older proxies: the certificate of the XFCC element whose hash is the verified peer's
/// digest. A failure is cached under the digest and the header's own hash: the HCM writes
/// the same element for every request of a certificate, while a forwarded, client-written
/// header may change from one request to the next.
fn xfcc_pem(
    shared: &Shared,
    m: &RolloutMetrics,
    req: &HostRequest,
    key: &[u8],
    digest: &[u8],
) -> Option<Vec<u8>> {
    let xfcc = req.map().get("x-forwarded-client-cert").unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hasher::write(&mut h, xfcc);
    let failure_key = [key, b"xfcc", &std::hash::Hasher::finish(&h).to_le_bytes()].concat();
    if let Some(e) = shared.peers.borrow().get(&failure_key).and_then(|hit| hit.xfcc) {
        shared.count(m, m.reject_slot_xfcc(e));
        return None;
    }
    match identity::xfcc_certificate(xfcc, digest) {
        Ok(pem) => Some(pem),
        Err(e) => {
            log::debug!("x-forwarded-client-cert not used: {}", e.as_str());
            shared.count(m, m.reject_slot_xfcc(e));
            let entry = Rc::new(CertEntry::xfcc_failed(e));
            shared.peers.borrow_mut().insert(&failure_key, entry);
            None
        }
    }
}

/// A request no rollout matches: no decision and no header of ours, and every routing input
/// any rollout uses removed (docs/configuration.md, "What a client cannot do"), so a client cannot pre-route itself
/// for a later hop.
fn unmatched(shared: &Shared, req: &HostRequest) {
    let map = req.map();
    strip_foreign_headers(shared, req, None);
    if let Some(path) = strip_foreign_queries(shared, None, map.get(":path")) {
        set_request_header(":path", &path);
    }
    let bag: Vec<&[u8]> = map.get_all("baggage").collect();
    let edits = foreign_lane_edits(shared, req, None, &bag);
    if !edits.is_empty() {
        change_request_header("baggage", &baggage::apply(&bag, &edits).header);
    }
    shared.count_unmatched();
}

/// Removes the client's copies of other rollouts' routing headers (every rollout's when
/// `owner` is `None`). Envoy clears the cached route on these writes.
fn strip_foreign_headers(shared: &Shared, req: &HostRequest, owner: Option<&Config>) {
    let mut removed: Vec<&[u8]> = Vec::new();
    for (name, _) in req.map().iter() {
        if shared.filter.inputs.strips_header(name, owner) && !removed.contains(&name) {
            remove_request_header(std::str::from_utf8(name).unwrap_or_default());
            removed.push(name);
        }
    }
}

/// `path` without other rollouts' override query parameters; `None` when it has none.
fn strip_foreign_queries(shared: &Shared, owner: Option<&Config>, path: Option<&[u8]>) -> Option<Vec<u8>> {
    let path = path.filter(|p| p.contains(&b'?'))?;
    let mut out: Option<Vec<u8>> = None;
    for q in shared.filter.inputs.foreign_queries(owner) {
        let current = out.as_deref().unwrap_or(path);
        if let Some(stripped) = keys::strip_query_param(current, q.as_bytes()) {
            out = Some(stripped);
        }
    }
    out
}

/// Removals of other rollouts' lane members that their own rollout would not believe here:
/// from an untrusted caller on an inbound listener (`lane::judge`, with that rollout's side
/// and `trustedPeers`). Empty, without allocating, for baggage that has none.
fn foreign_lane_edits<'s>(
    shared: &'s Shared,
    req: &HostRequest,
    owner: Option<&Config>,
    bag: &[&[u8]],
) -> Vec<baggage::Edit<'s>> {
    let mut edits = Vec::new();
    if bag.is_empty() || !shared.filter.inputs.has_lanes() {
        return edits;
    }
    for m in baggage::members(bag) {
        let Some(s) = shared.filter.inputs.foreign_lane(m.key(), owner) else {
            continue;
        };
        let Some(l) = shared.filter.rollouts.get(s).and_then(|c| c.lane.as_ref()) else {
            continue;
        };
        if edits
            .iter()
            .any(|e| matches!(e, baggage::Edit::Remove { key } if *key == l.key))
        {
            continue;
        }
        let judged = lane::judge(
            l,
            bag,
            |_| None,
            || l.side.is_inbound(listener_direction),
            || !l.trusted_peers.is_empty() && lane_trusted(shared, s, req),
        );
        if judged == lane::Incoming::Untrusted {
            edits.push(baggage::Edit::Remove { key: &l.key });
        }
    }
    edits
}

/// The verified peer is in rollout `index`'s `lane.trustedPeers`.
fn lane_trusted(shared: &Shared, index: usize, req: &HostRequest) -> bool {
    let (Some(cfg), Some(m)) = (shared.filter.rollouts.get(index), shared.metrics(index)) else {
        return false;
    };
    matches!(peer(shared, index, cfg, m, req).as_deref(), Some(Ok(p)) if p.lane_trusted)
}

/// `filterState`: the decision as Envoy filter state `wasm.rollout` (one logfmt line).
fn record_decision(cfg: &Config, label: usize, source: decision::Source, diverted: Option<usize>) {
    let name = |i: usize| {
        cfg.versions
            .get(i)
            .map_or(config::UNKNOWN_VERSION, |v| v.name.as_str())
    };
    let line = decision::record(&cfg.rollout_id, name(label), source, diverted.map(name));
    if let Err(status) = raw::set_property(b"rollout", line.as_bytes()) {
        log::debug!("filter state not set: host status {status}");
    }
}

/// The request's W3C trace context as the configuration wants it passed on; what it ignored
/// is counted.
fn trace_context(
    shared: &Shared,
    m: &RolloutMetrics,
    cfg: &Config,
    map: &SerializedMap<'_>,
    start: Option<[u8; 16]>,
) -> trace::Propagated {
    let parents: Vec<&[u8]> = map.get_all("traceparent").collect();
    let states: Vec<&[u8]> = map.get_all("tracestate").collect();
    let mut random = [0u8; 24];
    for chunk in random.chunks_mut(8) {
        chunk.copy_from_slice(&fastrand::u64(..).to_le_bytes());
    }
    let p = trace::propagate_seeded(&parents, &states, &cfg.trace.settings, random, start);
    for (r, n) in p.rejects.iter() {
        log::debug!("trace context: {} x{n}", r.as_str());
        shared.count_n(m, m.reject_slot_trace(r), u64::from(n));
    }
    p
}

/// The `baggage` header after the decision member, the lane member and the removals of other
/// rollouts' lane members: one pass of the baggage writer, one write. Members the W3C limits
/// leave no room for are counted.
fn baggage_change(
    shared: &Shared,
    m: &RolloutMetrics,
    cfg: &Config,
    label: usize,
    lane_edit: Option<baggage::Edit<'_>>,
    bag: &[&[u8]],
    foreign_lanes: &[baggage::Edit<'_>],
) -> HeaderChange {
    let mut edits = [baggage::Edit::Remove { key: "" }; 2];
    let mut n = 0;
    if let Some(member) = cfg.trace.baggage_members.get(label).filter(|_| cfg.trace.baggage) {
        edits[0] = baggage::Edit::Set {
            key: &cfg.trace.baggage_key,
            member,
        };
        n = 1;
    }
    if let Some(e) = lane_edit {
        if let Some(slot) = edits.get_mut(n) {
            *slot = e;
            n += 1;
        }
    }
    if n == 0 && foreign_lanes.is_empty() {
        return HeaderChange::Keep;
    }
    let all;
    let edits = if foreign_lanes.is_empty() {
        edits.get(..n).unwrap_or_default()
    } else {
        all = [edits.get(..n).unwrap_or_default(), foreign_lanes].concat();
        &all
    };
    let applied = baggage::apply(bag, edits);
    if applied.not_added() > 0 {
        log::debug!("baggage member not added: the header is at the W3C limits");
        shared.count_n(
            m,
            m.reject_slot_trace(trace::TraceReject::BaggageFull),
            u64::from(applied.not_added()),
        );
    }
    applied.header
}

fn remove_request_header(name: &str) {
    write_request_header(name, None);
}

/// Route-weights mode: the version label of the cluster Envoy routed this request to.
fn picked_label(cfg: &Config) -> usize {
    let cluster = raw::property(raw::XDS_CLUSTER_NAME);
    cluster::label_of(cfg, cluster.as_deref())
}

/// `n` in decimal, written into `buf` (no allocation on the request path).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    buf.get(at..).unwrap_or_default()
}

fn set_response_header(name: &str, value: &[u8]) {
    if let Err(status) = raw::replace_header(MapType::HttpResponseHeaders, name, value) {
        log::debug!("cannot write response header {name}: host status {status}");
    }
}

fn set_request_header(name: &str, value: &[u8]) {
    write_request_header(name, Some(value));
}

/// Replace every value of `name`, or remove them all (`None`).
fn write_request_header(name: &str, value: Option<&[u8]>) {
    let map = MapType::HttpRequestHeaders;
    let done = match value {
        Some(v) => raw::replace_header(map, name, v),
        None => raw::remove_header(map, name),
    };
    if let Err(status) = done {
        log::warn!("cannot write request header {name}: status {status}");
    }
}

/// Sets a header we own unless the request already carries exactly that one value: a
/// write that changes nothing still costs a host call (and a route refresh).
fn own_request_header(map: &SerializedMap<'_>, name: &str, value: &[u8]) {
    let mut have = map.get_all(name);
    if have.next() == Some(value) && have.next().is_none() {
        return;
    }
    set_request_header(name, value);
}

fn change_request_header(name: &str, change: &HeaderChange) {
    match change {
        HeaderChange::Keep => {}
        HeaderChange::Set(v) => set_request_header(name, v),
        HeaderChange::Remove => remove_request_header(name),
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.as_deref() else {
            return Action::Continue;
        };
        let headers = raw::header_map_pairs(MapType::HttpRequestHeaders).unwrap_or_default();
        let mut req = HostRequest {
            headers: &headers,
            source: None,
        };
        #[cfg(feature = "test-trap")]
        if req.map().get("x-rollout-test-trap").is_some() {
            std::process::abort();
        }
        let filter = &shared.filter;
        let index = if filter.matches_everything() {
            Some(0)
        } else {
            let map = req.map();
            filter.select(map.get(":authority"), map.get(":path"))
        };
        let Some(index) = index else {
            unmatched(shared, &req);
            return Action::Continue;
        };
        let (Some(cfg), Some(m)) = (filter.rollouts.get(index), shared.metrics(index)) else {
            return Action::Continue;
        };
        // Read once, when first needed: for every request when the config needs it, else
        // only for the trust check of a lane arriving on an inbound listener.
        let mut peer_read = cfg.needs_peer.then(|| peer(shared, index, cfg, m, &req));
        // Every `baggage` value, read once for the lane, the foreign lanes and the writer.
        let bag: Vec<&[u8]> = req.map().get_all("baggage").collect();
        let mut lane_in = lane::Incoming::Absent;
        if let Some(l) = &cfg.lane {
            lane_in = lane::judge(
                l,
                &bag,
                |v| cfg.version_index(v),
                || l.side.is_inbound(listener_direction),
                || {
                    !l.trusted_peers.is_empty()
                        && matches!(
                            peer_read.get_or_insert_with(|| peer(shared, index, cfg, m, &req)).as_deref(),
                            Some(Ok(p)) if p.lane_trusted
                        )
                },
            );
        }
        let peer = peer_read.flatten();
        let peer_ok = match peer.as_deref() {
            Some(Ok(p)) => {
                for r in &p.rejects {
                    log::debug!("certificate label ignored: {}", r.as_str());
                    shared.count(m, m.reject_slot_label(*r));
                }
                Some(p)
            }
            Some(Err(e)) => {
                shared.count(m, m.reject_slot_cert(*e));
                None
            }
            None => None,
        };
        let mut d = decision::decide_in_lane(cfg, &mut req, peer_ok, lane_in);
        let placed = d.version;
        if let Some(g) = shared.guards.get(index).and_then(Option::as_ref) {
            let now = shared.now_ms.get();
            decision::apply_guard(&mut d, cfg.versions.len(), g.baseline(), |v, k| {
                g.diverts(v, k, now)
            });
        }
        let foreign = filter.inputs.has_foreign(Some(index));
        let foreign_lanes = if foreign {
            strip_foreign_headers(shared, &req, Some(cfg));
            foreign_lane_edits(shared, &req, Some(cfg), &bag)
        } else {
            Vec::new()
        };
        for r in d.rejected.iter() {
            log::debug!("ignored input: {}", r.as_str());
            shared.count(m, m.reject_slot_decision(r));
        }
        // Route-weights mode knows the version here only for an override or a pin.
        let version = d
            .version
            .and_then(|i| cfg.versions.get(i))
            .map(|v| v.name.as_bytes());
        // Else its label is `unknown`: `xds.cluster_name` cannot tell yet. Until the router
        // re-resolves the route, it still names the cluster of the route Envoy resolved
        // before this filter changed the headers (checked on Envoy 1.40;
        // docs/route-weights.md). The pick is read at response time instead.
        let label = d.version.unwrap_or(cfg.versions.len());
        let trace_out = cfg.trace.enabled.then(|| {
            // A certificate label's traceId starts the trace when the request brings none.
            let p = trace_context(shared, m, cfg, &req.map(), peer_ok.and_then(|p| p.trace_id));
            if cfg.response_headers.trace_id.is_some() {
                self.trace_id = Some(p.trace_id_hex());
            }
            p
        });
        let baggage_out = baggage_change(
            shared,
            m,
            cfg,
            label,
            cfg.lane.as_ref().and_then(|l| lane::edit(l, lane_in, d.version)),
            &bag,
            &foreign_lanes,
        );

        // An override from a caller that may not use it never reaches the upstream.
        let strip_header = cfg
            .r#override
            .header
            .as_deref()
            .filter(|_| d.strip_override_header());
        let path = req.map().get(":path");
        let mut new_path = match (d.strip_override_query(), &cfg.r#override.query) {
            (true, Some(name)) => path.and_then(|p| keys::strip_query_param(p, name.as_bytes())),
            _ => None,
        };
        if foreign {
            let current = new_path.as_deref().or(path);
            if let Some(p) = strip_foreign_queries(shared, Some(cfg), current) {
                new_path = Some(p);
            }
        }
        // Every header we own is replaced, whatever the client sent (each set replaces all
        // values). One call per header measured faster than one set_header_map_pairs
        // call, which makes Envoy remove and re-add every header.
        // No clear_route_cache call: Envoy clears the cached route on every request-header
        // write of a wasm filter (add, replace, remove), so the new values route; when every
        // value is already what the client sent, the route Envoy cached is the right one.
        match version {
            Some(name) => own_request_header(&req.map(), &cfg.route_header, name),
            None => remove_request_header(&cfg.route_header),
        }
        if let Some(rw) = &cfg.route_weights {
            match d.bucket {
                Some(b) => {
                    let mut buf = [0u8; 10];
                    set_request_header(&rw.bucket_header, decimal(b, &mut buf));
                }
                // No sticky key (or an override): a client's bucket never chooses a version.
                None => remove_request_header(&rw.bucket_header),
            }
        }
        own_request_header(&req.map(), &cfg.rollout_id_header, cfg.rollout_id.as_bytes());
        if let Some(p) = &trace_out {
            if let Some(tp) = &p.traceparent {
                set_request_header("traceparent", tp.as_bytes());
            }
            change_request_header("tracestate", &p.tracestate);
        }
        change_request_header("baggage", &baggage_out);
        if let Some(name) = strip_header {
            remove_request_header(name);
        }
        if let Some(path) = &new_path {
            set_request_header(":path", path);
        }

        if cfg.route_weights.is_some() {
            // Counted when the response comes: the cluster Envoy used is known then.
            self.route_source = Some(d.source);
        } else {
            shared.count(m, m.request_slot(label, d.source));
        }
        if let (Some(id), Some(c)) = (&d.issued, &cfg.issue_cookie) {
            self.set_cookie = Some(c.set_cookie(id.as_str(), visitor_used_tls(&req)));
        }
        self.rollout = index;
        self.version = Some(label);
        self.split = d.source.is_split();
        if cfg.filter_state {
            let diverted = placed.filter(|_| d.source == decision::Source::Guard);
            record_decision(cfg, label, d.source, diverted);
            self.source = Some(d.source);
        }
        let protocol = Protocol::of(req.map().get("content-type"));
        if protocol.is_grpc() {
            self.grpc = Some(GrpcCall {
                seen: ResponseSeen::default(),
                web: protocol
                    .status_in_body()
                    .then(|| Box::new(WebTrailerScanner::new(protocol))),
            });
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(shared), Some(version)) = (self.shared.as_deref(), self.version) else {
            return Action::Continue;
        };
        self.status = raw::header_value(MapType::HttpResponseHeaders, ":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok());
        if let Some(g) = &mut self.grpc {
            g.seen.http_status = self.status;
            g.seen.complete |= end_of_stream;
            // A trailers-only response (an error, or Envoy's own reply to a gRPC call).
            if let Some(v) = response_grpc_status(MapType::HttpResponseHeaders) {
                g.seen.status_value(&v);
            }
        }
        let Some(cfg) = shared.filter.rollouts.get(self.rollout) else {
            return Action::Continue;
        };
        let rh = &cfg.response_headers;
        let mut version = version;
        if (rh.version.is_some() || cfg.filter_state) && self.route_source.is_some() {
            version = picked_label(cfg);
            self.version = Some(version);
            self.resolved = true;
            if let Some(source) = self.source {
                record_decision(cfg, version, source, None);
            }
        }
        if let Some(name) = &rh.version {
            let label = cfg
                .versions
                .get(version)
                .map_or(config::UNKNOWN_VERSION, |v| v.name.as_str());
            set_response_header(name, label.as_bytes());
        }
        if let (Some(name), Some(id)) = (&rh.trace_id, &self.trace_id) {
            set_response_header(name, id.as_bytes());
        }
        // Added beside the upstream's own Set-Cookie headers, never replacing them; also on
        // replies Envoy makes itself, so the visitor stays on its bucket when it retries.
        if let Some(cookie) = self.set_cookie.take() {
            if let Err(status) =
                raw::add_header(MapType::HttpResponseHeaders, "set-cookie", cookie.as_bytes())
            {
                log::warn!("cannot add set-cookie: host status {status}");
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(g) = &mut self.grpc else {
            return Action::Continue;
        };
        g.seen.complete |= end_of_stream;
        if let Some(scanner) = &mut g.web {
            if body_size > 0 {
                if let Ok(Some(chunk)) = raw::buffer(BufferType::HttpResponseBody, 0, body_size) {
                    scanner.feed(&chunk);
                }
            }
            if let Some(v) = scanner.status() {
                g.seen.status_value(v);
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(g) = &mut self.grpc {
            g.seen.complete = true;
            if let Some(v) = response_grpc_status(MapType::HttpResponseTrailers) {
                g.seen.status_value(&v);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(shared), Some(mut version)) = (self.shared.as_deref(), self.version) else {
            return;
        };
        let (Some(cfg), Some(m)) = (
            shared.filter.rollouts.get(self.rollout),
            shared.metrics(self.rollout),
        ) else {
            return;
        };
        if let Some(source) = self.route_source {
            // The version Envoy picked: whatever served the request is what gets counted.
            if !self.resolved {
                version = picked_label(cfg);
            }
            shared.count(m, m.request_slot(version, source));
        }
        // A gRPC call is judged by its final gRPC code, an HTTP request by its status class:
        // each finished request is counted in exactly one of the two.
        let (local_candidate, failed) = match &self.grpc {
            Some(g) => {
                let code = g.seen.code();
                shared.count(m, m.grpc_response_slot(version, code));
                // Envoy answers a gRPC call itself with HTTP 200 and a grpc-status.
                let local = !matches!(code, GrpcCode::Ok | GrpcCode::Missing | GrpcCode::Reset);
                (local, code.is_failure())
            }
            None => {
                let class = CodeClass::of(self.status);
                shared.count(m, m.response_slot(version, class));
                let local = self.status.is_some_and(|s| s >= 400);
                (local, matches!(class, CodeClass::C5xx | CodeClass::Reset))
            }
        };
        // The guard judges the split's placements by the one failure rule of the success rate.
        if let Some(g) = shared.guards.get(self.rollout).and_then(Option::as_ref) {
            if self.split && version < cfg.versions.len() {
                g.note(version, failed);
            }
        }
        // Error responses Envoy made itself (connect failure, timeout) rather than the upstream.
        if local_candidate {
            let details = raw::property(raw::RESPONSE_CODE_DETAILS);
            if details.as_deref() != Some(b"via_upstream") {
                shared.count(m, m.local_reply_slot(version));
            }
        }
        match request_duration_ms() {
            Some(ms) => m.record(m.duration_slot(version), ms),
            None => log::debug!("no request.duration; duration not recorded"),
        }
    }
}
