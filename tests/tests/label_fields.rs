//! Issue: certificate labels in the design's own encoding — `canaryWeight` and `traceId` —
//! in client certificates minted by the `openssl` CLI as docs/configuration.md shows.

use rollout_e2e::certs::{openssl_base64, Ca, Identity, LABEL_OID};
use rollout_e2e::{get, mtls_agent, Envoy, Options};

const ROLLOUT: &str = "checkout-2026-11";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "URI:spiffe://cluster.local/ns/shop/sa/cart";

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "certificate": { "labelOid": "1.3.6.1.4.1.55555.1.1" }
}"#;

struct Setup {
    envoy: Envoy,
    ca: Ca,
    _dir: tempfile::TempDir,
}

fn start() -> Setup {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.tls = Some(ca.server_files(dir.path()));
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    Setup { envoy, ca, _dir: dir }
}

/// The otherName SAN, in openssl's syntax, carrying `json` as a label.
fn other_name(json: &str) -> String {
    format!("otherName:{LABEL_OID};UTF8:{}", openssl_base64(json))
}

fn agent(s: &Setup, san: &str) -> ureq::Agent {
    let id: Identity = s.ca.issue_with_openssl(&format!("{CALLER},{san}"));
    mtls_agent(&s.ca.pem, Some((&id.cert, &id.key)))
}

fn rejected(envoy: &Envoy, reason: &str) -> u64 {
    envoy.metric(&format!(
        "rollout_rejected_total;rollout={ROLLOUT};reason={reason}"
    ))
}

/// The version each of `n` users gets, asked twice (stickiness checked).
fn versions(s: &Setup, a: &ureq::Agent, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let user = format!("label-user-{i}");
            let mut seen = Vec::new();
            for _ in 0..2 {
                let r = get(a, &s.envoy.https_url("/"), &[("x-user-id", &user)]).unwrap();
                assert_eq!(r.status, 200);
                seen.push(r.version().to_owned());
            }
            assert_eq!(seen[0], seen[1], "{user} changed version");
            seen.swap_remove(0)
        })
        .collect()
}

fn share(v: &[String]) -> f64 {
    v.iter().filter(|v| *v == "canary").count() as f64 / v.len() as f64
}

