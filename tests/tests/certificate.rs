//! Issue: canary labels from mTLS certificate SANs; overrides only from trusted identities.

use rollout_e2e::certs::{Ca, Identity, San, LABEL_OID};
use rollout_e2e::{get, mtls_agent, Envoy, Options};

fn config(source: &str) -> String {
    format!(
        r#"{{
  "rolloutId": "checkout-2026-11",
  "versions": [ {{ "name": "stable", "weight": 90 }}, {{ "name": "canary", "weight": 10 }} ],
  "stickyKeys": [ {{ "header": "x-user-id" }} ],
  "override": {{ "header": "x-rollout-pin", "query": "rollout-version",
                "trustedPeers": ["spiffe://cluster.local/ns/qa/*"] }},
  "certificate": {{ "labelOid": "{LABEL_OID}", "source": "{source}" }}
}}"#
    )
}

struct Setup {
    envoy: Envoy,
    ca: Ca,
    _dir: tempfile::TempDir,
}

fn start_with(source: &str, xfcc: Option<&'static str>, set_cert: bool) -> Setup {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let mut tls = ca.server_files(dir.path());
    tls.xfcc = xfcc;
    tls.xfcc_set_cert = set_cert;
    let mut opts = Options::new(config(source), &["stable", "canary"]);
    opts.tls = Some(tls);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    Setup { envoy, ca, _dir: dir }
}

fn start() -> Setup {
    start_with("auto", None, false)
}

fn agent(ca: &Ca, id: &Identity) -> ureq::Agent {
    mtls_agent(&ca.pem, Some((&id.cert, &id.key)))
}

fn count(envoy: &Envoy, name: &str, labels: &str) -> u64 {
    envoy.metric(&format!("{name};rollout=checkout-2026-11;{labels}"))
}

/// Versions seen for `n` distinct user keys (flagd puts ~10 % on canary).
fn canary_share(envoy: &Envoy, a: &ureq::Agent, n: usize, extra: &[(&str, &str)]) -> f64 {
    let mut canary = 0;
    for i in 0..n {
        let user = format!("cert-user-{i}");
        let mut headers = vec![("x-user-id", user.as_str())];
        headers.extend_from_slice(extra);
        let r = get(a, &envoy.https_url("/"), &headers).unwrap();
        assert_eq!(r.status, 200);
        if r.version() == "canary" {
            canary += 1;
        }
    }
    canary as f64 / n as f64
}

#[test]
fn pinned_caller_goes_to_canary_every_time() {
    let s = start();
    for sans in [
        vec![
            San::Uri("spiffe://cluster.local/ns/shop/sa/cart"),
            San::Uri("rollout://checkout-2026-11?version=canary"),
        ],
        vec![San::Uri("rollout=checkout-2026-11;version=canary")],
        vec![San::JsonLabel(
            r#"{"rolloutId":"checkout-2026-11","version":"canary"}"#,
        )],
    ] {
        let a = agent(&s.ca, &s.ca.issue(&sans));
        assert_eq!(canary_share(&s.envoy, &a, 50, &[]), 1.0);
    }
    assert_eq!(
        count(
            &s.envoy,
            "rollout_requests_total",
            "version=canary;source=certificate"
        ),
        150
    );
}

#[test]
fn weight_label_changes_the_callers_share() {
    let s = start();
    let plain = agent(
        &s.ca,
        &s.ca.issue(&[San::Uri("spiffe://cluster.local/ns/shop/sa/cart")]),
    );
    let base = canary_share(&s.envoy, &plain, 400, &[]);
    let weighted = agent(
        &s.ca,
        &s.ca.issue(&[San::JsonLabel(
            r#"{"rolloutId":"checkout-2026-11","version":"canary","weight":60}"#,
        )]),
    );
    let share = canary_share(&s.envoy, &weighted, 400, &[]);
    assert!((0.05..=0.15).contains(&base), "configured 10 %: {base}");
    assert!((0.52..=0.68).contains(&share), "label weight 60 %: {share}");
    // Raising only the canary's share keeps every user already on canary there.
    let all = agent(
        &s.ca,
        &s.ca.issue(&[San::Uri("rollout=checkout-2026-11;weight=100")]),
    );
    assert_eq!(canary_share(&s.envoy, &all, 100, &[]), 1.0);
}

