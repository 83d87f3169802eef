//! Load with nothing lost: concurrent requests through the full configuration;
//! zero non-2xx, and the per-version counters sum exactly to the completed requests.
//! `LOAD_REQUESTS` (default 10,000) and `LOAD_CONCURRENCY` (default 64); `make soak` runs 100,000.

use std::sync::atomic::{AtomicU64, Ordering};

use rollout_e2e::{agent, get, Envoy, Options};

const FULL: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["*"] },
  "trace": { "newSpan": true },
  "responseHeaders": { "version": "x-rollout-version", "traceId": "x-trace-id" }
}"#;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn concurrent_load_loses_nothing() {
    let total = env_num("LOAD_REQUESTS", 10_000);
    let threads = env_num("LOAD_CONCURRENCY", 64);
    let envoy = Envoy::start(&Options::new(FULL, &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"));
    let url = envoy.url("/load");
    let memory = || envoy.metric("rollout_vm_memory_bytes;rollout=checkout-2026-11");
    // A VM reports its memory once it serves: one request first, then the figure it reports.
    let warm = get(&agent(), &url, &[]).unwrap();
    assert_eq!(warm.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while memory() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mem_start = memory();
    let ok = AtomicU64::new(0);
    let bad = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (url, ok, bad, errors) = (&url, &ok, &bad, &errors);
            s.spawn(move || {
                let a = agent();
                let mut i = t;
                while i < total && std::time::Instant::now() < deadline {
                    let user = format!("load-{i}");
                    let headers: Vec<(&str, &str)> = match i % 4 {
                        0 => vec![("x-user-id", &user)],
                        1 => vec![("cookie", "uid=bob; theme=dark")],
                        2 => vec![("x-rollout-pin", "canary"), ("traceparent", "garbage")],
                        _ => vec![],
                    };
                    match get(&a, url, &headers) {
                        Ok(r) if (200..300).contains(&r.status) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => bad.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    i += threads;
                }
            });
        }
    });
    let (ok, bad, errors) = (ok.into_inner(), bad.into_inner(), errors.into_inner());
    assert_eq!((bad, errors), (0, 0), "non-2xx / transport errors under load");
    assert_eq!(ok, total, "every request completed in time");
    let stats = envoy.stats();
    let sum = |prefix: &str| -> u64 {
        stats
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| *v)
            .sum()
    };
    assert_eq!(
        sum("wasmcustom.rollout_requests_total;"),
        total + 1,
        "requests counted exactly once"
    );
    assert_eq!(
        sum("wasmcustom.rollout_responses_total;"),
        total + 1,
        "responses counted exactly once"
    );
    let upstream: u64 = envoy
        .upstreams
        .iter()
        .map(|u| u.requests.load(Ordering::Relaxed))
        .sum();
    assert_eq!(upstream, total + 1, "the upstreams saw every request once");
    std::thread::sleep(std::time::Duration::from_millis(1_200)); // one tick refreshes the gauge
    let mem_end = memory();
    println!(
        "load: {total} requests at concurrency {threads}: all 2xx, counters exact; VM linear memory {mem_start} -> {mem_end} bytes"
    );
    assert!(mem_start > 0);
    assert!(
        mem_end <= mem_start + 4 * 1024 * 1024,
        "VM memory grew {mem_start} -> {mem_end}"
    );
}
