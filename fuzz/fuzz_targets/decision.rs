//! The whole pure routing decision (`decision::decide`, with
//! `decision::Peer::from_cert`) for arbitrary requests and peer certificates.
//!
//! Input: byte 0 = which request inputs are present (bit 0 `x-rollout-pin`,
//! 1 `:path`, 2 `x-user-id`, 3 `cookie`, 4 source address), bits 5-6 pick one
//! of three fixed configs, bit 7 = a verified peer certificate is present;
//! bytes 1..5 = the host's random number (little endian); the rest is
//! `\n`-separated lines: the five request values in that order (missing lines
//! are empty), then the peer's SPIFFE ID, its DNS SAN (empty = none), and up to
//! four labels, each `<weight byte><flags byte><version>` (flags: bit 0 weight
//! set, bit 1 version set, bit 2 the label names another rollout, bit 3 a
//! trace id set, all bytes the flags byte).
//!
//! Invariants: the version index is in range and, unless an override or a
//! certificate pin chose it, has a non-zero weight in the split used; the
//! answer, the rejections and the headers read follow the documented
//! precedence (trusted override header > trusted override query > certificate
//! pin > first non-empty sticky key > random, flagd split with the caller's
//! label weights); untrusted overrides are always flagged for removal; a
//! non-random decision does not depend on the random number, and every
//! decision is the same when repeated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::config::{Config, StickyKey};
use rollout_filter::decision::{
    decide, weights_with_share, Decision, Peer, Reject, Rejections, RequestView, Source,
};
use rollout_filter::identity::{Label, PeerCert};
use rollout_filter::{keys, split};
use std::sync::OnceLock;

/// The demo config (envoy-config/envoy.yaml): anyone may override.
const DEMO: &str = r#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":90},{"name":"canary","weight":10}],"routeHeader":"x-rollout-version","stickyKeys":[{"header":"x-user-id"},{"cookie":"uid"},{"sourceAddress":true}],"override":{"header":"x-rollout-pin","query":"rollout-version","trustedPeers":["*"]},"responseHeaders":{"version":"x-rollout-version","traceId":"x-trace-id"}}"#;
/// A weight-0 version, cookie first, the peer identity as a key, trusted SPIFFE/DNS peers.
const DARK: &str = r#"{"rolloutId":"r","versions":[{"name":"stable","weight":70},{"name":"dark","weight":0},{"name":"canary","weight":30}],"stickyKeys":[{"cookie":"uid"},{"peerIdentity":true},{"header":"x-user-id"},{"sourceAddress":true}],"override":{"header":"x-rollout-pin","query":"v","trustedPeers":["spiffe://cluster.local/ns/qa/*","*.qa.example.com"]},"certificate":{"labelOid":"1.3.6.1.4.1.55555.1.1"}}"#;
/// Overrides configured but nobody trusted; a single version with all the weight last.
const STRICT: &str = r#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":0},{"name":"canary","weight":5}],"stickyKeys":[{"peerIdentity":true},{"header":"x-user-id"}],"override":{"header":"x-rollout-pin","query":"rollout-version"},"certificate":{}}"#;

/// Route-weights mode (envoy-config/route-weights.yaml, with a certificate section).
const ROUTE: &str = r#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable"},{"name":"canary"}],"routeWeights":{"totalWeight":100},"stickyKeys":[{"header":"x-user-id"},{"cookie":"uid"}],"override":{"header":"x-rollout-pin","query":"rollout-version","trustedPeers":["*"]},"certificate":{}}"#;

fn configs() -> &'static [Config; 4] {
    static CONFIGS: OnceLock<[Config; 4]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        [DEMO, DARK, STRICT, ROUTE].map(|j| Config::from_json(j.as_bytes()).unwrap_or_else(|e| panic!("{e}: {j}")))
    })
}

const NAMES: [&str; 4] = ["x-rollout-pin", ":path", "x-user-id", "cookie"];

#[derive(Clone)]
struct Request<'a> {
    headers: [Option<&'a [u8]>; 4],
    source: Option<&'a [u8]>,
    random: u32,
    reads: Vec<String>,
}

impl RequestView for Request<'_> {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        self.reads.push(name.to_string());
        let i = NAMES.iter().position(|n| *n == name)?;
        self.headers[i]
    }
    fn source_address(&mut self) -> Option<&[u8]> {
        self.reads.push("source.address".into());
        self.source
    }
    fn random_u32(&mut self) -> u32 {
        self.random
    }
}

