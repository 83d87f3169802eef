//! Issue 14: route-weights mode in a real Envoy. The route's `weighted_clusters` (with
//! `header_name: x-rollout-bucket`) picks the version; the filter writes flagd's bucket.
//!
//! The tests load the shipped `envoy-config/route-weights.yaml` and its RDS file
//! `envoy-config/rds/checkout.yaml`, changing only ports, paths and the weights, and change
//! the weights through file-based RDS (temp file + rename) while traffic flows, as a control
//! plane does for Argo Rollouts' `setWeight` steps and abort.

use rollout_e2e::{agent, get, rds, read_workspace_file, replace_once, Echo, Envoy, Traffic};
use rollout_filter::split;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RDS_FILE: &str = "envoy-config/rds/checkout.yaml";
const ROLLOUT: &str = "checkout-2026-11";
const STABLE: &str = "outbound|8080|stable|checkout.prod.svc.cluster.local";
const CANARY: &str = "outbound|8080|canary|checkout.prod.svc.cluster.local";
const TOTAL: u32 = 100;

/// The route shapes a control plane renders for a weight step.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// `weighted_clusters` stable, canary (istiod: two non-zero destinations).
    Weighted(u32, u32),
    /// A plain `cluster: stable`: a control plane that collapses a one-cluster split (istiod
    /// before 1.19; since then istiod keeps `weighted_clusters`, docs/deploying.md, "Istio").
    PlainStable,
}

impl Route {
    /// Stable and canary weights out of [`TOTAL`].
    fn weights(self) -> [u32; 2] {
        match self {
            Route::Weighted(s, c) => [s, c],
            Route::PlainStable => [TOTAL, 0],
        }
    }

    fn label(self) -> String {
        match self {
            Route::Weighted(s, c) => format!("weighted {s}/{c}"),
            Route::PlainStable => "cluster: stable".to_string(),
        }
    }
}

/// The shipped RDS file at `version` with the managed route in the shape `route`.
fn route_table(version: u32, route: Route) -> String {
    let text = replace_once(
        &read_workspace_file(RDS_FILE),
        "version_info: \"1\"",
        &format!("version_info: \"{version}\""),
    );
    let stable_line = format!("          - {{ name: \"{STABLE}\", weight: 90 }}\n");
    let canary_line = format!("          - {{ name: \"{CANARY}\", weight: 10 }}\n");
    match route {
        Route::Weighted(s, c) => {
            let text = replace_once(
                &text,
                &stable_line,
                &stable_line.replace("weight: 90", &format!("weight: {s}")),
            );
            replace_once(
                &text,
                &canary_line,
                &canary_line.replace("weight: 10", &format!("weight: {c}")),
            )
        }
        Route::PlainStable => {
            let weighted = format!(
                "      route:\n        weighted_clusters:\n          header_name: x-rollout-bucket\n          clusters:\n{stable_line}{canary_line}"
            );
            replace_once(
                &text,
                &weighted,
                &format!("      route: {{ cluster: \"{STABLE}\" }}\n"),
            )
        }
    }
}

struct RouteEnvoy {
    envoy: Envoy,
    rds_dir: tempfile::TempDir,
    version: u32,
}

const RDS_NAME: &str = "checkout.yaml";

impl RouteEnvoy {
    fn start(route: Route) -> RouteEnvoy {
        Self::start_with(route, None)
    }

    /// `plugin_config`: the filter's config when not the shipped one.
    fn start_with(route: Route, plugin_config: Option<String>) -> RouteEnvoy {
        let rds_dir = tempfile::tempdir().expect("tempdir");
        rds::write_atomically(rds_dir.path(), RDS_NAME, &route_table(1, route));
        let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
        let yaml = rds::Bootstrap {
            dir: rds_dir.path(),
            file: RDS_NAME,
            route_config: None,
            clusters: vec![
                (STABLE.to_string(), stable.addr.port()),
                (CANARY.to_string(), canary.addr.port()),
            ],
            plugin_config,
        }
        .render();
        let envoy = Envoy::start_yaml(&yaml, vec![stable, canary]).unwrap_or_else(|e| panic!("{e}"));
        let re = RouteEnvoy {
            envoy,
            rds_dir,
            version: 1,
        };
        re.wait_rds(1);
        re
    }

