//! Issue: many rollouts in one filter, chosen by `:authority` and `:path`; the tests that count
//! run with one Envoy worker and with two (requests spread over both workers' VMs).

use std::collections::BTreeMap;

use rollout_e2e::{get, Envoy, Options, Reply, Spread};
use rollout_filter::rollouts::config_with_rollouts;

/// Three rollouts: one by host and path, one by wildcard, one by an upper-case host.
const THREE: &str = r#"{
  "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "rollouts": [
    { "match": { "hosts": ["shop.example.com"], "pathPrefix": "/cart" },
      "rolloutId": "cart-7", "routeHeader": "x-cart-version" },
    { "match": { "hosts": ["*.api.example.com"] }, "rolloutId": "api-3",
      "versions": [ { "name": "stable", "weight": 1 }, { "name": "canary", "weight": 3 } ] },
    { "match": { "hosts": ["Shop.Example.COM"] }, "rolloutId": "shop-1" }
  ]
}"#;

fn send(envoy: &Envoy, a: &ureq::Agent, host: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("host", host)];
    headers.extend_from_slice(extra);
    let r = get(a, &envoy.url(path), &headers).unwrap();
    assert_eq!(r.status, 200, "{host}{path}: {r:?}");
    r
}

/// `rollout_requests_total` of `rollout`, summed over versions and sources, and by version.
fn requests(stats: &BTreeMap<String, u64>, rollout: &str) -> (u64, BTreeMap<String, u64>) {
    let prefix = format!("wasmcustom.rollout_requests_total;rollout={rollout};version=");
    let mut by_version = BTreeMap::new();
    let mut total = 0;
    for (k, v) in stats.range(prefix.clone()..) {
        let Some(rest) = k.strip_prefix(&prefix) else {
            break;
        };
        let version = rest.split(';').next().unwrap_or_default().to_string();
        *by_version.entry(version).or_default() += v;
        total += v;
    }
    (total, by_version)
}

