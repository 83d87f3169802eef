//! Issue: W3C trace context and rollout ids on every request, through Envoy;
//! trace context to the letter and the decision in W3C baggage (issue 20).

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
        // No tracestate of the filter's own; the decision is in baggage.
        assert_eq!(seen.header("tracestate"), None);
        assert_eq!(
            seen.header_all("baggage"),
            vec![format!("rollout.checkout-2026-11={version}")]
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
fn pass_through_leaves_trace_context_byte_identical_and_writes_baggage() {
    let envoy = start();
    let a = agent();
    // Even a tracestate the filter would discard when it changed traceparent
    // (uppercase key, inner OWS) is not its business when traceparent passes.
    let tracestate = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7 ,\tFOO=1";
    let r = get(
        &a,
        &envoy.url("/"),
        &[
            ("x-user-id", "alice"),
            ("traceparent", VALID),
            ("tracestate", tracestate),
            (
                "baggage",
                "userId=Am%C3%A9lie;p, rollout.checkout-2026-11 = stable;forged,isProduction=false",
            ),
        ],
    )
    .unwrap();
    assert_eq!(r.version(), "canary");
    let seen = r.seen.unwrap();
    assert_eq!(
        seen.header_all("traceparent"),
        vec![VALID],
        "a proxy that records no span passes the parent through"
    );
    assert_eq!(seen.header_all("tracestate"), vec![tracestate]);
    // The client's member of our key is replaced in place; the others are kept byte for byte.
    assert_eq!(
        seen.header_all("baggage"),
        vec!["userId=Am%C3%A9lie;p,rollout.checkout-2026-11=canary,isProduction=false"]
    );
    // Several tracestate headers pass as they came too.
    let r = raw_request(
        envoy.listener,
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
    assert_eq!(seen.header_all("traceparent"), vec![VALID]);
    assert_eq!(seen.header_all("tracestate"), vec!["a=1,b=2", "c=3, bad key=4"]);
    assert_eq!(
        seen.header_all("baggage"),
        vec!["rollout.checkout-2026-11=stable"]
    );
    // Higher versions are accepted by their first four fields and re-emitted as
    // 00; traceparent changed, so tracestate is checked (and valid here).
    let r = get(
        &a,
        &envoy.url("/"),
        &[
            ("x-user-id", "carol"),
            (
                "traceparent",
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
            ),
            ("tracestate", "foo@=1, bar=2"),
        ],
    )
    .unwrap();
    let seen = r.seen.unwrap();
    assert_eq!(seen.header("traceparent"), Some(VALID));
    assert_eq!(seen.header_all("tracestate"), vec!["foo@=1,bar=2"]);
    for reason in [
        "tracestate_invalid",
        "tracestate_too_many_members",
        "baggage_full",
    ] {
        assert_eq!(reject(&envoy, reason), 0, "{reason}");
    }
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
        assert_eq!(seen.header("tracestate"), None, "{tp}");
        assert_eq!(reject(&envoy, kind), before + 1, "{kind}");
    }
    assert_eq!(reject(&envoy, "tracestate_ignored"), 4);
}

/// The official suite's tracestate cases (w3c/trace-context test/test.py,
/// STRICT_LEVEL=2) with `newSpan: true`, as headers on the wire: what the
/// upstream sees, or `None` for "discarded".
#[test]
fn new_span_checks_tracestate_as_the_w3c_suite_does() {
    let cfg = r#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":1}],"trace":{"newSpan":true}}"#;
    let envoy = Envoy::start(&Options::new(cfg, &["stable"])).unwrap_or_else(|e| panic!("{e}"));
    let tp = "00-12345678901234567890123456789012-1234567890123456-00";
    let bars = |from: usize, to: usize| {
        (from..=to)
            .map(|i| format!("bar{i:02}={i:02}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let key256 = "z".repeat(256);
    let key257 = "z".repeat(257);
    let all_chars = format!(
        "abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/={}",
        (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<String>, Option<String>)> = vec![
        (
            "inherited",
            vec!["foo=1,bar=2".into()],
            Some("foo=1,bar=2".into()),
        ),
        ("empty header", vec!["".into()], None),
        (
            "empty after",
            vec!["foo=1".into(), "".into()],
            Some("foo=1".into()),
        ),
        (
            "combined in order",
            vec!["foo=1,bar=2".into(), "rojo=1,congo=2".into(), "baz=3".into()],
            Some("foo=1,bar=2,rojo=1,congo=2,baz=3".into()),
        ),
        (
            "duplicate keys",
            vec!["foo=1".into(), "foo=2".into()],
            Some("foo=1".into()),
        ),
        (
            "all allowed characters",
            vec![all_chars.clone()],
            Some(all_chars.clone()),
        ),
        (
            "OWS",
            vec!["foo=1 \t , \t bar=2, \t baz=3".into()],
            Some("foo=1,bar=2,baz=3".into()),
        ),
        ("key with space", vec!["foo =1".into()], None),
        ("uppercase key", vec!["FOO=1".into()], None),
        ("key with dot", vec!["foo.bar=1".into()], None),
        (
            "key ending in @",
            vec!["foo@=1,bar=2".into()],
            Some("foo@=1,bar=2".into()),
        ),
        ("key starting with @", vec!["@foo=1,bar=2".into()], None),
        (
            "key with @@",
            vec!["foo@@bar=1,bar=2".into()],
            Some("foo@@bar=1,bar=2".into()),
        ),
        (
            "key with two @",
            vec!["foo@bar@baz=1,bar=2".into()],
            Some("foo@bar@baz=1,bar=2".into()),
        ),
        (
            "32 members",
            vec![bars(1, 10), bars(11, 20), bars(21, 30), bars(31, 32)],
            Some(bars(1, 32)),
        ),
        (
            "33 members",
            vec![bars(1, 10), bars(11, 20), bars(21, 30), bars(31, 33)],
            None,
        ),
        (
            "key of 256",
            vec!["foo=1".into(), format!("{key256}=1")],
            Some(format!("foo=1,{key256}=1")),
        ),
        ("key of 257", vec!["foo=1".into(), format!("{key257}=1")], None),
        ("value with =", vec!["foo=bar=baz".into()], None),
        ("empty value", vec!["foo=,bar=3".into()], None),
    ];
    for (name, values, want) in &cases {
        let mut lines: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1".to_vec(),
            b"host: x".to_vec(),
            format!("traceparent: {tp}").into_bytes(),
        ];
        lines.extend(values.iter().map(|v| format!("tracestate: {v}").into_bytes()));
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
        let r = raw_request(envoy.listener, &refs).unwrap();
        let seen = r.seen.unwrap();
        let out = seen.header("traceparent").unwrap();
        assert!(is_valid_00(out), "{name}: {out}");
        assert_eq!(&out[3..35], &tp[3..35], "{name}: trace-id kept");
        assert_ne!(&out[36..52], &tp[36..52], "{name}: a new span");
        let got = seen.header_all("tracestate");
        match want {
            Some(w) => assert_eq!(got, vec![w.as_str()], "{name}"),
            None => assert!(got.is_empty(), "{name}: {got:?}"),
        }
    }
    assert_eq!(reject(&envoy, "tracestate_invalid"), 7);
    assert_eq!(reject(&envoy, "tracestate_too_many_members"), 1);
    assert_eq!(reject(&envoy, "tracestate_duplicate_key"), 1);
}

#[test]
fn baggage_limits_and_switches() {
    let envoy = start();
    let a = agent();
    // 64 members already: ours would break the W3C limit, so it is not added (and counted).
    let members: Vec<String> = (0..64).map(|i| format!("k{i}=v")).collect();
    let full = members.join(",");
    let r = get(&a, &envoy.url("/"), &[("x-user-id", "carol"), ("baggage", &full)]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.seen.unwrap().header_all("baggage"), vec![full.as_str()]);
    assert_eq!(reject(&envoy, "baggage_full"), 1);
    // 63: ours is the 64th.
    let r = get(
        &a,
        &envoy.url("/"),
        &[("x-user-id", "carol"), ("baggage", &members[..63].join(","))],
    )
    .unwrap();
    let bag = r.seen.unwrap().header("baggage").unwrap().to_string();
    assert_eq!(bag.split(',').count(), 64);
    assert!(bag.ends_with(",rollout.checkout-2026-11=stable"), "{bag}");

    // `baggage: false` leaves the header alone; a prefix of one's own; baggage
    // without trace context.
    for (trace, want) in [
        (r#"{"baggage":false}"#, "a=1"),
        (r#"{"baggagePrefix":"acme-"}"#, "a=1,acme-r=stable"),
        (r#"{"enabled":false,"baggage":true}"#, "a=1,rollout.r=stable"),
    ] {
        let cfg =
            format!(r#"{{"rolloutId":"r","versions":[{{"name":"stable","weight":1}}],"trace":{trace}}}"#);
        let envoy = Envoy::start(&Options::new(cfg, &["stable"])).unwrap_or_else(|e| panic!("{e}"));
        let r = get(&agent(), &envoy.url("/"), &[("baggage", "a=1")]).unwrap();
        assert_eq!(r.seen.unwrap().header_all("baggage"), vec![want], "{trace}");
    }
}

#[test]
fn old_tracestate_key_is_accepted_with_a_warning() {
    let cfg = r#"{"rolloutId":"r","versions":[{"name":"stable","weight":1}],"trace":{"tracestateKey":"acme@rollout"}}"#;
    let envoy = Envoy::start(&Options::new(cfg, &["stable"])).unwrap_or_else(|e| panic!("{e}"));
    let r = get(&agent(), &envoy.url("/"), &[]).unwrap();
    let seen = r.seen.unwrap();
    assert_eq!(seen.header("tracestate"), None);
    assert_eq!(seen.header_all("baggage"), vec!["rollout.r=stable"]);
    let log = envoy.log();
    assert!(
        log.contains("trace.tracestateKey: ignored (deprecated)") && log.contains("trace.baggagePrefix"),
        "{log}"
    );
}

#[test]
fn duplicated_traceparent_is_invalid() {
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
            b"tracestate: a=1",
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
    // A new trace: the incoming tracestate goes with the invalid traceparent.
    assert_eq!(seen.header("tracestate"), None);
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
    // Passed through untouched: not the filter's to cut.
    let want = members.join(",");
    assert_eq!(r.seen.unwrap().header_all("tracestate"), vec![want.as_str()]);
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
    // Baggage follows `enabled` unless set on its own.
    assert_eq!(seen.header("baggage"), None);
    assert_eq!(seen.header("x-rid"), Some("r"));
}
