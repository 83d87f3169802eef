//! Route-weights mode under file-based RDS: the shipped `envoy-config/route-weights.yaml` made
//! runnable in a test, and route updates delivered the way a control plane's file sink must.

use std::path::Path;

use serde_json::{json, Value};

use crate::{wasm_path, workspace_root, Envoy};

/// The shipped route-weights Envoy config.
pub const SHIPPED: &str = "envoy-config/route-weights.yaml";

/// What a test changes in the shipped config; everything else is used as shipped.
pub struct Bootstrap<'a> {
    /// The directory Envoy watches; the route table is `file` in it.
    pub dir: &'a Path,
    pub file: &'a str,
    /// The RDS resource name, when the route table names its RouteConfiguration otherwise.
    pub route_config: Option<&'a str>,
    /// Every cluster the routes name, each served by a test upstream on 127.0.0.1.
    pub clusters: Vec<(String, u16)>,
    /// The filter's JSON config, when not the shipped one.
    pub plugin_config: Option<String>,
}

fn read_shipped() -> Value {
    let path = workspace_root().join(SHIPPED);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The front listener's HttpConnectionManager.
fn hcm(doc: &mut Value) -> &mut Value {
    let listeners = doc["static_resources"]["listeners"]
        .as_array_mut()
        .expect("listeners");
    let front = listeners
        .iter_mut()
        .find(|l| l["name"] == "front")
        .expect("a listener named front");
    &mut front["filter_chains"][0]["filters"][0]["typed_config"]
}

fn wasm_config(doc: &mut Value) -> &mut Value {
    let filters = hcm(doc)["http_filters"].as_array_mut().expect("http_filters");
    let wasm = filters
        .iter_mut()
        .find(|f| f["typed_config"]["config"]["vm_config"].is_object())
        .expect("the wasm filter");
    &mut wasm["typed_config"]["config"]
}

/// The shipped filter config (the JSON in the wasm filter's `configuration`).
pub fn shipped_plugin_config() -> String {
    let mut doc = read_shipped();
    wasm_config(&mut doc)["configuration"]["value"]
        .as_str()
        .expect("configuration.value")
        .to_string()
}

impl Bootstrap<'_> {
    /// The shipped config with the test's ports, paths, clusters and filter config, as JSON
    /// (which Envoy reads as YAML). The demo backends go; the test's upstreams serve instead.
    pub fn render(&self) -> String {
        let mut doc = read_shipped();
        doc["admin"]["address"]["socket_address"]["port_value"] = 0.into();
        let listeners = doc["static_resources"]["listeners"]
            .as_array_mut()
            .expect("listeners");
        listeners.retain(|l| l["name"] == "front");
        listeners[0]["address"]["socket_address"]["port_value"] = 0.into();
        let rds = &mut hcm(&mut doc)["rds"];
        if let Some(name) = self.route_config {
            rds["route_config_name"] = name.into();
        }
        let source = &mut rds["config_source"]["path_config_source"];
        source["path"] = self.dir.join(self.file).display().to_string().into();
        source["watched_directory"]["path"] = self.dir.display().to_string().into();
        let wasm = wasm_config(&mut doc);
        wasm["vm_config"]["code"]["local"]["filename"] = wasm_path().display().to_string().into();
        if let Some(cfg) = &self.plugin_config {
            wasm["configuration"]["value"] = cfg.as_str().into();
        }
        doc["static_resources"]["clusters"] = self
            .clusters
            .iter()
            .map(|(name, port)| {
                json!({
                    "name": name,
                    "connect_timeout": "1s",
                    "type": "STATIC",
                    "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [
                        { "endpoint": { "address": { "socket_address":
                            { "address": "127.0.0.1", "port_value": port } } } }
                    ] }] }
                })
            })
            .collect();
        doc.to_string()
    }
}

pub use crate::write_atomically;

/// `http.front.rds.<route_config>.<name>` (update_success, update_rejected, ...).
pub fn stat(envoy: &Envoy, route_config: &str, name: &str) -> u64 {
    envoy
        .stats_now()
        .get(&format!("http.front.rds.{route_config}.{name}"))
        .copied()
        .unwrap_or(0)
}
