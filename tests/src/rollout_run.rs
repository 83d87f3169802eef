//! A controller's rollout replayed through a real Envoy: route configurations, one per controller
//! state, delivered by file-based RDS while clients keep sending requests, the filter in
//! route-weights mode. Shared by tests/tests/istio_rollout.rs (VirtualService routes) and
//! tests/tests/gateway_api_rollout.rs (Gateway API routes of Istio and Envoy Gateway).
//!
//! At every state: Envoy took the update (rds update_rejected stays 0, config_dump shows its
//! version), no request failed, every user is where flagd's fractional puts them under the
//! controller's weights (a client-sent bucket header or pin never chooses), no user goes canary ->
//! stable on the way up, and every user is on stable at the first sweep after an abort. At the
//! end, what the filter counted per version is what each backend served.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollout_filter::split;
use serde_json::Value;

use crate::{agent, get, rds, Echo, Envoy};

/// Users swept at every state.
pub const USERS: usize = 300;
const RDS_FILE: &str = "routes.json";

/// One controller state of a run.
pub struct Step {
    pub state: String,
    /// The first state of a rollout: the monotonic ramp is checked from here on.
    pub starts_rollout: bool,
    /// A rollback: every user must be on stable right after it.
    pub abort: bool,
}

pub fn step(state: impl Into<String>) -> Step {
    Step {
        state: state.into(),
        starts_rollout: false,
        abort: false,
    }
}

pub fn start(state: impl Into<String>) -> Step {
    Step {
        state: state.into(),
        starts_rollout: true,
        abort: false,
    }
}

pub fn abort(state: impl Into<String>) -> Step {
    Step {
        state: state.into(),
        starts_rollout: false,
        abort: true,
    }
}

/// What a run needs from its caller.
pub struct Rollout<'a> {
    /// Printed above the table.
    pub title: &'a str,
    /// The filter's JSON config (route-weights mode), as the gateway hands it over.
    pub plugin_config: String,
    pub host: &'a str,
    /// The RouteConfiguration of a state.
    pub fixture: &'a dyn Fn(&str) -> Value,
    /// The controller's weights at a state, (version, weight) in the flag's variant order.
    pub weights: &'a dyn Fn(&str) -> Vec<(&'static str, u64)>,
    /// The test upstream ("stable" / "canary") that serves a cluster.
    pub upstream_of: &'a dyn Fn(&str) -> &'static str,
}

/// Every cluster the route configurations of `states` name, each with the port of the
/// upstream (of `upstreams`) that `upstream_of` says serves it.
pub fn cluster_ports(
    states: &[&str],
    fixture: &dyn Fn(&str) -> Value,
    upstreams: &[Echo],
    upstream_of: &dyn Fn(&str) -> &'static str,
) -> Vec<(String, u16)> {
    clusters(states, fixture)
        .into_iter()
        .map(|c| {
            let u = upstreams
                .iter()
                .find(|u| u.name == upstream_of(&c))
                .expect("upstream");
            let port = u.addr.port();
            (c, port)
        })
        .collect()
}

