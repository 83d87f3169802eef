//! Issue 30: config pushes under load. A 2-worker Envoy takes a 1,000-rollout configuration by
//! ECDS (a watched file, as in `deploy.rs`) and gets it replaced once a second, alternating
//! versions A (90/10) and B (25/75), while `wrk` sends every rollout's hosts traffic.
//! Nothing fails, every push is accepted, each rollout's counters per version equal what the
//! upstream of that version served for its hosts, and the VM's memory stays flat.
//!
//! `SOAK_SECONDS` (default 60) sets the length; `make soak` runs it (it is `#[ignore]`d, as
//! a minute of load is no part of `make test`). docs/soak.md has the figures.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rollout_e2e::{
    front_listener_bootstrap, get, replace_once, static_cluster_yaml, wasm_path, write_atomically, Echo,
    Envoy, CANARY_HEADER_ROUTES,
};
use rollout_filter::rollouts::config_with_rollouts;

const ROLLOUTS: usize = 1000;
/// The ECDS resource's name, and the watched file it is written to.
const RESOURCE: &str = "rollout-filter";
const ECDS_FILE: &str = "rollout-filter.yaml";
/// Where wrk's requests go once the rollout traffic is over (no rollout matches it).
const DRAIN_HOST: &str = "drain.example.org";
/// Drain traffic before wrk stops: far longer than any request takes (wrk times one out at 2 s).
const DRAIN: Duration = Duration::from_secs(3);
const WRK_SCRIPT: &str = include_str!("push_soak.wrk.lua");
const WRK_THREADS: &str = "2";
const WRK_CONNECTIONS: &str = "32";

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// Version A of the configuration (odd ECDS versions) or B (even): the same 1,000 rollouts,
/// top-level weights 90/10 or 25/75.
fn config(version: u32) -> String {
    let a = config_with_rollouts(ROLLOUTS);
    if version % 2 == 1 {
        return a;
    }
    let b = replace_once(
        &a,
        r#"{"name":"stable","weight":90}"#,
        r#"{"name":"stable","weight":25}"#,
    );
    replace_once(
        &b,
        r#"{"name":"canary","weight":10}"#,
        r#"{"name":"canary","weight":75}"#,
    )
}

/// The ECDS resource at `version`: the filter with that version's configuration. The VM
/// config never changes, so Envoy keeps the VMs and only reconfigures them.
fn ecds_resource(version: u32) -> String {
    format!(
        r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: {RESOURCE}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: {RESOURCE}
      root_id: rollout-filter
      failure_policy: FAIL_OPEN
      vm_config:
        vm_id: rollout-filter
        runtime: envoy.wasm.runtime.v8
        code: {{ local: {{ filename: "{wasm}" }} }}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: {json}
"#,
        wasm = wasm_path().display(),
        json = serde_json::to_string(&config(version)).unwrap_or_default(),
    )
}

/// Listener `front` with the filter from ECDS (the listener waits for it), routing by the
/// route header to the `stable` and `canary` echo upstreams.
fn bootstrap(ecds_dir: &Path, stable: &Echo, canary: &Echo) -> String {
    let dir = ecds_dir.display();
    let filters = format!(
        r#"          http_filters:
          - name: {RESOURCE}
            config_discovery:
              config_source:
                path_config_source:
                  path: "{dir}/{ECDS_FILE}"
                  watched_directory: {{ path: "{dir}" }}
                resource_api_version: V3
                initial_fetch_timeout: 0s
              type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    );
    let clusters = static_cluster_yaml("stable", stable.addr.port())
        + &static_cluster_yaml("canary", canary.addr.port());
    // File-based xDS needs a node identity.
    let node = "node: { id: push-soak, cluster: push-soak }\n";
    node.to_string() + &front_listener_bootstrap("", CANARY_HEADER_ROUTES, &filters, "", &clusters, 2)
}

struct Soak {
    envoy: Envoy,
    ecds_dir: tempfile::TempDir,
}

impl Soak {
    fn start() -> Soak {
        let ecds_dir = tempfile::tempdir().expect("tempdir");
        write_atomically(ecds_dir.path(), ECDS_FILE, &ecds_resource(1));
        let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
        let yaml = bootstrap(ecds_dir.path(), &stable, &canary);
        let envoy = Envoy::start_yaml_with(&yaml, vec![stable, canary], 2, "wasm:info")
            .unwrap_or_else(|e| panic!("{e}"));
        Soak { envoy, ecds_dir }
    }

    fn push(&self, version: u32) {
        write_atomically(self.ecds_dir.path(), ECDS_FILE, &ecds_resource(version));
    }

