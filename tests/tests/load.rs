//! Load with nothing lost: concurrent requests through the full configuration, with one Envoy
//! worker and with two; zero non-2xx, and the per-version counters summed over the workers'
//! VMs equal the completed requests. `LOAD_REQUESTS` (default 10,000) and `LOAD_CONCURRENCY`
//! (default 64); `make soak` runs 100,000. And the VM's memory does not grow with requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rollout_e2e::{agent, get, settle, Envoy, Options};

const FULL: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["*"] },
  "trace": { "newSpan": true },
  "responseHeaders": { "version": "x-rollout-version", "traceId": "x-trace-id" }
}"#;
const MEMORY_GAUGE: &str = "wasmcustom.rollout_vm_memory_bytes;rollout=checkout-2026-11";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start(workers: u32) -> Envoy {
    let mut opts = Options::new(FULL, &["stable", "canary"]);
    opts.workers = workers;
    Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Requests `first..first + count` from `threads` threads, each on its own connection, a mix
/// of sticky keys (each request its own user), cookies, pins with a bad traceparent and none:
/// (2xx, other statuses, transport errors).
fn drive(url: &str, first: u64, count: u64, threads: u64) -> (u64, u64, u64) {
    let (ok, bad, errors) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(600);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ok, bad, errors) = (&ok, &bad, &errors);
            s.spawn(move || {
                let a = agent();
                let mut i = first + t;
                while i < first + count && Instant::now() < deadline {
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
    (ok.into_inner(), bad.into_inner(), errors.into_inner())
}

fn concurrent_load_loses_nothing(workers: u32) {
    let total = env_num("LOAD_REQUESTS", 10_000);
    let threads = env_num("LOAD_CONCURRENCY", 64);
    let envoy = start(workers);
    let (ok, bad, errors) = drive(&envoy.url("/load"), 0, total, threads);
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
    let requests = sum("wasmcustom.rollout_requests_total;");
    assert_eq!(requests, total, "requests counted exactly once");
    let responses = sum("wasmcustom.rollout_responses_total;");
    assert_eq!(responses, total, "responses counted exactly once");
    let upstream: u64 = envoy
        .upstreams
        .iter()
        .map(|u| u.requests.load(Ordering::Relaxed))
        .sum();
    assert_eq!(upstream, total, "the upstreams saw every request once");
    envoy.assert_every_worker_served(workers);
    println!("load, {workers} worker(s): {total} requests at concurrency {threads}: all 2xx, counters exact");
}

rollout_e2e::on_one_and_two_workers!(concurrent_load_loses_nothing);

/// What the VM may keep per request, averaged: a leak of a few bytes per request (an id
/// kept, a buffer not freed) grows linear memory by pages over the rounds below.
const MAX_BYTES_PER_REQUEST: u64 = 16;
/// Requests per measured round; 16 B × 2 rounds is ~4 of the 64 KiB pages memory grows by.
const ROUND: u64 = 8_000;
const ROUND_THREADS: u64 = 16;

/// The VM's linear memory once the gauge has been refreshed since the last request.
fn vm_memory(envoy: &Envoy) -> u64 {
    let stats = envoy.stats_quiet_for(settle::MEMORY_QUIET);
    stats.get(MEMORY_GAUGE).copied().unwrap_or(0)
}

/// After a warm-up at the same concurrency (the allocator reaches its working size), memory
/// after one more round and after two grows by at most `MAX_BYTES_PER_REQUEST` per request.
/// One worker: one VM, so the gauge is that VM's.
#[test]
fn vm_memory_does_not_grow_per_request() {
    let envoy = start(1);
    let url = envoy.url("/load");
    let mut sent = 0;
    let mut round = |n: u64| {
        let (ok, bad, errors) = drive(&url, sent, n, ROUND_THREADS);
        assert_eq!((ok, bad, errors), (n, 0, 0), "a round of {n} requests");
        sent += n;
        vm_memory(&envoy)
    };
    let m0 = round(ROUND / 2);
    let m1 = round(ROUND);
    let m2 = round(ROUND);
    assert!(m0 > 0, "the filter's memory gauge was not reported");
    let per_request = |m: u64, n: u64| m.saturating_sub(m0) as f64 / n as f64;
    println!(
        "VM linear memory after warm-up {m0} B; +{} B after {ROUND} requests ({:.2} B/request), \
         +{} B after {} ({:.2} B/request)",
        m1 as i64 - m0 as i64,
        per_request(m1, ROUND),
        m2 as i64 - m0 as i64,
        2 * ROUND,
        per_request(m2, 2 * ROUND)
    );
    for (m, n) in [(m1, ROUND), (m2, 2 * ROUND)] {
        assert!(
            m <= m0 + MAX_BYTES_PER_REQUEST * n,
            "VM memory grew {m0} -> {m} B over {n} requests: over {MAX_BYTES_PER_REQUEST} B/request"
        );
    }
}
