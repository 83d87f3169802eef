//! Issue 25: the canary guard in the real Envoy, two workers, under steady load. A canary that
//! goes down is taken off its split users within seconds; one failing a fifth of its requests
//! trips too; equal failure rates and a shared outage never do; a trusted override still
//! reaches the tripped canary; gRPC failures count; after it heals and the hold passes every
//! user is back where flagd puts them; and the same in route-weights mode.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rollout_e2e::grpc::GrpcClient;
use rollout_e2e::{front_bootstrap, get, Echo, Envoy, Options, Traffic};
use rollout_filter::split;

const ROLLOUT: &str = "checkout";
const USERS: usize = 300;
/// Longer than the 5 s the test watches a down canary for; short enough to see the probe and
/// the close (a probe lasts as long as the hold).
const HOLD_SECONDS: u64 = 6;

fn config(weights: [u32; 2], extra: &str) -> String {
    format!(
        r#"{{"rolloutId":"{ROLLOUT}","versions":[{{"name":"stable","weight":{}}},{{"name":"canary","weight":{}}}],
          "stickyKeys":[{{"header":"x-user-id"}}],
          "override":{{"header":"x-rollout-pin","trustedPeers":["*"]}},
          "guard":{{"holdSeconds":{HOLD_SECONDS}}}{extra}}}"#,
        weights[0], weights[1]
    )
}

fn user(i: usize) -> String {
    format!("guard-user-{i}")
}

/// Where flagd puts the user (the split's own bucketing, checked against flagd elsewhere).
fn flagd(i: usize, weights: [u32; 2]) -> &'static str {
    let h = split::hash(ROLLOUT.as_bytes(), user(i).as_bytes());
    ["stable", "canary"][split::pick(h, &weights, weights[0] + weights[1])]
}

/// One request of the steady traffic: when it ended, which upstream answered, the status.
#[derive(Debug)]
struct Sample {
    ended: Instant,
    upstream: String,
    status: u16,
}

fn traffic(url: String) -> Traffic<Sample> {
    Traffic::start(Duration::from_millis(1), move |a, n| {
        let r = get(a, &url, &[("x-user-id", &user(n % USERS))]);
        let (upstream, status) = match r {
            Ok(r) => (r.version().to_string(), r.status),
            Err(_) => (String::new(), 0),
        };
        Sample {
            ended: Instant::now(),
            upstream,
            status,
        }
    })
}

fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stats_now()
        .get(&format!("wasmcustom.{name}"))
        .copied()
        .unwrap_or(0)
}

fn tripped(envoy: &Envoy) -> bool {
    stat(
        envoy,
        &format!("rollout_guard_tripped;rollout={ROLLOUT};version=canary"),
    ) == 1
}

fn trips(envoy: &Envoy) -> u64 {
    stat(
        envoy,
        &format!("rollout_guard_trips_total;rollout={ROLLOUT};version=canary"),
    )
}

