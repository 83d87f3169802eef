//! Issue: W3C trace context and rollout ids on every request, through Envoy.

use rollout_e2e::{agent, get, raw_request, Envoy, Options};

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "responseHeaders": { "version": "x-rollout-version", "traceId": "x-trace-id" }
}"#;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn start() -> Envoy {
    Envoy::start(&Options::new(CONFIG, &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"))
}

fn is_valid_00(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    tp.len() == 55
        && parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "0".repeat(32)
        && parts[2] != "0".repeat(16)
}

fn reject(envoy: &Envoy, reason: &str) -> u64 {
    envoy.metric(&format!(
        "rollout_rejected_total;rollout=checkout-2026-11;reason={reason}"
    ))
}

#[test]
fn missing_context_starts_a_sampled_random_trace() {
    let envoy = start();
    let a = agent();
    // alice is canary, carol stable (flagd vectors).
    for (user, version) in [("alice", "canary"), ("carol", "stable")] {
        let r = get(
            &a,
            &envoy.url("/"),
            &[("x-user-id", user), ("x-rollout-id", "forged")],
        )
        .unwrap();
        assert_eq!(r.version(), version);
        let seen = r.seen.as_ref().unwrap();
        let tp = seen.header("traceparent").unwrap();
        assert!(is_valid_00(tp), "{tp}");
        assert!(
            tp.ends_with("-03"),
            "new traces are sampled + random-trace-id: {tp}"
        );
        assert_eq!(
            seen.header("tracestate"),
            Some(format!("rollout=checkout-2026-11:{version}").as_str())
        );
        assert_eq!(seen.header_all("x-rollout-id"), vec!["checkout-2026-11"]);
        // Debug response headers name the version and the trace id the upstream saw.
        assert_eq!(r.header("x-rollout-version"), Some(version));
        assert_eq!(r.header("x-trace-id"), Some(&tp[3..35]));
    }
    let a_tp = |u: &str| {
        get(&a, &envoy.url("/"), &[("x-user-id", u)])
            .unwrap()
            .seen
            .unwrap()
            .header("traceparent")
            .unwrap()
            .to_string()
    };
    assert_ne!(
        a_tp("carol")[3..35],
        a_tp("carol")[3..35],
        "every new trace gets its own id"
    );
}

#[test]
fn valid_context_is_continued_and_our_member_goes_left() {
    let envoy = start();
    let a = agent();
    let r = get(
        &a,
        &envoy.url("/"),
        &[
            ("x-user-id", "alice"),
            ("traceparent", VALID),
            (
                "tracestate",
                "congo=t61rcWkgMzE, rollout=old:stale,rojo=00f067aa0ba902b7",
            ),
        ],
    )
    .unwrap();
    let seen = r.seen.unwrap();
    assert_eq!(
        seen.header("traceparent"),
        Some(VALID),
        "a proxy that records no span passes the parent through"
    );
    assert_eq!(
        seen.header("tracestate"),
        Some("rollout=checkout-2026-11:canary,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    // Higher versions are accepted by their first four fields and re-emitted as 00.
    let r = get(
        &a,
        &envoy.url("/"),
        &[
            ("x-user-id", "carol"),
            (
                "traceparent",
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
            ),
        ],
    )
    .unwrap();
    assert_eq!(r.seen.unwrap().header("traceparent"), Some(VALID));
}

#[test]
fn invalid_context_starts_a_new_trace_counted_by_kind() {
    let envoy = start();
    let a = agent();
    let cases = [
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "traceparent_bad_version",
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "traceparent_zero_id",
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "traceparent_bad_char",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "traceparent_bad_length",
        ),
    ];
    for (tp, kind) in cases {
        let before = reject(&envoy, kind);
        let r = get(
            &a,
            &envoy.url("/"),
            &[
                ("x-user-id", "carol"),
                ("traceparent", tp),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let seen = r.seen.unwrap();
        let out = seen.header("traceparent").unwrap();
        assert!(
            is_valid_00(out) && !out.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{tp} -> {out}"
        );
        // The incoming tracestate is dropped with an invalid traceparent.
        assert_eq!(
            seen.header("tracestate"),
            Some("rollout=checkout-2026-11:stable"),
            "{tp}"
        );
        assert_eq!(reject(&envoy, kind), before + 1, "{kind}");
    }
    assert_eq!(reject(&envoy, "tracestate_ignored"), 4);
}

#[test]
fn duplicated_traceparent_is_invalid_and_tracestates_combine() {
    let envoy = start();
    let addr = envoy.listener;
    let r = raw_request(
        addr,
        &[
            b"GET / HTTP/1.1",
            b"host: x",
            b"x-user-id: carol",
            format!("traceparent: {VALID}").as_bytes(),
            b"traceparent: 00-11111111111111111111111111111111-2222222222222222-01",
        ],
    )
    .unwrap();
    let seen = r.seen.unwrap();
    let out = seen.header("traceparent").unwrap();
    assert!(
        is_valid_00(out) && !out.contains("4bf92f35") && !out.contains("11111111"),
        "{out}"
    );
    assert_eq!(reject(&envoy, "traceparent_duplicate"), 1);

    let r = raw_request(
        addr,
        &[
            b"GET / HTTP/1.1",
            b"host: x",
            b"x-user-id: carol",
            format!("traceparent: {VALID}").as_bytes(),
            b"tracestate: a=1,b=2",
            b"tracestate: c=3, bad key=4",
        ],
    )
    .unwrap();
    let seen = r.seen.unwrap();
    assert_eq!(seen.header("traceparent"), Some(VALID));
    assert_eq!(
        seen.header_all("tracestate"),
        vec!["rollout=checkout-2026-11:stable,a=1,b=2,c=3"]
    );
    assert_eq!(reject(&envoy, "tracestate_member_dropped"), 1);
}

#[test]
fn huge_trace_headers_are_fine() {
    let envoy = start();
    let a = agent();
    let members: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}")).collect();
    let big = "x".repeat(8 * 1024);
    let r = get(
        &a,
        &envoy.url("/"),
        &[
            ("x-user-id", "carol"),
            ("traceparent", VALID),
            ("tracestate", &members.join(",")),
            ("x-pad", &big),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let ts = r.seen.unwrap().header("tracestate").unwrap().to_string();
    assert!(ts.starts_with("rollout=checkout-2026-11:stable,k0=v0,"), "{ts}");
    assert_eq!(ts.split(',').count(), 32);
    assert!(ts.len() <= 512);
    let r = get(
        &a,
        &envoy.url("/"),
        &[("x-user-id", "carol"), ("traceparent", &big)],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(is_valid_00(r.seen.unwrap().header("traceparent").unwrap()));
}

#[test]
fn tracing_can_be_switched_off() {
    let cfg = r#"{"rolloutId":"r","versions":[{"name":"stable","weight":1}],"trace":{"enabled":false},"rolloutIdHeader":"x-rid"}"#;
    let envoy = Envoy::start(&Options::new(cfg, &["stable"])).unwrap_or_else(|e| panic!("{e}"));
    let r = get(&agent(), &envoy.url("/"), &[("traceparent", "garbage")]).unwrap();
    let seen = r.seen.unwrap();
    assert_eq!(seen.header("traceparent"), Some("garbage"));
    assert_eq!(seen.header("tracestate"), None);
    assert_eq!(seen.header("x-rid"), Some("r"));
}
