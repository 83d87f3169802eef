//! Argo Rollouts (Gateway API plugin) and Flagger (gatewayapi provider) canaries through the real
//! Envoy, as Istio's Gateway API implementation and Envoy Gateway would program the gateway.
//!
//! tests/fixtures/gateway-api-routes/ holds the route configuration each gateway renders at each
//! state of the shipped rollouts (rest, 10 / 25 / 50 %, promotion, abort or rollback), with the
//! shipped patch applied as the gateway applies it (istio/gateway-api/*/envoyfilter.yaml merged as
//! istiod merges, envoy-gateway/envoypatchpolicy.yaml applied as Envoy Gateway applies it), made by
//! tools/gateway_routes.py and checked against the manifests by `make deploy-test`. Here they are
//! delivered to a real Envoy by file-based RDS while clients keep sending requests, the filter
//! running the shipped config (the WasmPlugin's pluginConfig, the EnvoyExtensionPolicy's config).
//! What is asserted at every state: tests/src/rollout_run.rs. Where users must be comes from the
//! controller's weights (states.json), not from the route: the rendering and the patch are what
//! is under test. No Kubernetes API server, controller or gateway control plane runs here.

use std::path::PathBuf;

use rollout_e2e::rollout_run::{self, abort, start, step, Rollout, Step};
use rollout_e2e::{workspace_root, Echo, Envoy};
use serde_json::Value;

const HOST: &str = "checkout.example.com";

fn read_yaml(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures/gateway-api-routes")
}

fn fixture(state: &str) -> Value {
    read_yaml(&fixtures().join(format!("{state}.yaml")))
}

fn states() -> Vec<Value> {
    let path = fixtures().join("states.json");
    let text = std::fs::read_to_string(&path).expect("states.json");
    serde_json::from_str::<Value>(&text)
        .expect("states.json")
        .as_array()
        .expect("a list")
        .clone()
}

/// The controller's weights at `state`: stable first, as the flag's variants.
fn weights(state: &str) -> Vec<(&'static str, u64)> {
    let s = states()
        .into_iter()
        .find(|s| s["state"] == state)
        .unwrap_or_else(|| panic!("{state} not in states.json"));
    let w = |v: &str| s["weights"][v].as_u64().expect("weight");
    vec![("stable", w("stable")), ("canary", w("canary"))]
}

/// The shipped filter config of `gateway` for `controller`, as the gateway hands it over.
fn plugin_config(gateway: &str, controller: &str) -> Value {
    let cfg = if gateway == "istio" {
        let doc =
            read_yaml(&workspace_root().join(format!("istio/gateway-api/{controller}/wasmplugin.yaml")));
        doc["spec"]["pluginConfig"].clone()
    } else {
        let doc = read_yaml(&workspace_root().join(format!("envoy-gateway/{controller}/extension.yaml")));
        doc["spec"]["wasm"][0]["config"].clone()
    };
    assert!(
        cfg.get("routeWeights").is_some(),
        "{gateway}/{controller}: not in route-weights mode"
    );
    cfg
}

/// The version (and test upstream) whose `cluster` the shipped config names: every cluster a
/// gateway renders for the split must be claimed, or the metrics would say `unknown`.
fn upstream_of(cfg: &Value, cluster: &str) -> &'static str {
    let versions = cfg["versions"].as_array().expect("versions");
    let v = versions
        .iter()
        .find(|v| v["cluster"] == cluster)
        .unwrap_or_else(|| panic!("no version claims cluster {cluster}"));
    match v["name"].as_str() {
        Some("stable") => "stable",
        Some("canary") => "canary",
        other => panic!("unexpected version {other:?}"),
    }
}

fn run(gateway: &str, controller: &str, steps: &[Step]) {
    let cfg = plugin_config(gateway, controller);
    rollout_run::run(
        &Rollout {
            title: &format!("{gateway}, {controller}:"),
            plugin_config: cfg.to_string(),
            host: HOST,
            fixture: &fixture,
            weights: &weights,
            upstream_of: &|c| upstream_of(&cfg, c),
        },
        steps,
    );
}

/// One Argo rollout promoted, the next aborted at 50 % (istio/gateway-api/argo/rollout.yaml,
/// envoy-gateway/argo/rollout.yaml).
fn argo(gateway: &str) {
    // Named by the generator: <gateway>-argo-<n>-<state>.
    let s = |n: &str| format!("{gateway}-argo-{n}");
    run(
        gateway,
        "argo",
        &[
            start(s("0-rest")),
            step(s("1-weight-10")),
            step(s("2-weight-25")),
            step(s("3-weight-50")),
            step(s("4-promote-canary-100")),
            start(s("5-promoted")),
            step(s("1-weight-10")),
            step(s("2-weight-25")),
            step(s("3-weight-50")),
            abort(s("6-abort")),
        ],
    );
}

