//! Argo Rollouts and Flagger canaries through the real Envoy, as istiod would program the gateway.
//!
//! tests/fixtures/istio-routes/ holds the gateway route configuration istiod renders at each state
//! of the shipped rollouts (rest, 10 / 25 / 50 %, promotion, abort or rollback), with the shipped
//! EnvoyFilter merged in as istiod merges it (tools/istio_routes.py, checked against istio/ by
//! `make deploy-test`). Here they are delivered to a real Envoy by file-based dynamic RDS, the
//! way istiod pushes route updates, while clients keep sending requests; the filter runs with the
//! shipped route-weights pluginConfig (istio/route-weights/wasmplugin.yaml,
//! istio/flagger/wasmplugin.yaml). No Kubernetes API server or istiod runs here.
//!
//! Asserted at every update: Envoy accepted it (rds update_rejected stays 0, config_dump shows its
//! version), no request failed, every user is where flagd's fractional puts them under the route's
//! weights (a client-sent bucket header or pin never chooses), no user goes canary -> stable on
//! the way up, and every non-pinned user is on stable at the first sweep after an abort.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollout_e2e::{agent, get, rds, workspace_root, Echo, Envoy};
use rollout_filter::split;

const USERS: usize = 300;
const ROUTE_CONFIG: &str = "http.80";
const HOST: &str = "checkout.example.com";

fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures/istio-routes")
}

