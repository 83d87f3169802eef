//! Issue 6: the Istio-equivalent Envoy config in a real Envoy, and hot reload.
//!
//! `envoy-config/istio-ecds.yaml` is the shape istiod generates for `istio/wasmplugin.yaml`: the
//! filter delivered by ECDS (here from a watched file, `envoy-config/ecds/rollout-filter.yaml`),
//! pluginConfig as JSON in a StringValue, V8, FAIL_OPEN, Istio's stats inclusion list plus the
//! filter's stats tags. The tests load the shipped files, changing only ports and paths, so a
//! change to their shape that breaks Envoy or the filter fails here.

use rollout_e2e::flagd::{fractional_flag_set, placements, SyncServer};
use rollout_e2e::{
    agent, get, h2_cluster_yaml, noop_wasm_path, read_workspace_file, replace_once, wasm_path,
    write_atomically, Echo, Envoy, Traffic,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RESOURCE: &str = "extensions.istio.io/wasmplugin/istio-system.rollout-filter";
const ENVOY_CONFIG: &str = "envoy-config/istio-ecds.yaml";
const ECDS_FILE: &str = "envoy-config/ecds/rollout-filter.yaml";
const ROLLOUT: &str = "checkout-2026-11";
/// The watched file in the test's ECDS directory.
const ECDS_NAME: &str = "rollout-filter.yaml";

/// The filter config with the shipped keys and routing, at the given weights.
fn filter_config(stable: i64, canary: i64) -> String {
    format!(
        r#"{{"rolloutId":"{ROLLOUT}","versions":[{{"name":"stable","weight":{stable}}},{{"name":"canary","weight":{canary}}}],"routeHeader":"x-rollout-version","stickyKeys":[{{"header":"x-user-id"}},{{"cookie":"uid"}},{{"sourceAddress":true}}],"override":{{"header":"x-rollout-pin","query":"rollout-version"}}}}"#
    )
}

/// The shipped Istio-shaped Envoy config with the filter's ECDS file in `ecds_dir`, its own
/// demo backend listeners removed and its `stable`/`canary` clusters pointed at echo upstreams.
fn bootstrap(ecds_dir: &Path, stable: &Echo, canary: &Echo) -> String {
    let mut yaml = read_workspace_file(ENVOY_CONFIG);
    let begin = yaml
        .find("  # demo-backends-begin")
        .expect("demo-backends-begin marker");
    let end_marker = "  # demo-backends-end\n";
    let end = yaml.find(end_marker).expect("demo-backends-end marker") + end_marker.len();
    yaml.replace_range(begin..end, "");
    let yaml = replace_once(&yaml, "port_value: 18910", "port_value: 0");
    let yaml = replace_once(&yaml, "port_value: 18010", "port_value: 0");
    let yaml = replace_once(
        &yaml,
        "port_value: 18111",
        &format!("port_value: {}", stable.addr.port()),
    );
    let yaml = replace_once(
        &yaml,
        "port_value: 18112",
        &format!("port_value: {}", canary.addr.port()),
    );
    let dir = ecds_dir.display();
    let yaml = replace_once(
        &yaml,
        "path: envoy-config/ecds/rollout-filter.yaml",
        &format!("path: \"{dir}/rollout-filter.yaml\""),
    );
    replace_once(
        &yaml,
        "watched_directory: { path: envoy-config/ecds }",
        &format!("watched_directory: {{ path: \"{dir}\" }}"),
    )
}

/// The shipped ECDS resource loading `wasm`, with `config` as the plugin configuration, at
/// `version`.
fn ecds_of(wasm: &Path, version: u32, config: &str) -> String {
    let text = replace_once(
        &read_workspace_file(ECDS_FILE),
        "filename: target/rollout-filter.wasm",
        &format!("filename: \"{}\"", wasm.display()),
    );
    let text = replace_once(
        &text,
        "version_info: \"1\"",
        &format!("version_info: \"{version}\""),
    );
    let mut out = String::new();
    let mut replaced = 0;
    for line in text.lines() {
        if line.trim_start().starts_with("value: '") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!("{indent}value: '{config}'\n"));
            replaced += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(replaced, 1, "one `value: '<json>'` line in {ECDS_FILE}");
    out
}

struct IstioEnvoy {
    envoy: Envoy,
    ecds_dir: tempfile::TempDir,
    wasm: PathBuf,
}

impl IstioEnvoy {
    fn start(config: &str) -> IstioEnvoy {
        Self::start_with(&wasm_path(), 1, config)
    }

    fn start_with(wasm: &Path, workers: u32, config: &str) -> IstioEnvoy {
        Self::start_with_clusters(wasm, workers, config, "")
    }

    /// With `clusters` (items of `clusters:`) added to the shipped ones.
    fn start_with_clusters(wasm: &Path, workers: u32, config: &str, clusters: &str) -> IstioEnvoy {
        let ecds_dir = tempfile::tempdir().expect("tempdir");
        write_atomically(ecds_dir.path(), ECDS_NAME, &ecds_of(wasm, 1, config));
        let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
        let yaml = bootstrap(ecds_dir.path(), &stable, &canary);
        let yaml = replace_once(&yaml, "\n  clusters:\n", &format!("\n  clusters:\n{clusters}"));
        let envoy = Envoy::start_yaml_with(&yaml, vec![stable, canary], workers, "wasm:info")
            .unwrap_or_else(|e| panic!("{e}"));
        IstioEnvoy {
            envoy,
            ecds_dir,
            wasm: wasm.to_path_buf(),
        }
    }

    fn update(&self, version: u32, config: &str) {
        write_atomically(
            self.ecds_dir.path(),
            ECDS_NAME,
            &ecds_of(&self.wasm, version, config),
        );
    }

    fn ecds_stat(&self, name: &str) -> u64 {
        let key = format!("extension_config_discovery.http_filter.{RESOURCE}.{name}");
        self.envoy.stats_now().get(&key).copied().unwrap_or(0)
    }

    fn wait_stat(&self, name: &str, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.ecds_stat(name) < at_least {
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {} (< {at_least}); Envoy log:\n{}",
                self.ecds_stat(name),
                self.envoy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Which version each key is routed to now.
    fn sweep(&self, keys: usize) -> Vec<String> {
        let a = agent();
        (0..keys)
            .map(|k| {
                let r = get(&a, &self.envoy.url("/"), &[("x-user-id", &key(k))]).expect("sweep request");
                assert_eq!(r.status, 200);
                r.version().to_string()
            })
            .collect()
    }

    /// Wait until every key goes to `want`; the time it first did.
    fn wait_all(&self, keys: usize, want: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.sweep(keys);
            if seen.iter().all(|v| v == want) {
                // After the sweep was answered, not before it started: a request sent before
                // the sweep may have reached Envoy ahead of the update and rightly seen the old weights.
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "keys never all moved to {want}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn key(k: usize) -> String {
    format!("hot-user-{k}")
}

/// One request of the background traffic.
#[derive(Debug)]
struct Sample {
    started: Instant,
    key: usize,
    status: u16,
    version: String,
    route_header: Option<String>,
    error: Option<String>,
}

/// Continuous traffic over `keys` sticky keys until stopped (see [`Traffic`]).
fn start_traffic(url: String, keys: usize) -> Traffic<Sample> {
    Traffic::start(Duration::from_millis(2), move |a, n| {
        let k = n % keys;
        let started = Instant::now();
        match get(a, &url, &[("x-user-id", &key(k))]) {
            Ok(r) => Sample {
                started,
                key: k,
                status: r.status,
                version: r.version().to_string(),
                route_header: r
                    .seen
                    .as_ref()
                    .and_then(|s| s.header("x-rollout-version"))
                    .map(str::to_string),
                error: None,
            },
            Err(e) => Sample {
                started,
                key: k,
                status: 0,
                version: String::new(),
                route_header: None,
                error: Some(e),
            },
        }
    })
}

/// Every request answered 200 by the upstream the filter chose: the filter ran for each one
/// (none skipped, none failed), whatever config it was running.
fn assert_all_served_by_the_filter(samples: &[Sample]) {
    let bad: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.status != 200 || s.error.is_some() || s.route_header.as_deref() != Some(s.version.as_str())
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed or skipped the filter, e.g. {:?}",
        bad.len(),
        samples.len(),
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn istio_shaped_config_loads_the_filter_by_ecds_with_istio_stats() {
    let ie = IstioEnvoy::start(&filter_config(90, 10));
    let a = agent();
    let url = ie.envoy.url("/");

    // The filter decides, the route header it sets picks the cluster.
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for k in 0..200 {
        let r = get(&a, &url, &[("x-user-id", &format!("istio-{k}"))]).expect("request");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.seen.as_ref().and_then(|s| s.header("x-rollout-version")),
            Some(r.version())
        );
        *counts.entry(r.version().to_string()).or_default() += 1;
    }
    assert!(counts.get("canary").copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get("stable").copied().unwrap_or(0) > 100, "{counts:?}");

    // Delivered by ECDS, as istiod does: one accepted update, FAIL_OPEN, V8, JSON in a StringValue.
    assert_eq!(ie.ecds_stat("update_success"), 1);
    assert_eq!(ie.ecds_stat("update_rejected"), 0);
    let dump = ie
        .envoy
        .admin_get("/config_dump?resource=ecds_filters")
        .expect("config_dump");
    for want in [
        RESOURCE,
        "FAIL_OPEN",
        "envoy.wasm.runtime.v8",
        "google.protobuf.StringValue",
    ] {
        assert!(dump.contains(want), "ECDS config_dump lacks {want}:\n{dump}");
    }

    // Istio's inclusion list: the HCM's and clusters' own stats are dropped, the filter's stay.
    let stats = ie.envoy.stats();
    assert!(
        !stats
            .keys()
            .any(|k| k.starts_with("http.front.") || k.starts_with("cluster.stable.")),
        "stats outside the inclusion list are exported"
    );
    let sticky_canary = format!("rollout_requests_total;rollout={ROLLOUT};version=canary;source=sticky");
    assert_eq!(ie.envoy.metric(&sticky_canary), u64::from(counts["canary"]));

    // ... and the stats tags turn the name-encoded labels into Prometheus labels.
    ie.envoy.stats();
    let prom = ie.envoy.admin_get("/stats/prometheus").expect("prometheus");
    let line = prom
        .lines()
        .find(|l| {
            l.starts_with("rollout_requests_total{")
                && l.contains(&format!("rollout=\"{ROLLOUT}\""))
                && l.contains("version=\"canary\"")
                && l.contains("source=\"sticky\"")
        })
        .unwrap_or_else(|| panic!("no labelled rollout_requests_total in:\n{prom}"));
    assert!(line.ends_with(&format!(" {}", counts["canary"])), "{line}");
}

#[test]
fn weights_change_under_continuous_traffic_without_restart_or_a_failed_request() {
    const KEYS: usize = 40;
    let ie = IstioEnvoy::start(&filter_config(100, 0));
    assert!(ie.sweep(KEYS).iter().all(|v| v == "stable"));

    let traffic = start_traffic(ie.envoy.url("/"), KEYS);
    std::thread::sleep(Duration::from_millis(300));
    // (written, converged, version every key must go to)
    let mut phases: Vec<(Instant, Instant, &str)> = Vec::new();
    let plan = [
        (0, 100, "canary"),
        (100, 0, "stable"),
        (0, 100, "canary"),
        (100, 0, "stable"),
    ];
    for (i, (stable, canary, want)) in plan.into_iter().enumerate() {
        let version = i as u32 + 2;
        let written = Instant::now();
        ie.update(version, &filter_config(stable, canary));
        ie.wait_stat("update_success", u64::from(version));
        let converged = ie.wait_all(KEYS, want);
        phases.push((written, converged, want));
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut samples = traffic.finish();
    samples.sort_by_key(|s| s.started);

    assert_all_served_by_the_filter(&samples);
    // Between a reload having taken effect and the next write, every request follows the new weights.
    for (i, &(_, converged, want)) in phases.iter().enumerate() {
        let until = phases.get(i + 1).map(|p| p.0);
        let during: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.started >= converged && until.is_none_or(|u| s.started < u))
            .collect();
        assert!(during.len() >= 20, "phase {i}: only {} requests", during.len());
        let wrong: Vec<_> = during.iter().filter(|s| s.version != want).collect();
        assert!(
            wrong.is_empty(),
            "phase {i} ({want}): {} requests elsewhere, e.g. {:?}",
            wrong.len(),
            wrong[0]
        );
    }
    // All keys saw both versions: the weights moved everyone, sticky or not.
    for k in 0..KEYS {
        let versions: std::collections::BTreeSet<&str> = samples
            .iter()
            .filter(|s| s.key == k)
            .map(|s| s.version.as_str())
            .collect();
        assert_eq!(versions.len(), 2, "key {k} saw {versions:?}");
    }
    assert_eq!(ie.ecds_stat("update_rejected"), 0);
    assert_eq!(ie.ecds_stat("update_success"), 5);
    eprintln!("{} requests across 4 reloads, none failed", samples.len());
}

#[test]
fn a_config_the_filter_rejects_is_refused_and_the_old_one_keeps_serving() {
    const KEYS: usize = 60;
    let ie = IstioEnvoy::start(&filter_config(90, 10));
    let before = ie.sweep(KEYS);
    assert!(
        before.iter().any(|v| v == "canary") && before.iter().any(|v| v == "stable"),
        "{before:?}"
    );

    let traffic = start_traffic(ie.envoy.url("/"), KEYS);
    std::thread::sleep(Duration::from_millis(300));
    ie.update(2, &filter_config(90, -1));
    ie.wait_stat("update_rejected", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ie.sweep(KEYS), before, "routing changed after a rejected update");
    // The subscription still works after a rejection.
    let good_written = Instant::now();
    ie.update(3, &filter_config(0, 100));
    ie.wait_stat("update_success", 2);
    ie.wait_all(KEYS, "canary");
    std::thread::sleep(Duration::from_millis(200));
    let mut samples = traffic.finish();
    samples.sort_by_key(|s| s.started);

    assert_all_served_by_the_filter(&samples);
    let old: Vec<&Sample> = samples.iter().filter(|s| s.started < good_written).collect();
    assert!(
        old.len() >= 50,
        "only {} requests around the bad update",
        old.len()
    );
    for s in old {
        assert_eq!(
            s.version, before[s.key],
            "key {} moved under the rejected config",
            s.key
        );
    }
    assert_eq!(ie.ecds_stat("update_rejected"), 1);
    assert_eq!(ie.ecds_stat("config_fail"), 1);
    let log = ie.envoy.log();
    assert!(
        log.contains("invalid configuration: versions[1].weight: must be an integer >= 0"),
        "Envoy log lacks the filter's message:\n{log}"
    );
    assert!(
        log.contains("config update rejected"),
        "Envoy log lacks the rejection:\n{log}"
    );
}

/// Config churn: 200 accepted reloads must not grow the VM count or its linear memory
/// without bound. Prints the figures; bounds are loose, the trend is what matters.
#[test]
fn two_hundred_reloads_keep_vm_memory_bounded() {
    const KEYS: usize = 20;
    const RELOADS: u32 = 200;
    let ie = IstioEnvoy::start(&filter_config(90, 10));
    ie.sweep(KEYS);
    let gauge = || {
        ie.envoy
            .stats()
            .get(&format!("wasmcustom.rollout_vm_memory_bytes;rollout={ROLLOUT}"))
            .copied()
            .unwrap_or(0)
    };
    let active = || {
        ie.envoy
            .stats()
            .get("wasm.envoy.wasm.runtime.v8.active")
            .copied()
            .unwrap_or(0)
    };
    let (mem0, vms0) = (gauge(), active());
    for i in 0..RELOADS {
        let canary = i64::from(i % 100);
        ie.update(2 + i, &filter_config(100 - canary, canary));
        ie.wait_stat("update_success", u64::from(i) + 2);
    }
    ie.sweep(KEYS);
    // The gauge is refreshed once a second: read it once quiet for longer than that.
    ie.envoy.stats_quiet_for(rollout_e2e::settle::MEMORY_QUIET);
    let (mem1, vms1) = (gauge(), active());
    println!("reload churn: {RELOADS} reloads; VM linear memory {mem0} -> {mem1} bytes; active V8 VMs {vms0} -> {vms1}");
    assert!(mem0 > 0, "the filter's memory gauge was not reported");
    assert!(vms1 <= vms0 + 1, "VMs leak across reloads: {vms0} -> {vms1}");
    assert!(
        mem1 <= mem0 + 4 * 1024 * 1024,
        "VM memory grew by {} bytes",
        mem1 - mem0
    );
}

/// Envoy's allocated heap (admin `/memory`), in bytes.
fn allocated(envoy: &Envoy) -> f64 {
    let text = envoy.admin_get("/memory").expect("/memory");
    let v: serde_json::Value = serde_json::from_str(&text).expect("/memory is JSON");
    v["allocated"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("allocated")
}

/// Envoy's heap growth per config push, in bytes, over `PUSHES` pushes of new weights to a
/// 2-worker Envoy running `wasm`, each push followed by traffic.
fn growth_per_push(wasm: &Path) -> f64 {
    const WARM: u32 = 20;
    const PUSHES: u32 = 200;
    let ie = IstioEnvoy::start_with(wasm, 2, &filter_config(90, 10));
    let push = |i: u32| {
        let canary = i64::from(i % 100);
        ie.update(i + 2, &filter_config(100 - canary, canary));
        ie.wait_stat("update_success", u64::from(i) + 2);
        // A connection each, so both workers serve the new config.
        for k in 0..4 {
            let r = get(&agent(), &ie.envoy.url("/"), &[("x-user-id", &key(k))]).expect("request");
            assert_eq!(r.status, 200);
        }
    };
    (0..WARM).for_each(push);
    std::thread::sleep(Duration::from_millis(300));
    let before = allocated(&ie.envoy);
    (WARM..WARM + PUSHES).for_each(push);
    std::thread::sleep(Duration::from_millis(300));
    let after = allocated(&ie.envoy);
    println!(
        "{}: Envoy allocated {before} -> {after} bytes over {PUSHES} pushes",
        wasm.file_name().unwrap_or_default().to_string_lossy()
    );
    (after - before) / f64::from(PUSHES)
}

/// Issue 24: a config push leaves nothing of the filter's behind in Envoy (each push used to
/// define every metric again, about 9.4 KB per push that Envoy kept for the VM's life).
#[test]
fn config_pushes_grow_envoy_no_more_than_a_no_op_filter() {
    let noop = growth_per_push(&noop_wasm_path());
    let filter = growth_per_push(&wasm_path());
    println!("growth per push: filter {filter:.0} B, no-op filter {noop:.0} B");
    assert!(
        filter <= noop + 1024.0,
        "the filter grows Envoy by {filter:.0} B per push, the no-op filter by {noop:.0} B"
    );
}

/// A flagd flag followed from flagd's sync stream keeps the flag flagd sent across a config
/// push: the new configuration starts from the snapshot this Envoy has, not from its `flagSet`.
#[test]
fn a_config_push_keeps_the_flag_flagd_sent() {
    const KEYS: usize = 60;
    let mut server = SyncServer::start();
    server.push("flagSetId=shop", &fractional_flag_set("checkout", 50).to_string());
    let config = |filter_state: bool| {
        serde_json::json!({
            "flagd": {
                "flagKey": "checkout",
                "flagSet": fractional_flag_set("checkout", 0),
                "variants": {"on": "canary", "off": "stable"},
                "context": {"targetingKey": {"header": "x-user-id"}},
                "sync": {"cluster": "flagd-sync", "selector": "flagSetId=shop"}
            },
            "routeHeader": "x-rollout-version",
            "filterState": filter_state
        })
        .to_string()
    };
    let clusters = h2_cluster_yaml("flagd-sync", server.port);
    let ie = IstioEnvoy::start_with_clusters(&wasm_path(), 2, &config(false), &clusters);
    let users: Vec<String> = (0..KEYS).map(key).collect();
    let at50 = placements("checkout", 50, &users);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ie.sweep(KEYS) != at50 {
        assert!(Instant::now() < deadline, "the first snapshot never routed");
    }
    // The sweep's one connection saw one worker; the other applies the snapshot on its next
    // tick (100 ms).
    std::thread::sleep(Duration::from_millis(500));
    // A snapshot the filter refuses comes last: the new configuration must still find the
    // good one before it.
    server.push("flagSetId=shop", r#"{"flags": {}}"#);
    std::thread::sleep(Duration::from_millis(500));
    let traffic = start_traffic(ie.envoy.url("/"), KEYS);
    ie.update(2, &config(true));
    ie.wait_stat("update_success", 2);
    // At once, and on every worker: the flag flagd sent, not `flagSet` (0 %).
    assert_eq!(ie.sweep(KEYS), at50);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ie.sweep(KEYS), at50);
    let samples = traffic.finish();
    assert_all_served_by_the_filter(&samples);
    let stray: Vec<&Sample> = samples.iter().filter(|s| s.version != at50[s.key]).collect();
    assert!(
        stray.is_empty(),
        "{} of {} requests left flagd's flag, e.g. {:?}",
        stray.len(),
        samples.len(),
        &stray[..stray.len().min(3)]
    );
    println!(
        "{} requests across the push, every one where flagd's flag puts it",
        samples.len()
    );
    // The new configuration follows the stream from now on (the old one's lease passes on).
    server.push("flagSetId=shop", &fractional_flag_set("checkout", 10).to_string());
    let at10 = placements("checkout", 10, &users);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ie.sweep(KEYS) != at10 {
        assert!(
            Instant::now() < deadline,
            "the new configuration did not follow the stream"
        );
    }
}
