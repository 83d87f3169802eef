//! The shipped examples as requests (tests/tests/examples.rs): for each rollout of a filter
//! config, one request per host it declares and per version it may pick, with a sticky key
//! whose flagd placement `rollout_filter::split` computes, and the version it must reach.

use rollout_filter::config::{Config, StickyKey};
use rollout_filter::rollouts::FilterConfig;
use rollout_filter::split;
use serde_json::Value;

/// A route-weights rollout's weighted route: its clusters in order, with their weights.
#[derive(Debug, Clone)]
pub struct RouteSplit {
    pub clusters: Vec<String>,
    pub weights: Vec<u32>,
}

/// One request and what must happen to it.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Index into the config's rollouts.
    pub rollout: usize,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The version it must reach; `None`: any of the rollout's (placement not computed here).
    pub version: Option<String>,
    /// A header the upstream must receive with this value (the route or the bucket header).
    pub seen: Option<(String, String)>,
}

/// The first sticky key a plain HTTP request can carry.
enum Input<'a> {
    Header(&'a str),
    Cookie(&'a str),
    Query(&'a str),
    /// The source address: always 127.0.0.1 here, so one fixed placement.
    Source,
}

fn sticky_input(cfg: &Config) -> Option<Input<'_>> {
    cfg.sticky_keys.iter().find_map(|k| match k {
        StickyKey::Header(h) => Some(Input::Header(h)),
        StickyKey::Cookie(c) => Some(Input::Cookie(c)),
        StickyKey::Query(q) => Some(Input::Query(q)),
        StickyKey::SourceAddress => Some(Input::Source),
        // No peer over plain HTTP; a test's client certificate carries no identity label.
        StickyKey::PeerIdentity => None,
    })
}

/// The version a request served by `cluster` counts as: the version naming that cluster, else
/// the one named by an Istio cluster's subset (`outbound|80|SUBSET|host`), else by the name.
pub fn version_of<'a>(cfg: &'a Config, cluster: &str) -> Option<&'a str> {
    let subset = cluster.split('|').nth(2).unwrap_or(cluster);
    let by = |f: &dyn Fn(&rollout_filter::config::Version) -> bool| {
        cfg.versions.iter().find(|v| f(v)).map(|v| v.name.as_str())
    };
    by(&|v| v.cluster.as_deref() == Some(cluster))
        .or_else(|| by(&|v| v.name == subset))
        .or_else(|| by(&|v| v.name == cluster))
}

/// The hosts and paths rollout `i` declares (`match.hosts`, `match.pathPrefix` in `raw`), as
/// requests: a `*.suffix` host as `any.suffix`; no host or no `match` as a host no entry names.
pub fn targets(raw: &Value, i: usize, multi: bool) -> Vec<(String, String)> {
    const ANY: &str = "unlisted.example.test";
    if !multi {
        return vec![(ANY.into(), "/".into())];
    }
    let m = &raw["rollouts"][i]["match"];
    let path = m["pathPrefix"].as_str().unwrap_or("/").to_string();
    let hosts: Vec<String> = match m["hosts"].as_array() {
        Some(hs) => hs
            .iter()
            .filter_map(Value::as_str)
            .map(|h| h.strip_prefix('*').map_or(h.to_string(), |s| format!("any{s}")))
            .collect(),
        None => vec![ANY.into()],
    };
    hosts.into_iter().map(|h| (h, path.clone())).collect()
}

/// Every probe of a filter config: per rollout, per declared host, one request per version
/// it can pick (or one, when its placement cannot vary or is not computed here). `routes`
/// gives a route-weights rollout's weighted route. A declared host that reaches another
/// rollout first is an error.
pub fn probes(
    raw: &Value,
    fc: &FilterConfig,
    routes: &dyn Fn(&Config) -> Result<RouteSplit, String>,
) -> Result<Vec<Probe>, String> {
    let mut out = Vec::new();
    for (i, cfg) in fc.rollouts.iter().enumerate() {
        let flagd = raw["rollouts"][i].get("flagd").or(raw.get("flagd")).is_some();
        for (host, path) in targets(raw, i, fc.multi) {
            let got = fc.select(Some(host.as_bytes()), Some(path.as_bytes()));
            if got != Some(i) {
                let other = got.map_or("none", |j| fc.rollouts[j].rollout_id.as_str());
                return Err(format!(
                    "rollout {} declares {host}{path}, but that request selects rollout {other}",
                    cfg.rollout_id
                ));
            }
            let probe = Probe {
                rollout: i,
                host,
                path,
                headers: Vec::new(),
                version: None,
                seen: None,
            };
            if flagd {
                // A flagd flag's targeting decides: the version is one of the rollout's.
                out.push(probe);
            } else {
                out.extend(placed(cfg, &probe, routes)?);
            }
        }
    }
    Ok(out)
}

