//! The routing decision: override header > override query > certificate pin >
//! call-chain lane > sticky split > random. With a flagd flag (`flagd`), the flag's variant
//! takes the place of the sticky split and the random pick.
//!
//! Pure: the request is read through [`RequestView`], which the host glue
//! implements over proxy-wasm and the tests implement over a map. Sources are
//! read lazily, so a request decided by its override header costs no further reads.

use crate::config::{Config, Flagd, StickyKey};
use crate::flagd;
use crate::identity::{LabelReject, PeerCert};
use crate::keys;
use crate::lane::Incoming;
use crate::split;

/// What the decision needs from a request. Values are raw bytes: they need not be UTF-8.
pub trait RequestView {
    /// The first value of request header `name` (lowercase).
    fn header(&mut self, name: &str) -> Option<&[u8]>;
    /// The `:path` pseudo-header, query included.
    fn path(&mut self) -> Option<&[u8]> {
        self.header(":path")
    }
    /// The value of cookie `name`: the first in any `Cookie` header (HTTP/1 clients may send
    /// several; HTTP/2 crumbs arrive as several values too).
    fn cookie(&mut self, name: &[u8]) -> Option<&[u8]> {
        self.header("cookie").and_then(|c| keys::cookie(c, name))
    }
    /// Downstream `ip:port`.
    fn source_address(&mut self) -> Option<&[u8]>;
    /// A fresh random number, for requests with no sticky key.
    fn random_u32(&mut self) -> u32;
    /// 128 bits from the host's secure randomness, for an issued cookie id; `None` when
    /// the host has none (the request then falls back to a random bucket, no cookie).
    fn random_id(&mut self) -> Option<[u8; ID_BYTES]> {
        None
    }
}

/// Random bytes in an issued cookie id.
pub const ID_BYTES: usize = 16;
/// Their unpadded base64url length.
pub const ID_LEN: usize = 22;

/// A freshly issued cookie id: URL-safe base64 without padding, kept inline (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedId([u8; ID_LEN]);

impl IssuedId {
    pub fn new(random: [u8; ID_BYTES]) -> IssuedId {
        // RFC 4648 base64url, unpadded: 16 bytes are 128 bits, 22 six-bit digits (the last
        // holding 2 bits). Written out rather than through the base64 crate's encoder, which
        // costs about 2.5 KB of the module's size budget for these few lines.
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bits = u128::from_be_bytes(random);
        let mut out = [0u8; ID_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            // Digit i is bits [122 - 6i, 128 - 6i) of the big-endian number; the last one
            // holds its 2 lowest bits, padded with zeros on the right.
            let digit = match 122u32.checked_sub(6 * i as u32) {
                Some(shift) => (bits >> shift) & 63,
                None => (bits << 4) & 63,
            };
            *c = ALPHABET[digit as usize];
        }
        IssuedId(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Why a request went to its version. Also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    OverrideHeader,
    OverrideQuery,
    Certificate,
    /// The version named by the request's lane (`lane.follow`).
    Lane,
    Sticky,
    /// No sticky key: a fresh id was issued as the cookie and bucketed on.
    StickyIssued,
    Random,
    /// A flagd flag's targeting chose the variant (flagd's `TARGETING_MATCH`).
    Flagd,
    /// A flagd flag served its default variant: no targeting, `DISABLED`, no rule held, or
    /// no targetingKey to bucket by (flagd's `STATIC`, `DISABLED`, `DEFAULT`).
    FlagdDefault,
    /// The split's version was taken off by the canary guard: the baseline instead.
    Guard,
}

impl Source {
    pub const ALL: [Source; 10] = [
        Source::OverrideHeader,
        Source::OverrideQuery,
        Source::Certificate,
        Source::Lane,
        Source::Sticky,
        Source::StickyIssued,
        Source::Random,
        Source::Flagd,
        Source::FlagdDefault,
        Source::Guard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::OverrideHeader => "override_header",
            Source::OverrideQuery => "override_query",
            Source::Certificate => "certificate",
            Source::Lane => "lane",
            Source::Sticky => "sticky",
            Source::StickyIssued => "sticky_issued",
            Source::Random => "random",
            Source::Flagd => "flagd",
            Source::FlagdDefault => "flagd_default",
            Source::Guard => "guard",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Placed by the split (a share of the traffic), which the canary guard counts and may
    /// divert; an override or a certificate pin is an explicit choice it leaves alone.
    pub fn is_split(self) -> bool {
        matches!(
            self,
            Source::Lane | Source::Sticky | Source::StickyIssued | Source::Random
        )
    }
}

/// An input the filter ignored. Also a metric label (`reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The override header named no configured version.
    UnknownOverrideHeader,
    /// The override query parameter named no configured version.
    UnknownOverrideQuery,
    /// An override header from a caller not in `trustedPeers`: removed.
    UntrustedOverrideHeader,
    /// An override query parameter from a caller not in `trustedPeers`: removed.
    UntrustedOverrideQuery,
    /// A lane from a caller an inbound listener does not trust: removed.
    UntrustedLane,
    /// A lane naming no configured version: decided as usual, the lane passed on.
    UnknownLane,
    /// A certificate label's `weight` in route-weights mode, where the route's weights
    /// pick: the caller is bucketed like everyone else.
    LabelWeightIgnored,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::UnknownOverrideHeader,
        Reject::UnknownOverrideQuery,
        Reject::UntrustedOverrideHeader,
        Reject::UntrustedOverrideQuery,
        Reject::UntrustedLane,
        Reject::UnknownLane,
        Reject::LabelWeightIgnored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::UnknownOverrideHeader => "unknown_override_header",
            Reject::UnknownOverrideQuery => "unknown_override_query",
            Reject::UntrustedOverrideHeader => "untrusted_override_header",
            Reject::UntrustedOverrideQuery => "untrusted_override_query",
            Reject::UntrustedLane => "untrusted_lane",
            Reject::UnknownLane => "unknown_lane",
            Reject::LabelWeightIgnored => "label_weight_ignored",
        }
    }
}

/// The set of inputs ignored on one request, each counted by the glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejections(u16);

impl Rejections {
    pub fn add(&mut self, r: Reject) {
        self.0 |= 1 << (r as u16);
    }

