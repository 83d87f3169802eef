//! Shipped examples made runnable (tests/tests/examples.rs): a shipped Envoy config with its
//! ports, paths, module and upstreams replaced, and a minimal Envoy config around a shipped
//! filter config (a WasmPlugin's `pluginConfig`, an ECDS resource).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rollout_filter::config::{Config, Version};
use rollout_filter::rollouts::FilterConfig;
use serde_json::{json, Value};

use crate::examples::RouteSplit;
use crate::{static_cluster_yaml, wasm_path, workspace_root, BOOTSTRAP_HEAD};

/// A workspace file (YAML or JSON) as JSON.
pub fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every `socket_address.port_value` under `v`.
fn ports(v: &Value, out: &mut BTreeSet<u64>) {
    match v {
        Value::Object(m) => {
            if let Some(p) = m.get("socket_address").and_then(|s| s["port_value"].as_u64()) {
                out.insert(p);
            }
            m.values().for_each(|x| ports(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| ports(x, out)),
        _ => {}
    }
}

/// Make the shipped Envoy config `doc` runnable here: admin and listeners on port 0; the
/// listeners that stand in for backends (on a port a cluster points at) removed; each cluster
/// served by 127.0.0.1:`upstream(name)`; relative files made absolute, the module the built
/// one, an output file (access log) put in `dir`, and each watched ECDS or RDS file copied
/// into `dir` (what Envoy then watches).
pub fn runnable(doc: &mut Value, dir: &Path, upstream: &mut dyn FnMut(&str) -> u16) -> Result<(), String> {
    let mut backend_ports = BTreeSet::new();
    ports(&doc["static_resources"]["clusters"], &mut backend_ports);
    let listeners = doc["static_resources"]["listeners"]
        .as_array_mut()
        .ok_or("no static_resources.listeners")?;
    listeners.retain(|l| {
        let port = l["address"]["socket_address"]["port_value"].as_u64();
        !port.is_some_and(|p| backend_ports.contains(&p))
    });
    for l in listeners.iter_mut() {
        l["address"]["socket_address"]["port_value"] = 0.into();
    }
    doc["admin"]["address"]["socket_address"]["port_value"] = 0.into();
    for c in doc["static_resources"]["clusters"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let port = upstream(&name);
        c["load_assignment"] = json!({ "cluster_name": name, "endpoints": [{ "lb_endpoints": [
            { "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } } } }
        ] }] });
    }
    rewrite_files(doc, dir)
}

/// The file rewrites of [`runnable`], anywhere in `v` (a config or a resource file).
pub fn rewrite_files(v: &mut Value, dir: &Path) -> Result<(), String> {
    let root = workspace_root();
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x.as_str()) {
                    ("path_config_source", _) => copy_watched(x, dir)?,
                    ("filename", Some(f)) if f.ends_with(".wasm") => {
                        *x = wasm_path().display().to_string().into()
                    }
                    ("filename", Some(f)) if Path::new(f).is_relative() => {
                        *x = root.join(f).display().to_string().into()
                    }
                    ("path", Some(f)) if Path::new(f).is_relative() => {
                        let name = Path::new(f).file_name().unwrap_or_default();
                        *x = dir.join(name).display().to_string().into()
                    }
                    _ => rewrite_files(x, dir)?,
                }
            }
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| rewrite_files(x, dir))?,
        _ => {}
    }
    Ok(())
}

/// A `path_config_source`: its shipped file, rewritten like the config, copied into `dir`.
fn copy_watched(source: &mut Value, dir: &Path) -> Result<(), String> {
    let rel = source["path"]
        .as_str()
        .ok_or("path_config_source without a path")?;
    let mut resource = read_yaml(&workspace_root().join(rel))?;
    rewrite_files(&mut resource, dir)?;
    let copy = dir.join(Path::new(rel).file_name().unwrap_or_default());
    std::fs::write(&copy, resource.to_string()).map_err(|e| format!("{}: {e}", copy.display()))?;
    source["path"] = copy.display().to_string().into();
    source["watched_directory"] = json!({ "path": dir.display().to_string() });
    Ok(())
}

