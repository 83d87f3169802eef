//! `make run-route-weights`: the shipped route-weights config (envoy-config/route-weights.yaml)
//! in Envoy, the route's weights changed by file-based RDS the way a control plane does, and
//! the per-version table before and after the change, measured from the responses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rollout_cli::http::{agent, get};
use rollout_cli::{settle, workspace_root};

const FRONT: &str = "http://127.0.0.1:18020";
const ADMIN: &str = "http://127.0.0.1:18920";
const USERS: u32 = 10_000;
const ROLLOUT: &str = "checkout-2026-11";

fn main() {
    if let Err(e) = run() {
        eprintln!("make run-route-weights: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = workspace_root();
    // A private copy of the RDS directory, so the demo never edits the shipped file.
    let dir = root.join("target/route-demo");
    let rds = dir.join("rds");
    std::fs::create_dir_all(&rds).map_err(|e| e.to_string())?;
    let shipped_rds = read(&root.join("envoy-config/rds/checkout.yaml"))?;
    std::fs::write(rds.join("checkout.yaml"), &shipped_rds).map_err(|e| e.to_string())?;
    let bootstrap = read(&root.join("envoy-config/route-weights.yaml"))?
        .replace(
            "path: envoy-config/rds/checkout.yaml",
            &format!("path: \"{}/checkout.yaml\"", rds.display()),
        )
        .replace(
            "watched_directory: { path: envoy-config/rds }",
            &format!("watched_directory: {{ path: \"{}\" }}", rds.display()),
        );
    let cfg = dir.join("route-weights.yaml");
    std::fs::write(&cfg, bootstrap).map_err(|e| e.to_string())?;

    let log_path = dir.join("envoy.log");
    let envoy = rollout_cli::demo_envoy::start(&cfg, &log_path, FRONT, ADMIN)?;

    println!("Envoy with envoy-config/route-weights.yaml: the route's weighted_clusters pick, the filter writes the bucket");
    let before = drive()?;
    table(
        "route weights stable 90 / canary 10 (envoy-config/rds/checkout.yaml)",
        &before,
        [90, 10],
    );

    // The control plane's next step, as a new route table renamed over the watched file.
    let stepped = shipped_rds
        .replace("version_info: \"1\"", "version_info: \"2\"")
        .replace("weight: 90 }", "weight: 75 }")
        .replace("weight: 10 }", "weight: 25 }");
    let tmp = rds.join(".checkout.yaml.tmp");
    std::fs::write(&tmp, stepped).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, rds.join("checkout.yaml")).map_err(|e| e.to_string())?;
    wait_stat("http.front.rds.checkout.update_success", 2)?;

    let after = drive()?;
    table("after the RDS update to stable 75 / canary 25", &after, [75, 25]);
    let up = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b == &"stable" && a == &"canary")
        .count();
    let down = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b == &"canary" && a == &"stable")
        .count();
    println!(
        "moved stable -> canary: {up}; canary -> stable: {down} (a rising canary weight only adds users)"
    );
    let metric = |v: &str| -> u64 {
        let prefix = format!("rollout_requests_total;rollout={ROLLOUT};version={v};");
        stats()
            .iter()
            .filter(|(k, _)| k.contains(&prefix))
            .map(|(_, n)| n)
            .sum()
    };
    settle();
    println!(
        "filter metrics, counted from the cluster Envoy used: stable {} canary {} unknown {}",
        metric("stable"),
        metric("canary"),
        metric("unknown")
    );
    drop(envoy);
    if down > 0 {
        return Err("a user went back from canary to stable".into());
    }
    Ok(())
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Each user once; the version that answered (the backends' `x-served-by`).
fn drive() -> Result<Vec<String>, String> {
    let threads = 4;
    let parts: Vec<Result<Vec<(u32, String)>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let agent = agent();
                    let mut out = Vec::new();
                    for i in (t..USERS).step_by(threads as usize) {
                        let r = get(
                            &agent,
                            &format!("{FRONT}/"),
                            &[("x-user-id", &format!("user-{i}"))],
                        )?;
                        if r.status != 200 {
                            return Err(format!("status {} from the demo", r.status));
                        }
                        out.push((i, r.header("x-served-by").unwrap_or("none").to_string()));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client thread died".into())))
            .collect()
    });
    let mut all = Vec::new();
    for p in parts {
        all.extend(p?);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

fn table(title: &str, seen: &[String], weights: [u32; 2]) {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut flagd_same = 0;
    for (i, v) in seen.iter().enumerate() {
        *counts.entry(v.as_str()).or_default() += 1;
        let h = rollout_filter::split::hash(ROLLOUT.as_bytes(), format!("user-{i}").as_bytes());
        if ["stable", "canary"][rollout_filter::split::pick(h, &weights, 100)] == v {
            flagd_same += 1;
        }
    }
    println!();
    println!("{title}");
    println!(
        "{:<10} {:>8} {:>10} {:>10}",
        "version", "weight", "observed", "users"
    );
    for (name, w) in ["stable", "canary"].iter().zip(weights) {
        let n = counts.get(name).copied().unwrap_or(0);
        println!(
            "{:<10} {:>7}% {:>9.2}% {:>10}",
            name,
            w,
            100.0 * n as f64 / seen.len() as f64,
            n
        );
    }
    println!("where flagd's fractional puts them: {flagd_same}/{}", seen.len());
}

fn stats() -> BTreeMap<String, u64> {
    ureq::get(&format!("{ADMIN}/stats"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn wait_stat(name: &str, at_least: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while stats().get(name).copied().unwrap_or(0) < at_least {
        if Instant::now() > deadline {
            return Err(format!("{name} never reached {at_least}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
