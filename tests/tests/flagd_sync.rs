//! Issue 28: a flagd flag followed live from flagd's sync stream. A server speaking
//! `flagd.sync.v1` on OpenFeature's generated code, the real Envoy with two workers, steady
//! traffic; every placement checked against OpenFeature's own evaluator (flagd-core).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rollout_e2e::flagd::{fractional_flag_set, placements, SyncServer};
use rollout_e2e::{get, Envoy, Options, Traffic};
use serde_json::{json, Value};

const SHOP: &str = "flagSetId=shop";
const OTHER: &str = "flagSetId=other";
const USERS: usize = 120;

fn flag_set(canary_percent: u32) -> Value {
    fractional_flag_set("checkout", canary_percent)
}

fn config(port_cluster: &str) -> String {
    json!({
        "flagd": {
            "flagKey": "checkout",
            // The start-up value: nobody on the canary until the stream says otherwise.
            "flagSet": flag_set(0),
            "variants": {"on": "canary", "off": "stable"},
            "context": {"targetingKey": {"header": "x-user-id"}},
            "sync": {"cluster": port_cluster, "authority": "flagd.flagd-system", "selector": SHOP, "timeoutSeconds": 2}
        },
        "routeHeader": "x-rollout-version"
    })
    .to_string()
}

fn user(i: usize) -> String {
    format!("user-{i}")
}

/// The version flagd-core puts each user on at `canary_percent`.
fn placements_at(canary_percent: u32) -> Vec<String> {
    let users: Vec<String> = (0..USERS).map(user).collect();
    placements("checkout", canary_percent, &users)
}

/// Users whose request reached another version than `want` says; each on a fresh connection,
/// so both workers answer.
fn misplaced(envoy: &Envoy, want: &[String]) -> Vec<usize> {
    misplaced_of(envoy, want, &(0..USERS).collect::<Vec<_>>())
}

fn misplaced_of(envoy: &Envoy, want: &[String], users: &[usize]) -> Vec<usize> {
    let a = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_idle_connections(0)
        .build();
    users
        .iter()
        .copied()
        .filter(|&i| {
            let r = get(&a, &envoy.url("/"), &[("x-user-id", &user(i))]).unwrap();
            assert_eq!(r.status, 200);
            r.version() != want[i]
        })
        .collect()
}

/// Sweeps every user until one whole sweep lands as `want` says; the time from `since` to the
/// start of that sweep (every wrong answer came before it).
fn settle(envoy: &Envoy, want: &[String], since: Instant, limit: Duration) -> Duration {
    settle_of(envoy, want, &(0..USERS).collect::<Vec<_>>(), since, limit)
}

/// [`settle`] over the users a change moves (a shorter sweep: a tighter bound), then all.
fn settle_moved(envoy: &Envoy, from: &[String], to: &[String], since: Instant) -> Duration {
    let moved: Vec<usize> = (0..USERS).filter(|&i| from[i] != to[i]).collect();
    let took = settle_of(envoy, to, &moved, since, Duration::from_secs(10));
    assert!(misplaced(envoy, to).is_empty());
    took
}

fn settle_of(envoy: &Envoy, want: &[String], users: &[usize], since: Instant, limit: Duration) -> Duration {
    loop {
        let sweep = Instant::now();
        let wrong = misplaced_of(envoy, want, users);
        if wrong.is_empty() {
            return sweep.duration_since(since);
        }
        assert!(
            since.elapsed() < limit,
            "after {limit:?}, users {wrong:?} still misplaced"
        );
    }
}

/// A sync metric as Envoy has it now (read under traffic: no waiting for counters to settle).
fn sync_metric(envoy: &Envoy, name: &str, reason: Option<&str>) -> f64 {
    let reason = reason.map(|r| format!(";reason={r}")).unwrap_or_default();
    let key = format!("wasmcustom.{name};rollout=checkout{reason}");
    let v = envoy.stats_now().get(&key).copied();
    v.unwrap_or_else(|| panic!("no {key} in Envoy's stats")) as f64
}