/// The rollout's choices: (version name, weight) in split order, with the weights' total,
/// and the header that carries the decision to the router.
fn choices(
    cfg: &Config,
    routes: &dyn Fn(&Config) -> Result<RouteSplit, String>,
) -> Result<(Vec<(String, u32)>, u32), String> {
    let Some(rw) = &cfg.route_weights else {
        let names = cfg.versions.iter().map(|v| v.name.clone());
        return Ok((names.zip(cfg.weights.iter().copied()).collect(), cfg.total_weight));
    };
    let s = routes(cfg)?;
    let total: u32 = s.weights.iter().sum();
    if total != rw.total_weight {
        return Err(format!(
            "rollout {}: route weights add up to {total}, routeWeights.totalWeight is {}",
            cfg.rollout_id, rw.total_weight
        ));
    }
    let mut out = Vec::new();
    for (c, w) in s.clusters.iter().zip(&s.weights) {
        let v = version_of(cfg, c).ok_or_else(|| format!("cluster {c} is none of the versions"))?;
        out.push((v.to_string(), *w));
    }
    Ok((out, total))
}

/// Probes with a sticky key placed on each version that has a share.
fn placed(
    cfg: &Config,
    base: &Probe,
    routes: &dyn Fn(&Config) -> Result<RouteSplit, String>,
) -> Result<Vec<Probe>, String> {
    let (choices, total) = choices(cfg, routes)?;
    let weights: Vec<u32> = choices.iter().map(|c| c.1).collect();
    let place = |key: &str| {
        let h = split::hash(cfg.rollout_id.as_bytes(), key.as_bytes());
        (split::pick(h, &weights, total), h)
    };
    let probe = |version: usize, h: u32| {
        let seen = match &cfg.route_weights {
            None => (cfg.route_header.clone(), choices[version].0.clone()),
            Some(rw) => (
                rw.bucket_header.clone(),
                split::bucket(h, u64::from(rw.total_weight)).to_string(),
            ),
        };
        Probe {
            version: Some(choices[version].0.clone()),
            seen: Some(seen),
            ..base.clone()
        }
    };
    let shares: Vec<usize> = (0..choices.len()).filter(|&j| weights[j] > 0).collect();
    let mut out = Vec::new();
    match sticky_input(cfg) {
        Some(Input::Source) => {
            let (j, h) = place("127.0.0.1");
            out.push(probe(j, h));
        }
        Some(input) => {
            for &j in &shares {
                let key = (0..100_000)
                    .map(|n| format!("user-{n}"))
                    .find(|k| place(k).0 == j)
                    .ok_or_else(|| format!("{}: no key lands on version {j}", cfg.rollout_id))?;
                out.push(carry(&input, &key, probe(j, place(&key).1)));
            }
        }
        // No key: a rollout with one version that has a share still has one answer.
        None if shares.len() == 1 && cfg.route_weights.is_none() => {
            out.push(Probe {
                seen: None,
                ..probe(shares[0], 0)
            });
        }
        None => out.push(base.clone()),
    }
    Ok(out)
}

/// `p` carrying sticky key `key` (in a header, a cookie or the query; the source address is
/// what it is).
fn carry(input: &Input, key: &str, mut p: Probe) -> Probe {
    match input {
        Input::Header(h) => p.headers.push((h.to_string(), key.to_string())),
        Input::Cookie(c) => p.headers.push(("cookie".into(), format!("{c}={key}"))),
        Input::Query(q) => {
            let sep = if p.path.contains('?') { '&' } else { '?' };
            p.path = format!("{}{sep}{q}={key}", p.path);
        }
        Input::Source => {}
    }
    p
}