    pub fn contains(self, r: Reject) -> bool {
        self.0 & (1 << (r as u16)) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Reject> {
        Reject::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index into `Config::versions`. Always set in filter-weights mode; in route-weights
    /// mode only when an override, a certificate pin or a lane chose (else the route picks).
    pub version: Option<usize>,
    /// Route-weights mode with a sticky key: flagd's bucket, written into `bucketHeader`.
    pub bucket: Option<u32>,
    pub source: Source,
    pub rejected: Rejections,
    /// The id to send back as `Set-Cookie` (source `StickyIssued` only).
    pub issued: Option<IssuedId>,
    /// The split's hash of the user (sticky key, issued id, or the random draw): the guard's
    /// probe key. `None` when no split placed the request.
    pub hash: Option<u32>,
}

impl Decision {
    /// The untrusted override header must be removed before the request goes upstream.
    pub fn strip_override_header(&self) -> bool {
        self.rejected.contains(Reject::UntrustedOverrideHeader)
    }

    /// The untrusted override query parameter must be removed from `:path`.
    pub fn strip_override_query(&self) -> bool {
        self.rejected.contains(Reject::UntrustedOverrideQuery)
    }
}

/// What a verified peer certificate means under one configuration. Computed
/// once per certificate (and cached by digest), not per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    /// The certificate matches `override.trustedPeers`.
    pub trusted: bool,
    /// The certificate matches `lane.trustedPeers`.
    pub lane_trusted: bool,
    /// A label pinned the caller to this version.
    pub pin: Option<usize>,
    /// A label's weight: the caller's own split (weights, total).
    pub weights: Option<(Vec<u64>, u64)>,
    /// SPIFFE ID, else the first DNS SAN: the `peerIdentity` sticky key.
    pub identity: Option<String>,
    /// A label's `traceId`: the trace-id of requests that bring no valid `traceparent`.
    pub trace_id: Option<[u8; 16]>,
    /// Labels ignored, each counted on every request from this peer.
    pub rejects: Vec<LabelReject>,
}

impl Peer {
    pub fn from_cert(cfg: &Config, cert: &PeerCert) -> Peer {
        let mut peer = Peer {
            trusted: cert.is_trusted(&cfg.r#override.trusted_peers),
            lane_trusted: cfg
                .lane
                .as_ref()
                .is_some_and(|l| cert.is_trusted(&l.trusted_peers)),
            identity: cert.spiffe_id.clone().or_else(|| cert.dns.first().cloned()),
            rejects: cert.label_rejects.clone(),
            ..Peer::default()
        };
        if cert.has_labels_for_other_rollouts(&cfg.rollout_id) {
            peer.rejects.push(LabelReject::OtherRollout);
        }
        let label = match cert.label_for(&cfg.rollout_id) {
            Ok(Some(label)) => label,
            Ok(None) => return peer,
            Err(reject) => {
                peer.rejects.push(reject);
                return peer;
            }
        };
        // Only a label that is used: one naming an unknown version is ignored whole.
        let target = match &label.version {
            Some(name) => match cfg.version_index(name.as_bytes()) {
                Some(i) => i,
                None => {
                    peer.rejects.push(LabelReject::BadVersion);
                    return peer;
                }
            },
            // A weight without a version is for the last version: the canary.
            None => cfg.versions.len().saturating_sub(1),
        };
        match (label.weight, &label.version) {
            (Some(w), _) => peer.weights = Some(weights_with_share(&cfg.weights, target, w)),
            (None, Some(_)) => peer.pin = Some(target),
            // Only a trace id: the caller is split like anyone else.
            (None, None) => {}
        }
        peer.trace_id = label.trace_id;
        peer
    }
}

/// Weights giving `target` exactly `percent`% of the buckets and the other
/// versions the rest, in proportion to their configured weights.
pub fn weights_with_share(weights: &[u32], target: usize, percent: u8) -> (Vec<u64>, u64) {
    let percent = u64::from(percent.min(100));
    let others: u64 = weights
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != target)
        .map(|(_, w)| u64::from(*w))
        .sum();
    if others == 0 {
        // Nobody else to share with: the target takes everything.
        let out = weights
            .iter()
            .enumerate()
            .map(|(i, _)| u64::from(i == target))
            .collect();
        return (out, 1);
    }
    let out: Vec<u64> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == target {
                percent * others
            } else {
                (100 - percent) * u64::from(*w)
            }
        })
        .collect();
    let total = 100 * others;
    (out, total)
}

/// Decide a request. `peer`: the verified peer certificate's meaning, if any.
pub fn decide(cfg: &Config, req: &mut impl RequestView, peer: Option<&Peer>) -> Decision {
    decide_in_lane(cfg, req, peer, Incoming::Absent)
}