    fn rds_stat(&self, name: &str) -> u64 {
        rds::stat(&self.envoy, "checkout", name)
    }

    fn wait_rds(&self, success: u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.rds_stat("update_success") < success {
            assert_eq!(
                self.rds_stat("update_rejected"),
                0,
                "RDS update rejected:\n{}",
                self.envoy.log()
            );
            assert!(
                Instant::now() < deadline,
                "RDS update_success stayed at {} (< {success}); Envoy log:\n{}",
                self.rds_stat("update_success"),
                self.envoy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Write the new route table and wait until Envoy has applied it.
    fn set_route(&mut self, route: Route) {
        self.version += 1;
        rds::write_atomically(self.rds_dir.path(), RDS_NAME, &route_table(self.version, route));
        self.wait_rds(u64::from(self.version));
        assert_eq!(self.rds_stat("update_rejected"), 0);
    }

    fn echo_requests(&self, name: &str) -> u64 {
        self.envoy
            .upstreams
            .iter()
            .find(|e| e.name == name)
            .map_or(0, |e| e.requests.load(Ordering::Relaxed))
    }

    /// `rollout_requests_total{version}` summed over sources.
    fn requests_counted(&self, version: &str) -> u64 {
        let prefix = format!("wasmcustom.rollout_requests_total;rollout={ROLLOUT};version={version};");
        self.envoy
            .stats()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Where flagd's `fractional` puts `key` under stable/canary `weights`: the filter crate's split.
fn flagd(key: &str, weights: [u32; 2]) -> &'static str {
    ["stable", "canary"][split::pick(split::hash(ROLLOUT.as_bytes(), key.as_bytes()), &weights, TOTAL)]
}

fn bucket(key: &str) -> u64 {
    split::bucket(split::hash(ROLLOUT.as_bytes(), key.as_bytes()), u64::from(TOTAL))
}

fn user(i: usize) -> String {
    format!("user-{i}")
}

/// The client bucket and route header a lying client sends for a user flagd puts on `want`:
/// the bucket at the other end of the range, and the other version.
fn lies_against(want: &str) -> (&'static str, &'static str) {
    if want == "canary" {
        ("0", "stable")
    } else {
        ("99", "canary")
    }
}

/// What one sweep request showed.
#[derive(Debug)]
struct Seen {
    version: String,
    status: u16,
    /// `x-rollout-bucket` values the upstream received.
    buckets: Vec<String>,
    route_header: Option<String>,
    /// The version named by the decision's baggage member, as the upstream received it.
    member: Option<String>,
    /// The debug response header.
    response_version: Option<String>,
}

fn request(a: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Seen {
    let r = get(a, url, headers).unwrap_or_else(|e| panic!("request {headers:?}: {e}"));
    let seen = r.seen.clone().unwrap_or_else(|| panic!("no echo body: {r:?}"));
    let member = seen.header("baggage").and_then(|b| {
        b.split(',')
            .map(str::trim)
            .find_map(|m| m.strip_prefix(&format!("rollout.{ROLLOUT}=")))
            .map(str::to_string)
    });
    Seen {
        version: r.version().to_string(),
        status: r.status,
        buckets: seen
            .header_all("x-rollout-bucket")
            .iter()
            .map(|s| s.to_string())
            .collect(),
        route_header: seen.header("x-rollout-version").map(str::to_string),
        member,
        response_version: r.header("x-rollout-version").map(str::to_string),
    }
}

/// Every user once, each sending a client bucket header and route header that point at the
/// other version: neither may choose. Returns the version each user landed on.
fn sweep(re: &RouteEnvoy, users: usize, weights: [u32; 2], step: &str) -> Vec<String> {
    let a = agent();
    let url = re.envoy.url("/");
    (0..users)
        .map(|i| {
            let key = user(i);
            let want = flagd(&key, weights);
            let (lie_bucket, lie_version) = lies_against(want);
            let s = request(
                &a,
                &url,
                &[
                    ("x-user-id", &key),
                    ("x-rollout-bucket", lie_bucket),
                    ("x-rollout-version", lie_version),
                ],
            );
            assert_eq!(s.status, 200, "{step}: {key}: {s:?}");
            assert_eq!(s.version, want, "{step}: {key} not where flagd puts it: {s:?}");
            assert_eq!(
                s.buckets,
                vec![bucket(&key).to_string()],
                "{step}: {key}: bucket header {s:?}"
            );
            assert_eq!(
                s.route_header, None,
                "{step}: a sticky decision sets no route header: {s:?}"
            );
            assert_eq!(
                s.response_version.as_deref(),
                Some(want),
                "{step}: {key}: debug header {s:?}"
            );
            assert_eq!(
                s.member.as_deref(),
                Some("unknown"),
                "{step}: {key}: baggage {s:?}"
            );
            s.version
        })
        .collect()
}

/// One background request: the phase counter when it started and ended.
#[derive(Debug)]
struct Sample {
    key: String,
    phases: (usize, usize),
    status: u16,
    version: String,
    error: Option<String>,
}

const BG_KEYS: usize = 200;

/// Background traffic over [`BG_KEYS`] sticky keys until stopped (see [`Traffic`]).
fn start_traffic(url: String, phase: Arc<AtomicUsize>) -> Traffic<Sample> {
    Traffic::start(Duration::from_millis(1), move |a, n| {
        let key = format!("bg-{}", n % BG_KEYS);
        let before = phase.load(Ordering::SeqCst);
        let r = get(a, &url, &[("x-user-id", &key)]);
        let after = phase.load(Ordering::SeqCst);
        match r {
            Ok(r) => Sample {
                key,
                phases: (before, after),
                status: r.status,
                version: r.version().to_string(),
                error: None,
            },
            Err(e) => Sample {
                key,
                phases: (before, after),
                status: 0,
                version: String::new(),
                error: Some(e),
            },
        }
    })
}

/// The ramp of an Argo Rollouts canary with `setWeight` 10, 25, 50, 100, then an abort.
#[test]
fn route_weights_ramp_and_abort_keep_users_sticky_and_flagd_identical() {
    const USERS: usize = 1000;
    const PINNED: usize = 5;
    let steps: Vec<(&str, Route)> = vec![
        ("setWeight 10", Route::Weighted(90, 10)),
        ("setWeight 25", Route::Weighted(75, 25)),
        ("setWeight 50", Route::Weighted(50, 50)),
        ("setWeight 100", Route::Weighted(0, 100)),
        ("abort (plain cluster)", Route::PlainStable),
        ("abort (weighted 100/0)", Route::Weighted(100, 0)),
    ];
    let mut re = RouteEnvoy::start(steps[0].1);
    let phase = Arc::new(AtomicUsize::new(0));
    let traffic = start_traffic(re.envoy.url("/"), phase.clone());

    let a = agent();
    let url = re.envoy.url("/");
    // (step, route, stable users, canary users, moved)
    let mut rows: Vec<(&str, Route, usize, usize, usize)> = Vec::new();
    let mut previous: Option<Vec<String>> = None;
    for (i, (step, route)) in steps.iter().enumerate() {
        if i > 0 {
            phase.store(i, Ordering::SeqCst);
            re.set_route(*route);
        }
        let placed = sweep(&re, USERS, route.weights(), step);
        // Trusted pins (override header) sit before the managed route and hold at every step.
        for p in 0..PINNED {
            let s = request(
                &a,
                &url,
                &[("x-user-id", &format!("pinned-{p}")), ("x-rollout-pin", "canary")],
            );
            assert_eq!(
                (s.status, s.version.as_str()),
                (200, "canary"),
                "{step}: pinned-{p}: {s:?}"
            );
            assert_eq!(s.route_header.as_deref(), Some("canary"));
            assert_eq!(
                s.member.as_deref(),
                Some("canary"),
                "a pin is known in the request phase"
            );
            assert!(s.buckets.is_empty(), "an override writes no bucket: {s:?}");
        }
        let moved = match &previous {
            None => 0,
            Some(prev) => {
                // Up to and including 100: nobody goes back to stable.
                if i <= 3 {
                    for (u, (was, now)) in prev.iter().zip(&placed).enumerate() {
                        assert!(
                            !(was == "canary" && now == "stable"),
                            "{step}: {} went canary -> stable on the way up",
                            user(u)
                        );
                    }
                }
                prev.iter().zip(&placed).filter(|(a, b)| a != b).count()
            }
        };
        if step.starts_with("abort") {
            assert!(
                placed.iter().all(|v| v == "stable"),
                "{step}: a non-pinned user is off stable"
            );
        }
        let stable = placed.iter().filter(|v| *v == "stable").count();
        rows.push((step, *route, stable, USERS - stable, moved));
        previous = Some(placed);
        // The background traffic runs on the settled route for a moment.
        std::thread::sleep(Duration::from_millis(200));
    }
    let samples = traffic.finish();

    // Every background request succeeded, and went where flagd puts its key under the weights
    // of some route Envoy may have been serving while it was in flight.
    let mut per_phase = vec![(0usize, 0usize); steps.len()];
    for s in &samples {
        let (from, to) = s.phases;
        let row = &mut per_phase[from];
        row.0 += 1;
        let allowed: Vec<&str> = (from.saturating_sub(1)..=to)
            .map(|p| flagd(&s.key, steps[p].1.weights()))
            .collect();
        if s.status != 200 || s.error.is_some() {
            row.1 += 1;
        } else {
            assert!(
                allowed.contains(&s.version.as_str()),
                "background {s:?} not in {allowed:?}"
            );
        }
    }
    let mut table = vec![format!(
        "{:<24} {:<16} {:>7} {:>7} {:>7} {:>6} {:>8} {:>8}",
        "step", "route", "stable", "canary", "pinned", "moved", "requests", "failures"
    )];
    for (i, (step, route, stable, canary, moved)) in rows.iter().enumerate() {
        table.push(format!(
            "{:<24} {:<16} {:>7} {:>7} {:>7} {:>6} {:>8} {:>8}",
            step,
            route.label(),
            stable,
            canary,
            PINNED,
            moved,
            per_phase[i].0 + USERS + PINNED,
            per_phase[i].1
        ));
    }
    println!("{}", table.join("\n"));
    let failed: usize = per_phase.iter().map(|p| p.1).sum();
    assert_eq!(
        failed,
        0,
        "failed background requests: {:?}",
        samples
            .iter()
            .filter(|s| s.status != 200)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        per_phase.iter().all(|p| p.0 > 0),
        "a step without background traffic: {per_phase:?}"
    );

    // The counters name the version Envoy picked: each equals what its backend served.
    let (stable, canary) = (re.echo_requests("stable"), re.echo_requests("canary"));
    assert_eq!(re.requests_counted("stable"), stable, "stable counted vs served");
    assert_eq!(re.requests_counted("canary"), canary, "canary counted vs served");
    assert_eq!(re.requests_counted("unknown"), 0);
    println!("served: stable {stable}, canary {canary}; counted the same");
}

/// The request phase cannot learn Envoy's pick (docs/route-weights.md): the baggage
/// member says `unknown` there, the debug response header names the served version.
#[test]
fn the_pick_is_named_at_response_time_and_a_client_bucket_never_chooses() {
    let re = RouteEnvoy::start(Route::Weighted(90, 10));
    let a = agent();
    let url = re.envoy.url("/");
    let (mut member_ok, mut header_ok, n) = (0, 0, 300);
    for i in 0..n {
        let key = user(i);
        let want = flagd(&key, [90, 10]);
        // A lying bucket and route header make Envoy's first route pick (before the filter)
        // the other version: a stale read would show it.
        let (lie_bucket, lie_version) = lies_against(want);
        let lie_baggage = format!("userId={key},rollout.{ROLLOUT}={lie_version}");
        let s = request(
            &a,
            &url,
            &[
                ("x-user-id", &key),
                ("x-rollout-bucket", lie_bucket),
                ("x-rollout-version", lie_version),
                ("baggage", &lie_baggage),
            ],
        );
        assert_eq!(s.version, want);
        // The request phase cannot know the pick: the member says so rather than guess, and
        // replaces the one the client sent.
        member_ok += usize::from(s.member.as_deref() == Some("unknown"));
        header_ok += usize::from(s.response_version.as_deref() == Some(want));
    }
    println!("baggage member `unknown` for {member_ok}/{n}; response header named the served version for {header_ok}/{n}");
    assert_eq!(header_ok, n);
    assert_eq!(member_ok, n);

    // No sticky key: the client's bucket is removed and Envoy draws its own value.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let s = request(&a, &url, &[("x-rollout-bucket", "99")]);
        assert!(
            s.buckets.is_empty(),
            "a client bucket reached the upstream: {s:?}"
        );
        assert_eq!(s.member.as_deref(), Some("unknown"));
        assert_eq!(s.response_version.as_deref(), Some(s.version.as_str()));
        *counts.entry(s.version).or_default() += 1;
    }
    // Bucket 99 would be canary every time; Envoy's random pick is ~90 % stable.
    assert!(counts.get("stable").copied().unwrap_or(0) > 150, "{counts:?}");
    println!("no key, client bucket 99: {counts:?}");
}

/// `versions[].cluster` names a version's cluster; a cluster no version claims is counted
/// under `version="unknown"`, never dropped.
#[test]
fn explicit_clusters_and_unmatched_clusters_are_counted() {
    let shipped = r#""versions": [ { "name": "stable" }, { "name": "canary" } ],"#;
    let edited = format!(
        r#""versions": [ {{ "name": "stable", "cluster": "{STABLE}" }}, {{ "name": "canary", "cluster": "canary-v2" }} ],"#
    );
    let config = replace_once(&rds::shipped_plugin_config(), shipped, &edited);
    let re = RouteEnvoy::start_with(Route::Weighted(50, 50), Some(config));
    let a = agent();
    let url = re.envoy.url("/");
    let mut unknown_headers = 0;
    for i in 0..200 {
        let s = request(&a, &url, &[("x-user-id", &user(i))]);
        assert_eq!(s.version, flagd(&user(i), [50, 50]));
        if s.version == "canary" {
            // Served by a cluster no version claims (canary's is `canary-v2`).
            assert_eq!(s.response_version.as_deref(), Some("unknown"), "{s:?}");
            unknown_headers += 1;
        } else {
            assert_eq!(s.response_version.as_deref(), Some("stable"), "{s:?}");
        }
    }
    assert!(unknown_headers > 0);
    assert_eq!(re.requests_counted("stable"), re.echo_requests("stable"));
    assert_eq!(re.requests_counted("unknown"), re.echo_requests("canary"));
    assert_eq!(re.requests_counted("canary"), 0);
    let responses =
        format!("wasmcustom.rollout_responses_total;rollout={ROLLOUT};version=unknown;code_class=2xx");
    assert_eq!(
        re.envoy.stats().get(&responses).copied(),
        Some(re.echo_requests("canary"))
    );
}
