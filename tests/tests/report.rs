//! `make report`: `rollout-report` against a real Envoy with the filter. A canary
//! failing every 5th request is an abort (exit 2) with the exact counts; a healthy
//! one is a hold (exit 1) until it has enough requests, then a promote (exit 0).

use std::collections::BTreeMap;

use rollout_e2e::{agent, get, Echo, Envoy, Options};

mod common;
use common::{report, report_at, row};

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "override": { "header": "x-rollout-pin", "trustedPeers": ["*"] }
}"#;

/// `n` requests with distinct sticky keys; (version, status) -> count as the client saw them.
fn send(envoy: &Envoy, prefix: &str, n: u32) -> BTreeMap<(String, u16), u64> {
    let a = agent();
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let r = get(&a, &envoy.url("/"), &[("x-user-id", &key)]).unwrap();
        let v = r.header("x-served-by").unwrap_or("none").to_string();
        *seen.entry((v, r.status)).or_insert(0) += 1;
    }
    seen
}

fn count(seen: &BTreeMap<(String, u16), u64>, version: &str, fail: bool) -> u64 {
    seen.iter()
        .filter(|((v, s), _)| v == version && (*s >= 500) == fail)
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn failing_canary_is_an_abort_with_exact_numbers() {
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.fail_every = vec![("canary".into(), 5)];
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let seen = send(&envoy, "f", 600);

    let (code, text, err) = report(&envoy, common::ABORT_THRESHOLDS);
    println!("{text}{err}");
    assert_eq!(code, Some(2), "abort exits 2\n{text}{err}");

    let (c_ok, c_bad) = (count(&seen, "canary", false), count(&seen, "canary", true));
    let (s_ok, s_bad) = (count(&seen, "stable", false), count(&seen, "stable", true));
    let c_all = c_ok + c_bad;
    assert_eq!(c_bad, c_all / 5, "every 5th canary request failed");
    assert_eq!(s_bad, 0);
    assert_eq!(c_all + s_ok, 600);

    let c = row(&text, "canary");
    assert_eq!(c[1], "candidate");
    assert_eq!(c[2], c_all.to_string(), "requests");
    assert_eq!(c[3], format!("{:.2}%", c_all as f64 * 100.0 / 600.0), "share");
    assert_eq!(c[4], c_all.to_string(), "responses");
    assert_eq!(
        c[5],
        format!("{:.2}%", c_ok as f64 * 100.0 / c_all as f64),
        "success"
    );
    assert_eq!(c[6], c_bad.to_string(), "5xx");
    assert_eq!(c[7], "0", "reset");
    assert_eq!(c[8], "0", "upstream 503s are not local replies");
    for col in [9, 10] {
        let ms: f64 = c[col].parse().unwrap();
        assert!(ms > 0.0 && ms < 300.0, "latency estimate {ms}\n{text}");
    }
    assert_eq!(c[11], "abort");

    let s = row(&text, "stable");
    assert_eq!(s[1], "baseline");
    assert_eq!(s[2], s_ok.to_string());
    assert_eq!(s[5], "100.00%");
    assert_eq!(s[11], "-", "the baseline is not judged");

    assert!(
        text.contains(&format!(
            "canary: abort: success {:.2}% < 99.9% ({c_bad} of {c_all} responses 5xx or reset)",
            c_ok as f64 * 100.0 / c_all as f64
        )),
        "{text}"
    );
    assert!(text.contains("p50/p99 are estimates"), "{text}");
    assert!(text.contains("decisions: sticky 600\n"), "{text}");
    assert!(text.trim_end().ends_with("verdict: ABORT"), "{text}");

    // A threshold the canary meets turns the verdict around.
    let (code, text, _) = report(&envoy, &["--min-success", "75", "--min-requests", "50"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.trim_end().ends_with("verdict: PROMOTE"), "{text}");
}

#[test]
fn healthy_canary_holds_until_it_has_enough_requests_then_promotes() {
    let envoy = Envoy::start(&Options::new(CONFIG, &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"));
    let args = [
        "--min-success",
        "99.9",
        "--max-p99-ms",
        "300",
        "--min-requests",
        "100",
    ];

    send(&envoy, "h", 40);
    let (code, text, err) = report(&envoy, &args);
    assert_eq!(code, Some(1), "hold exits 1\n{text}{err}");
    assert!(text.contains("requests < --min-requests 100"), "{text}");
    assert!(text.trim_end().ends_with("verdict: HOLD"), "{text}");

    let seen = send(&envoy, "h2", 400);
    let (code, text, err) = report(&envoy, &args);
    println!("{text}{err}");
    assert_eq!(code, Some(0), "promote exits 0\n{text}{err}");
    assert!(text.trim_end().ends_with("verdict: PROMOTE"), "{text}");
    let c = row(&text, "canary");
    assert!(c[2].parse::<u64>().unwrap() >= count(&seen, "canary", false));
    assert_eq!(c[5], "100.00%");
    assert_eq!(c[11], "promote");

    // --window judges only what happens during the window: nothing here, so hold.
    let (code, text, _) = report(&envoy, &[&args[..], &["--window", "300ms"]].concat());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("what happened during the last 0.3 s"), "{text}");
    assert_eq!(row(&text, "canary")[2], "0");
    assert!(text.contains("0 requests < --min-requests 100"), "{text}");
}

#[test]
fn no_report_is_exit_3_with_the_reason() {
    let envoy = Envoy::start(&Options::new(CONFIG, &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"));
    send(&envoy, "n", 5);
    let (code, _, err) = report(&envoy, &["--rollout", "no-such-rollout"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("rollouts: checkout-2026-11"), "{err}");
    let (code, _, err) = report(&envoy, &["--min-success", "101"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("percentage"), "{err}");

    // Nothing listening.
    let dead = Echo::dead("nobody");
    let (code, _, err) = report_at(&dead.addr.to_string(), &[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("cannot read"));
}
