//! `Config::from_json` on arbitrary bytes.
//!
//! Invariants, beyond "no panic":
//! - an accepted config is internally consistent (1..=16 versions, weights sum
//!   to `total_weight` in 1..=i32::MAX, one baggage member per version that
//!   reads back as that version,
//!   lowercase header names, the route header never doubles as another one);
//! - it re-validates identically: the same JSON re-serialized by serde_json
//!   (formatting and key order do not matter), and the config's own canonical
//!   form (normalized names, defaults spelled out) both parse to an equal config;
//! - a rejected config has a one-line, non-empty message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::config::{Config, Side, StickyKey, MAX_TOTAL_WEIGHT, MAX_VERSIONS};
use rollout_filter::decision::weights_with_share;
use rollout_filter::split;
use rollout_filter::baggage;
use serde_json::{json, Map, Value};

/// config.rs escapes the field names it echoes, so errors are always one line.
const ALLOW_ECHOED_CONTROL_CHARS: bool = false;

fuzz_target!(|data: &[u8]| {
    let cfg = match Config::from_json(data) {
        Ok(cfg) => cfg,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty(), "empty error for {data:?}");
            // Echoed field names are escaped (fuzz/regressions/config/newline-in-*):
            // the message Envoy logs is always one line.
            let known_issue = ALLOW_ECHOED_CONTROL_CHARS && data.contains(&b'\\');
            assert!(
                known_issue || !msg.contains(['\n', '\r']),
                "multi-line error: {msg:?}"
            );
            return;
        }
    };
    check_consistent(&cfg);
    check_split(&cfg, data);

    // Same JSON, re-serialized: must parse to the same config.
    // An accepted config is exactly one JSON value (trailing bytes are refused:
    // fuzz/regressions/config/trailing-garbage).
    let value: Value = serde_json::Deserializer::from_slice(data)
        .into_iter()
        .next()
        .expect("accepted config is JSON")
        .expect("accepted config is JSON");
    let again = serde_json::to_vec(&value).expect("serializable");
    let cfg2 = Config::from_json(&again).expect("re-serialized config is rejected");
    assert_eq!(cfg, cfg2, "re-serialized JSON parses differently");

    // The canonical form of what was accepted, merged over the input so that
    // what this target cannot spell (trusted peer patterns, the certificate
    // section, newer options) is carried over verbatim.
    let mut merged = value;
    merge(&mut merged, Value::Object(canonical(&cfg)));
    let canon = serde_json::to_vec(&merged).expect("serializable");
    let cfg3 = Config::from_json(&canon).unwrap_or_else(|e| {
        panic!(
            "canonical form rejected: {e}\n{}",
            String::from_utf8_lossy(&canon)
        )
    });
    assert_eq!(cfg, cfg3, "canonical form parses differently");
});

fn check_consistent(c: &Config) {
    let n = c.versions.len();
    assert!((1..=MAX_VERSIONS).contains(&n));
    assert_eq!(c.weights, c.versions.iter().map(|v| v.weight).collect::<Vec<_>>());
    let sum: u64 = c.weights.iter().map(|w| u64::from(*w)).sum();
    match &c.route_weights {
        // Route-weights mode: no weights of its own; the route's sum instead.
        Some(rw) => {
            assert_eq!(sum, 0);
            assert_eq!(rw.total_weight, c.total_weight);
            assert!((1..=MAX_TOTAL_WEIGHT).contains(&u64::from(c.total_weight)));
            assert!(c.versions.iter().all(|v| v.name != "unknown"));
            let h = &rw.bucket_header;
            assert!(!h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()), "{h:?}");
            assert!(![&c.route_header, &c.rollout_id_header].contains(&h));
        }
        None => {
            assert_eq!(sum, u64::from(c.total_weight));
            assert!((1..=MAX_TOTAL_WEIGHT).contains(&sum));
        }
    }
    for (i, v) in c.versions.iter().enumerate() {
        assert_eq!(
            c.version_index(v.name.as_bytes()),
            Some(i),
            "duplicate version {:?}",
            v.name
        );
    }
    let unknown = usize::from(c.route_weights.is_some());
    assert_eq!(c.trace.baggage_members.len(), n + unknown);
    assert!(baggage::is_valid_key(&c.trace.baggage_key));
    assert!(c.trace.baggage_key.ends_with(&c.rollout_id));
    for (m, v) in c.trace.baggage_members.iter().zip(&c.versions) {
        let values: [&[u8]; 1] = [m.as_bytes()];
        let got = baggage::get(&values, &c.trace.baggage_key).expect("member reads back");
        assert_eq!(got.value().as_deref(), Some(v.name.as_str()));
        assert_eq!(got.text(), m.as_bytes());
    }
    let lower = |h: &str| {
        assert!(
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "{h:?}"
        );
    };
    lower(&c.route_header);
    lower(&c.rollout_id_header);
    for h in c
        .r#override
        .header
        .iter()
        .chain(&c.response_headers.version)
        .chain(&c.response_headers.trace_id)
    {
        lower(h);
    }
    for reserved in ["traceparent", "tracestate", "baggage", &c.route_header] {
        assert_ne!(c.rollout_id_header, reserved);
        assert_ne!(c.r#override.header.as_deref(), Some(reserved));
    }
    let ov = &c.r#override;
    assert_eq!(
        c.needs_peer,
        c.certificate.is_some()
            || !ov.trusted_peers.is_empty()
            || c.sticky_keys.contains(&StickyKey::PeerIdentity)
    );
    if let Some(cert) = &c.certificate {
        assert!((1..=65_536).contains(&cert.cache_size));
    }
    if let Some(l) = &c.lane {
        assert!(baggage::is_valid_key(&l.key));
        assert_ne!(l.key, c.trace.baggage_key, "one writer, two distinct keys");
        assert_eq!(l.members.len(), n);
        for (m, v) in l.members.iter().zip(&c.versions) {
            let values: [&[u8]; 1] = [m.as_bytes()];
            let got = baggage::get(&values, &l.key).expect("lane member reads back");
            assert_eq!(got.value().as_deref(), Some(v.name.as_str()));
        }
    }
    if let Some(ic) = &c.issue_cookie {
        // The issuing cookie is the last key, so nothing after it goes unread.
        assert_eq!(c.sticky_keys.last(), Some(&StickyKey::Cookie(ic.name.clone())));
        assert!((1..=rollout_filter::config::MAX_COOKIE_MAX_AGE).contains(&ic.max_age));
        assert_eq!(
            ic.set_cookie("id", false),
            format!(
                "{}=id; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
                ic.name, ic.max_age
            )
        );
    }
    for (i, k) in c.sticky_keys.iter().enumerate() {
        assert!(!c.sticky_keys[..i].contains(k), "duplicate sticky key {k:?}");
        if let StickyKey::Header(h) = k {
            lower(h);
        }
    }
}