fn three_rollouts_chosen_by_host_and_path(workers: u32) {
    let mut opts = Options::new(THREE, &["stable", "canary"]);
    opts.workers = workers;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let a = Spread::new();
    // (rollout or "", route header) per request, and what each rollout's upstream saw per version.
    let cases: &[(&str, &str, &str, &str)] = &[
        // host, path, rollout, the route header it writes
        ("shop.example.com:8080", "/cart/items", "cart-7", "x-cart-version"),
        ("shop.example.com", "/cart?x=1", "cart-7", "x-cart-version"),
        ("SHOP.EXAMPLE.COM", "/", "shop-1", "x-rollout-version"),
        ("shop.example.com:80", "/checkout", "shop-1", "x-rollout-version"),
        ("a.api.example.com", "/v1/users", "api-3", "x-rollout-version"),
        ("x.y.API.example.com:443", "/", "api-3", "x-rollout-version"),
    ];
    let mut sent: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for round in 0..40 {
        for (host, path, rollout, header) in cases {
            let user = format!("u-{round}");
            // A client's own route headers never choose the version of a matched request.
            let r = send(
                &envoy,
                a.next(),
                host,
                path,
                &[
                    ("x-user-id", &user),
                    ("x-rollout-version", "spoof"),
                    ("x-cart-version", "spoof"),
                ],
            );
            let seen = r.seen.as_ref().unwrap();
            assert_eq!(seen.header("x-rollout-id"), Some(*rollout), "{host}{path}");
            let version = seen.header(header).unwrap_or_default().to_string();
            assert!(
                version == "stable" || version == "canary",
                "{host}{path}: {seen:?}"
            );
            // Sticky per rollout: the same user in the same rollout gets the same version.
            let again = send(&envoy, a.next(), host, path, &[("x-user-id", &user)]);
            assert_eq!(again.seen.unwrap().header(header), Some(version.as_str()));
            *sent.entry(rollout).or_default().entry(version).or_default() += 2;
        }
    }
    // Unmatched: the wildcard's own suffix, an unknown host, a known host on another rollout's
    // path. The client's route and rollout-id headers are removed; nothing is set.
    let unmatched = [
        ("api.example.com", "/"),
        ("other.example.com:8080", "/cart"),
        ("example.com", "/"),
    ];
    for (host, path) in unmatched {
        let r = send(
            &envoy,
            a.next(),
            host,
            path,
            &[
                ("x-user-id", "u-1"),
                ("x-rollout-version", "canary"),
                ("x-cart-version", "canary"),
                ("x-rollout-id", "cart-7"),
                ("x-rollout-pin", "kept"),
            ],
        );
        let seen = r.seen.unwrap();
        for h in ["x-rollout-version", "x-cart-version", "x-rollout-id"] {
            assert_eq!(seen.header(h), None, "{host}: {h} reached the upstream");
        }
        assert_eq!(seen.header("x-rollout-pin"), Some("kept"), "not ours to remove");
        assert_eq!(seen.upstream, "stable", "the route header did not route it");
        assert_eq!(seen.header("traceparent"), None, "no trace context for unmatched");
    }

    let stats = envoy.stats();
    for (rollout, by_version) in &sent {
        let (total, counted) = requests(&stats, rollout);
        assert_eq!(total, by_version.values().sum::<u64>(), "{rollout}");
        assert_eq!(
            &counted, by_version,
            "{rollout}: counted per version = seen upstream"
        );
        let responses: u64 = stats
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("wasmcustom.rollout_responses_total;rollout={rollout};")))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(responses, total, "{rollout}: responses");
    }
    assert_eq!(
        stats.get("wasmcustom.rollout_unmatched_requests_total"),
        Some(&(unmatched.len() as u64))
    );
    // api-3 splits 1:3, the others 1:1: each rollout used its own weights.
    let api = &sent["api-3"];
    assert!(api["canary"] > api["stable"], "{api:?}");
    // No metric is defined on a request: a few per tick, and the log says the longest tick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let line = loop {
        let log = envoy.log();
        if let Some(l) = log.lines().find(|l| l.contains("metrics of 3 rollouts defined")) {
            break l.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no definition line:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    println!("{}", line.rsplit("rollout-filter: ").next().unwrap_or(&line));
    envoy.assert_every_worker_served(workers);
}

