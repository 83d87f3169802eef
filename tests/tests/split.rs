//! Issue: sticky weighted split in a real Envoy, with one worker and with two (each test's
//! requests spread over several connections, so over both workers' VMs).

use rollout_e2e::{get, Envoy, Options, Spread};
use std::collections::HashMap;

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "routeHeader": "x-rollout-version",
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["*"] }
}"#;

fn start(config: &str, versions: &[&str], workers: u32) -> Envoy {
    let mut opts = Options::new(config, versions);
    opts.workers = workers;
    Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"))
}

fn shares_within_one_and_a_half_points_over_10000_keys(workers: u32) {
    let envoy = start(CONFIG, &["stable", "canary"], workers);
    let a = Spread::new();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..10_000 {
        let r = get(a.next(), &envoy.url("/"), &[("x-user-id", &format!("share-{i}"))]).unwrap();
        assert_eq!(r.status, 200);
        // The upstream that answered must be the one the route header names.
        let seen = r.seen.as_ref().unwrap();
        assert_eq!(seen.header("x-rollout-version"), Some(r.version()));
        *counts.entry(r.version().to_string()).or_default() += 1;
    }
    let canary = f64::from(counts["canary"]) / 100.0;
    assert!(
        (canary - 10.0).abs() <= 1.5,
        "canary share {canary}% (counts {counts:?})"
    );
    assert_eq!(counts.values().sum::<u32>(), 10_000);
    let sticky = envoy.metric("rollout_requests_total;rollout=checkout-2026-11;version=canary;source=sticky");
    assert_eq!(sticky, u64::from(counts["canary"]));
    envoy.assert_every_worker_served(workers);
}

fn a_key_repeated_100_times_gets_one_version_and_flagd_agrees(workers: u32) {
    let envoy = start(CONFIG, &["stable", "canary"], workers);
    let a = Spread::new();
    let vectors: serde_json::Value = serde_json::from_str(include_str!("../vectors/flagd.json")).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    // Every vector key routes where flagd's algorithm (computed in Python) says.
    for case in cases {
        let key = case["key"].as_str().unwrap();
        if key.is_empty() || !key.is_ascii() {
            continue; // not sendable as a plain header value
        }
        let r = get(a.next(), &envoy.url("/"), &[("x-user-id", key)]).unwrap();
        assert_eq!(r.version(), case["90-10"].as_str().unwrap(), "key {key}");
    }
    for key in ["alice", "carol", "user-7"] {
        let mut seen = HashMap::new();
        for _ in 0..100 {
            let r = get(a.next(), &envoy.url("/"), &[("x-user-id", key)]).unwrap();
            *seen.entry(r.version().to_string()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 1, "{key} went to {seen:?}");
    }
    envoy.assert_every_worker_served(workers);
}

fn three_way_split_matches_flagd(workers: u32) {
    let cfg = r#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":50},{"name":"canary","weight":30},{"name":"preview","weight":20}],"stickyKeys":[{"cookie":"uid"}]}"#;
    let envoy = start(cfg, &["stable", "canary", "preview"], workers);
    let a = Spread::new();
    let vectors: serde_json::Value = serde_json::from_str(include_str!("../vectors/flagd.json")).unwrap();
    for case in vectors["cases"].as_array().unwrap().iter().take(100) {
        let key = case["key"].as_str().unwrap();
        let r = get(
            a.next(),
            &envoy.url("/"),
            &[("cookie", &format!("a=b; uid={key}"))],
        )
        .unwrap();
        assert_eq!(r.version(), case["50-30-20"].as_str().unwrap(), "key {key}");
    }
    envoy.assert_every_worker_served(workers);
}

fn spoofed_route_header_is_overwritten(workers: u32) {
    let envoy = start(CONFIG, &["stable", "canary"], workers);
    let a = Spread::new();
    // carol is stable; she asks for canary through the route header itself.
    for _ in 0..20 {
        let r = get(
            a.next(),
            &envoy.url("/"),
            &[("x-user-id", "carol"), ("x-rollout-version", "canary")],
        )
        .unwrap();
        assert_eq!(r.version(), "stable");
        assert_eq!(r.seen.unwrap().header_all("x-rollout-version"), vec!["stable"]);
    }
    envoy.assert_every_worker_served(workers);
}

/// The filter makes no `clear_route_cache` call: Envoy routes on the decided value because a
/// wasm filter's request-header write clears the route it cached before the filters ran. Both
/// directions, and a client that already sends the decided value (the filter then writes
/// nothing) still lands there; a wrong `x-rollout-id` is replaced, the right one kept.
fn route_follows_the_header_write_without_an_explicit_clear(workers: u32) {
    let envoy = start(CONFIG, &["stable", "canary"], workers);
    let a = Spread::new();
    let cases = [
        ("alice", "stable", "other", "canary"),
        ("carol", "canary", "other", "stable"),
        ("alice", "canary", "checkout-2026-11", "canary"),
        ("carol", "stable", "checkout-2026-11", "stable"),
    ];
    for (key, sent, sent_id, want) in cases {
        for _ in 0..5 {
            let r = get(
                a.next(),
                &envoy.url("/"),
                &[
                    ("x-user-id", key),
                    ("x-rollout-version", sent),
                    ("x-rollout-id", sent_id),
                ],
            )
            .unwrap();
            assert_eq!(r.version(), want, "{key} sending {sent}");
            let seen = r.seen.unwrap();
            assert_eq!(seen.header_all("x-rollout-version"), vec![want]);
            assert_eq!(seen.header_all("x-rollout-id"), vec!["checkout-2026-11"]);
        }
    }
    envoy.assert_every_worker_served(workers);
}

fn override_header_and_query_are_honoured_in_order(workers: u32) {
    let envoy = start(CONFIG, &["stable", "canary"], workers);
    let a = Spread::new();
    let r = get(
        a.next(),
        &envoy.url("/"),
        &[("x-user-id", "carol"), ("x-rollout-pin", "canary")],
    )
    .unwrap();
    assert_eq!(r.version(), "canary");
    let r = get(
        a.next(),
        &envoy.url("/p?rollout-version=canary"),
        &[("x-user-id", "carol")],
    )
    .unwrap();
    assert_eq!(r.version(), "canary");
    // header > query
    let r = get(
        a.next(),
        &envoy.url("/p?rollout-version=canary"),
        &[("x-user-id", "alice"), ("x-rollout-pin", "stable")],
    )
    .unwrap();
    assert_eq!(r.version(), "stable");
    // Unknown names are ignored and counted; the sticky split decides.
    let r = get(
        a.next(),
        &envoy.url("/p?rollout-version=nope"),
        &[("x-user-id", "carol"), ("x-rollout-pin", "nope")],
    )
    .unwrap();
    assert_eq!(r.version(), "stable");
    assert_eq!(
        envoy.metric("rollout_rejected_total;rollout=checkout-2026-11;reason=unknown_override_header"),
        1
    );
    assert_eq!(
        envoy.metric("rollout_rejected_total;rollout=checkout-2026-11;reason=unknown_override_query"),
        1
    );
    assert_eq!(
        envoy.metric("rollout_requests_total;rollout=checkout-2026-11;version=canary;source=override_header"),
        1
    );
    assert_eq!(
        envoy.metric("rollout_requests_total;rollout=checkout-2026-11;version=canary;source=override_query"),
        1
    );
    envoy.assert_every_worker_served(workers);
}

fn no_key_means_random_and_both_versions_appear(workers: u32) {
    let cfg = r#"{"rolloutId":"r","versions":[{"name":"stable","weight":50},{"name":"canary","weight":50}]}"#;
    let envoy = start(cfg, &["stable", "canary"], workers);
    let a = Spread::new();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        *counts
            .entry(get(a.next(), &envoy.url("/"), &[]).unwrap().version().to_string())
            .or_default() += 1;
    }
    // 400 fair coin flips: each side within 140..260 unless the RNG is broken (p < 1e-9).
    for v in ["stable", "canary"] {
        let n = counts.get(v).copied().unwrap_or(0);
        assert!((140..=260).contains(&n), "{v}: {n} of 400 ({counts:?})");
    }
    assert_eq!(
        envoy.metric("rollout_requests_total;rollout=r;version=stable;source=random")
            + envoy.metric("rollout_requests_total;rollout=r;version=canary;source=random"),
        400
    );
    envoy.assert_every_worker_served(workers);
}

