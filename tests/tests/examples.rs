//! Issue 30: every shipped example runs in the real Envoy.
//!
//! - Each WasmPlugin under istio/ and EnvoyExtensionPolicy under envoy-gateway/ (found by its
//!   kind, at any depth): its filter config in a minimal Envoy config with a cluster per version it names, routes keyed on each rollout's
//!   route header (or the bucket header's weighted route in route-weights mode).
//! - Each Envoy config in envoy-config/: as shipped, with ports 0, its backend stand-ins
//!   replaced by echo upstreams, files copied or made absolute (`rollout_e2e::shipped`).
//! - Each ECDS resource in envoy-config/ecds/: delivered by ECDS to a minimal Envoy config.
//! - envoy-config/flagd-sync.yaml once more, its sync cluster at a flagd sync server: snapshots
//!   reroute. (Above, like every HTTP/2 cluster, it points where nothing listens.)
//!
//! Every rollout gets a request per host it declares and per version it can pick, with a sticky
//! key whose flagd placement `rollout_filter::split` computes; the version that served it and
//! the header the router read are checked (`rollout_e2e::examples`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rollout_cli::check::{self, Source};
use rollout_e2e::examples::{probes, version_of, Probe, RouteSplit};
use rollout_e2e::flagd::SyncServer;
use rollout_e2e::shipped::{self, clusters, ecds_filters_yaml, even_split, harness_yaml, read_yaml};
use rollout_e2e::{agent, get, http_filters_yaml, mtls_agent, wasm_path, workspace_root, Echo, Envoy, Reply};
use rollout_filter::config::Config;
use rollout_filter::rollouts::FilterConfig;
use serde_json::{json, Value};

/// The demo client certificate presented to an mTLS listener: an identity, no rollout label.
const DEMO_CLIENT: &str = "client-qa";

