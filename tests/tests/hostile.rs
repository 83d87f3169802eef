//! Hostile input through the real Envoy: the request still flows, routed by the
//! rules, and the matching rejection counter moves. Never a 5xx from the filter.

use rollout_e2e::{agent, get, raw_request, Envoy, Options};
use rollout_filter::split;

const OPEN: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["*"] }
}"#;

const STRICT: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["spiffe://cluster.local/ns/qa/*"] }
}"#;

fn start(cfg: &str) -> Envoy {
    Envoy::start(&Options::new(cfg, &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"))
}

fn expected(key: &[u8]) -> &'static str {
    ["stable", "canary"][split::pick(split::hash(b"checkout-2026-11", key), &[90u32, 10], 100)]
}

fn reject(envoy: &Envoy, reason: &str) -> u64 {
    envoy.metric(&format!(
        "rollout_rejected_total;rollout=checkout-2026-11;reason={reason}"
    ))
}

#[test]
fn header_values_near_envoys_limit() {
    let envoy = start(OPEN);
    let a = agent();
    // Envoy's default limit is 60 KiB of request headers; stay just under it.
    let key = "k".repeat(58 * 1024);
    let r = get(&a, &envoy.url("/"), &[("x-user-id", &key)]).unwrap();
    assert_eq!((r.status, r.version()), (200, expected(key.as_bytes())));
    let pin = format!("canary{}", " ".repeat(10));
    let r = get(
        &a,
        &envoy.url("/"),
        &[("x-user-id", "carol"), ("x-rollout-pin", &pin)],
    )
    .unwrap();
    assert_eq!(r.version(), "canary");
    let long_pin = "c".repeat(50 * 1024);
    let r = get(
        &a,
        &envoy.url("/"),
        &[("x-user-id", "carol"), ("x-rollout-pin", &long_pin)],
    )
    .unwrap();
    assert_eq!((r.status, r.version()), (200, "stable"));
    assert_eq!(reject(&envoy, "unknown_override_header"), 1);
}

#[test]
fn two_hundred_cookies() {
    let envoy = start(OPEN);
    let mut cookies: Vec<String> = (0..200).map(|i| format!("c{i}=v{i}")).collect();
    cookies.insert(150, "uid=alice".into());
    let r = get(&agent(), &envoy.url("/"), &[("cookie", &cookies.join("; "))]).unwrap();
    assert_eq!((r.status, r.version()), (200, expected(b"alice")));
}

#[test]
fn non_utf8_key_bytes_are_keys() {
    let envoy = start(OPEN);
    for key in [&b"\xff\xfe\xfd"[..], b"caf\xe9", b"\x80"] {
        let mut line = b"x-user-id: ".to_vec();
        line.extend_from_slice(key);
        let r = raw_request(envoy.listener, &[b"GET / HTTP/1.1", b"host: x", &line]).unwrap();
        assert_eq!((r.status, r.version()), (200, expected(key)), "{key:?}");
    }
    // Non-UTF-8 override values name no version: ignored and counted.
    let r = raw_request(
        envoy.listener,
        &[
            b"GET / HTTP/1.1",
            b"host: x",
            b"x-user-id: carol",
            b"x-rollout-pin: can\xffary",
        ],
    )
    .unwrap();
    assert_eq!((r.status, r.version()), (200, "stable"));
    assert_eq!(reject(&envoy, "unknown_override_header"), 1);
    // Control bytes are refused by Envoy's codec before any filter runs: a 400, not a 5xx.
    let r = raw_request(
        envoy.listener,
        &[b"GET / HTTP/1.1", b"host: x", b"x-user-id: a\x01b"],
    )
    .unwrap();
    assert!(r.status < 500, "{}", r.status);
}

#[test]
fn repeated_route_and_override_headers() {
    let envoy = start(STRICT);
    let r = raw_request(
        envoy.listener,
        &[
            b"GET /?rollout-version=canary&rollout-version=canary HTTP/1.1",
            b"host: x",
            b"x-user-id: carol",
            b"x-rollout-version: canary",
            b"x-rollout-version: canary",
            b"x-rollout-pin: canary",
            b"x-rollout-pin: canary",
        ],
    )
    .unwrap();
    assert_eq!((r.status, r.version()), (200, "stable"));
    let seen = r.seen.unwrap();
    assert_eq!(seen.header_all("x-rollout-version"), vec!["stable"]);
    assert!(
        seen.header_all("x-rollout-pin").is_empty(),
        "every copy of an untrusted override is removed"
    );
    assert_eq!(seen.path, "/");
    assert_eq!(reject(&envoy, "untrusted_override_header"), 1);
    assert_eq!(reject(&envoy, "untrusted_override_query"), 1);
}

#[test]
fn huge_query_strings() {
    let envoy = start(OPEN);
    let a = agent();
    let junk: Vec<String> = (0..2000).map(|i| format!("p{i}=v{i}")).collect();
    let path = format!("/?{}&rollout-version=canary", junk.join("&"));
    assert!(path.len() > 20_000);
    let r = get(&a, &envoy.url(&path), &[("x-user-id", "carol")]).unwrap();
    assert_eq!((r.status, r.version()), (200, "canary"));

    let envoy = start(STRICT);
    let r = get(&a, &envoy.url(&path), &[("x-user-id", "carol")]).unwrap();
    assert_eq!((r.status, r.version()), (200, "stable"));
    let seen = r.seen.unwrap();
    assert!(!seen.path.contains("rollout-version"));
    assert!(seen.path.ends_with("p1999=v1999"));
}

#[test]
fn garbage_trace_context() {
    let envoy = start(OPEN);
    let lines: [&[u8]; 5] = [
        b"traceparent: \xff\xff\xff",
        b"traceparent: 00-zz",
        b"tracestate: ,,,=,==,\xfe",
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"tracestate: a=b",
    ];
    for l in lines {
        let r = raw_request(
            envoy.listener,
            &[b"GET / HTTP/1.1", b"host: x", b"x-user-id: carol", l],
        )
        .unwrap();
        assert_eq!((r.status, r.version()), (200, "stable"));
        let tp = r.seen.unwrap().header("traceparent").unwrap().to_string();
        assert_eq!(tp.len(), 55, "{tp}");
    }
    assert!(
        reject(&envoy, "traceparent_bad_version")
            + reject(&envoy, "traceparent_bad_length")
            + reject(&envoy, "traceparent_bad_char")
            >= 2
    );
}