#[test]
fn canary_weight_sets_the_callers_canary_share() {
    let s = start();
    let json = |w: u8| other_name(&format!(r#"{{"rolloutId":"{ROLLOUT}","canaryWeight":{w}}}"#));
    for (san, want) in [
        (json(100), 1.0),
        (format!("URI:rollout://{ROLLOUT}?canaryWeight=100"), 1.0),
        (json(0), 0.0),
        (format!("URI:rollout={ROLLOUT};canaryWeight=0"), 0.0),
    ] {
        let got = share(&versions(&s, &agent(&s, &san), 100));
        assert_eq!(got, want, "{san}");
    }

    let plain = versions(&s, &agent(&s, "DNS:plain.example.com"), 400);
    let thirty = versions(
        &s,
        &agent(
            &s,
            &other_name(&format!(
                r#"{{"rolloutId":"{ROLLOUT}","canaryWeight":30,"traceId":"{TRACE}"}}"#
            )),
        ),
        400,
    );
    assert!(
        (0.05..=0.15).contains(&share(&plain)),
        "configured 10 %: {}",
        share(&plain)
    );
    assert!(
        (0.25..=0.35).contains(&share(&thirty)),
        "canaryWeight 30: {}",
        share(&thirty)
    );
    // Raising the canary's share moves nobody off it.
    for (p, t) in plain.iter().zip(&thirty) {
        assert!(p == "stable" || t == "canary");
    }
    // The URI forms say the same as the JSON, user for user.
    for san in [
        format!("URI:rollout://{ROLLOUT}?canaryWeight=30"),
        format!("URI:rollout={ROLLOUT};canaryWeight=30;traceId={TRACE}"),
    ] {
        assert_eq!(versions(&s, &agent(&s, &san), 400), thirty, "{san}");
    }
    // canaryWeight is weight: the same split as the older spelling.
    let weight = versions(&s, &agent(&s, &format!("URI:rollout={ROLLOUT};weight=30")), 400);
    assert_eq!(weight, thirty);
    for reason in [
        "label_ambiguous_weight",
        "label_bad_trace_id",
        "label_unknown_field",
    ] {
        assert_eq!(rejected(&s.envoy, reason), 0, "{reason}");
    }
}

#[test]
fn ambiguous_weights_and_bad_trace_ids_are_refused_and_counted() {
    let s = start();
    let cases = [
        (
            other_name(&format!(
                r#"{{"rolloutId":"{ROLLOUT}","weight":100,"canaryWeight":100}}"#
            )),
            "label_ambiguous_weight",
        ),
        (
            format!("URI:rollout://{ROLLOUT}?canaryWeight=100&weight=100"),
            "label_ambiguous_weight",
        ),
        (
            other_name(&format!(
                r#"{{"rolloutId":"{ROLLOUT}","canaryWeight":100,"traceId":"{}"}}"#,
                TRACE.to_uppercase()
            )),
            "label_bad_trace_id",
        ),
        (
            format!("URI:rollout={ROLLOUT};version=canary;traceId={}", "0".repeat(32)),
            "label_bad_trace_id",
        ),
    ];
    for (i, (san, reason)) in cases.iter().enumerate() {
        let a = agent(&s, san);
        for _ in 0..3 {
            // carol is stable by the configured split; the label would have sent her to canary.
            let r = get(&a, &s.envoy.https_url("/"), &[("x-user-id", "carol")]).unwrap();
            assert_eq!((r.status, r.version()), (200, "stable"), "{san}");
            // An ignored label seeds no trace.
            let tp = r.seen.unwrap().header("traceparent").unwrap().to_owned();
            assert!(!tp.contains(TRACE), "{tp}");
        }
        let want = if i % 2 == 0 { 3 } else { 6 };
        assert_eq!(rejected(&s.envoy, reason), want, "{san}");
    }
}

/// The upstream-seen traceparent's fields: (trace-id, parent-id, flags).
fn traceparent(r: &rollout_e2e::Reply) -> (String, String, String) {
    let tp = r
        .seen
        .as_ref()
        .unwrap()
        .header("traceparent")
        .expect("traceparent");
    let f: Vec<&str> = tp.split('-').collect();
    assert_eq!((f.len(), f[0], tp.len()), (4, "00", 55), "{tp}");
    (f[1].to_owned(), f[2].to_owned(), f[3].to_owned())
}

#[test]
fn trace_id_starts_the_trace_only_without_a_valid_traceparent() {
    let s = start();
    // Only a traceId: the caller is split like anyone else (alice canary, carol stable).
    let a = agent(
        &s,
        &other_name(&format!(r#"{{"rolloutId":"{ROLLOUT}","traceId":"{TRACE}"}}"#)),
    );
    let mut parents = std::collections::HashSet::new();
    for (user, version) in [("alice", "canary"), ("carol", "stable"), ("alice", "canary")] {
        let r = get(&a, &s.envoy.https_url("/"), &[("x-user-id", user)]).unwrap();
        assert_eq!((r.status, r.version()), (200, version));
        let (trace_id, parent_id, flags) = traceparent(&r);
        assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE, "01"));
        assert_ne!(parent_id, "0".repeat(16));
        assert!(parents.insert(parent_id), "a parent-id repeated");
    }
    // An invalid traceparent (uppercase, all-zero trace-id, cut short) is no traceparent.
    // (Two traceparent headers are covered by the unit tests: the HTTP client sends one.)
    let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let zero = format!("00-{}-b7ad6b7169203331-01", "0".repeat(32));
    let upper = valid.to_uppercase();
    for bad in [upper.as_str(), zero.as_str(), &valid[..54]] {
        let r = get(
            &a,
            &s.envoy.https_url("/"),
            &[("x-user-id", "carol"), ("traceparent", bad)],
        )
        .unwrap();
        let (trace_id, parent_id, _) = traceparent(&r);
        assert_eq!(trace_id, TRACE, "{bad}");
        assert!(parents.insert(parent_id), "a parent-id repeated");
    }
    // A valid traceparent always wins: passed through untouched, with its tracestate.
    let r = get(
        &a,
        &s.envoy.https_url("/"),
        &[
            ("x-user-id", "carol"),
            ("traceparent", valid),
            ("tracestate", "vendor=1"),
        ],
    )
    .unwrap();
    let seen = r.seen.unwrap();
    assert_eq!(seen.header("traceparent"), Some(valid));
    assert_eq!(seen.header("tracestate"), Some("vendor=1"));

    // The URI form, beside a pin.
    let pinned = agent(
        &s,
        &format!("URI:rollout://{ROLLOUT}?version=canary&traceId={TRACE}"),
    );
    let r = get(&pinned, &s.envoy.https_url("/"), &[("x-user-id", "carol")]).unwrap();
    assert_eq!(r.version(), "canary");
    assert_eq!(traceparent(&r).0, TRACE);

    // A caller without a traceId gets a random trace-id, flagged random.
    let plain = agent(&s, "DNS:plain.example.com");
    let r = get(&plain, &s.envoy.https_url("/"), &[("x-user-id", "carol")]).unwrap();
    let (trace_id, _, flags) = traceparent(&r);
    assert_ne!(trace_id, TRACE);
    assert_eq!(flags, "03");
    for reason in [
        "label_bad_trace_id",
        "label_no_version_or_weight",
        "label_unknown_field",
    ] {
        assert_eq!(rejected(&s.envoy, reason), 0, "{reason}");
    }
}