/// The split over any accepted weights: `pick` lands on a version with
/// weight, and a certificate label's share (`weights_with_share`) is exact.
fn check_split(c: &Config, data: &[u8]) {
    if let Some(rw) = &c.route_weights {
        for hash in [0, u32::MAX, split::hash(c.rollout_id.as_bytes(), data)] {
            assert!(split::bucket(hash, u64::from(rw.total_weight)) < u64::from(rw.total_weight));
        }
        return;
    }
    let seed = data.iter().fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(*b));
    for hash in [0, u32::MAX, seed, split::hash(c.rollout_id.as_bytes(), data)] {
        let i = split::pick(hash, &c.weights, c.total_weight);
        assert!(c.weights[i] > 0, "pick chose weight-0 version {i}");
        let target = hash as usize % c.weights.len();
        let percent = (seed % 101) as u8;
        let (w, total) = weights_with_share(&c.weights, target, percent);
        assert_eq!(w.iter().sum::<u64>(), total);
        let others = u64::from(c.total_weight) - u64::from(c.weights[target]);
        if others > 0 {
            assert_eq!(
                w[target] * 100,
                u64::from(percent) * total,
                "label share is not {percent}%"
            );
        }
        let j = split::pick(hash, &w, total);
        assert!(w[j] > 0, "pick chose a version without share");
    }
}

/// Objects merge key by key, anything else is replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The known fields of `c` as JSON, every default spelled out.
fn canonical(c: &Config) -> Map<String, Value> {
    let last = c.sticky_keys.len().saturating_sub(1);
    let sticky: Vec<Value> = c
        .sticky_keys
        .iter()
        .enumerate()
        .map(|(i, k)| match k {
            StickyKey::Header(h) => json!({ "header": h }),
            StickyKey::Cookie(n) => match &c.issue_cookie {
                Some(ic) if i == last => json!({ "cookie": n, "issue": true, "maxAge": ic.max_age }),
                _ => json!({ "cookie": n }),
            },
            StickyKey::SourceAddress => json!({ "sourceAddress": true }),
            StickyKey::PeerIdentity => json!({ "peerIdentity": true }),
            StickyKey::Query(q) => json!({ "query": q }),
        })
        .collect();
    let mut ov = Map::new();
    if let Some(h) = &c.r#override.header {
        ov.insert("header".into(), json!(h));
    }
    if let Some(q) = &c.r#override.query {
        ov.insert("query".into(), json!(q));
    }
    let mut rh = Map::new();
    if let Some(h) = &c.response_headers.version {
        rh.insert("version".into(), json!(h));
    }
    if let Some(h) = &c.response_headers.trace_id {
        rh.insert("traceId".into(), json!(h));
    }
    let versions: Vec<Value> = c
        .versions
        .iter()
        .map(|v| {
            let mut o = Map::new();
            o.insert("name".into(), json!(v.name));
            if c.route_weights.is_none() {
                o.insert("weight".into(), json!(v.weight));
            }
            if let Some(cl) = &v.cluster {
                o.insert("cluster".into(), json!(cl));
            }
            Value::Object(o)
        })
        .collect();
    let v = json!({
        "rolloutId": c.rollout_id,
        "versions": versions,
        "routeHeader": c.route_header,
        "stickyKeys": sticky,
        "override": ov,
        "trace": {
            "enabled": c.trace.enabled,
            "newSpan": c.trace.settings.new_span,
            "sampled": c.trace.settings.sampled,
            "baggage": c.trace.baggage,
            "baggagePrefix": c.trace.baggage_key.strip_suffix(c.rollout_id.as_str()).unwrap_or_default(),
        },
        "rolloutIdHeader": c.rollout_id_header,
        "responseHeaders": rh,
    });
    let mut v = v;
    if let (Some(l), Value::Object(m)) = (&c.lane, &mut v) {
        let side = match l.side {
            Side::Auto => "auto",
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
            Side::Gateway => "gateway",
        };
        // trustedPeers is carried over from the input.
        m.insert(
            "lane".into(),
            json!({ "baggageKey": l.key, "set": l.set, "follow": l.follow, "side": side }),
        );
    }
    match v {
        Value::Object(mut m) => {
            if let Some(rw) = &c.route_weights {
                m.insert(
                    "routeWeights".into(),
                    json!({ "bucketHeader": rw.bucket_header, "totalWeight": rw.total_weight }),
                );
            }
            m
        }
        _ => unreachable!(),
    }
}