    /// Envoy's own stats whose names contain `filter` (a regex), as they are now.
    fn stats_matching(&self, filter: &str) -> BTreeMap<String, u64> {
        let body = self
            .envoy
            .admin_get(&format!("/stats?filter={filter}"))
            .unwrap_or_default();
        rollout_e2e::settle::parse_stats(&body)
    }

    fn ecds_stat(&self, name: &str) -> u64 {
        let key = format!("extension_config_discovery.http_filter.{RESOURCE}.{name}");
        self.stats_matching(&key).get(&key).copied().unwrap_or(0)
    }

    /// Waits until Envoy has accepted `n` configurations (the first load included). Polls
    /// gently: every `/stats` query walks Envoy's 100,000-odd stats on the thread that
    /// applies pushes.
    fn wait_accepted(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ecds_stat("update_success") < n {
            assert_eq!(
                self.ecds_stat("update_rejected"),
                0,
                "a push was rejected:\n{}",
                self.envoy.log()
            );
            assert!(
                Instant::now() < deadline,
                "update_success stayed at {} (< {n})",
                self.ecds_stat("update_success")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The memory figures of the note: the VMs' linear memory (the filter's gauge, summed over
/// the workers' VMs), Envoy's allocated heap, and the live V8 VMs.
#[derive(Debug, Clone, Copy)]
struct Memory {
    vm_bytes: u64,
    envoy_bytes: u64,
    vms: u64,
}

fn memory(soak: &Soak) -> Memory {
    let gauge = "wasmcustom.rollout_vm_memory_bytes;rollout=svc-0";
    let vms = "wasm.envoy.wasm.runtime.v8.active";
    let text = soak.envoy.admin_get("/memory").expect("/memory");
    let v: serde_json::Value = serde_json::from_str(&text).expect("/memory is JSON");
    Memory {
        vm_bytes: soak
            .stats_matching("rollout_vm_memory_bytes")
            .get(gauge)
            .copied()
            .unwrap_or(0),
        envoy_bytes: v["allocated"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("allocated"),
        vms: soak.stats_matching(vms).get(vms).copied().unwrap_or(0),
    }
}

/// The rollout a request's `Host` belongs to (the port is not part of the match).
fn rollout_of(host: &str) -> Option<String> {
    let name = host.split(':').next().unwrap_or(host);
    if name.ends_with(".wild.example.com") {
        return Some("wild".into());
    }
    let svc = name.strip_suffix(".example.com")?;
    svc.starts_with("svc-").then(|| svc.to_string())
}

type ByRollout = BTreeMap<(String, String), u64>;

/// Requests each upstream (a version) served, by the rollout of their `Host`.
fn served(envoy: &Envoy) -> ByRollout {
    let mut out = ByRollout::new();
    for echo in &envoy.upstreams {
        for (host, n) in echo.served_by_host() {
            if let Some(rollout) = rollout_of(&host) {
                *out.entry((rollout, echo.name.clone())).or_default() += n;
            }
        }
    }
    out
}

/// `rollout_requests_total` by rollout and version, summed over sources.
fn counted(soak: &Soak) -> ByRollout {
    let mut out = ByRollout::new();
    for (name, n) in soak.stats_matching("rollout_requests_total") {
        let mut labels = name.split(';').skip(1).filter_map(|l| l.split_once('='));
        let (Some(("rollout", r)), Some(("version", v))) = (labels.next(), labels.next()) else {
            continue;
        };
        if n > 0 {
            *out.entry((r.to_string(), v.to_string())).or_default() += n;
        }
    }
    out
}

/// Every (rollout, version) whose count differs from what was served: (key, counted, served).
fn mismatches(counted: &ByRollout, served: &ByRollout) -> Vec<((String, String), u64, u64)> {
    let keys: std::collections::BTreeSet<_> = counted.keys().chain(served.keys()).cloned().collect();
    keys.into_iter()
        .map(|k| {
            let (c, s) = (
                counted.get(&k).copied().unwrap_or(0),
                served.get(&k).copied().unwrap_or(0),
            );
            (k, c, s)
        })
        .filter(|(_, c, s)| c != s)
        .collect()
}

/// Requests to a few rollouts, each on a new connection, so both workers serve and report
/// their VM's memory.
fn warm_up(soak: &Soak) {
    let a = ureq::AgentBuilder::new().max_idle_connections(0).build();
    for i in 0..64 {
        let host = format!("svc-{i}.example.com");
        let r = get(&a, &soak.envoy.url("/"), &[("host", &host)]).expect("warm-up request");
        assert_eq!(r.status, 200, "warm-up: {r:?}");
    }
}

/// wrk's summary line from the script's `done`: (name, value) pairs.
fn wrk_summary(stdout: &str) -> BTreeMap<String, u64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("SOAK "))
        .unwrap_or_else(|| panic!("no summary from wrk:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(u64::MAX)))
        .collect()
}

/// A running wrk, stopped if the test ends early.
struct Wrk(std::process::Child);

impl Drop for Wrk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// wrk on `url`, with the script written to `dir`: rollout traffic until [`stop_wrk`].
fn start_wrk(dir: &Path, url: &str, seconds: u64) -> Wrk {
    let script = dir.join("push_soak.lua");
    std::fs::write(&script, WRK_SCRIPT).expect("write wrk script");
    let stop_file = dir.join("stop");
    let child = Command::new("wrk")
        .args(["-t", WRK_THREADS, "-c", WRK_CONNECTIONS])
        // Only a cap: the test stops wrk itself.
        .arg(format!("-d{}s", 4 * seconds + 120))
        .arg("-s")
        .arg(&script)
        .arg(url)
        .arg("--")
        .arg(ROLLOUTS.to_string())
        .arg(&stop_file)
        .arg(DRAIN_HOST)
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk (apt-get install wrk)");
    Wrk(child)
}

/// Ends the rollout traffic (the script sees the stop file), lets the requests in flight
/// finish during the drain, then stops wrk as Ctrl-C does: its stdout, summary included.
fn stop_wrk(mut wrk: Wrk, dir: &Path) -> String {
    std::fs::write(dir.join("stop"), "").expect("stop file");
    std::thread::sleep(DRAIN);
    let status = Command::new("kill")
        .args(["-INT", &wrk.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -INT wrk");
    let mut out = String::new();
    if let Some(mut stdout) = wrk.0.stdout.take() {
        stdout.read_to_string(&mut out).expect("wrk's output");
    }
    out
}

/// Waits until every VM (the main thread's and the two workers') has defined every rollout's
/// metrics (each logs it), then for a refresh of the memory gauge.
fn wait_defined(soak: &Soak) {
    let line = format!("metrics of {ROLLOUTS} rollouts defined");
    let deadline = Instant::now() + Duration::from_secs(120);
    while soak.envoy.log().matches(&line).count() < 3 {
        assert!(
            Instant::now() < deadline,
            "metrics never all defined:\n{}",
            soak.envoy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1_200)); // the gauge is refreshed once a second
}

/// Pushes B, A, B, … once a second, `seconds` times, each accepted before the next (a late
/// one is not made up for); the memory after each, and the longest wait for an acceptance.
fn push_every_second(soak: &Soak, seconds: u64) -> (Vec<Memory>, Duration) {
    let started = Instant::now();
    let (mut samples, mut slowest) = (Vec::new(), Duration::ZERO);
    for k in 1..=seconds {
        let at = started + Duration::from_millis(500 + 1000 * (k - 1));
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let version = u32::try_from(k + 1).expect("pushes");
        let pushed = Instant::now();
        soak.push(version);
        soak.wait_accepted(u64::from(version));
        slowest = slowest.max(pushed.elapsed());
        samples.push(memory(soak));
    }
    // The last configuration serves a while too.
    std::thread::sleep(Duration::from_secs(1));
    (samples, slowest)
}

/// The counters once they equal what was served (they reach Envoy every 100 ms), or as they
/// are after 60 s.
fn settled_counts(soak: &Soak, served: &ByRollout) -> ByRollout {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counted(soak);
        if &c == served || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "a minute of load: `make soak`"]
fn config_pushes_under_load_fail_nothing_and_count_exactly() {
    let seconds = soak_seconds();
    let soak = Soak::start();
    soak.wait_accepted(1);
    warm_up(&soak);
    wait_defined(&soak);
    let before = memory(&soak);
    let started = Instant::now();
    let wrk = start_wrk(soak.ecds_dir.path(), &soak.envoy.url("/"), seconds);
    let (during, slowest) = push_every_second(&soak, seconds);
    println!(
        "push soak: {seconds} pushes in {:.1} s of rollout traffic; slowest acceptance {} ms",
        started.elapsed().as_secs_f64(),
        slowest.as_millis()
    );
    let stdout = stop_wrk(wrk, soak.ecds_dir.path());
    println!("{stdout}");
    let wrk = wrk_summary(&stdout);
    let served = served(&soak.envoy);
    let counted = settled_counts(&soak, &served);
    std::thread::sleep(Duration::from_millis(1_200)); // one more gauge refresh
    let after = memory(&soak);
    let (accepted, rejected) = (
        soak.ecds_stat("update_success"),
        soak.ecds_stat("update_rejected"),
    );
    let wrong = mismatches(&counted, &served);
    report(
        &wrk,
        &served,
        (accepted, rejected),
        wrong.len(),
        (before, &during, after),
    );

    assert_no_failure(&wrk, (accepted, rejected), seconds);
    let rollouts: std::collections::BTreeSet<&String> = served.keys().map(|(r, _)| r).collect();
    assert_eq!(rollouts.len(), ROLLOUTS, "every rollout had traffic");
    assert!(
        wrong.is_empty(),
        "counted != served (rollout, version, counted, served): {:?}",
        &wrong[..wrong.len().min(20)]
    );
    assert_eq!(after.vms, before.vms, "V8 VMs before and after");
    assert_memory_flat(before, &during, after);
}

/// No request failed, and Envoy took the first load and every push.
fn assert_no_failure(wrk: &BTreeMap<String, u64>, ecds: (u64, u64), pushes: u64) {
    for k in ["non2xx", "connect", "read", "write", "status", "timeout"] {
        assert_eq!(wrk[k], 0, "wrk {k}: {wrk:?}");
    }
    assert!(wrk["requests"] > 0, "wrk: no responses");
    assert_eq!(
        ecds,
        (pushes + 1, 0),
        "ECDS update_success, update_rejected: the first load + {pushes} pushes, none refused"
    );
}

/// Prints the figures docs/soak.md records.
fn report(
    wrk: &BTreeMap<String, u64>,
    served: &ByRollout,
    (accepted, rejected): (u64, u64),
    mismatched: usize,
    (before, during, after): (Memory, &[Memory], Memory),
) {
    let by_version = |v: &str| {
        served
            .iter()
            .filter(|((_, ver), _)| ver == v)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    println!(
        "push soak: wrk {} responses, {} non-2xx, socket errors connect {} read {} write {} timeout {}",
        wrk["requests"], wrk["non2xx"], wrk["connect"], wrk["read"], wrk["write"], wrk["timeout"]
    );
    println!(
        "push soak: rollout requests served {} (stable {}, canary {}); ECDS update_success {accepted}, update_rejected {rejected}; (rollout, version) counts not equal to served: {mismatched}",
        by_version("stable") + by_version("canary"),
        by_version("stable"),
        by_version("canary")
    );
    let peak = during.iter().map(|m| m.vm_bytes).max().unwrap_or(0);
    let first = during.first().copied().unwrap_or(before);
    println!(
        "push soak: VM linear memory (both workers) {} -> {} after the first push -> {} bytes after the soak (peak {peak}); Envoy allocated {} -> {} -> {} bytes; V8 VMs {} -> {}",
        before.vm_bytes, first.vm_bytes, after.vm_bytes, before.envoy_bytes, first.envoy_bytes, after.envoy_bytes, before.vms, after.vms
    );
    let series: Vec<String> = during
        .iter()
        .map(|m| format!("{}/{}", m.vm_bytes / 1024, m.envoy_bytes / 1024))
        .collect();
    println!(
        "push soak: after each push, VM KiB/Envoy KiB: {}",
        series.join(" ")
    );
}

/// Growth allowed from the first push to the end, for the VMs' linear memory and for
/// Envoy's heap alike. The first push raises both once (old and new configuration live side
/// by side: about 15 MiB per VM for 1,000 rollouts); after it, measured: +2.9 to +3.5 MiB of
/// VM memory over 60 pushes, none after the 65th of 150 (the allocator's high-water mark
/// settling), and +0.3 to +0.9 MiB of Envoy heap (+1.3 MiB over 150). One configuration kept
/// per push would be far more (docs/soak.md).
const GROWTH_AFTER_FIRST_PUSH: u64 = 8 << 20;

fn assert_memory_flat(before: Memory, during: &[Memory], after: Memory) {
    assert!(before.vm_bytes > 0, "no memory gauge before the pushes");
    let first = during.first().copied().unwrap_or(before);
    assert!(
        after.vm_bytes <= first.vm_bytes + GROWTH_AFTER_FIRST_PUSH,
        "VM memory grew {} -> {} bytes after the first push",
        first.vm_bytes,
        after.vm_bytes
    );
    assert!(
        after.envoy_bytes <= first.envoy_bytes + GROWTH_AFTER_FIRST_PUSH,
        "Envoy's heap grew {} -> {} bytes after the first push",
        first.envoy_bytes,
        after.envoy_bytes
    );
}