#[test]
fn label_for_another_rollout_is_ignored_and_counted() {
    let s = start();
    let a = agent(
        &s.ca,
        &s.ca.issue(&[San::Uri("rollout://search-2026-12?version=canary")]),
    );
    for _ in 0..5 {
        // carol is stable by the split.
        let r = get(&a, &s.envoy.https_url("/"), &[("x-user-id", "carol")]).unwrap();
        assert_eq!(r.version(), "stable");
    }
    assert_eq!(
        count(&s.envoy, "rollout_rejected_total", "reason=label_other_rollout"),
        5
    );
}

#[test]
fn overrides_only_from_trusted_identities() {
    let s = start();
    let untrusted = agent(
        &s.ca,
        &s.ca.issue(&[San::Uri("spiffe://cluster.local/ns/shop/sa/cart")]),
    );
    let r = get(
        &untrusted,
        &s.envoy.https_url("/x?a=1&rollout-version=canary"),
        &[("x-user-id", "carol"), ("x-rollout-pin", "canary")],
    )
    .unwrap();
    assert_eq!(r.version(), "stable");
    let seen = r.seen.unwrap();
    assert_eq!(
        seen.header("x-rollout-pin"),
        None,
        "the untrusted override must not reach the upstream"
    );
    assert_eq!(seen.path, "/x?a=1");
    assert_eq!(
        count(
            &s.envoy,
            "rollout_rejected_total",
            "reason=untrusted_override_header"
        ),
        1
    );
    assert_eq!(
        count(
            &s.envoy,
            "rollout_rejected_total",
            "reason=untrusted_override_query"
        ),
        1
    );

    let trusted = agent(
        &s.ca,
        &s.ca.issue(&[San::Uri("spiffe://cluster.local/ns/qa/sa/tester")]),
    );
    let r = get(
        &trusted,
        &s.envoy.https_url("/"),
        &[("x-user-id", "carol"), ("x-rollout-pin", "canary")],
    )
    .unwrap();
    assert_eq!(r.version(), "canary");
    let r = get(
        &trusted,
        &s.envoy.https_url("/?rollout-version=canary"),
        &[("x-user-id", "carol")],
    )
    .unwrap();
    assert_eq!(r.version(), "canary");
    assert_eq!(r.seen.unwrap().path, "/?rollout-version=canary");
}

