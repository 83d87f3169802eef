//! What users get when the filter's VM dies, under each wasm failure policy.
//! Uses the test-only build (`--features test-trap`) whose VM traps on a header.

use rollout_e2e::{agent, get, trap_wasm_path, Envoy, Options};

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" } ]
}"#;

fn start(policy: &'static str) -> Envoy {
    let wasm = trap_wasm_path();
    assert!(wasm.exists(), "{} missing: run `make build-trap`", wasm.display());
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.wasm = Some(wasm);
    opts.failure_policy = policy;
    Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"))
}

/// (status, upstream) for alice, who the split sends to canary, 20 times.
fn alice(envoy: &Envoy) -> Vec<(u16, String)> {
    let a = agent();
    (0..20)
        .map(|_| {
            let r = get(&a, &envoy.url("/"), &[("x-user-id", "alice")]).unwrap();
            (r.status, r.version().to_string())
        })
        .collect()
}

fn trap(envoy: &Envoy) -> u16 {
    get(&agent(), &envoy.url("/"), &[("x-rollout-test-trap", "1")])
        .map(|r| r.status)
        .unwrap_or(0)
}

#[test]
fn fail_open_keeps_traffic_flowing_on_the_default_route() {
    let envoy = start("FAIL_OPEN");
    assert!(alice(&envoy).iter().all(|(s, v)| *s == 200 && v == "canary"));
    let trapped = trap(&envoy);
    println!("FAIL_OPEN: the trapping request got {trapped}");
    let after = alice(&envoy);
    // The filter is skipped: no route header, so the default route (stable), never an error.
    assert!(after.iter().all(|(s, v)| *s == 200 && v == "stable"), "{after:?}");
}

#[test]
fn fail_reload_brings_the_filter_back() {
    let envoy = start("FAIL_RELOAD");
    trap(&envoy);
    // Until the reload backoff (1 s by default) has passed, requests fail closed.
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(20);
    let mut failed = 0;
    loop {
        let round = alice(&envoy);
        if round.iter().all(|(s, v)| *s == 200 && v == "canary") {
            break;
        }
        failed += round.iter().filter(|(s, _)| *s != 200).count();
        assert!(
            std::time::Instant::now() < deadline,
            "filter did not come back: {round:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!(
        "FAIL_RELOAD: filter back after {:.1} s; {failed} requests failed meanwhile",
        started.elapsed().as_secs_f64()
    );
    let stats = envoy.stats();
    let reloads: u64 = stats
        .iter()
        .filter(|(k, _)| k.ends_with("vm_reload_success"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        reloads >= 1,
        "no vm_reload_success in {:?}",
        stats.keys().filter(|k| k.contains("wasm")).collect::<Vec<_>>()
    );
}

#[test]
fn fail_closed_takes_traffic_down() {
    // Why the shipped configs do not use it: every later request on the worker fails.
    let envoy = start("FAIL_CLOSED");
    trap(&envoy);
    let after = alice(&envoy);
    assert!(after.iter().all(|(s, _)| *s >= 500), "{after:?}");
}
