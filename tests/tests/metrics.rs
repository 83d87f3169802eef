//! Issue: per-version metrics are exact, and labelled on /stats/prometheus; with one Envoy
//! worker and with two (the requests spread over both, the counts summed across their VMs).

use rollout_e2e::{get, Envoy, Options, Spread};
use std::collections::BTreeMap;

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 70 }, { "name": "canary", "weight": 30 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "override": { "header": "x-rollout-pin", "trustedPeers": ["*"] }
}"#;

fn m(envoy: &Envoy, name: &str, labels: &str) -> u64 {
    envoy.metric(&format!("{name};rollout=checkout-2026-11;{labels}"))
}

fn every_request_counted_once_per_version_source_and_class(workers: u32) {
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    // The canary upstream answers every 5th request it gets with 503.
    opts.fail_every = vec![("canary".into(), 5)];
    opts.workers = workers;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let a = Spread::new();

    // (version, source, status) -> count, as the client saw it.
    let mut seen: BTreeMap<(String, &str, u16), u64> = BTreeMap::new();
    for i in 0..2_000 {
        let key = format!("m-{i}");
        let mut headers = vec![("x-user-id", key.as_str())];
        let source = if i % 10 == 0 {
            headers.push(("x-rollout-pin", "canary"));
            "override_header"
        } else if i % 10 == 1 {
            headers.clear();
            "random"
        } else {
            "sticky"
        };
        let r = get(a.next(), &envoy.url("/"), &headers).unwrap();
        let v = r.header("x-served-by").unwrap_or("none").to_string();
        *seen.entry((v, source, r.status)).or_default() += 1;
    }
    let total: u64 = seen.values().sum();
    assert_eq!(total, 2_000);

    for version in ["stable", "canary"] {
        for source in [
            "override_header",
            "random",
            "sticky",
            "override_query",
            "certificate",
        ] {
            let want: u64 = seen
                .iter()
                .filter(|((v, s, _), _)| v == version && *s == source)
                .map(|(_, n)| n)
                .sum();
            assert_eq!(
                m(
                    &envoy,
                    "rollout_requests_total",
                    &format!("version={version};source={source}")
                ),
                want,
                "requests {version}/{source}"
            );
        }
        for (class, lo, hi) in [("2xx", 200, 299), ("5xx", 500, 599), ("4xx", 400, 499)] {
            let want: u64 = seen
                .iter()
                .filter(|((v, _, st), _)| v == version && (lo..=hi).contains(st))
                .map(|(_, n)| n)
                .sum();
            assert_eq!(
                m(
                    &envoy,
                    "rollout_responses_total",
                    &format!("version={version};code_class={class}")
                ),
                want,
                "responses {version}/{class}"
            );
        }
        assert_eq!(
            m(
                &envoy,
                "rollout_responses_total",
                &format!("version={version};code_class=reset")
            ),
            0
        );
        // Upstream 503s are not local replies.
        assert_eq!(
            m(
                &envoy,
                "rollout_local_replies_total",
                &format!("version={version}")
            ),
            0
        );
    }
    let canary_5xx = m(&envoy, "rollout_responses_total", "version=canary;code_class=5xx");
    let canary_all: u64 = seen
        .iter()
        .filter(|((v, _, _), _)| v == "canary")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(canary_5xx, canary_all / 5, "every 5th canary response failed");

    // Labels on /stats/prometheus, and one histogram sample per completed request.
    let sticky_canary = envoy.prom_value(
        "rollout_requests_total",
        &[
            ("rollout", "checkout-2026-11"),
            ("version", "canary"),
            ("source", "sticky"),
        ],
    );
    assert_eq!(
        sticky_canary as u64,
        m(&envoy, "rollout_requests_total", "version=canary;source=sticky")
    );
    let mut durations = 0.0;
    for version in ["stable", "canary"] {
        durations += envoy.prom_value(
            "rollout_request_duration_milliseconds_count",
            &[("version", version)],
        );
    }
    assert_eq!(durations as u64, 2_000);
    envoy.assert_every_worker_served(workers);
}

fn envoy_local_replies_are_counted_as_such(workers: u32) {
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.dead_versions = vec!["canary".into()];
    opts.workers = workers;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let a = Spread::new();
    for _ in 0..7 {
        let r = get(a.next(), &envoy.url("/"), &[("x-rollout-pin", "canary")]).unwrap();
        assert_eq!(r.status, 503);
    }
    assert_eq!(
        m(&envoy, "rollout_responses_total", "version=canary;code_class=5xx"),
        7
    );
    assert_eq!(m(&envoy, "rollout_local_replies_total", "version=canary"), 7);
    envoy.assert_every_worker_served(workers);
}

rollout_e2e::on_one_and_two_workers!(
    every_request_counted_once_per_version_source_and_class,
    envoy_local_replies_are_counted_as_such,
);