#[test]
fn bad_labels_fall_back_to_the_split_and_are_counted() {
    let s = start();
    let big_dns: Vec<String> = (0..330)
        .map(|i| format!("host-{i:04}.a-rather-long-domain-name.example.com"))
        .collect();
    let mut big: Vec<San> = big_dns.iter().map(|d| San::Dns(d)).collect();
    big.push(San::Uri("rollout://checkout-2026-11?version=canary"));
    let cases: Vec<(Vec<San>, &str)> = vec![
        (vec![San::RawOtherName("!!not base64!!")], "label_bad_base64"),
        (vec![San::JsonLabel("{not json")], "label_bad_json"),
        (
            vec![San::JsonLabel(
                r#"{"rolloutId":"checkout-2026-11","version":"canary","colour":"red"}"#,
            )],
            "label_unknown_field",
        ),
        (
            vec![San::JsonLabel(r#"{"rolloutId":"checkout-2026-11","weight":101}"#)],
            "label_weight_out_of_range",
        ),
        (
            vec![San::Uri("rollout://checkout-2026-11?version=canary&colour=red")],
            "label_bad_uri_label",
        ),
        (
            vec![
                San::Uri("rollout://checkout-2026-11?version=canary"),
                San::JsonLabel(r#"{"rolloutId":"checkout-2026-11","version":"stable"}"#),
            ],
            "label_duplicate_label",
        ),
        (big, "cert_too_large"),
    ];
    for (sans, reason) in cases {
        let a = agent(&s.ca, &s.ca.issue(&sans));
        for _ in 0..3 {
            let r = get(&a, &s.envoy.https_url("/"), &[("x-user-id", "carol")]).unwrap();
            assert_eq!((r.status, r.version()), (200, "stable"), "{reason}");
        }
        assert_eq!(
            count(&s.envoy, "rollout_rejected_total", &format!("reason={reason}")),
            3,
            "{reason}"
        );
    }
}

#[test]
fn one_way_tls_or_plain_callers_get_no_labels() {
    let s = start();
    // A client without a certificate cannot even connect: the listener requires one.
    let anonymous = mtls_agent(&s.ca.pem, None);
    assert!(get(&anonymous, &s.envoy.https_url("/"), &[]).is_err());
}

#[test]
fn xfcc_is_believed_only_for_the_verified_peer() {
    // Older-proxy mode: labels come from XFCC, which Envoy sets from the verified certificate.
    let s = start_with("xfcc", Some("SANITIZE_SET"), true);
    let pinned = agent(
        &s.ca,
        &s.ca
            .issue(&[San::Uri("rollout://checkout-2026-11?version=canary")]),
    );
    let r = get(&pinned, &s.envoy.https_url("/"), &[("x-user-id", "carol")]).unwrap();
    assert_eq!((r.version(), r.status), ("canary", 200));

    // A listener that forwards the client's own XFCC: a forged element claiming a
    // canary certificate is ignored, whatever hash it names.
    let s = start_with("xfcc", Some("FORWARD_ONLY"), false);
    let caller = s.ca.issue(&[San::Uri("spiffe://cluster.local/ns/shop/sa/cart")]);
    let forged =
        s.ca.issue(&[San::Uri("rollout://checkout-2026-11?version=canary")]);
    let a = agent(&s.ca, &caller);
    let encoded: String = forged.cert.bytes().map(|b| format!("%{b:02X}")).collect();
    let caller_der = {
        let mut rd = caller.cert.as_bytes();
        let der = rustls_pemfile::certs(&mut rd).next().unwrap().unwrap().to_vec();
        der
    };
    let caller_hash = sha256_hex(&caller_der);
    for (hash, reason) in [
        ("0".repeat(64), "xfcc_hash_mismatch"),
        (caller_hash, "xfcc_digest_mismatch"),
    ] {
        let xfcc = format!("Hash={hash};Cert=\"{encoded}\"");
        let r = get(
            &a,
            &s.envoy.https_url("/"),
            &[("x-user-id", "carol"), ("x-forwarded-client-cert", &xfcc)],
        )
        .unwrap();
        assert_eq!((r.version(), r.status), ("stable", 200), "{reason}");
        assert_eq!(
            count(&s.envoy, "rollout_rejected_total", &format!("reason={reason}")),
            1,
            "{reason}"
        );
    }
}

/// SHA-256 via the openssl CLI, kept out of the crate's dependencies.
fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn plain_http_callers_have_no_certificate_and_no_trust() {
    let envoy =
        Envoy::start(&Options::new(config("auto"), &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"));
    let a = rollout_e2e::agent();
    for (user, version) in [("alice", "canary"), ("carol", "stable")] {
        let r = get(
            &a,
            &envoy.url("/"),
            &[("x-user-id", user), ("x-rollout-pin", "stable")],
        )
        .unwrap();
        assert_eq!((r.status, r.version()), (200, version));
        assert_eq!(r.seen.unwrap().header("x-rollout-pin"), None);
    }
    assert_eq!(
        count(
            &envoy,
            "rollout_rejected_total",
            "reason=untrusted_override_header"
        ),
        2
    );
    assert_eq!(
        count(
            &envoy,
            "rollout_requests_total",
            "version=canary;source=certificate"
        ),
        0
    );
}