/// [`decide`] with the request's lane, judged by [`crate::lane::judge`]. A lane comes
/// after the trusted override and the certificate pin (explicit, verified choices for
/// this hop) and before the sticky split (which it exists to replace down the chain).
pub fn decide_in_lane(
    cfg: &Config,
    req: &mut impl RequestView,
    peer: Option<&Peer>,
    lane: Incoming,
) -> Decision {
    let mut rejected = Rejections::default();
    match lane {
        Incoming::Untrusted => rejected.add(Reject::UntrustedLane),
        Incoming::Unknown => rejected.add(Reject::UnknownLane),
        _ => {}
    }
    let trusted = cfg.r#override.trust_everyone || peer.is_some_and(|p| p.trusted);

    // Each override: absent, or the configured version it names (None: no such version).
    let header = cfg
        .r#override
        .header
        .as_deref()
        .and_then(|n| req.header(n))
        .map(|v| cfg.version_index(v.trim_ascii()));
    let by_header = (
        Source::OverrideHeader,
        Reject::UntrustedOverrideHeader,
        Reject::UnknownOverrideHeader,
    );
    if let Some(d) = apply_override(header, trusted, by_header, &mut rejected) {
        return d;
    }
    let query = cfg
        .r#override
        .query
        .as_deref()
        .and_then(|n| req.path().and_then(|p| keys::query_param(p, n.as_bytes())))
        .map(|v| cfg.version_index(v));
    let by_query = (
        Source::OverrideQuery,
        Reject::UntrustedOverrideQuery,
        Reject::UnknownOverrideQuery,
    );
    if let Some(d) = apply_override(query, trusted, by_query, &mut rejected) {
        return d;
    }

    if let Some(version) = peer.and_then(|p| p.pin) {
        return Decision {
            version: Some(version),
            bucket: None,
            source: Source::Certificate,
            rejected,
            issued: None,
            hash: None,
        };
    }

    if let Incoming::Follow(version) = lane {
        // A known version, as a pin: in route-weights mode too.
        return Decision {
            version: Some(version),
            bucket: None,
            source: Source::Lane,
            rejected,
            issued: None,
            hash: None,
        };
    }

    if (cfg.route_weights.is_some() || cfg.flagd.is_some()) && peer.is_some_and(|p| p.weights.is_some()) {
        // The route's weights or the flag pick: a label's own share cannot apply.
        rejected.add(Reject::LabelWeightIgnored);
    }
    if let Some(f) = &cfg.flagd {
        return flagd_decision(cfg, f, req, peer, rejected);
    }
    let mut issued = None;
    let keyed = match sticky_hash(cfg, req, peer) {
        Some(hash) => Some((hash, Source::Sticky)),
        // The issuing cookie is the last sticky key, so it was absent too.
        None => cfg
            .issue_cookie
            .as_ref()
            .and_then(|_| req.random_id())
            .map(IssuedId::new)
            .map(|id| {
                issued = Some(id);
                (
                    split::hash(cfg.rollout_id.as_bytes(), id.as_bytes()),
                    Source::StickyIssued,
                )
            }),
    };
    if let Some(rw) = &cfg.route_weights {
        // The filter only supplies the sticky bucket. No key: no header, and Envoy
        // draws its own random value.
        let bucket = keyed.map(|(hash, _)| {
            u32::try_from(split::bucket(hash, u64::from(rw.total_weight))).unwrap_or(u32::MAX)
        });
        return Decision {
            version: None,
            bucket,
            source: keyed.map_or(Source::Random, |(_, source)| source),
            rejected,
            issued,
            hash: keyed.map(|(hash, _)| hash),
        };
    }
    let (hash, source) = keyed.unwrap_or_else(|| (req.random_u32(), Source::Random));
    let version = match peer.and_then(|p| p.weights.as_ref()) {
        Some((weights, total)) => split::pick(hash, weights, *total),
        None => split::pick(hash, &cfg.weights, cfg.total_weight),
    };
    Decision {
        version: Some(version),
        bucket: None,
        source,
        rejected,
        issued,
        hash: Some(hash),
    }
}

/// The decision as one logfmt line, for Envoy filter state (`filterState`): what an access log
/// line or another filter reads. `diverted`: the version the guard took the request off.
pub fn record(rollout_id: &str, version: &str, source: Source, diverted: Option<&str>) -> String {
    let mut out = format!(
        "rollout={rollout_id} version={version} source={}",
        source.as_str()
    );
    if let Some(v) = diverted {
        out.push_str(" diverted=");
        out.push_str(v);
    }
    out
}

/// The canary guard's part: a request the split placed on a version the guard has taken off
/// goes to `baseline` instead (source `guard`). `diverts(version, probe_key)` is the guard's
/// answer. In route-weights mode the route picks after the filter, so a user is diverted when
/// any version is off for them: the route header then names the baseline.
pub fn apply_guard(d: &mut Decision, versions: usize, baseline: usize, diverts: impl Fn(usize, u32) -> bool) {
    if !d.source.is_split() {
        return;
    }
    let key = d.hash.unwrap_or(0);
    let off = match d.version {
        Some(v) => diverts(v, key),
        None => (0..versions).any(|v| v != baseline && diverts(v, key)),
    };
    if off {
        d.version = Some(baseline);
        d.source = Source::Guard;
    }
}

/// An override present on the request: from an untrusted caller it is rejected (and
/// stripped by the glue); from a trusted one it decides if it names a configured version.
fn apply_override(
    found: Option<Option<usize>>,
    trusted: bool,
    (source, untrusted, unknown): (Source, Reject, Reject),
    rejected: &mut Rejections,
) -> Option<Decision> {
    match found? {
        _ if !trusted => rejected.add(untrusted),
        Some(version) => {
            return Some(Decision {
                version: Some(version),
                bucket: None,
                source,
                rejected: *rejected,
                issued: None,
                hash: None,
            })
        }
        None => rejected.add(unknown),
    }
    None
}

/// The bucketing hash of the first configured sticky key present (and non-empty).
fn sticky_hash(cfg: &Config, req: &mut impl RequestView, peer: Option<&Peer>) -> Option<u32> {
    let prefix = cfg.rollout_id.as_bytes();
    cfg.sticky_keys.iter().find_map(|k| {
        let value = key_value(k, req, peer)?;
        (!value.is_empty()).then(|| split::hash(prefix, value))
    })
}

/// The request's value of one sticky-key source.
fn key_value<'r>(k: &StickyKey, req: &'r mut impl RequestView, peer: Option<&'r Peer>) -> Option<&'r [u8]> {
    match k {
        StickyKey::Header(name) => req.header(name),
        StickyKey::Cookie(name) => req.cookie(name.as_bytes()),
        StickyKey::SourceAddress => req.source_address().map(keys::source_ip),
        StickyKey::PeerIdentity => peer.and_then(|p| p.identity.as_deref()).map(str::as_bytes),
        StickyKey::Query(name) => req.path().and_then(|p| keys::query_param(p, name.as_bytes())),
    }
}