/// The `.yaml` files under `dir` (workspace-relative), sorted; subdirectories too if `deep`.
fn shipped_yaml(dir: &str, deep: bool) -> Vec<String> {
    fn visit(root: &Path, rel: &Path, deep: bool, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        for e in entries.flatten() {
            let path = rel.join(e.file_name());
            if e.path().is_dir() {
                if deep {
                    visit(root, &path, deep, out);
                }
            } else if path.extension().is_some_and(|x| x == "yaml") {
                out.push(path.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    visit(&workspace_root(), Path::new(dir), deep, &mut out);
    out.sort();
    out
}

/// `reply` to `p` under `fc`: 200 from an upstream of the expected version, the decision in
/// the header the router reads.
fn check_reply(fc: &FilterConfig, p: &Probe, reply: Result<Reply, String>) -> Result<(), String> {
    let r = reply?;
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    let cfg: &Config = &fc.rollouts[p.rollout];
    let served = version_of(cfg, r.version());
    let ok = match &p.version {
        Some(want) => served == Some(want.as_str()),
        // Placement not computed: one of the rollout's versions, the one the router was told.
        None if cfg.route_weights.is_none() => {
            served.is_some() && served == r.seen.as_ref().and_then(|s| s.header(&cfg.route_header))
        }
        None => served.is_some(),
    };
    if !ok {
        return Err(format!(
            "served by {:?}, want version {:?}",
            r.version(),
            p.version
        ));
    }
    if let Some((h, want)) = &p.seen {
        let got = r.seen.as_ref().and_then(|s| s.header(h));
        if got != Some(want.as_str()) {
            return Err(format!("upstream saw {h}: {got:?}, want {want:?}"));
        }
    }
    Ok(())
}

/// Sends every probe to `base` (scheme and authority); the number sent, or what went wrong.
fn drive(base: &str, a: &ureq::Agent, fc: &FilterConfig, probes: &[Probe]) -> Result<usize, String> {
    let mut errors = Vec::new();
    for p in probes {
        let mut headers = vec![("host", p.host.as_str())];
        headers.extend(p.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let reply = get(a, &format!("{base}{}", p.path), &headers);
        if let Err(e) = check_reply(fc, p, reply) {
            let id = &fc.rollouts[p.rollout].rollout_id;
            errors.push(format!(
                "  rollout {id}, {}{} {:?}: {e}",
                p.host, p.path, p.headers
            ));
        } else if p.version.is_none() {
            // A flagd flag's targeting, or no sticky key: said, not hidden in the count.
            let id = &fc.rollouts[p.rollout].rollout_id;
            println!("NOTE rollout {id}, {}{}: placement not computed here; served by one of its versions, the one its route header names", p.host, p.path);
        }
    }
    if errors.is_empty() {
        Ok(probes.len())
    } else {
        Err(format!("\n{}", errors.join("\n")))
    }
}

/// Echo upstreams named by `clusters`, with their (cluster, port).
fn upstreams(clusters: &[String]) -> (Vec<Echo>, Vec<(String, u16)>) {
    let echoes: Vec<Echo> = clusters.iter().map(|c| Echo::start(c)).collect();
    let ports = echoes.iter().map(|e| (e.name.clone(), e.addr.port())).collect();
    (echoes, ports)
}

/// A filter config the filter accepts, with its JSON as a value.
fn parse(json: &[u8]) -> Result<(FilterConfig, Value), String> {
    let fc = FilterConfig::from_json(json).map_err(|e| format!("the filter refuses it: {e}"))?;
    let raw = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok((fc, raw))
}

/// Waits until ECDS has delivered filter `name`.
fn wait_ecds(envoy: &Envoy, name: &str) -> Result<(), String> {
    let key = format!("extension_config_discovery.http_filter.{name}.update_success");
    let deadline = Instant::now() + Duration::from_secs(15);
    while envoy.stats_now().get(&key).copied().unwrap_or(0) == 0 {
        if Instant::now() > deadline {
            return Err(format!("ECDS never delivered {name}:\n{}", envoy.log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A WasmPlugin's pluginConfig in the harness: the requests sent, or what failed.
fn run_plugin_config(json: &[u8]) -> Result<(usize, usize), String> {
    let (fc, raw) = parse(json)?;
    let probes = probes(&raw, &fc, &|cfg| Ok(even_split(cfg)))?;
    let (echoes, ports) = upstreams(&clusters(&fc));
    let config = std::str::from_utf8(json).map_err(|e| e.to_string())?;
    let filters = http_filters_yaml(&wasm_path(), "FAIL_CLOSED", config);
    let envoy = Envoy::start_yaml(&harness_yaml(&fc, &filters, &ports), echoes)?;
    Ok((fc.rollouts.len(), drive(&envoy.url(""), &agent(), &fc, &probes)?))
}

/// A pluginConfig that is a flagd flag (`flagd` at the top or in an entry).
fn is_flagd(json: &[u8]) -> bool {
    let raw: Value = serde_json::from_slice(json).unwrap_or_default();
    raw.get("flagd").is_some()
        || raw["rollouts"]
            .as_array()
            .is_some_and(|r| r.iter().any(|e| e.get("flagd").is_some()))
}

/// Prints what ran and what was skipped; fails on any failure.
fn conclude(what: &str, ran: &[(String, usize, usize)], skipped: &[String], failures: &[String]) {
    for (name, rollouts, requests) in ran {
        println!("{name}: {rollouts} rollout(s), {requests} request(s), each where it must go");
    }
    for s in skipped {
        println!("SKIPPED {s}");
    }
    let requests: usize = ran.iter().map(|r| r.2).sum();
    println!(
        "{what}: {} ran ({requests} requests), {} skipped",
        ran.len(),
        skipped.len()
    );
    assert!(
        failures.is_empty(),
        "{what} that do not run:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shipped_plugin_config_routes_each_rollout_and_host_to_its_version() {
    let (mut ran, mut skipped, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let files = [shipped_yaml("istio", true), shipped_yaml("envoy-gateway", true)].concat();
    for file in files {
        let text = std::fs::read(workspace_root().join(&file)).expect("read a shipped file");
        // A Kubernetes object's filter config: a WasmPlugin's, an EnvoyExtensionPolicy's.
        for item in check::items(&file, &text)
            .into_iter()
            .filter(|i| i.at.starts_with("spec."))
        {
            let Source::Reencoded(json) = &item.source else {
                failures.push(format!("{}: {:?}", item.name, item.source));
                continue;
            };
            match run_plugin_config(json) {
                Ok((rollouts, requests)) => ran.push((item.name, rollouts, requests)),
                Err(e) if is_flagd(json) && FilterConfig::from_json(json).is_err() => skipped.push(format!(
                    "{}: a flagd pluginConfig this filter does not accept: {e}",
                    item.name
                )),
                Err(e) => failures.push(format!("{}: {e}", item.name)),
            }
        }
    }
    // The discovery found what is shipped today, at least.
    for want in [
        "istio/wasmplugin.yaml",
        "istio/gateway-multi/",
        "istio/lanes.yaml#1",
        "istio/flagger/",
        "istio/route-weights/",
        "istio/gateway-api/",
        "istio/flagd/",
        "envoy-gateway/",
    ] {
        let all: Vec<&String> = ran.iter().map(|r| &r.0).chain(&failures).collect();
        assert!(
            all.iter().any(|n| n.starts_with(want)),
            "{want} was not found: {all:?}"
        );
    }
    conclude(
        "WasmPlugins and EnvoyExtensionPolicies",
        &ran,
        &skipped,
        &failures,
    );
}

/// How to reach listener `l`: a client and the URL base. An mTLS listener gets the demo
/// client certificate from its CA's directory.
fn client_for(l: &Value, addr: SocketAddr) -> Result<(ureq::Agent, String), String> {
    let tls = &l["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"];
    let Some(ca) = tls["validation_context"]["trusted_ca"]["filename"].as_str() else {
        return Ok((agent(), format!("http://{addr}")));
    };
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let dir = Path::new(ca).parent().unwrap_or(Path::new("."));
    let cert = read(&dir.join(format!("{DEMO_CLIENT}.pem")))?;
    let key = read(&dir.join(format!("{DEMO_CLIENT}.key")))?;
    let a = mtls_agent(&read(Path::new(ca))?, Some((&cert, &key)));
    Ok((a, format!("https://localhost:{}", addr.port())))
}

/// The bound address of listener `name`, once it has one.
fn address(envoy: &Envoy, name: &str) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(a) = envoy.listener_named(name) {
            return Ok(a);
        }
        if Instant::now() > deadline {
            return Err(format!("listener {name} never bound:\n{}", envoy.log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The RDS resources listener `l` reads (the copies [`shipped::runnable`] made).
fn rds_resources(l: &Value) -> Vec<Value> {
    fn find(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(p) = m
                    .get("rds")
                    .and_then(|r| r["config_source"]["path_config_source"]["path"].as_str())
                {
                    out.push(p.to_string());
                }
                m.values().for_each(|x| find(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| find(x, out)),
            _ => {}
        }
    }
    let mut paths = Vec::new();
    find(l, &mut paths);
    paths
        .iter()
        .filter_map(|p| read_yaml(Path::new(p)).ok())
        .collect()
}

/// The filter config of listener `l` (inline, or from the ECDS file it watches, once Envoy has
/// it); `None` without a Wasm filter.
fn listener_config(envoy: &Envoy, l: &Value) -> Result<Option<Vec<u8>>, String> {
    let found = check::filters_in(l);
    let Some((name, source)) = found.first() else {
        return Ok(None);
    };
    if found.len() > 1 {
        return Err(format!(
            "{} Wasm filters on one listener: not modelled here",
            found.len()
        ));
    }
    match source {
        Source::Json(json) => Ok(Some(json.clone())),
        Source::EcdsFile(path) => {
            wait_ecds(envoy, name.as_deref().unwrap_or_default())?;
            let resource = read_yaml(Path::new(path))?;
            match check::filters_in(&resource).into_iter().next() {
                Some((_, Source::Json(json))) => Ok(Some(json)),
                other => Err(format!("ECDS file {path}: {other:?}")),
            }
        }
        other => Err(format!("filter {name:?}: {other:?}")),
    }
}

/// One listener of a shipped Envoy config: every probe of its filter config, or one request
/// when it has no filter. (rollouts, requests sent).
fn run_listener(envoy: &Envoy, l: &Value) -> Result<(usize, usize), String> {
    let name = l["name"].as_str().unwrap_or_default();
    let (a, base) = client_for(l, address(envoy, name)?)?;
    let Some(json) = listener_config(envoy, l)? else {
        let r = get(&a, &format!("{base}/"), &[])?;
        return match r.status {
            200..300 => Ok((0, 1)),
            s => Err(format!("listener {name}: status {s}")),
        };
    };
    let (fc, raw) = parse(&json)?;
    let rds = rds_resources(l);
    let routes = |cfg: &Config| -> Result<RouteSplit, String> {
        let header = cfg
            .route_weights
            .as_ref()
            .map(|rw| rw.bucket_header.as_str())
            .unwrap_or_default();
        let mut values: Vec<&Value> = vec![l];
        values.extend(&rds);
        shipped::weighted_route(&values, header).ok_or_else(|| format!("no weighted route on {header}"))
    };
    let sent =
        drive(&base, &a, &fc, &probes(&raw, &fc, &routes)?).map_err(|e| format!("listener {name}: {e}"))?;
    Ok((fc.rollouts.len(), sent))
}

/// The clusters of `doc` that speak HTTP/2 only (the echo upstreams speak HTTP/1.1).
fn h2_clusters(doc: &Value) -> Vec<String> {
    let opts = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let clusters = doc["static_resources"]["clusters"].as_array();
    clusters
        .into_iter()
        .flatten()
        .filter(|c| {
            let o = &c["typed_extension_protocol_options"][opts]["explicit_http_config"];
            o.get("http2_protocol_options").is_some()
        })
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// A shipped Envoy config, runnable: (listeners, rollouts, requests sent).
fn run_envoy_config(file: &str) -> Result<(usize, usize, usize), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut doc = read_yaml(&workspace_root().join(file))?;
    let h2 = h2_clusters(&doc);
    let mut echoes = Vec::new();
    shipped::runnable(&mut doc, dir.path(), &mut |cluster| {
        // An HTTP/2 cluster is a gRPC peer (flagd's sync port): nothing listens, as when flagd is down.
        let e = if h2.iter().any(|c| c == cluster) {
            Echo::dead(cluster)
        } else {
            Echo::start(cluster)
        };
        let port = e.addr.port();
        echoes.push(e);
        port
    })?;
    let listeners = doc["static_resources"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = listeners
        .first()
        .and_then(|l| l["name"].as_str())
        .ok_or("no listener")?;
    let envoy = Envoy::start_yaml_on(&doc.to_string(), echoes, 1, "wasm:info", first)?;
    let (mut rollouts, mut sent, mut errors) = (0, 0, Vec::new());
    for l in &listeners {
        match run_listener(&envoy, l) {
            Ok((r, n)) => (rollouts, sent) = (rollouts + r, sent + n),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok((listeners.len(), rollouts, sent))
}

#[test]
fn every_shipped_envoy_config_routes_each_listener_to_the_expected_version() {
    let (mut ran, mut failures) = (Vec::new(), Vec::new());
    for file in shipped_yaml("envoy-config", false) {
        match run_envoy_config(&file) {
            Ok((listeners, rollouts, requests)) => {
                ran.push((format!("{file} ({listeners} listener(s))"), rollouts, requests))
            }
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    assert!(ran.len() + failures.len() >= 4, "{ran:?} {failures:?}");
    conclude("Envoy configs", &ran, &[], &failures);
}

/// A shipped ECDS resource file delivered by ECDS to the harness: (rollouts, requests) per resource.
fn run_ecds_file(file: &str) -> Result<Vec<(String, usize, usize)>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut doc = read_yaml(&workspace_root().join(file))?;
    shipped::rewrite_files(&mut doc, dir.path())?;
    let copy = dir.path().join(Path::new(file).file_name().unwrap_or_default());
    std::fs::write(&copy, doc.to_string()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for r in doc["resources"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().ok_or("a resource without a name")?;
        let Some((_, Source::Json(json))) = check::filters_in(r).into_iter().next() else {
            return Err(format!("resource {name}: no Wasm filter configuration"));
        };
        let (fc, raw) = parse(&json)?;
        let probes = probes(&raw, &fc, &|cfg| Ok(even_split(cfg)))?;
        let (echoes, ports) = upstreams(&clusters(&fc));
        let yaml = harness_yaml(&fc, &ecds_filters_yaml(name, &copy), &ports);
        let envoy = Envoy::start_yaml(&yaml, echoes)?;
        wait_ecds(&envoy, name)?;
        let sent = drive(&envoy.url(""), &agent(), &fc, &probes)?;
        out.push((format!("{file}#{name}"), fc.rollouts.len(), sent));
    }
    Ok(out)
}

#[test]
fn every_shipped_ecds_resource_loads_by_ecds_and_routes_each_rollout() {
    let (mut ran, mut failures) = (Vec::new(), Vec::new());
    for file in shipped_yaml("envoy-config/ecds", false) {
        match run_ecds_file(&file) {
            Ok(resources) => ran.extend(resources),
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    assert!(!ran.is_empty() || !failures.is_empty(), "no ECDS resource found");
    conclude("ECDS resources", &ran, &[], &failures);
}

/// Whether every one of 20 users reaches `version` (each on a new connection, so both workers
/// answer), trying until 10 s have passed.
fn all_reach(envoy: &Envoy, base: &str, version: &str) -> Result<(), String> {
    let a = ureq::AgentBuilder::new().max_idle_connections(0).build();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut off = Vec::new();
        for i in 0..20 {
            let r = get(&a, &format!("{base}/"), &[("x-user-id", &format!("user-{i}"))])?;
            if r.version() != version {
                off.push(format!("user-{i}: {}", r.version()));
            }
        }
        if off.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not on {version}: {off:?}\n{}", envoy.log()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// envoy-config/flagd-sync.yaml as shipped, its `flagd-sync` cluster at a flagd sync server
/// (flagd.sync.v1 on OpenFeature's generated code): its start-up flagSet is the flag file its
/// flagd serves, and a snapshot pushed for its selector reroutes both workers.
#[test]
fn shipped_flagd_sync_config_follows_the_sync_stream() {
    let file = "envoy-config/flagd-sync.yaml";
    let mut doc = read_yaml(&workspace_root().join(file)).unwrap();
    let listener = doc["static_resources"]["listeners"][0].clone();
    let Some((_, Source::Json(json))) = check::filters_in(&listener).into_iter().next() else {
        panic!("{file}: no inline filter config");
    };
    let cfg: Value = serde_json::from_slice(&json).unwrap();
    let flags = read_yaml(&workspace_root().join("envoy-config/flagd/flags.json")).unwrap();
    assert_eq!(
        cfg["flagd"]["flagSet"], flags,
        "{file}: flagSet is envoy-config/flagd/flags.json"
    );
    let selector = cfg["flagd"]["sync"]["selector"].as_str().unwrap().to_string();

    // The first snapshot waits at the server: the stream brings it at once, well within
    // timeoutSeconds however slowly Envoy starts.
    let mut server = SyncServer::start();
    let mut flag = flags.clone();
    let mut push = |server: &mut SyncServer, on: u32| {
        flag["flags"]["checkout-v2"]["targeting"] = json!({"fractional": [["on", on], ["off", 1 - on]]});
        server.push(&selector, &flag.to_string());
    };
    push(&mut server, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut echoes = Vec::new();
    shipped::runnable(&mut doc, dir.path(), &mut |cluster| {
        if cluster == "flagd-sync" {
            return server.port;
        }
        let e = Echo::start(cluster);
        let port = e.addr.port();
        echoes.push(e);
        port
    })
    .unwrap();
    let envoy = Envoy::start_yaml_on(&doc.to_string(), echoes, 2, "wasm:info", "front").unwrap();
    let base = format!("http://{}", address(&envoy, "front").unwrap());
    all_reach(&envoy, &base, "canary").unwrap();
    println!("{file}: snapshot with 100 % on: every user on canary");
    push(&mut server, 0);
    all_reach(&envoy, &base, "stable").unwrap();
    println!("{file}: snapshot with 0 % on: every user on stable");
}