/// Every cluster the route configurations of `states` name.
pub fn clusters(states: &[&str], fixture: &dyn Fn(&str) -> Value) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for s in states {
        let rc = fixture(s);
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            for r in vh["routes"].as_array().into_iter().flatten() {
                if let Some(c) = r["route"]["cluster"].as_str() {
                    out.insert(c.to_string());
                }
                let wc = r["route"]["weighted_clusters"]["clusters"].as_array();
                for c in wc.into_iter().flatten() {
                    out.insert(c["name"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Where flagd's fractional puts `user` under these weights.
pub fn flagd_pick(rollout_id: &str, user: &str, weights: &[(&'static str, u64)]) -> &'static str {
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    let ws: Vec<u64> = weights.iter().map(|(_, w)| *w).collect();
    let h = split::hash(rollout_id.as_bytes(), user.as_bytes());
    weights[split::pick(h, &ws, total)].0
}

/// Write the RDS file: a DiscoveryResponse holding `rc`, versioned by `state`.
pub fn push(dir: &Path, state: &str, mut rc: Value) {
    rc["@type"] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into();
    let body = serde_json::json!({ "version_info": state, "resources": [rc] }).to_string();
    rds::write_atomically(dir, RDS_FILE, &body);
}

/// The shipped route-weights Envoy config reading `route_config` from `dir`, each cluster served
/// by its test upstream, with `plugin_config`.
pub fn bootstrap(dir: &Path, route_config: &str, clusters: &[(String, u16)], plugin_config: &str) -> String {
    rds::Bootstrap {
        dir,
        file: RDS_FILE,
        route_config: Some(route_config),
        clusters: clusters.to_vec(),
        plugin_config: Some(plugin_config.to_string()),
    }
    .render()
}

pub fn dumped_version(envoy: &Envoy) -> String {
    let body = envoy
        .admin_get("/config_dump?resource=dynamic_route_configs")
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["configs"][0]["version_info"].as_str().unwrap_or("").to_string()
}

/// Wait until Envoy has either taken `state` or rejected it; true when taken.
pub fn wait_update(envoy: &Envoy, route_config: &str, state: &str, rejected_before: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if dumped_version(envoy) == state {
            return true;
        }
        if rds::stat(envoy, route_config, "update_rejected") > rejected_before {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "Envoy neither took nor rejected {state} in 30 s:\n{}",
        envoy.log()
    );
}

/// Clients sending requests for random users on keep-alive connections until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(envoy: &Envoy, host: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                let (url, host) = (envoy.url("/load"), host.to_string());
                std::thread::spawn(move || load_client(c as u64, &url, &host, &stop, &sent, &failed))
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            threads,
        }
    }

    /// (sent, failed, the first errors).
    pub fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.threads {
            errors.extend(t.join().expect("load thread"));
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

fn load_client(
    seed: u64,
    url: &str,
    host: &str,
    stop: &AtomicBool,
    sent: &AtomicU64,
    failed: &AtomicU64,
) -> Vec<String> {
    let a = agent();
    let mut errors = Vec::new();
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let user = format!("user-{}", (i >> 33) as usize % USERS);
        let error = match get(&a, url, &[("host", host), ("x-user-id", &user)]) {
            Ok(r) if r.status == 200 => None,
            Ok(r) => Some(format!("status {}", r.status)),
            Err(e) => Some(e),
        };
        if let Some(e) = error {
            failed.fetch_add(1, Ordering::Relaxed);
            errors.push(e);
        }
        sent.fetch_add(1, Ordering::Relaxed);
    }
    errors
}

/// Every user once, each with a forged bucket header and pin that must not choose: user -> version.
pub fn sweep(envoy: &Envoy, host: &str) -> BTreeMap<String, String> {
    let a = agent();
    let url = envoy.url("/sweep");
    (0..USERS)
        .map(|u| {
            let user = format!("user-{u}");
            let forged = if u % 2 == 0 { "0" } else { "99" };
            let headers = [
                ("host", host),
                ("x-user-id", &user),
                ("x-rollout-bucket", forged),
                ("x-rollout-pin", "canary"),
                ("x-rollout-version", "canary"),
            ];
            let r = get(&a, &url, &headers).unwrap_or_else(|e| panic!("{user}: {e}"));
            assert_eq!(r.status, 200, "{user}: {:?}", r.headers);
            (user, r.version().to_string())
        })
        .collect()
}

/// Each user where flagd puts them at `step`; on stable after an abort; none back to stable on
/// the way up. Returns the table row.
fn check_state(
    run: &Rollout,
    rollout_id: &str,
    step: &Step,
    placed: &BTreeMap<String, String>,
    previous: Option<&BTreeMap<String, String>>,
) -> String {
    let weights = (run.weights)(&step.state);
    for (user, got) in placed {
        let want = flagd_pick(rollout_id, user, &weights);
        assert_eq!(
            got, want,
            "{}: {user} on {got}, flagd puts it on {want}",
            step.state
        );
    }
    if step.abort {
        assert!(
            placed.values().all(|v| v == "stable"),
            "{}: users left on canary after the abort",
            step.state
        );
    }
    if let (Some(prev), false, false) = (previous, step.starts_rollout, step.abort) {
        for (user, was) in prev {
            let now = &placed[user];
            assert!(
                !(was == "canary" && now == "stable"),
                "{}: {user} went canary -> stable on the way up",
                step.state
            );
        }
    }
    let n = |v: &str| placed.values().filter(|x| *x == v).count();
    let w: Vec<String> = weights.iter().map(|(u, w)| format!("{}{w}", &u[..1])).collect();
    format!(
        "{:<36} {:>8} {:>8} {:>8}",
        step.state,
        w.join("/"),
        n("stable"),
        n("canary")
    )
}

/// Replay `steps` through a real Envoy; prints the table and returns it.
pub fn run(run: &Rollout, steps: &[Step]) -> Vec<String> {
    let cfg: Value = serde_json::from_str(&run.plugin_config).expect("plugin config JSON");
    let rollout_id = cfg["rolloutId"].as_str().expect("rolloutId").to_string();
    let states: Vec<&str> = steps.iter().map(|s| s.state.as_str()).collect();
    let first = (run.fixture)(&steps[0].state);
    let route_config = first["name"]
        .as_str()
        .expect("RouteConfiguration name")
        .to_string();
    let upstreams = vec![Echo::start("stable"), Echo::start("canary")];
    let clusters = cluster_ports(&states, run.fixture, &upstreams, run.upstream_of);
    let dir = tempfile::tempdir().expect("rds dir");
    push(dir.path(), &steps[0].state, first);
    let yaml = bootstrap(dir.path(), &route_config, &clusters, &run.plugin_config);
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    assert!(wait_update(&envoy, &route_config, &steps[0].state, 0));

    let load = Load::start(&envoy, run.host, 3);
    let header = format!("{:<36} {:>8} {:>8} {:>8}", "state", "weights", "stable", "canary");
    let mut table = vec![run.title.to_string(), header];
    let mut previous: Option<BTreeMap<String, String>> = None;
    for (i, s) in steps.iter().enumerate() {
        if i > 0 {
            let rejected = rds::stat(&envoy, &route_config, "update_rejected");
            push(dir.path(), &s.state, (run.fixture)(&s.state));
            assert!(
                wait_update(&envoy, &route_config, &s.state, rejected),
                "Envoy rejected {}:\n{}",
                s.state,
                envoy.log()
            );
        }
        assert_eq!(
            rds::stat(&envoy, &route_config, "update_rejected"),
            0,
            "{}",
            s.state
        );
        let placed = sweep(&envoy, run.host);
        table.push(check_state(run, &rollout_id, s, &placed, previous.as_ref()));
        previous = Some(placed);
    }
    let (sent, failed, errors) = load.finish();
    table.push(format!(
        "{sent} requests under load across {} route updates, {failed} failed",
        steps.len() - 1
    ));
    println!("{}", table.join("\n"));
    assert!(sent > 0, "the load clients sent nothing");
    assert_eq!(
        failed,
        0,
        "failed requests during route updates: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(rds::stat(&envoy, &route_config, "update_rejected"), 0);
    assert_eq!(
        rds::stat(&envoy, &route_config, "update_success"),
        steps.len() as u64
    );
    check_counted(&envoy);
    table
}

/// What the filter counted per version is what each backend served.
pub fn check_counted(envoy: &Envoy) {
    for v in ["stable", "canary"] {
        let served = envoy.upstreams.iter().find(|u| u.name == v).expect("upstream");
        let served = served.requests.load(Ordering::Relaxed) as f64;
        let counted = envoy.prom_value("rollout_requests_total", &[("version", v)]);
        assert_eq!(counted, served, "rollout_requests_total{{version={v}}} vs served");
    }
}
