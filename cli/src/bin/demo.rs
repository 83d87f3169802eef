//! `make run`: start Envoy with the shipped demo config, drive traffic through the
//! filter for each of its rollouts (chosen by Host), and print what happened per rollout
//! and version, measured from the responses.

use std::collections::BTreeMap;
use std::time::Instant;

use rollout_cli::demo_envoy::drive;
use rollout_cli::filter_config::{loaded_filter_config, rollouts_of};
use rollout_cli::http::{get, mtls_agent};
use rollout_cli::{settle, workspace_root};

const FRONT: &str = "http://127.0.0.1:18000";
const ADMIN: &str = "http://127.0.0.1:18900";
const DISTINCT_USERS: u32 = 10_000;
const REPEATED_USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "eve"];
const REPEATS: u32 = 200;

fn main() {
    if let Err(e) = run() {
        eprintln!("make run: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = workspace_root();
    let log_path = root.join("target/envoy-demo.log");
    let envoy =
        rollout_cli::demo_envoy::start(&root.join("envoy-config/envoy.yaml"), &log_path, FRONT, ADMIN)?;

    let rollouts = rollouts_of(&loaded_filter_config(ADMIN)?);
    let ids: Vec<&str> = rollouts.iter().map(|r| r.id.as_str()).collect();
    println!(
        "Envoy {} with envoy-config/envoy.yaml, rollouts {}",
        envoy_version(),
        ids.join(", ")
    );
    println!(
        "per rollout: {DISTINCT_USERS} requests with distinct x-user-id, then {REPEATS} each for {} repeat users",
        REPEATED_USERS.len()
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for r in &rollouts {
        let host = r.host.as_deref();
        let distinct = drive(FRONT, DISTINCT_USERS, host, |i| format!("user-{i}"))?;
        let mut sticky_ok = 0;
        let mut repeat_total: BTreeMap<String, u64> = BTreeMap::new();
        for user in REPEATED_USERS {
            let seen = drive(FRONT, REPEATS, host, |_| user.to_string())?;
            if seen.len() == 1 {
                sticky_ok += 1;
            }
            let (v, n) = seen
                .iter()
                .next()
                .map(|(v, n)| (v.clone(), *n))
                .unwrap_or_default();
            repeat_total.insert(format!("{user}→{v}"), n);
        }
        results.push((distinct, sticky_ok, repeat_total));
    }
    let mtls = mtls_callers(&root)?;
    let elapsed = started.elapsed();

    println!();
    println!(
        "{:<18} {:<10} {:>8} {:>10} {:>10}",
        "rollout", "version", "weight", "observed", "requests"
    );
    let mut sent = 0;
    let mut unexpected = 0;
    for (r, (distinct, _, _)) in rollouts.iter().zip(&results) {
        let total_weight: u64 = r.versions.iter().map(|v| v.1).sum();
        let n_sent: u64 = distinct.values().sum();
        sent += n_sent;
        for (name, weight) in &r.versions {
            let n = distinct.get(name).copied().unwrap_or(0);
            println!(
                "{:<18} {:<10} {:>7.1}% {:>9.2}% {:>10}",
                r.id,
                name,
                100.0 * *weight as f64 / total_weight.max(1) as f64,
                100.0 * n as f64 / n_sent.max(1) as f64,
                n
            );
        }
        let other: u64 = distinct
            .iter()
            .filter(|(v, _)| !r.versions.iter().any(|(n, _)| n == *v))
            .map(|(_, n)| n)
            .sum();
        if other > 0 {
            println!(
                "{:<18} {:<10} {:>8} {:>10} {:>10}",
                r.id, "other", "-", "-", other
            );
        }
        unexpected += other;
    }
    for (r, (_, sticky_ok, repeat_total)) in rollouts.iter().zip(&results) {
        println!(
            "stickiness {}: {sticky_ok}/{} repeat users stayed on one version over {REPEATS} requests each ({})",
            r.id,
            REPEATED_USERS.len(),
            repeat_total.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for r in &rollouts {
        match &r.host {
            Some(h) => println!("{}: requests with Host {h}", r.id),
            None => println!(
                "{}: requests with Host 127.0.0.1:18000 (any host the other entries do not match)",
                r.id
            ),
        }
    }
    println!();
    println!("mTLS callers on https://localhost:18443 ({MTLS_USERS} distinct x-user-id each):");
    println!("{:<44} {:>10}", "client certificate", "canary");
    for (name, canary) in &mtls {
        println!(
            "{:<44} {:>9.1}%",
            name,
            100.0 * *canary as f64 / MTLS_USERS as f64
        );
    }
    println!(
        "{} requests in {:.1} s; the tables count which backend answered each response",
        sent + u64::from(REPEATS) * (REPEATED_USERS.len() * rollouts.len()) as u64
            + MTLS_USERS * mtls.len() as u64,
        elapsed.as_secs_f64()
    );
    println!();
    settle();
    print_report()?;
    drop(envoy);
    let all_sticky = results.iter().all(|(_, ok, _)| *ok == REPEATED_USERS.len());
    if !all_sticky || unexpected > 0 {
        return Err("routing was not as configured".into());
    }
    Ok(())
}

/// The report (`rollout-report`) against the demo Envoy, with `$REPORT_ARGS`. The demo
/// shows the verdict; it does not fail on hold or abort.
fn print_report() -> Result<(), String> {
    let args = std::env::var("REPORT_ARGS").unwrap_or_default();
    let argv = ["--admin", ADMIN.trim_start_matches("http://")]
        .into_iter()
        .chain(args.split_whitespace())
        .map(str::to_string);
    match rollout_cli::report::main(argv, &mut std::io::stdout(), &mut std::io::stderr()) {
        0..=2 => Ok(()),
        code => Err(format!("rollout-report failed (exit code {code})")),
    }
}

const MTLS_USERS: u64 = 400;

/// Requests from each demo client certificate; how many the canary answered.
fn mtls_callers(root: &std::path::Path) -> Result<Vec<(String, u64)>, String> {
    let certs = root.join("envoy-config/demo-certs");
    let read = |f: &str| std::fs::read_to_string(certs.join(f)).map_err(|e| format!("{f}: {e}"));
    let ca = read("ca.pem")?;
    let mut out = Vec::new();
    for (name, label) in [
        ("client-qa", "spiffe://demo.local/ns/qa/sa/tester (no label)"),
        ("client-pinned", "rollout://checkout-2026-11?version=canary"),
        (
            "client-weight50",
            "otherName {\"version\":\"canary\",\"weight\":50}",
        ),
    ] {
        let (cert, key) = (read(&format!("{name}.pem"))?, read(&format!("{name}.key"))?);
        let agent = mtls_agent(&ca, Some((&cert, &key)));
        let mut canary = 0;
        for i in 0..MTLS_USERS {
            let r = get(
                &agent,
                "https://localhost:18443/",
                &[("x-user-id", &format!("user-{i}"))],
            )?;
            if r.status != 200 {
                return Err(format!("status {} on the mTLS listener", r.status));
            }
            if r.header("x-served-by") == Some("canary") {
                canary += 1;
            }
        }
        out.push((label.to_string(), canary));
    }
    Ok(out)
}

fn envoy_version() -> String {
    ureq::get(&format!("{ADMIN}/server_info"))
        .call()
        .ok()
        .and_then(|r| r.into_json::<serde_json::Value>().ok())
        .and_then(|v| {
            v["command_line_options"].as_object()?;
            let full = v["version"].as_str()?.to_string();
            Some(full.split('/').nth(1).unwrap_or(&full).to_string())
        })
        .unwrap_or_else(|| "?".into())
}