fn fixture(state: &str) -> serde_json::Value {
    let path = fixtures().join(format!("{state}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped WasmPlugin's pluginConfig, as the JSON istiod hands the filter.
fn plugin_config(file: &str) -> String {
    let path = workspace_root().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: serde_json::Value = serde_yaml::from_str(&text).expect("WasmPlugin YAML");
    let cfg = &doc["spec"]["pluginConfig"];
    assert!(
        cfg.get("routeWeights").is_some(),
        "{file}: not in route-weights mode"
    );
    cfg.to_string()
}

/// Which test upstream serves an Istio cluster name: the subset field of
/// `outbound|PORT|SUBSET|HOST`, else Flagger's `<name>-canary` / `<name>-primary` host.
fn upstream_of(cluster: &str) -> &'static str {
    let parts: Vec<&str> = cluster.split('|').collect();
    assert_eq!(parts.len(), 4, "not an Istio cluster name: {cluster}");
    match (parts[2], parts[3]) {
        ("canary", _) => "canary",
        ("stable", _) => "stable",
        ("", h) if h.starts_with("checkout-canary.") => "canary",
        ("", h) if h.starts_with("checkout-primary.") => "stable",
        _ => panic!("no upstream for {cluster}"),
    }
}

/// The `primary` route's weighted clusters: (upstream, weight) in config order.
fn primary_weights(rc: &serde_json::Value) -> Vec<(&'static str, u64)> {
    let routes = rc["virtual_hosts"][0]["routes"].as_array().expect("routes");
    let primary = routes
        .iter()
        .find(|r| r["name"] == "primary")
        .expect("a route named primary");
    let wc = &primary["route"]["weighted_clusters"];
    assert_eq!(
        wc["header_name"], "x-rollout-bucket",
        "patch not applied: {primary}"
    );
    wc["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| {
            (
                upstream_of(c["name"].as_str().expect("name")),
                c["weight"].as_u64().expect("weight"),
            )
        })
        .collect()
}

/// Where flagd's fractional puts `user` under these weights (the filter's bucket walked in order).
fn flagd_pick(rollout_id: &str, user: &str, weights: &[(&'static str, u64)]) -> &'static str {
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    let ws: Vec<u64> = weights.iter().map(|(_, w)| *w).collect();
    let h = split::hash(rollout_id.as_bytes(), user.as_bytes());
    weights[split::pick(h, &ws, total)].0
}

fn all_clusters(states: &[&str]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for s in states {
        let rc = fixture(s);
        for r in rc["virtual_hosts"][0]["routes"].as_array().into_iter().flatten() {
            if let Some(c) = r["route"]["cluster"].as_str() {
                out.insert(c.to_string());
            }
            for c in r["route"]["weighted_clusters"]["clusters"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.insert(c["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// The RDS file: a DiscoveryResponse holding the fixture's RouteConfiguration.
fn discovery_response(state: &str) -> String {
    let mut rc = fixture(state);
    rc["@type"] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into();
    serde_json::json!({ "version_info": state, "resources": [rc] }).to_string()
}

const RDS_FILE: &str = "routes.json";

fn push(dir: &Path, state: &str) {
    rds::write_atomically(dir, RDS_FILE, &discovery_response(state));
}

/// The shipped route-weights Envoy config, reading istiod's route name from `rds_dir`, with
/// every cluster the states name served by its test upstream and the WasmPlugin's pluginConfig.
fn bootstrap(rds_dir: &Path, clusters: &[String], upstreams: &[Echo], config: &str) -> String {
    let port = |c: &str| {
        let up = upstream_of(c);
        upstreams
            .iter()
            .find(|u| u.name == up)
            .expect("upstream")
            .addr
            .port()
    };
    rds::Bootstrap {
        dir: rds_dir,
        file: RDS_FILE,
        route_config: Some(ROUTE_CONFIG),
        clusters: clusters.iter().map(|c| (c.clone(), port(c))).collect(),
        plugin_config: Some(config.to_string()),
    }
    .render()
}

fn rds_stat(envoy: &Envoy, name: &str) -> u64 {
    rds::stat(envoy, ROUTE_CONFIG, name)
}

fn dumped_version(envoy: &Envoy) -> String {
    let body = envoy
        .admin_get("/config_dump?resource=dynamic_route_configs")
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["configs"][0]["version_info"].as_str().unwrap_or("").to_string()
}

/// Wait until Envoy has either taken `state` or rejected it; true when taken.
fn wait_update(envoy: &Envoy, state: &str, rejected_before: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if dumped_version(envoy) == state {
            return true;
        }
        if rds_stat(envoy, "update_rejected") > rejected_before {
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
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(envoy: &Envoy, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                let url = envoy.url("/load");
                std::thread::spawn(move || {
                    let a = agent();
                    let mut errors = Vec::new();
                    let mut i: u64 = c as u64;
                    while !stop.load(Ordering::Relaxed) {
                        i = i
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let user = format!("user-{}", (i >> 33) as usize % USERS);
                        match get(&a, &url, &[("host", HOST), ("x-user-id", &user)]) {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("status {}", r.status));
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(e);
                            }
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    errors
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            threads,
        }
    }

    fn finish(self) -> (u64, u64, Vec<String>) {
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

/// Every user once, each with a forged bucket header and pin that must not choose.
fn sweep(envoy: &Envoy) -> BTreeMap<String, String> {
    let a = agent();
    let url = envoy.url("/sweep");
    (0..USERS)
        .map(|u| {
            let user = format!("user-{u}");
            let forged = if u % 2 == 0 { "0" } else { "99" };
            let r = get(
                &a,
                &url,
                &[
                    ("host", HOST),
                    ("x-user-id", &user),
                    ("x-rollout-bucket", forged),
                    ("x-rollout-pin", "canary"),
                    ("x-rollout-version", "canary"),
                ],
            )
            .unwrap_or_else(|e| panic!("{user}: {e}"));
            assert_eq!(r.status, 200, "{user}: {:?}", r.headers);
            (user, r.version().to_string())
        })
        .collect()
}

struct Step {
    state: &'static str,
    /// The first state of a rollout: monotonic ramp is checked from here on.
    starts_rollout: bool,
    /// A rollback: every user must be on stable right after it.
    abort: bool,
}

fn run(plugin: &str, steps: &[Step]) {
    let rollout_id = {
        let cfg: serde_json::Value = serde_json::from_str(&plugin_config(plugin)).expect("json");
        cfg["rolloutId"].as_str().expect("rolloutId").to_string()
    };
    let states: Vec<&str> = steps.iter().map(|s| s.state).collect();
    let upstreams = vec![Echo::start("stable"), Echo::start("canary")];
    let rds = tempfile::tempdir().expect("rds dir");
    push(rds.path(), steps[0].state);
    let yaml = bootstrap(
        rds.path(),
        &all_clusters(&states),
        &upstreams,
        &plugin_config(plugin),
    );
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    assert!(wait_update(&envoy, steps[0].state, 0));

    let load = Load::start(&envoy, 3);
    let mut table = vec![format!(
        "{:<28} {:>8} {:>8} {:>8}",
        "state", "weights", "stable", "canary"
    )];
    let mut previous: Option<BTreeMap<String, String>> = None;
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            let rejected = rds_stat(&envoy, "update_rejected");
            push(rds.path(), step.state);
            assert!(
                wait_update(&envoy, step.state, rejected),
                "Envoy rejected {}:\n{}",
                step.state,
                envoy.log()
            );
        }
        assert_eq!(rds_stat(&envoy, "update_rejected"), 0, "{}", step.state);
        let weights = primary_weights(&fixture(step.state));
        let placed = sweep(&envoy);
        for (user, got) in &placed {
            let want = flagd_pick(&rollout_id, user, &weights);
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
        if let (Some(prev), false, false) = (&previous, step.starts_rollout, step.abort) {
            for (user, was) in prev {
                assert!(
                    !(was == "canary" && placed[user] == "stable"),
                    "{}: {user} went canary -> stable on the way up",
                    step.state
                );
            }
        }
        let n = |v: &str| placed.values().filter(|x| *x == v).count();
        let w: Vec<String> = weights.iter().map(|(u, w)| format!("{}{w}", &u[..1])).collect();
        table.push(format!(
            "{:<28} {:>8} {:>8} {:>8}",
            step.state,
            w.join("/"),
            n("stable"),
            n("canary")
        ));
        previous = Some(placed);
    }
    let (sent, failed, errors) = load.finish();
    println!("{}", table.join("\n"));
    println!(
        "{sent} requests under load across {} route updates, {failed} failed",
        steps.len() - 1
    );
    assert!(sent > 0, "the load clients sent nothing");
    assert_eq!(
        failed,
        0,
        "failed requests during route updates: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(rds_stat(&envoy, "update_rejected"), 0);
    assert_eq!(rds_stat(&envoy, "update_success"), steps.len() as u64);

    // What the filter counted per version is what each backend served.
    for v in ["stable", "canary"] {
        let served = envoy.upstreams.iter().find(|u| u.name == v).expect("upstream");
        let served = served.requests.load(Ordering::Relaxed) as f64;
        let counted = envoy.prom_value("rollout_requests_total", &[("version", v)]);
        assert_eq!(counted, served, "rollout_requests_total{{version={v}}} vs served");
    }
}

fn step(state: &'static str) -> Step {
    Step {
        state,
        starts_rollout: false,
        abort: false,
    }
}

fn start(state: &'static str) -> Step {
    Step {
        state,
        starts_rollout: true,
        abort: false,
    }
}

fn abort(state: &'static str) -> Step {
    Step {
        state,
        starts_rollout: false,
        abort: true,
    }
}

/// istio/rollout.yaml: one rollout promoted, the next aborted at 50 %.
#[test]
fn argo_rollouts_steer_the_sticky_split_through_promotion_and_abort() {
    run(
        "istio/route-weights/wasmplugin.yaml",
        &[
            start("argo-0-rest"),
            step("argo-1-weight-10"),
            step("argo-2-weight-25"),
            step("argo-3-weight-50"),
            step("argo-4-promote-canary-100"),
            // The stable subset now selects the new pods; the same route as at rest (Envoy keeps
            // the version of an identical update, so the next rollout starts from here).
            start("argo-5-promoted"),
            step("argo-1-weight-10"),
            step("argo-2-weight-25"),
            step("argo-3-weight-50"),
            abort("argo-6-abort"),
        ],
    );
}

/// istio/flagger/canary.yaml: one canary promoted, the next rolled back at 50 %.
#[test]
fn flagger_steers_the_sticky_split_through_promotion_and_rollback() {
    run(
        "istio/flagger/wasmplugin.yaml",
        &[
            start("flagger-0-rest"),
            step("flagger-1-weight-10"),
            step("flagger-2-weight-25"),
            step("flagger-3-weight-50"),
            start("flagger-4-promoted"),
            step("flagger-1-weight-10"),
            step("flagger-2-weight-25"),
            step("flagger-3-weight-50"),
            abort("flagger-5-rollback"),
        ],
    );
}

/// Why the EnvoyFilter carries a proxyVersion guard: on a route istiod rendered as a plain
/// `cluster` (Istio < 1.19 at 100/0), the MERGE leaves an empty weighted_clusters. Envoy rejects
/// that update and keeps the previous routes, so an abort would never reach the gateway.
#[test]
fn the_merge_on_a_plain_cluster_route_is_rejected_and_the_guard_avoids_it() {
    let upstreams = vec![Echo::start("stable"), Echo::start("canary")];
    let rds = tempfile::tempdir().expect("rds dir");
    let states = ["argo-3-weight-50", "legacy-guarded-rest", "legacy-unguarded-rest"];
    push(rds.path(), states[0]);
    let yaml = bootstrap(
        rds.path(),
        &all_clusters(&states),
        &upstreams,
        &plugin_config("istio/route-weights/wasmplugin.yaml"),
    );
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    assert!(wait_update(&envoy, states[0], 0));

    // The unguarded shape, pushed while canary users are on the canary: rejected, 50/50 stays.
    push(rds.path(), "legacy-unguarded-rest");
    assert!(
        !wait_update(&envoy, "legacy-unguarded-rest", 0),
        "Envoy took an empty weighted_clusters"
    );
    assert_eq!(rds_stat(&envoy, "update_rejected"), 1);
    assert_eq!(dumped_version(&envoy), states[0]);
    let placed = sweep(&envoy);
    assert!(
        placed.values().any(|v| v == "canary"),
        "the abort was not supposed to land"
    );

    // The guarded shape (patch not applied): taken; everyone on stable, at random pick order
    // but with a single cluster there is nothing to pick.
    push(rds.path(), "legacy-guarded-rest");
    assert!(wait_update(&envoy, "legacy-guarded-rest", 1));
    assert!(sweep(&envoy).values().all(|v| v == "stable"));
}

#[test]
fn fixtures_cover_every_state() {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("states.json")).expect("states.json"))
            .expect("json");
    let states: Vec<&str> = index
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    for s in [
        "argo-0-rest",
        "argo-1-weight-10",
        "argo-2-weight-25",
        "argo-3-weight-50",
        "argo-4-promote-canary-100",
        "argo-5-promoted",
        "argo-6-abort",
        "flagger-0-rest",
        "flagger-1-weight-10",
        "flagger-2-weight-25",
        "flagger-3-weight-50",
        "flagger-4-promoted",
        "flagger-5-rollback",
    ] {
        assert!(states.contains(&s), "no fixture for {s}: {states:?}");
        // Every state istiod renders from the shipped manifests is weighted_clusters + header.
        primary_weights(&fixture(s));
    }
}