fuzz_target!(|data: &[u8]| {
    let mask = data.first().copied().unwrap_or(0);
    let random = data
        .get(1..5)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut lines = data.get(5..).unwrap_or_default().split(|b| *b == b'\n');
    let mut values: [Option<&[u8]>; 5] = [None; 5];
    for (i, v) in values.iter_mut().enumerate() {
        let line = lines.next().unwrap_or_default();
        if mask & (1 << i) != 0 {
            *v = Some(line);
        }
    }
    let cfg = &configs()[usize::from(mask >> 5 & 3)];
    check_share(
        &cfg.weights,
        random as usize % cfg.weights.len(),
        (random >> 8) as u8,
    );
    let cert = (mask & 0x80 != 0).then(|| peer_cert(cfg, &mut lines));
    let peer = cert.as_ref().map(|c| Peer::from_cert(cfg, c));
    if let (Some(c), Some(p)) = (&cert, &peer) {
        check_peer(cfg, c, p);
    }
    let req = Request {
        headers: [values[0], values[1], values[2], values[3]],
        source: values[4],
        random,
        reads: Vec::new(),
    };

    let mut r1 = req.clone();
    let d = decide(cfg, &mut r1, peer.as_ref());
    // Filter-weights mode always names a version (in range); route-weights mode names one
    // only for an override or a pin, and gives a bucket below the route's total otherwise.
    let version = match (d.version, &cfg.route_weights) {
        (Some(v), _) => v,
        (None, Some(rw)) => {
            assert!(matches!(d.source, Source::Sticky | Source::Random), "{d:?}");
            assert!(d.bucket.is_none_or(|b| b < rw.total_weight), "{d:?}");
            assert_eq!(d.bucket.is_some(), d.source == Source::Sticky, "{d:?}");
            0
        }
        (None, None) => panic!("filter-weights mode decided no version: {d:?}"),
    };
    assert!(
        version < cfg.versions.len(),
        "version index {version} out of range"
    );
    if cfg.route_weights.is_none() && matches!(d.source, Source::Sticky | Source::Random) {
        let w = match peer.as_ref().and_then(|p| p.weights.as_ref()) {
            Some((w, _)) => w[version],
            None => u64::from(cfg.weights[version]),
        };
        assert!(w > 0, "weight-0 version chosen by the split");
    }
    assert_eq!(
        d,
        expected(cfg, &req, peer.as_ref()),
        "decision differs from the documented precedence"
    );
    let trusted = cfg.r#override.trust_everyone || peer.as_ref().is_some_and(|p| p.trusted);
    assert_eq!(
        d.strip_override_header(),
        !trusted && req.headers[0].is_some() && cfg.r#override.header.is_some()
    );

    // Repeatable, and only a random decision depends on the random number.
    let mut r2 = req.clone();
    assert_eq!(decide(cfg, &mut r2, peer.as_ref()), d);
    assert_eq!(r2.reads, r1.reads);
    if d.source != Source::Random {
        let mut r3 = Request {
            random: !random,
            ..req.clone()
        };
        assert_eq!(
            decide(cfg, &mut r3, peer.as_ref()),
            d,
            "non-random decision depends on the random number"
        );
    }
    if d.source == Source::OverrideHeader {
        assert_eq!(
            r1.reads,
            ["x-rollout-pin"],
            "override header decided, but more was read"
        );
    }
});

fn peer_cert<'a>(cfg: &Config, lines: &mut impl Iterator<Item = &'a [u8]>) -> PeerCert {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let spiffe = lines.next().unwrap_or_default();
    let dns = lines.next().unwrap_or_default();
    let mut cert = PeerCert {
        spiffe_id: (!spiffe.is_empty()).then(|| text(spiffe)),
        dns: if dns.is_empty() { vec![] } else { vec![text(dns)] },
        ..PeerCert::default()
    };
    cert.uris.extend(cert.spiffe_id.clone());
    for line in lines.take(4) {
        let [w, f, version @ ..] = line else { continue };
        cert.labels.push(Label {
            rollout_id: if f & 4 != 0 {
                "other-rollout".into()
            } else {
                cfg.rollout_id.clone()
            },
            version: (f & 2 != 0).then(|| text(version)),
            weight: (f & 1 != 0).then_some(*w),
            trace_id: (f & 8 != 0).then_some([*f; 16]),
        });
    }
    cert
}