fn a_thousand_rollouts_each_request_in_its_own_hosts_rollout(workers: u32) {
    let mut opts = Options::new(config_with_rollouts(1000), &["stable", "canary"]);
    opts.workers = workers;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("1000 rollouts configured"))
        .unwrap_or_else(|| panic!("no configure line:\n{log}"));
    println!("on_configure: {}", line.rsplit(": ").next().unwrap_or(line));
    let a = Spread::new();
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    // Every 7th rollout, each a different number of requests, plus the wildcard at two depths.
    for i in (0..999).step_by(7) {
        let host = format!("svc-{i}.example.com");
        for n in 0..(i % 4 + 1) {
            let user = format!("u-{n}");
            let r = send(&envoy, a.next(), &host, "/", &[("x-user-id", &user)]);
            assert_eq!(
                r.seen.unwrap().header("x-rollout-id"),
                Some(format!("svc-{i}").as_str())
            );
            *sent.entry(format!("svc-{i}")).or_default() += 1;
        }
    }
    for host in ["a.wild.example.com", "b.c.Wild.Example.com:8443"] {
        let r = send(&envoy, a.next(), host, "/", &[]);
        assert_eq!(r.seen.unwrap().header("x-rollout-id"), Some("wild"));
        *sent.entry("wild".into()).or_default() += 1;
    }
    send(
        &envoy,
        a.next(),
        "svc-999.example.com",
        "/",
        &[("x-rollout-version", "canary")],
    );

    // Metrics are defined a few per tick, rollouts with traffic first: wait for their counts.
    let counted = |stats: &BTreeMap<String, u64>| {
        sent.iter().all(|(id, n)| requests(stats, id).0 == *n)
            && stats.contains_key("wasmcustom.rollout_vm_memory_bytes;rollout=wild")
    };
    let started = std::time::Instant::now();
    let stats = envoy.stats_when(std::time::Duration::from_secs(120), counted);
    println!(
        "1,000 rollouts: the {} rollouts with traffic counted {} ms after their requests",
        sent.len(),
        started.elapsed().as_millis()
    );
    for i in 0..999 {
        let id = format!("svc-{i}");
        let want = sent.get(&id).copied().unwrap_or(0);
        assert_eq!(requests(&stats, &id).0, want, "{id}");
    }
    assert_eq!(requests(&stats, "wild").0, 2);
    assert_eq!(stats.get("wasmcustom.rollout_unmatched_requests_total"), Some(&1));
    let memory = stats
        .get("wasmcustom.rollout_vm_memory_bytes;rollout=svc-0")
        .copied()
        .unwrap_or(0);
    assert!(memory > 0);
    // Summed over the workers' VMs, each adding its share to every rollout's gauge.
    assert_eq!(
        stats.get("wasmcustom.rollout_vm_memory_bytes;rollout=wild"),
        Some(&memory),
        "every rollout's gauge shows the same memory"
    );
    println!(
        "1,000 rollouts: VM linear memory {} KiB; {} filter metrics",
        memory / 1024,
        stats
            .keys()
            .filter(|k| k.starts_with("wasmcustom.rollout_"))
            .count()
    );
    envoy.assert_every_worker_served(workers);
}

/// Every series of every rollout exists soon after a load, with no traffic at all: metrics are
/// defined in the background (issue 30: within 10 s for 100 rollouts), on both workers.
#[test]
fn a_hundred_idle_rollouts_have_every_series_within_ten_seconds() {
    let mut opts = Options::new(config_with_rollouts(100), &["stable", "canary"]);
    opts.workers = 2;
    let started = std::time::Instant::now();
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let per_rollout = |stats: &BTreeMap<String, u64>, id: &str| {
        stats
            .keys()
            .filter(|k| k.starts_with("wasmcustom.rollout_") && k.contains(&format!(";rollout={id};")))
            .count()
    };
    // Every counter and gauge the filter defines for a two-version rollout, from its own lists
    // (histograms are not plain values in /stats; the memory gauge comes once a VM serves).
    let reasons = rollout_filter::decision::Reject::ALL.len()
        + rollout_filter::trace::TraceReject::ALL.len()
        + rollout_filter::identity::CertReject::ALL.len()
        + rollout_filter::identity::LabelReject::ALL.len()
        + rollout_filter::identity::XfccReject::ALL.len();
    let per_version = rollout_filter::decision::Source::ALL.len()
        + rollout_filter::metrics::CodeClass::ALL.len()
        + rollout_filter::grpc::GrpcCode::ALL.len()
        + 1;
    let want = 2 * per_version + reasons;
    let ids: Vec<String> = (0..99)
        .map(|i| format!("svc-{i}"))
        .chain(["wild".to_string()])
        .collect();
    let all = |s: &BTreeMap<String, u64>| ids.iter().all(|id| per_rollout(s, id) == want);
    let stats = envoy.stats_when(std::time::Duration::from_secs(30), all);
    let took = started.elapsed();
    let missing: Vec<&String> = ids.iter().filter(|id| per_rollout(&stats, id) != want).collect();
    println!(
        "100 idle rollouts: {want} series each, all defined {} ms after Envoy started",
        took.as_millis()
    );
    assert!(missing.is_empty(), "rollouts without every series: {missing:?}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}

rollout_e2e::on_one_and_two_workers!(
    three_rollouts_chosen_by_host_and_path,
    a_thousand_rollouts_each_request_in_its_own_hosts_rollout,
);