fn source_address_is_a_sticky_key(workers: u32) {
    let cfg = r#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":90},{"name":"canary","weight":10}],"stickyKeys":[{"sourceAddress":true}]}"#;
    let envoy = start(cfg, &["stable", "canary"], workers);
    let a = Spread::new();
    let first = get(a.next(), &envoy.url("/"), &[]).unwrap().version().to_string();
    for _ in 0..20 {
        assert_eq!(get(a.next(), &envoy.url("/"), &[]).unwrap().version(), first);
    }
    assert_eq!(
        envoy.metric(&format!(
            "rollout_requests_total;rollout=checkout-2026-11;version={first};source=sticky"
        )),
        21
    );
    envoy.assert_every_worker_served(workers);
}

#[test]
fn invalid_config_is_refused_with_the_path_and_reason() {
    let bad = r#"{"rolloutId":"r","versions":[{"name":"stable","weight":90},{"name":"canary","weight":-1}]}"#;
    let err = match Envoy::start(&Options::new(bad, &["stable", "canary"])) {
        Ok(_) => panic!("Envoy accepted an invalid filter config"),
        Err(e) => e,
    };
    assert!(
        err.contains("invalid configuration: versions[1].weight: must be an integer >= 0"),
        "Envoy log did not name the field:\n{err}"
    );
}

rollout_e2e::on_one_and_two_workers!(
    shares_within_one_and_a_half_points_over_10000_keys,
    a_key_repeated_100_times_gets_one_version_and_flagd_agrees,
    three_way_split_matches_flagd,
    spoofed_route_header_is_overwritten,
    route_follows_the_header_write_without_an_explicit_clear,
    override_header_and_query_are_honoured_in_order,
    no_key_means_random_and_both_versions_appear,
    source_address_is_a_sticky_key,
);
