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

use std::path::PathBuf;

use rollout_e2e::rollout_run::{self, abort, start, step, Rollout, Step};
use rollout_e2e::{workspace_root, Echo, Envoy};

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

fn run(plugin: &str, steps: &[Step]) {
    rollout_run::run(
        &Rollout {
            title: plugin,
            plugin_config: plugin_config(plugin),
            host: HOST,
            fixture: &fixture,
            // The controller's weights are the `primary` route's (no 0-weight entry, no padding).
            weights: &|s| primary_weights(&fixture(s)),
            upstream_of: &upstream_of,
        },
        steps,
    );
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
    const ROUTE_CONFIG: &str = "http.80";
    let upstreams = vec![Echo::start("stable"), Echo::start("canary")];
    let rds = tempfile::tempdir().expect("rds dir");
    let states = ["argo-3-weight-50", "legacy-guarded-rest", "legacy-unguarded-rest"];
    let clusters = rollout_run::cluster_ports(&states, &fixture, &upstreams, &upstream_of);
    rollout_run::push(rds.path(), states[0], fixture(states[0]));
    let config = plugin_config("istio/route-weights/wasmplugin.yaml");
    let yaml = rollout_run::bootstrap(rds.path(), ROUTE_CONFIG, &clusters, &config);
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    let wait = |state: &str, rejected: u64| rollout_run::wait_update(&envoy, ROUTE_CONFIG, state, rejected);
    assert!(wait(states[0], 0));

    // The unguarded shape, pushed while canary users are on the canary: rejected, 50/50 stays.
    rollout_run::push(rds.path(), states[2], fixture(states[2]));
    assert!(!wait(states[2], 0), "Envoy took an empty weighted_clusters");
    assert_eq!(rollout_e2e::rds::stat(&envoy, ROUTE_CONFIG, "update_rejected"), 1);
    assert_eq!(rollout_run::dumped_version(&envoy), states[0]);
    let placed = rollout_run::sweep(&envoy, HOST);
    assert!(
        placed.values().any(|v| v == "canary"),
        "the abort was not supposed to land"
    );

    // The guarded shape (patch not applied): taken; everyone on stable, at random pick order
    // but with a single cluster there is nothing to pick.
    rollout_run::push(rds.path(), states[1], fixture(states[1]));
    assert!(wait(states[1], 1));
    assert!(rollout_run::sweep(&envoy, HOST).values().all(|v| v == "stable"));
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