fn check_peer(cfg: &Config, cert: &PeerCert, p: &Peer) {
    assert!(p.pin.is_none_or(|i| i < cfg.versions.len()), "pin out of range");
    assert!(p.pin.is_none() || p.weights.is_none(), "both a pin and weights");
    if let Some((w, total)) = &p.weights {
        assert_eq!(w.len(), cfg.versions.len());
        assert_eq!(w.iter().sum::<u64>(), *total, "label weights do not add up");
        assert!(*total > 0);
    }
    assert_eq!(
        p.identity,
        cert.spiffe_id.clone().or_else(|| cert.dns.first().cloned())
    );
    assert_eq!(p.trusted, cert.is_trusted(&cfg.r#override.trusted_peers));
    // The trace id is the one label's for this rollout, when that label is used.
    if let Some(t) = p.trace_id {
        let label = cert.label_for(&cfg.rollout_id).ok().flatten();
        assert_eq!(label.and_then(|l| l.trace_id), Some(t));
    }
    if let Ok(Some(l)) = cert.label_for(&cfg.rollout_id) {
        let used = p.pin.is_some() || p.weights.is_some();
        if l.version.is_some() || l.weight.is_some() {
            assert_eq!(p.trace_id.is_some(), used && l.trace_id.is_some());
        } else {
            assert!(!used, "a label without version or weight changed the split");
            assert_eq!(p.trace_id, l.trace_id);
        }
    }
}

/// The decision as the module documentation describes it.
fn expected(cfg: &Config, req: &Request, peer: Option<&Peer>) -> Decision {
    let [pin, path, user, cookie] = req.headers;
    let trusted = cfg.r#override.trust_everyone || peer.is_some_and(|p| p.trusted);
    let mut rejected = Rejections::default();
    if let (Some(_), Some(pin)) = (&cfg.r#override.header, pin) {
        if !trusted {
            rejected.add(Reject::UntrustedOverrideHeader);
        } else {
            match cfg.version_index(pin.trim_ascii()) {
                Some(version) => {
                    return Decision {
                        version: Some(version),
                        bucket: None,
                        source: Source::OverrideHeader,
                        rejected,
                        issued: None,
                        hash: None,
                    }
                }
                None => rejected.add(Reject::UnknownOverrideHeader),
            }
        }
    }
    if let Some(q) = &cfg.r#override.query {
        if let Some(v) = path.and_then(|p| keys::query_param(p, q.as_bytes())) {
            if !trusted {
                rejected.add(Reject::UntrustedOverrideQuery);
            } else {
                match cfg.version_index(v) {
                    Some(version) => {
                        return Decision {
                            version: Some(version),
                            bucket: None,
                            source: Source::OverrideQuery,
                            rejected,
                            issued: None,
                            hash: None,
                        }
                    }
                    None => rejected.add(Reject::UnknownOverrideQuery),
                }
            }
        }
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
    let sticky = cfg.sticky_keys.iter().find_map(|k| {
        let v = match k {
            StickyKey::Header(h) => {
                assert_eq!(h, "x-user-id");
                user
            }
            StickyKey::Cookie(c) => cookie.and_then(|h| keys::cookie(h, c.as_bytes())),
            StickyKey::SourceAddress => req.source.map(keys::source_ip),
            StickyKey::PeerIdentity => peer.and_then(|p| p.identity.as_deref()).map(str::as_bytes),
            StickyKey::Query(q) => path.and_then(|p| keys::query_param(p, q.as_bytes())),
        }?;
        (!v.is_empty()).then_some(v)
    });
    if let Some(rw) = &cfg.route_weights {
        if peer.is_some_and(|p| p.weights.is_some()) {
            rejected.add(Reject::LabelWeightIgnored);
        }
        let total = u64::from(rw.total_weight);
        let hash = sticky.map(|key| split::hash(cfg.rollout_id.as_bytes(), key));
        let bucket = hash.map(|h| split::bucket(h, total) as u32);
        return Decision {
            version: None,
            bucket,
            source: if bucket.is_some() { Source::Sticky } else { Source::Random },
            rejected,
            issued: None,
            hash,
        };
    }
    let (hash, source) = match sticky {
        Some(key) => (split::hash(cfg.rollout_id.as_bytes(), key), Source::Sticky),
        None => (req.random, Source::Random),
    };
    let version = match peer.and_then(|p| p.weights.as_ref()) {
        Some((w, total)) => split::pick(hash, w, *total),
        None => split::pick(hash, &cfg.weights, cfg.total_weight),
    };
    // No fixed config issues cookies.
    Decision {
        version: Some(version),
        bucket: None,
        source,
        rejected,
        issued: None,
        hash: Some(hash),
    }
}

/// A label weight gives its version exactly that share of the buckets (when
/// anyone else has weight), and the others keep their proportions.
fn check_share(weights: &[u32], target: usize, percent: u8) {
    let (w, total) = weights_with_share(weights, target, percent);
    assert_eq!(w.len(), weights.len());
    assert_eq!(w.iter().sum::<u64>(), total, "shares do not add up");
    assert!(total > 0);
    let others: u64 = weights
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != target)
        .map(|(_, w)| u64::from(*w))
        .sum();
    if others > 0 {
        assert_eq!(
            w[target] * 100,
            u64::from(percent.min(100)) * total,
            "target share is not {percent}%"
        );
        for (i, (&got, &orig)) in w.iter().zip(weights).enumerate() {
            if i != target {
                assert_eq!(
                    got * others,
                    u64::from(orig) * (total - w[target]),
                    "other versions out of proportion"
                );
            }
        }
    }
}