/// The flag's variant, as a version. A visitor with no targetingKey gets an issued cookie
/// when `targetingKey`'s last source issues one, and is evaluated with it.
fn flagd_decision(
    cfg: &Config,
    f: &Flagd,
    req: &mut impl RequestView,
    peer: Option<&Peer>,
    rejected: Rejections,
) -> Decision {
    let mut ctx = FlagdContext {
        flagd: f,
        issue: cfg.issue_cookie.is_some(),
        req,
        peer,
        issued: None,
    };
    let out = f.flag.get().evaluate(&mut ctx);
    // The guard's probe key: the user's targetingKey, hashed as the split would (read again
    // without issuing one: a rule that held needed none).
    ctx.issue = false;
    let hash = f
        .targeting_key
        .and_then(|k| flagd::Context::value(&mut ctx, k).map(|v| split::hash(cfg.rollout_id.as_bytes(), v)));
    Decision {
        version: Some(out.version),
        bucket: None,
        source: if out.targeted {
            Source::Flagd
        } else {
            Source::FlagdDefault
        },
        rejected,
        issued: ctx.issued,
        hash,
    }
}

/// The flag's context over the request: each attribute's first non-empty source (an empty
/// value counts as absent, as for sticky keys).
struct FlagdContext<'a, R> {
    flagd: &'a Flagd,
    issue: bool,
    req: &'a mut R,
    peer: Option<&'a Peer>,
    issued: Option<IssuedId>,
}

