//! The filter's configuration as a running Envoy loaded it: its rollouts, the Host each entry
//! matches, its versions and their configured weights (`make run`, the report's page).

use std::collections::BTreeMap;

/// One rollout of the front listener's filter: its id, a Host its entry matches (None: the
/// entry matches any host) and its versions with their weights.
pub struct Rollout {
    pub id: String,
    pub host: Option<String>,
    pub versions: Vec<(String, u64)>,
}

/// The rollouts of a filter config, either form; an entry's unset `versions` is the top level's.
pub fn rollouts_of(cfg: &serde_json::Value) -> Vec<Rollout> {
    let versions_of = |v: &serde_json::Value| {
        v.as_array().map(|vs| {
            vs.iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap_or("?").to_string(),
                        v["weight"].as_u64().unwrap_or(0),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    let one = |e: &serde_json::Value| Rollout {
        id: e["rolloutId"].as_str().unwrap_or("?").to_string(),
        // A wildcard entry `*.SUFFIX` is sent as `demo.SUFFIX`.
        host: e["match"]["hosts"][0]
            .as_str()
            .map(|h| match h.strip_prefix('*') {
                Some(suffix) => format!("demo{suffix}"),
                None => h.to_string(),
            }),
        versions: versions_of(&e["versions"])
            .or_else(|| versions_of(&cfg["versions"]))
            .unwrap_or_default(),
    };
    match cfg["rollouts"].as_array() {
        Some(list) => list.iter().map(one).collect(),
        None => vec![one(cfg)],
    }
}

/// The front listener's filter configuration as Envoy loaded it, from the admin config dump.
pub fn loaded_filter_config(admin: &str) -> Result<serde_json::Value, String> {
    let dump: serde_json::Value = ureq::get(&format!("{admin}/config_dump"))
        .call()
        .map_err(|e| e.to_string())?
        .into_json()
        .map_err(|e| format!("cannot read the admin config dump: {e}"))?;
    find_filter_config(&dump).ok_or_else(|| "no rollout-filter configuration in the config dump".into())
}

fn find_filter_config(v: &serde_json::Value) -> Option<serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(cfg) = m.get("configuration") {
                if let Some(s) = cfg.get("value").and_then(|s| s.as_str()) {
                    if let Ok(parsed) = serde_json::from_str::<serde_json::Value>(s) {
                        // The front listener's config is the one with `rollouts`.
                        if parsed.get("rollouts").is_some() {
                            return Some(parsed);
                        }
                    }
                }
            }
            m.values().find_map(find_filter_config)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_filter_config),
        _ => None,
    }
}

/// Every rollout's configured weights in percent, by rollout id and version, from every filter
/// configuration in `admin`'s config dump; a rollout without weights (flagd) is left out.
pub fn loaded_weights(admin: &str) -> Result<BTreeMap<String, BTreeMap<String, f64>>, String> {
    let dump: serde_json::Value = ureq::get(&format!("{admin}/config_dump"))
        .timeout(std::time::Duration::from_secs(10))
        .call()
        .map_err(|e| format!("{admin}/config_dump: {e}"))?
        .into_json()
        .map_err(|e| format!("cannot read the admin config dump: {e}"))?;
    let mut configs = Vec::new();
    every_filter_config(&dump, &mut configs);
    let mut out = BTreeMap::new();
    for r in configs.iter().flat_map(rollouts_of) {
        let total: u64 = r.versions.iter().map(|v| v.1).sum();
        if total > 0 {
            let pct = |w: u64| w as f64 * 100.0 / total as f64;
            out.insert(r.id, r.versions.into_iter().map(|(n, w)| (n, pct(w))).collect());
        }
    }
    Ok(out)
}

/// Every rollout filter configuration (one with `rolloutId` or `rollouts`) under `v`.
fn every_filter_config(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            let text = m.get("configuration").and_then(|c| c["value"].as_str());
            if let Some(Ok(parsed)) = text.map(serde_json::from_str::<serde_json::Value>) {
                if parsed.get("rollouts").is_some() || parsed.get("rolloutId").is_some() {
                    out.push(parsed);
                }
            }
            m.values().for_each(|x| every_filter_config(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| every_filter_config(x, out)),
        _ => {}
    }
}