/// Waits up to `limit` for `cond`; the time it took.
fn wait_for(limit: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Every user, asked once more, is where flagd puts them (the guard has closed). A worker reads
/// the shared state on its next tick, so the sweep is repeated for a few seconds until it holds.
fn all_back_where_flagd_puts_them(envoy: &Envoy, weights: [u32; 2]) {
    let a = rollout_e2e::agent();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let wrong: Vec<(usize, String, u16)> = (0..USERS)
            .filter_map(|i| {
                let r = get(&a, &envoy.url("/"), &[("x-user-id", &user(i))]).unwrap();
                ((r.version(), r.status) != (flagd(i, weights), 200))
                    .then(|| (i, r.version().to_string(), r.status))
            })
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "users not where flagd puts them: {wrong:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Down at `down`: the last split request that reached canary, relative to `down`.
fn last_canary_after(samples: &[Sample], down: Instant) -> Duration {
    samples
        .iter()
        .filter(|s| s.upstream == "canary" && s.ended > down)
        .map(|s| s.ended - down)
        .max()
        .unwrap_or_default()
}

/// The canary goes down under load; the guard takes it off; it heals; everyone comes back.
fn down_and_back(envoy: &Envoy, canary: &Echo, weights: [u32; 2], label: &str) {
    let t = traffic(envoy.url("/"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!tripped(envoy), "{label}: tripped while healthy");
    let down = Instant::now();
    canary.fail_every.store(1, Ordering::SeqCst);
    let to_trip = wait_for(Duration::from_secs(5), "the guard trips", || tripped(envoy));
    std::thread::sleep(Duration::from_millis(5_500).saturating_sub(down.elapsed()));
    // A trusted override still reaches the tripped canary (which answers 503).
    let pinned = get(
        &rollout_e2e::agent(),
        &envoy.url("/"),
        &[("x-rollout-pin", "canary")],
    )
    .unwrap();
    assert_eq!((pinned.version(), pinned.status), ("canary", 503), "{label}");
    let samples = t.finish();
    let last = last_canary_after(&samples, down);
    let failed = samples
        .iter()
        .filter(|s| s.upstream == "canary" && s.ended > down && s.status == 503)
        .count();
    println!(
        "{label}: {} requests; canary down -> guard tripped (gauge) in {} ms; last split request on canary {} ms after it went down; {failed} failed in between",
        samples.len(),
        to_trip.as_millis(),
        last.as_millis()
    );
    assert!(
        last < Duration::from_secs(5),
        "{label}: canary still served {last:?} after it went down"
    );
    assert!(
        samples.iter().all(|s| s.status == 200 || s.upstream == "canary"),
        "{label}: a request failed off the canary"
    );
    assert_eq!(trips(envoy), 1, "{label}: one trip");
    assert!(
        envoy
            .log()
            .contains("guard tripped: canary sends its users to stable"),
        "{label}"
    );
    // Healed: after the hold, a probe of a tenth of its users, then the guard closes.
    canary.fail_every.store(0, Ordering::SeqCst);
    let t = traffic(envoy.url("/"));
    let closed = wait_for(
        Duration::from_secs(3 * HOLD_SECONDS + 10),
        "the guard closes",
        || !tripped(envoy),
    );
    t.finish();
    println!(
        "{label}: guard closed {} ms after the canary healed",
        closed.as_millis()
    );
    all_back_where_flagd_puts_them(envoy, weights);
}

fn filter_weights_envoy(weights: [u32; 2]) -> Envoy {
    let mut opts = Options::new(config(weights, ""), &["stable", "canary"]);
    opts.workers = 2;
    Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_canary_that_goes_down_is_taken_off_its_users_within_seconds() {
    for weights in [[50, 50], [90, 10]] {
        let envoy = filter_weights_envoy(weights);
        let label = format!("{}/{}", weights[0], weights[1]);
        down_and_back(&envoy, &envoy.upstreams[1], weights, &label);
    }
}

#[test]
fn a_fifth_failing_trips_but_equal_rates_and_a_shared_outage_never_do() {
    let envoy = filter_weights_envoy([50, 50]);
    let (stable, canary) = (&envoy.upstreams[0], &envoy.upstreams[1]);
    let t = traffic(envoy.url("/"));
    // Both fail one request in 25, for a while.
    stable.fail_every.store(25, Ordering::SeqCst);
    canary.fail_every.store(25, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        !tripped(&envoy) && trips(&envoy) == 0,
        "tripped on equal failure rates"
    );
    // A shared outage: every version fails every request.
    stable.fail_every.store(1, Ordering::SeqCst);
    canary.fail_every.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !tripped(&envoy) && trips(&envoy) == 0,
        "tripped on a shared outage"
    );
    // Stable healthy, canary failing a fifth of its requests.
    stable.fail_every.store(0, Ordering::SeqCst);
    canary.fail_every.store(5, Ordering::SeqCst);
    let took = wait_for(Duration::from_secs(60), "a fifth failing trips", || {
        tripped(&envoy)
    });
    let samples = t.finish();
    let by: BTreeMap<&str, usize> = samples.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.upstream.as_str()).or_default() += 1;
        m
    });
    println!(
        "20 % failing canary tripped after {} ms; requests {by:?}",
        took.as_millis()
    );
    assert_eq!(trips(&envoy), 1);
}

#[test]
fn grpc_failures_trip_it_too() {
    let mut opts = Options::new(config([50, 50], ""), &["stable", "canary"]);
    opts.workers = 2;
    opts.grpc = true;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    envoy.grpc_upstreams[1].fail_every.store(1, Ordering::SeqCst);
    let mut client = GrpcClient::connect(envoy.listener).unwrap();
    let start = Instant::now();
    let mut n = 0;
    while !tripped(&envoy) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gRPC failures did not trip the guard"
        );
        let u = user(n % USERS);
        client.call(&[("x-user-id", &u)]).unwrap();
        n += 1;
    }
    println!(
        "gRPC: tripped after {n} calls, {} ms",
        start.elapsed().as_millis()
    );
    // Tripped: every split call now lands on stable.
    for i in 0..100 {
        let r = client.call(&[("x-user-id", &user(i))]).unwrap();
        assert_eq!(r.header("x-served-by"), Some("stable"), "{r:?}");
    }
}

/// Route-weights mode: the route's `weighted_clusters` picks by the filter's bucket header;
/// a route-header match comes first, which the filter uses to send users to the baseline.
fn route_weights_envoy(weights: [u32; 2]) -> Envoy {
    let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
    let filter = config(weights, r#","routeWeights":{"bucketHeader":"x-rollout-bucket"}"#)
        .replace(r#","weight":50"#, "");
    let routes = format!(
        r#"              - match: {{ prefix: "/", headers: [{{ name: x-rollout-version, string_match: {{ exact: stable }} }}] }}
                route: {{ cluster: stable }}
              - match: {{ prefix: "/", headers: [{{ name: x-rollout-version, string_match: {{ exact: canary }} }}] }}
                route: {{ cluster: canary }}
              - match: {{ prefix: "/" }}
                route:
                  weighted_clusters:
                    header_name: x-rollout-bucket
                    clusters:
                    - {{ name: stable, weight: {} }}
                    - {{ name: canary, weight: {} }}
"#,
        weights[0], weights[1]
    );
    let clusters = [("stable", stable.addr.port()), ("canary", canary.addr.port())];
    let yaml = front_bootstrap("", &routes, &filter, "", &clusters);
    Envoy::start_yaml_with(&yaml, vec![stable, canary], 2, "wasm:info").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn route_weights_mode_takes_the_canary_off_too() {
    let weights = [50, 50];
    let envoy = route_weights_envoy(weights);
    down_and_back(&envoy, &envoy.upstreams[1], weights, "route weights 50/50");
}