impl<R: RequestView> flagd::Context for FlagdContext<'_, R> {
    fn value(&mut self, attr: flagd::Attr) -> Option<&[u8]> {
        let sources = self.flagd.context.get(usize::from(attr))?;
        // Found first, then read again: returning the borrow from the search itself would
        // keep `req` borrowed for the rest of the function.
        let found = sources
            .iter()
            .find(|k| key_value(k, self.req, self.peer).is_some_and(|v| !v.is_empty()));
        if let Some(k) = found {
            return key_value(k, self.req, self.peer);
        }
        if self.issue && self.flagd.targeting_key == Some(attr) {
            if self.issued.is_none() {
                self.issued = self.req.random_id().map(IssuedId::new);
            }
            return self.issued.as_ref().map(IssuedId::as_bytes);
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A request as a map of headers, counting every read.
    #[derive(Default)]
    pub struct FakeRequest {
        pub headers: HashMap<String, Vec<u8>>,
        pub source: Option<Vec<u8>>,
        pub random: u32,
        pub id: Option<[u8; ID_BYTES]>,
        pub reads: Vec<String>,
    }

    impl FakeRequest {
        pub fn with(headers: &[(&str, &[u8])]) -> Self {
            FakeRequest {
                headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
                ..Default::default()
            }
        }
    }

    impl RequestView for FakeRequest {
        fn header(&mut self, name: &str) -> Option<&[u8]> {
            self.reads.push(name.to_string());
            self.headers.get(name).map(Vec::as_slice)
        }
        fn source_address(&mut self) -> Option<&[u8]> {
            self.reads.push("source.address".into());
            self.source.as_deref()
        }
        fn random_u32(&mut self) -> u32 {
            self.random
        }
        fn random_id(&mut self) -> Option<[u8; ID_BYTES]> {
            self.reads.push("random_id".into());
            self.id
        }
    }

    pub fn config() -> Config {
        Config::from_json(
            br#"{
            "rolloutId": "checkout-2026-11",
            "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
            "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["*"] }
        }"#,
        )
        .unwrap()
    }

    fn version(cfg: &Config, d: Decision) -> &str {
        &cfg.versions[d.version.unwrap()].name
    }

    #[test]
    fn override_header_wins_and_reads_nothing_else() {
        let cfg = config();
        let mut req = FakeRequest::with(&[("x-rollout-pin", b"canary"), ("x-user-id", b"user-1")]);
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::OverrideHeader));
        assert_eq!(req.reads, vec!["x-rollout-pin"]);
    }

    #[test]
    fn records_are_one_logfmt_line() {
        assert_eq!(
            record("checkout", "canary", Source::Sticky, None),
            "rollout=checkout version=canary source=sticky"
        );
        assert_eq!(
            record("checkout", "stable", Source::Guard, Some("canary")),
            "rollout=checkout version=stable source=guard diverted=canary"
        );
    }

    #[test]
    fn the_guard_diverts_split_placements_only() {
        let cfg = config();
        let off = |v: usize, _k: u32| v == 1;
        // A sticky user of canary goes to stable, counted as the guard's.
        let mut req = FakeRequest::with(&[("x-user-id", b"alice")]);
        let mut d = decide(&cfg, &mut req, None);
        assert_eq!((d.version, d.source), (Some(1), Source::Sticky));
        apply_guard(&mut d, 2, 0, off);
        assert_eq!((d.version, d.source), (Some(0), Source::Guard));
        // A trusted override still reaches canary.
        let mut req = FakeRequest::with(&[("x-rollout-pin", b"canary")]);
        let mut d = decide(&cfg, &mut req, None);
        apply_guard(&mut d, 2, 0, off);
        assert_eq!((d.version, d.source), (Some(1), Source::OverrideHeader));
        // The probe key is the user's split hash.
        let mut req = FakeRequest::with(&[("x-user-id", b"alice")]);
        let mut d = decide(&cfg, &mut req, None);
        let want = split::hash(cfg.rollout_id.as_bytes(), b"alice");
        apply_guard(&mut d, 2, 0, |_, k| {
            assert_eq!(k, want);
            false
        });
        assert_eq!(d.source, Source::Sticky);
        // Route-weights mode: the route picks later, so any version off diverts.
        let mut d = Decision {
            version: None,
            bucket: Some(3),
            source: Source::Sticky,
            rejected: Rejections::default(),
            issued: None,
            hash: Some(7),
        };
        apply_guard(&mut d, 3, 0, |v, _| v == 2);
        assert_eq!((d.version, d.source), (Some(0), Source::Guard));
    }

    #[test]
    fn header_beats_query() {
        let cfg = config();
        let mut req = FakeRequest::with(&[
            ("x-rollout-pin", b"stable"),
            (":path", b"/?rollout-version=canary"),
        ]);
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::OverrideHeader));
    }

    #[test]
    fn query_override() {
        let cfg = config();
        let mut req = FakeRequest::with(&[(":path", b"/a?x=1&rollout-version=canary")]);
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::OverrideQuery));
    }

    #[test]
    fn unknown_overrides_are_flagged_and_ignored() {
        let cfg = config();
        // "user-1" is stable in the flagd vectors.
        let mut req = FakeRequest::with(&[
            ("x-rollout-pin", b"CANARY"),
            (":path", b"/?rollout-version=nope"),
            ("x-user-id", b"user-1"),
        ]);
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::Sticky));
        assert!(
            d.rejected.contains(Reject::UnknownOverrideHeader)
                && d.rejected.contains(Reject::UnknownOverrideQuery)
        );
        assert_eq!(d.rejected.iter().count(), 2);
    }

    #[test]
    fn sticky_keys_in_configured_order() {
        let cfg = config();
        // alice and bob are canary, carol stable (flagd vectors).
        let mut req = FakeRequest::with(&[("x-user-id", b"alice"), ("cookie", b"uid=carol")]);
        assert_eq!(version(&cfg, decide(&cfg, &mut req, None)), "canary");
        let mut req = FakeRequest::with(&[("cookie", b"a=b; uid=carol")]);
        assert_eq!(version(&cfg, decide(&cfg, &mut req, None)), "stable");
        let mut req = FakeRequest::with(&[("x-user-id", b""), ("cookie", b"uid=bob")]);
        assert_eq!(version(&cfg, decide(&cfg, &mut req, None)), "canary");
        let mut req = FakeRequest {
            source: Some(b"10.0.0.7:4242".to_vec()),
            ..Default::default()
        };
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::Sticky));
    }

    #[test]
    fn no_key_is_random() {
        let cfg = config();
        let mut req = FakeRequest {
            random: u32::MAX,
            ..Default::default()
        };
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Random));
        let mut req = FakeRequest {
            random: 0,
            ..Default::default()
        };
        assert_eq!(version(&cfg, decide(&cfg, &mut req, None)), "stable");
    }

    #[test]
    fn non_utf8_keys_are_keys() {
        let cfg = config();
        let mut req = FakeRequest::with(&[("x-user-id", b"\xfc\xff")]);
        let d = decide(&cfg, &mut req, None);
        assert_eq!(d.source, Source::Sticky);
    }

    fn issuing_config() -> Config {
        Config::from_json(
            br#"{
            "rolloutId": "checkout-2026-11",
            "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
            "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "sid", "issue": true } ],
            "override": { "header": "x-rollout-pin", "trustedPeers": ["*"] }
        }"#,
        )
        .unwrap()
    }

    #[test]
    fn issued_ids_are_base64url_of_the_random_bytes() {
        let id = IssuedId::new([0xfb; ID_BYTES]);
        assert_eq!(id.as_str(), "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(IssuedId::new([0; ID_BYTES]).as_str(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(id.as_bytes().len(), ID_LEN);
        use base64::Engine as _;
        for seed in 0..200u32 {
            let mut r = [0u8; ID_BYTES];
            for (j, b) in r.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761) >> (j % 24)) as u8 ^ (j as u8).wrapping_mul(37);
            }
            assert_eq!(
                IssuedId::new(r).as_str(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r)
            );
        }
    }

    #[test]
    fn a_visitor_without_a_key_is_issued_an_id_and_bucketed_by_it() {
        let cfg = issuing_config();
        let mut seen = [0usize; 2];
        for i in 0..64u8 {
            let mut req = FakeRequest {
                id: Some([i; ID_BYTES]),
                random: u32::MAX,
                ..Default::default()
            };
            let d = decide(&cfg, &mut req, None);
            assert_eq!(d.source, Source::StickyIssued);
            let id = d.issued.unwrap();
            assert_eq!(id, IssuedId::new([i; ID_BYTES]));
            // The returning visitor, carrying the id, lands on the same version.
            let cookie = format!("a=1; sid={}", id.as_str());
            let back = decide(
                &cfg,
                &mut FakeRequest::with(&[("cookie", cookie.as_bytes())]),
                None,
            );
            assert_eq!(
                (back.version, back.source, back.issued),
                (d.version, Source::Sticky, None)
            );
            let want = split::pick(
                split::hash(b"checkout-2026-11", id.as_bytes()),
                &cfg.weights,
                cfg.total_weight,
            );
            assert_eq!(d.version, Some(want));
            seen[d.version.unwrap()] += 1;
        }
        // Bucketed by the ids, not the random number (which alone would say canary).
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn no_id_for_keyed_overridden_or_pinned_requests() {
        let cfg = issuing_config();
        let id = Some([7; ID_BYTES]);
        for headers in [
            &[("x-user-id", &b"alice"[..])][..],
            &[("cookie", &b"sid=returning"[..])][..],
            &[("x-rollout-pin", &b"canary"[..])][..],
        ] {
            let mut req = FakeRequest {
                id,
                ..FakeRequest::with(headers)
            };
            let d = decide(&cfg, &mut req, None);
            assert_eq!(d.issued, None, "{headers:?}");
            assert_ne!(d.source, Source::StickyIssued);
            assert!(!req.reads.contains(&"random_id".to_string()));
        }
        // An empty cookie is no key: a fresh id replaces it.
        let mut req = FakeRequest {
            id,
            ..FakeRequest::with(&[("cookie", b"sid=")])
        };
        assert_eq!(decide(&cfg, &mut req, None).source, Source::StickyIssued);
        // Without an issuing key no host randomness is spent.
        let mut req = FakeRequest {
            id,
            ..Default::default()
        };
        let d = decide(&config(), &mut req, None);
        assert_eq!((d.source, d.issued), (Source::Random, None));
        assert!(!req.reads.contains(&"random_id".to_string()));
    }

    #[test]
    fn no_host_randomness_falls_back_to_a_random_bucket() {
        let cfg = issuing_config();
        let mut req = FakeRequest {
            random: u32::MAX,
            ..Default::default()
        };
        let d = decide(&cfg, &mut req, None);
        assert_eq!(
            (version(&cfg, d), d.source, d.issued),
            ("canary", Source::Random, None)
        );
    }

    fn strict_config() -> Config {
        Config::from_json(
            br#"{
            "rolloutId": "checkout-2026-11",
            "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "stickyKeys": [ { "peerIdentity": true }, { "header": "x-user-id" } ],
            "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["spiffe://cluster.local/ns/qa/*"] },
            "certificate": { "labelOid": "1.3.6.1.4.1.55555.1.1" }
        }"#,
        )
        .unwrap()
    }

    fn cert(spiffe: &str, labels: Vec<crate::identity::Label>) -> PeerCert {
        PeerCert {
            spiffe_id: Some(spiffe.to_string()),
            uris: vec![spiffe.to_string()],
            labels,
            ..PeerCert::default()
        }
    }

    fn label(rollout: &str, version: Option<&str>, weight: Option<u8>) -> crate::identity::Label {
        crate::identity::Label {
            rollout_id: rollout.into(),
            version: version.map(Into::into),
            weight,
            trace_id: None,
        }
    }

    #[test]
    fn overrides_only_from_trusted_peers() {
        let cfg = strict_config();
        let headers: &[(&str, &[u8])] = &[
            ("x-rollout-pin", b"canary"),
            (":path", b"/?rollout-version=canary"),
            ("x-user-id", b"carol"),
        ];
        // No certificate: both overrides rejected and marked for removal.
        let d = decide(&cfg, &mut FakeRequest::with(headers), None);
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::Sticky));
        assert!(d.strip_override_header() && d.strip_override_query());
        // An untrusted certificate.
        let peer = Peer::from_cert(&cfg, &cert("spiffe://cluster.local/ns/prod/sa/web", vec![]));
        assert!(!peer.trusted);
        let d = decide(&cfg, &mut FakeRequest::with(headers), Some(&peer));
        assert!(d.strip_override_header() && d.source != Source::OverrideHeader);
        // A trusted one.
        let peer = Peer::from_cert(&cfg, &cert("spiffe://cluster.local/ns/qa/sa/tester", vec![]));
        assert!(peer.trusted);
        let d = decide(&cfg, &mut FakeRequest::with(headers), Some(&peer));
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::OverrideHeader));
        assert!(d.rejected.is_empty());
    }

    #[test]
    fn certificate_pin_beats_the_split_but_not_a_trusted_override() {
        let cfg = strict_config();
        let peer = Peer::from_cert(
            &cfg,
            &cert(
                "spiffe://cluster.local/ns/qa/sa/tester",
                vec![label("checkout-2026-11", Some("canary"), None)],
            ),
        );
        assert_eq!(peer.pin, Some(1));
        let d = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"carol")]),
            Some(&peer),
        );
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Certificate));
        let d = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-rollout-pin", b"stable")]),
            Some(&peer),
        );
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::OverrideHeader));
    }

    #[test]
    fn label_problems_are_reported_and_ignored() {
        let cfg = strict_config();
        let other = Peer::from_cert(
            &cfg,
            &cert("spiffe://x/y", vec![label("search", Some("canary"), None)]),
        );
        assert_eq!(
            (other.pin, other.rejects.clone()),
            (None, vec![LabelReject::OtherRollout])
        );
        let dup = Peer::from_cert(
            &cfg,
            &cert(
                "spiffe://x/y",
                vec![
                    label("checkout-2026-11", Some("canary"), None),
                    label("checkout-2026-11", Some("stable"), None),
                ],
            ),
        );
        assert_eq!(
            (dup.pin, dup.rejects.clone()),
            (None, vec![LabelReject::DuplicateLabel])
        );
        let unknown = Peer::from_cert(
            &cfg,
            &cert(
                "spiffe://x/y",
                vec![label("checkout-2026-11", Some("blue"), None)],
            ),
        );
        assert_eq!(
            (unknown.pin, unknown.rejects.clone()),
            (None, vec![LabelReject::BadVersion])
        );
    }

    #[test]
    fn label_weight_gives_the_caller_its_own_split() {
        let (w, total) = weights_with_share(&[90, 10], 1, 30);
        assert_eq!((w, total), (vec![70 * 90, 30 * 90], 100 * 90));
        let (w, total) = weights_with_share(&[50, 30, 20], 2, 40);
        assert_eq!(w.iter().sum::<u64>(), total);
        assert_eq!(w[2] * 100 / total, 40);
        assert_eq!(weights_with_share(&[0, 10], 1, 30), (vec![0, 1], 1));

        let cfg = strict_config();
        let peer = Peer::from_cert(
            &cfg,
            &cert("spiffe://x/y", vec![label("checkout-2026-11", None, Some(100))]),
        );
        assert_eq!(peer.pin, None);
        // Weight 100 for the canary (the last version): every key goes there.
        for i in 0..200 {
            let key = format!("u{i}");
            let d = decide(
                &cfg,
                &mut FakeRequest::with(&[("x-user-id", key.as_bytes())]),
                Some(&peer),
            );
            assert_eq!(version(&cfg, d), "canary");
        }
    }

    fn route_config() -> Config {
        Config::from_json(
            br#"{
            "rolloutId": "checkout-2026-11",
            "versions": [ { "name": "stable" }, { "name": "canary" } ],
            "routeWeights": { "totalWeight": 100 },
            "stickyKeys": [ { "header": "x-user-id" } ],
            "override": { "header": "x-rollout-pin", "trustedPeers": ["*"] },
            "certificate": {}
        }"#,
        )
        .unwrap()
    }

    #[test]
    fn route_weights_mode_gives_the_bucket_not_a_version() {
        let cfg = route_config();
        for key in ["alice", "bob", "carol", "user-1"] {
            let d = decide(
                &cfg,
                &mut FakeRequest::with(&[("x-user-id", key.as_bytes())]),
                None,
            );
            let h = split::hash(b"checkout-2026-11", key.as_bytes());
            assert_eq!((d.version, d.source), (None, Source::Sticky));
            assert_eq!(d.bucket.map(u64::from), Some(split::bucket(h, 100)));
            // Envoy's walk over stable 90 / canary 10 is flagd's pick.
            let envoy = usize::from(d.bucket.unwrap() >= 90);
            assert_eq!(envoy, split::pick(h, &[90u32, 10], 100));
        }
        // No key: no bucket, Envoy draws.
        let d = decide(&cfg, &mut FakeRequest::with(&[("x-rollout-bucket", b"99")]), None);
        assert_eq!((d.version, d.bucket, d.source), (None, None, Source::Random));
        // An override still names the version.
        let d = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-rollout-pin", b"canary"), ("x-user-id", b"a")]),
            None,
        );
        assert_eq!(
            (d.version, d.bucket, d.source),
            (Some(1), None, Source::OverrideHeader)
        );
    }

    #[test]
    fn route_weights_mode_pins_but_ignores_label_weights() {
        let cfg = route_config();
        let pinned = Peer::from_cert(
            &cfg,
            &cert(
                "spiffe://x/y",
                vec![label("checkout-2026-11", Some("canary"), None)],
            ),
        );
        let d = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"a")]),
            Some(&pinned),
        );
        assert_eq!((d.version, d.source), (Some(1), Source::Certificate));
        let weighted = Peer::from_cert(
            &cfg,
            &cert("spiffe://x/y", vec![label("checkout-2026-11", None, Some(30))]),
        );
        let d = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"a")]),
            Some(&weighted),
        );
        assert_eq!((d.version, d.source), (None, Source::Sticky));
        assert!(d.rejected.contains(Reject::LabelWeightIgnored));
    }

    #[test]
    fn a_label_trace_id_is_carried_by_the_peer() {
        let cfg = strict_config();
        let traced = |version: Option<&str>, weight: Option<u8>| crate::identity::Label {
            trace_id: Some([7; 16]),
            ..label("checkout-2026-11", version, weight)
        };
        // Only a trace id: no pin, no weights, split like anyone else.
        let peer = Peer::from_cert(&cfg, &cert("spiffe://x/y", vec![traced(None, None)]));
        assert_eq!(
            (peer.pin, &peer.weights, peer.trace_id),
            (None, &None, Some([7; 16]))
        );
        assert!(peer.rejects.is_empty());
        let d = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"carol")]),
            Some(&peer),
        );
        let plain = Peer::from_cert(&cfg, &cert("spiffe://x/y", vec![]));
        assert_eq!(plain.trace_id, None);
        let want = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"carol")]),
            Some(&plain),
        );
        assert_eq!(d, want);
        // Beside a pin or a weight.
        let peer = Peer::from_cert(&cfg, &cert("spiffe://x/y", vec![traced(Some("canary"), None)]));
        assert_eq!((peer.pin, peer.trace_id), (Some(1), Some([7; 16])));
        let peer = Peer::from_cert(&cfg, &cert("spiffe://x/y", vec![traced(None, Some(30))]));
        assert!(peer.weights.is_some() && peer.trace_id.is_some());
        // A label that is ignored is ignored whole.
        for labels in [
            vec![traced(Some("blue"), None)],
            vec![
                traced(None, None),
                label("checkout-2026-11", Some("canary"), None),
            ],
            vec![crate::identity::Label {
                rollout_id: "search".into(),
                ..traced(None, None)
            }],
        ] {
            let peer = Peer::from_cert(&cfg, &cert("spiffe://x/y", labels));
            assert_eq!((peer.pin, peer.trace_id), (None, None));
            assert_eq!(peer.rejects.len(), 1);
        }
    }

    #[test]
    fn peer_identity_is_a_sticky_key() {
        let cfg = strict_config();
        let peer = Peer::from_cert(&cfg, &cert("spiffe://cluster.local/ns/prod/sa/web", vec![]));
        let a = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"alice")]),
            Some(&peer),
        );
        let b = decide(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"carol")]),
            Some(&peer),
        );
        assert_eq!(a.version, b.version, "the identity comes before the header");
        let want = split::pick(
            split::hash(b"checkout-2026-11", b"spiffe://cluster.local/ns/prod/sa/web"),
            &cfg.weights,
            cfg.total_weight,
        );
        assert_eq!(a.version, Some(want));
    }

    #[test]
    fn lane_after_trusted_override_and_pin_before_sticky() {
        let cfg = strict_config();
        // carol is stable by the split; a lane to canary moves her there.
        let d = decide_in_lane(
            &cfg,
            &mut FakeRequest::with(&[("x-user-id", b"carol")]),
            None,
            Incoming::Follow(1),
        );
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Lane));
        assert!(d.rejected.is_empty());
        // A lane reads no sticky key and issues no cookie.
        let mut req = FakeRequest {
            id: Some([1; ID_BYTES]),
            ..FakeRequest::with(&[("x-user-id", b"carol")])
        };
        let d = decide_in_lane(&issuing_config(), &mut req, None, Incoming::Follow(0));
        assert_eq!((d.source, d.issued), (Source::Lane, None));
        assert!(!req.reads.iter().any(|r| r == "x-user-id" || r == "random_id"));
        // The certificate pin beats the lane...
        let pinned = Peer::from_cert(
            &cfg,
            &cert(
                "spiffe://cluster.local/ns/prod/sa/web",
                vec![label("checkout-2026-11", Some("stable"), None)],
            ),
        );
        let d = decide_in_lane(
            &cfg,
            &mut FakeRequest::default(),
            Some(&pinned),
            Incoming::Follow(1),
        );
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::Certificate));
        // ... and a trusted override beats both.
        let tester = Peer::from_cert(&cfg, &cert("spiffe://cluster.local/ns/qa/sa/tester", vec![]));
        let d = decide_in_lane(
            &cfg,
            &mut FakeRequest::with(&[("x-rollout-pin", b"stable")]),
            Some(&tester),
            Incoming::Follow(1),
        );
        assert_eq!((version(&cfg, d), d.source), ("stable", Source::OverrideHeader));
        // An untrusted override does not: the lane decides.
        let d = decide_in_lane(
            &cfg,
            &mut FakeRequest::with(&[("x-rollout-pin", b"stable")]),
            None,
            Incoming::Follow(1),
        );
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Lane));
        assert!(d.strip_override_header());
    }

    #[test]
    fn lanes_not_followed_are_counted_and_decided_as_usual() {
        let cfg = strict_config();
        let plain = decide(&cfg, &mut FakeRequest::with(&[("x-user-id", b"alice")]), None);
        for (lane, reject) in [
            (Incoming::Untrusted, Some(Reject::UntrustedLane)),
            (Incoming::Unknown, Some(Reject::UnknownLane)),
            (Incoming::Ignored, None),
            (Incoming::Absent, None),
        ] {
            let d = decide_in_lane(
                &cfg,
                &mut FakeRequest::with(&[("x-user-id", b"alice")]),
                None,
                lane,
            );
            assert_eq!((d.version, d.source), (plain.version, Source::Sticky), "{lane:?}");
            assert_eq!(
                d.rejected.iter().collect::<Vec<_>>(),
                reject.into_iter().collect::<Vec<_>>()
            );
        }
        // Counted even when an override decides.
        let d = decide_in_lane(
            &config(),
            &mut FakeRequest::with(&[("x-rollout-pin", b"canary")]),
            None,
            Incoming::Untrusted,
        );
        assert_eq!(d.source, Source::OverrideHeader);
        assert!(d.rejected.contains(Reject::UntrustedLane));
    }

    #[test]
    fn lane_trust_is_read_from_the_certificate_once() {
        let cfg = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"stable","weight":1}],
                "lane":{"trustedPeers":["spiffe://cluster.local/ns/shop/*"]}}"#,
        )
        .unwrap();
        assert!(!cfg.needs_peer, "read only when a lane arrives inbound");
        let shop = Peer::from_cert(&cfg, &cert("spiffe://cluster.local/ns/shop/sa/cart", vec![]));
        let other = Peer::from_cert(&cfg, &cert("spiffe://cluster.local/ns/web/sa/x", vec![]));
        assert!(shop.lane_trusted && !shop.trusted);
        assert!(!other.lane_trusted);
        let no_lane = Peer::from_cert(
            &strict_config(),
            &cert("spiffe://cluster.local/ns/shop/sa/cart", vec![]),
        );
        assert!(!no_lane.lane_trusted);
    }

    /// A flagd context holding only the targetingKey (attribute 0).
    struct OnlyKey<'k>(&'k [u8]);

    impl flagd::Context for OnlyKey<'_> {
        fn value(&mut self, attr: flagd::Attr) -> Option<&[u8]> {
            (attr == 0).then_some(self.0)
        }
    }

    fn flagd_config(extra: &str) -> Config {
        let json = format!(
            r#"{{"flagd": {{
            "flagKey": "checkout-v2",
            "flagSet": {{ "flags": {{ "checkout-v2": {{ "state": "ENABLED", "variants": {{ "on": true, "off": false }},
                "defaultVariant": "off",
                "targeting": {{ "if": [ {{ "==": [{{"var": "tier"}}, "gold"]}}, "on",
                                        {{ "fractional": [["on", 50], ["off", 50]] }} ] }} }} }} }},
            "variants": {{ "on": "canary", "off": "stable" }},
            "context": {{ "targetingKey": [{{ "header": "x-user-id" }}, {{ "query": "uid" }}, {{ "cookie": "sid", "issue": true }}],
                          "tier": {{ "cookie": "tier" }} }} }},
            "override": {{ "header": "x-rollout-pin", "trustedPeers": ["*"] }}{extra} }}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_flagd_flag_replaces_the_sticky_split() {
        let cfg = flagd_config("");
        let f = cfg.flagd.as_ref().unwrap();
        // The variant flagd's evaluator answers, read from the right sources.
        let mut req = FakeRequest::with(&[("cookie", b"tier=gold")]);
        let d = decide(&cfg, &mut req, None);
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Flagd));
        for (headers, key) in [
            (&[("x-user-id", &b"alice"[..])][..], &b"alice"[..]),
            (&[("x-user-id", &b""[..]), (":path", b"/?uid=bob")][..], b"bob"),
        ] {
            let d = decide(&cfg, &mut FakeRequest::with(headers), None);
            let want = f.flag.get().evaluate(&mut OnlyKey(key));
            assert_eq!((d.version, d.source), (Some(want.version), Source::Flagd));
        }
        // Overrides keep precedence.
        let mut req = FakeRequest::with(&[("x-rollout-pin", b"stable"), ("cookie", b"tier=gold")]);
        assert_eq!(decide(&cfg, &mut req, None).source, Source::OverrideHeader);
        // A pin too; a label's weight cannot apply.
        let peer = Peer {
            pin: Some(0),
            ..Peer::default()
        };
        assert_eq!(
            decide(&cfg, &mut FakeRequest::default(), Some(&peer)).source,
            Source::Certificate
        );
        let peer = Peer {
            weights: Some((vec![1, 1], 2)),
            ..Peer::default()
        };
        let d = decide(&cfg, &mut FakeRequest::with(&[("x-user-id", b"a")]), Some(&peer));
        assert!(d.rejected.contains(Reject::LabelWeightIgnored));
    }

    #[test]
    fn a_flagd_visitor_without_a_targeting_key_is_issued_one() {
        let cfg = flagd_config("");
        let mut req = FakeRequest {
            id: Some([3; ID_BYTES]),
            ..Default::default()
        };
        let d = decide(&cfg, &mut req, None);
        let id = d.issued.unwrap();
        // The returning visitor, carrying the cookie, gets the same answer.
        let cookie = format!("sid={}", id.as_str());
        let back = decide(
            &cfg,
            &mut FakeRequest::with(&[("cookie", cookie.as_bytes())]),
            None,
        );
        assert_eq!(
            (back.version, back.source, back.issued),
            (d.version, d.source, None)
        );
        // No randomness: no id, the default variant (flagd 0.15+ without a targetingKey).
        let d = decide(&cfg, &mut FakeRequest::default(), None);
        assert_eq!(
            (version(&cfg, d), d.source, d.issued),
            ("stable", Source::FlagdDefault, None)
        );
        // A condition that holds needs no key: no cookie issued.
        let mut req = FakeRequest {
            id: Some([3; ID_BYTES]),
            ..FakeRequest::with(&[("cookie", b"tier=gold")])
        };
        assert_eq!(decide(&cfg, &mut req, None).issued, None);
    }

    #[test]
    fn query_sticky_key() {
        let cfg = Config::from_json(
            br#"{"rolloutId": "checkout-2026-11", "versions": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
                 "stickyKeys": [{"query": "uid"}]}"#,
        )
        .unwrap();
        // alice is canary in the flagd vectors.
        let d = decide(&cfg, &mut FakeRequest::with(&[(":path", b"/x?uid=alice")]), None);
        assert_eq!((version(&cfg, d), d.source), ("canary", Source::Sticky));
    }
}