/// The weighted route whose `header_name` is `header`, in `values` (a listener's inline
/// route table, RDS resources).
pub fn weighted_route(values: &[&Value], header: &str) -> Option<RouteSplit> {
    fn find<'a>(v: &'a Value, header: &str) -> Option<&'a Value> {
        match v {
            Value::Object(m) => match m.get("weighted_clusters") {
                Some(w) if w["header_name"] == header => Some(w),
                _ => m.values().find_map(|x| find(x, header)),
            },
            Value::Array(a) => a.iter().find_map(|x| find(x, header)),
            _ => None,
        }
    }
    let w = values.iter().find_map(|v| find(v, header))?;
    let clusters = w["clusters"].as_array()?;
    Some(RouteSplit {
        clusters: clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().into())
            .collect(),
        weights: clusters
            .iter()
            .map(|c| c["weight"].as_u64().unwrap_or(0) as u32)
            .collect(),
    })
}

/// The cluster a version is served by in the harness: its own `cluster`, else its name.
pub fn cluster_of(v: &Version) -> String {
    v.cluster.clone().unwrap_or_else(|| v.name.clone())
}

/// The harness's weighted route for a route-weights rollout: its versions in order, the
/// total split evenly (the first takes the remainder).
pub fn even_split(cfg: &Config) -> RouteSplit {
    let total = cfg.route_weights.as_ref().map_or(100, |rw| rw.total_weight);
    let n = cfg.versions.len().max(1) as u32;
    let mut weights = vec![total / n; n as usize];
    weights[0] += total % n;
    RouteSplit {
        clusters: cfg.versions.iter().map(cluster_of).collect(),
        weights,
    }
}

/// Every cluster the harness needs for `fc`, once each.
pub fn clusters(fc: &FilterConfig) -> Vec<String> {
    let all = fc.rollouts.iter().flat_map(|r| r.versions.iter().map(cluster_of));
    all.collect::<BTreeSet<_>>().into_iter().collect()
}

/// The route table for `fc`: per rollout, a route per version keyed on its route header; a
/// route-weights rollout's bucket header then picks by [`even_split`]; anything else goes to
/// the first rollout's first version.
fn routes_yaml(fc: &FilterConfig) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::new();
    let mut route = |m: String, r: String| {
        out.push_str(&format!(
            "              - match: {m}\n                route: {r}\n"
        ));
    };
    for r in &fc.rollouts {
        for v in &r.versions {
            let m = format!(
                "{{ prefix: \"/\", headers: [{{ name: {}, string_match: {{ exact: {} }} }}] }}",
                q(&r.route_header),
                q(&v.name)
            );
            route(m, format!("{{ cluster: {} }}", q(&cluster_of(v))));
        }
    }
    for r in &fc.rollouts {
        let Some(rw) = &r.route_weights else { continue };
        let s = even_split(r);
        let list: Vec<String> = (s.clusters.iter().zip(&s.weights))
            .map(|(c, w)| format!("{{ name: {}, weight: {w} }}", q(c)))
            .collect();
        let h = q(&rw.bucket_header);
        route(
            format!("{{ prefix: \"/\", headers: [{{ name: {h}, present_match: true }}] }}"),
            format!(
                "{{ weighted_clusters: {{ header_name: {h}, clusters: [{}] }} }}",
                list.join(", ")
            ),
        );
    }
    let first = fc.rollouts.first().and_then(|r| r.versions.first());
    route(
        "{ prefix: \"/\" }".into(),
        format!("{{ cluster: {} }}", q(&first.map(cluster_of).unwrap_or_default())),
    );
    out
}

/// A minimal Envoy config for `fc`: listener `front` with [`routes_yaml`], `http_filters` (a
/// fragment such as [`crate::http_filters_yaml`] or [`ecds_filters_yaml`]), and each
/// (cluster, port) of `upstreams`.
pub fn harness_yaml(fc: &FilterConfig, http_filters: &str, upstreams: &[(String, u16)]) -> String {
    let clusters: String = upstreams
        .iter()
        .map(|(c, p)| static_cluster_yaml(c, *p))
        .collect();
    // A node identity, which ECDS requires.
    format!(
        r#"node: {{ id: examples, cluster: examples }}
{BOOTSTRAP_HEAD}  - name: front
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            name: rollout
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
{routes}{http_filters}  clusters:
{clusters}"#,
        routes = routes_yaml(fc),
    )
}

/// `http_filters` whose first filter is the ECDS resource `name` from the watched `file`.
pub fn ecds_filters_yaml(name: &str, file: &Path) -> String {
    let dir = file.parent().map(PathBuf::from).unwrap_or_default();
    format!(
        r#"          http_filters:
          - name: {name}
            config_discovery:
              config_source:
                path_config_source: {{ path: "{file}", watched_directory: {{ path: "{dir}" }} }}
                resource_api_version: V3
              type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        name = serde_json::to_string(name).unwrap_or_default(),
        file = file.display(),
        dir = dir.display(),
    )
}