/// One Flagger canary promoted, the next rolled back at 50 % (istio/gateway-api/flagger/canary.yaml,
/// envoy-gateway/flagger/canary.yaml).
fn flagger(gateway: &str) {
    let s = |n: &str| format!("{gateway}-flagger-{n}");
    run(
        gateway,
        "flagger",
        &[
            start(s("0-rest")),
            step(s("1-weight-10")),
            step(s("2-weight-25")),
            step(s("3-weight-50")),
            start(s("4-promoted")),
            step(s("1-weight-10")),
            step(s("2-weight-25")),
            step(s("3-weight-50")),
            abort(s("5-rollback")),
        ],
    );
}

#[test]
fn istio_gateway_api_argo_rollouts_steer_the_sticky_split() {
    argo("istio");
}

#[test]
fn istio_gateway_api_flagger_steers_the_sticky_split() {
    flagger("istio");
}

#[test]
fn envoy_gateway_argo_rollouts_steer_the_sticky_split() {
    argo("envoy-gateway");
}

#[test]
fn envoy_gateway_flagger_steers_the_sticky_split() {
    flagger("envoy-gateway");
}

/// Every controller state of both controllers on both gateways has a fixture; a split with two
/// weights > 0 always picks by the bucket header, and every cluster is claimed by a version.
#[test]
fn fixtures_cover_every_state_of_both_controllers_on_both_gateways() {
    let all = states();
    for gateway in ["istio", "envoy-gateway"] {
        for (controller, n) in [("argo", 7), ("flagger", 6)] {
            let cfg = plugin_config(gateway, controller);
            let mine: Vec<&Value> = all
                .iter()
                .filter(|s| s["gateway"] == gateway && s["controller"] == controller)
                .filter(|s| s["expect"] == "accepted")
                .collect();
            assert_eq!(mine.len(), n, "{gateway}/{controller}: {mine:?}");
            for s in mine {
                let state = s["state"].as_str().expect("state");
                check_split(state, &fixture(state), &cfg);
            }
        }
    }
}

fn check_split(state: &str, rc: &Value, cfg: &Value) {
    let w = weights(state);
    for c in rollout_run::clusters(&[state], &fixture) {
        upstream_of(cfg, &c);
    }
    let routes = rc["virtual_hosts"][0]["routes"].as_array().expect("routes");
    let split = routes.last().expect("a catch-all split route");
    assert!(
        split["match"].get("headers").is_none(),
        "{state}: the last route is not the catch-all"
    );
    if w.iter().all(|(_, w)| *w > 0) {
        let wc = &split["route"]["weighted_clusters"];
        assert_eq!(
            wc["header_name"], "x-rollout-bucket",
            "{state}: the split does not pick by the bucket"
        );
    }
}

/// Why istio/gateway-api/*/envoyfilter.yaml brings a cluster of its own: the VirtualService
/// design's patch (header_name alone) on the plain `cluster` route istiod renders at rest leaves a
/// weighted_clusters with no cluster. Envoy rejects that update and keeps the previous routes, so a
/// rollback would never reach the gateway; the shipped shape of the same state is taken.
#[test]
fn istio_header_only_patch_at_rest_is_rejected_and_the_shipped_one_is_taken() {
    let cfg = plugin_config("istio", "flagger");
    let states = [
        "istio-flagger-3-weight-50",
        "istio-flagger-hazard-rest",
        "istio-flagger-5-rollback",
    ];
    let upstreams = vec![Echo::start("stable"), Echo::start("canary")];
    let clusters = rollout_run::cluster_ports(&states, &fixture, &upstreams, &|c| upstream_of(&cfg, c));
    let rds = tempfile::tempdir().expect("rds dir");
    rollout_run::push(rds.path(), states[0], fixture(states[0]));
    let yaml = rollout_run::bootstrap(rds.path(), "http.80", &clusters, &cfg.to_string());
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    let wait = |state: &str, rejected: u64| rollout_run::wait_update(&envoy, "http.80", state, rejected);
    assert!(wait(states[0], 0));

    rollout_run::push(rds.path(), states[1], fixture(states[1]));
    assert!(
        !wait(states[1], 0),
        "Envoy took a weighted_clusters without clusters"
    );
    assert_eq!(rollout_run::dumped_version(&envoy), states[0]);
    let placed = rollout_run::sweep(&envoy, HOST);
    assert!(
        placed.values().any(|v| v == "canary"),
        "the rollback was not supposed to land"
    );

    rollout_run::push(rds.path(), states[2], fixture(states[2]));
    assert!(wait(states[2], 1));
    assert!(rollout_run::sweep(&envoy, HOST).values().all(|v| v == "stable"));
}