/// Polls until the metric has the value; returns it whatever it is at the deadline.
fn metric_becomes(envoy: &Envoy, name: &str, reason: Option<&str>, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = sync_metric(envoy, name, reason);
        if v == want || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Run {
    envoy: Envoy,
    server: SyncServer,
    at10: Vec<String>,
    at50: Vec<String>,
}

fn start() -> Run {
    let mut server = SyncServer::start();
    // Another flag set, behind another selector: everyone on the canary. Never applied.
    server.push(OTHER, &flag_set(100).to_string());
    server.push(SHOP, &flag_set(10).to_string());
    let mut opts = Options::new(config("flagd-sync"), &["stable", "canary"]);
    opts.workers = 2;
    opts.h2_clusters = vec![("flagd-sync".into(), server.port)];
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let (at10, at50) = (placements_at(10), placements_at(50));
    assert_ne!(at10, at50);
    Run {
        envoy,
        server,
        at10,
        at50,
    }
}

#[test]
fn the_filter_follows_flagds_sync_stream() {
    let mut run = start();
    let envoy = &run.envoy;
    // The first snapshot (10 %) replaces the start-up value (0 %).
    let first = settle(envoy, &run.at10, Instant::now(), Duration::from_secs(10));
    println!("the first snapshot routed every user {first:?} after the first sweep began");
    assert_eq!(
        metric_becomes(envoy, "rollout_flag_sync_connected", None, 1.0),
        1.0
    );

    let url = envoy.url("/");
    let traffic = Traffic::start(Duration::from_millis(2), move |a, n| {
        let id = format!("steady-{}", n % 50);
        get(a, &url, &[("x-user-id", &id)]).map(|r| r.status).unwrap_or(0)
    });

    // 10 % -> 50 %: every user where flagd-core puts them, within a second.
    let pushed = Instant::now();
    run.server.push(SHOP, &flag_set(50).to_string());
    let took = settle_moved(envoy, &run.at10, &run.at50, pushed);
    println!("snapshot to routing (every user, both workers): {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");

    // Malformed snapshots change nothing and are counted, each by its reason.
    let bad = [
        ("invalid_json", "{\"flags\": {".to_string()),
        ("missing_flag", json!({"flags": {}}).to_string()),
        (
            "refused_flag",
            flag_set(50).to_string().replace(
                r#"{"fractional":[["on",50],["off",50]]}"#,
                r#"{"sem_ver":[{"var":"v"},">=","1.0.0"]}"#,
            ),
        ),
    ];
    for (reason, text) in &bad {
        assert!(
            !text.contains("fractional") || *reason != "refused_flag",
            "the refusal case must change"
        );
        run.server.push(SHOP, text);
        assert_eq!(
            metric_becomes(envoy, "rollout_flag_sync_errors_total", Some(reason), 1.0),
            1.0,
            "{reason}"
        );
        assert!(misplaced(envoy, &run.at50).is_empty(), "{reason} moved users");
    }
    // The last good flag again, so a reconnect's first snapshot is good.
    run.server.push(SHOP, &flag_set(50).to_string());

    // flagd goes away: the last flag stays; it comes back: the filter reconnects.
    run.server.stop();
    assert_eq!(
        metric_becomes(envoy, "rollout_flag_sync_connected", None, 0.0),
        0.0
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(misplaced(envoy, &run.at50).is_empty(), "flagd down moved users");
    run.server.start_again();
    assert_eq!(
        metric_becomes(envoy, "rollout_flag_sync_connected", None, 1.0),
        1.0
    );
    let pushed = Instant::now();
    run.server.push(SHOP, &flag_set(10).to_string());
    let took = settle_moved(envoy, &run.at50, &run.at10, pushed);
    println!("after the reconnect, snapshot to routing: {took:?}");

    let statuses = traffic.finish();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    println!("steady traffic: {} requests, {failed} failed", statuses.len());
    assert_eq!(failed, 0);

    // One stream per Envoy (two workers), none for the other selector.
    let streams = run.server.streams();
    println!("streams: {streams}");
    assert_eq!(streams["open"][SHOP], 1, "{streams}");
    assert!(streams["open"].get(OTHER).is_none_or(|n| n == 0), "{streams}");
    // Opened twice in all: at start, and once when the server came back (no second holder).
    assert_eq!(streams["opened"][SHOP], 2, "{streams}");
    assert!(streams["opened"].get(OTHER).is_none(), "{streams}");
    envoy.assert_every_worker_served(2);
    // 10 %, 50 %, 50 % again, the reconnect's first snapshot, 10 %: each counted once.
    let updates = metric_becomes(envoy, "rollout_flag_sync_updates_total", None, 5.0);
    assert_eq!(updates, 5.0);
    let errors: BTreeMap<&str, f64> = bad
        .iter()
        .map(|(r, _)| (*r, sync_metric(envoy, "rollout_flag_sync_errors_total", Some(r))))
        .collect();
    assert!(errors.values().all(|n| *n == 1.0), "{errors:?}");
    for line in envoy
        .log()
        .lines()
        .filter(|l| l.contains("flagd") || l.contains("flag \""))
    {
        println!("{line}");
    }
}

/// No flagd at all (a cluster Envoy does not have, and one whose server is down): the
/// start-up flag routes, nothing fails, the gauge says so, and the filter keeps retrying.
#[test]
fn without_flagd_the_start_up_flag_routes_and_the_filter_retries() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    for cluster in ["no-such-cluster", "flagd-down"] {
        let cfg = config(cluster).replace(&flag_set(0).to_string(), &flag_set(10).to_string());
        let mut opts = Options::new(cfg, &["stable", "canary"]);
        opts.workers = 2;
        opts.h2_clusters = vec![("flagd-down".into(), dead_port)];
        let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(misplaced(&envoy, &placements_at(10)).is_empty(), "{cluster}");
        // The first attempt on the second tick, retries after 0.25-0.5, 0.5-1, 1-2 s: three
        // failures or more in 4 s.
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(sync_metric(&envoy, "rollout_flag_sync_connected", None), 0.0);
        assert_eq!(sync_metric(&envoy, "rollout_flag_sync_updates_total", None), 0.0);
        let log = envoy.log();
        let retries = log.matches("the last good flag stays, retrying in").count();
        println!("{cluster}: {retries} retries logged in 4 s");
        assert!(retries >= 3, "{cluster}: {retries} retries\n{log}");
        assert!(misplaced(&envoy, &placements_at(10)).is_empty(), "{cluster}");
    }
}

/// The `rollouts[]` form: two rollouts (two flags of one flag set, on two hosts) share one
/// stream; a snapshot moves each by its own flag.
#[test]
fn rollouts_that_follow_one_flag_set_share_one_stream() {
    let mut server = SyncServer::start();
    let both = |a: u32, b: u32| {
        let mut set = fractional_flag_set("checkout", a);
        set["flags"]["search"] = fractional_flag_set("search", b)["flags"]["search"].clone();
        set.to_string()
    };
    server.push(SHOP, &both(10, 90));
    let rollout = |flag: &str, host: &str| {
        json!({
            "match": {"hosts": [host]},
            "flagd": {
                "flagKey": flag,
                "variants": {"off": "stable", "on": "canary"},
                "context": {"targetingKey": {"header": "x-user-id"}},
                "sync": {"cluster": "flagd-sync", "selector": SHOP, "defaultVariant": "off"}
            }
        })
    };
    let cfg = json!({
        "routeHeader": "x-rollout-version",
        "rollouts": [rollout("checkout", "checkout.example"), rollout("search", "search.example")]
    });
    let mut opts = Options::new(cfg.to_string(), &["stable", "canary"]);
    opts.workers = 2;
    opts.h2_clusters = vec![("flagd-sync".into(), server.port)];
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let users: Vec<String> = (0..60).map(user).collect();
    let a = ureq::AgentBuilder::new().max_idle_connections(0).build();
    let routed = |host: &str| -> Vec<String> {
        users
            .iter()
            .map(|u| {
                let r = get(&a, &envoy.url("/"), &[("x-user-id", u), ("host", host)]).unwrap();
                r.version().to_string()
            })
            .collect()
    };
    for (a_pct, b_pct) in [(10, 90), (60, 5)] {
        server.push(SHOP, &both(a_pct, b_pct));
        let want = (
            placements("checkout", a_pct, &users),
            placements("search", b_pct, &users),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while (routed("checkout.example"), routed("search.example")) != want {
            assert!(
                Instant::now() < deadline,
                "not at checkout {a_pct} %, search {b_pct} %"
            );
        }
    }
    let streams = server.streams();
    assert_eq!(streams["open"][SHOP], 1, "{streams}");
    assert_eq!(streams["opened"][SHOP], 1, "{streams}");
}
