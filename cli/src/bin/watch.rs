//! `make watch`: the demo Envoy (envoy-config/envoy.yaml), steady demo traffic to every rollout,
//! and `rollout-report --serve` on it; the page's URL is printed. Ctrl-C stops it all: the
//! terminal's SIGINT reaches this process and its Envoy; when Envoy has gone, this ends too.

use std::time::Duration;

use rollout_cli::demo_envoy::{self, drive};
use rollout_cli::filter_config::{loaded_filter_config, rollouts_of, Rollout};
use rollout_cli::workspace_root;

const FRONT: &str = "http://127.0.0.1:18000";
const ADMIN: &str = "http://127.0.0.1:18900";

fn main() {
    if let Err(e) = run() {
        eprintln!("make watch: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = workspace_root();
    let log = root.join("target/envoy-watch.log");
    let mut envoy = demo_envoy::start(&root.join("envoy-config/envoy.yaml"), &log, FRONT, ADMIN)?;
    let rollouts = rollouts_of(&loaded_filter_config(ADMIN)?);
    std::thread::spawn(move || traffic(&rollouts));
    let addr = std::env::var("WATCH_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let args = std::env::var("REPORT_ARGS").unwrap_or_default();
    let argv = ["--admin", ADMIN.trim_start_matches("http://"), "--serve", &addr]
        .into_iter()
        .chain(args.split_whitespace())
        .map(str::to_string);
    let page = rollout_cli::report::serve_background(argv)?;
    println!("demo Envoy on {FRONT} (admin {ADMIN}) with steady traffic to every rollout");
    println!("the rollout page: http://{page}/   (JSON: http://{page}/api/rollouts; Ctrl-C stops)");
    // Ctrl-C reaches Envoy too: once it has exited, so does this (removing its files).
    while envoy.is_running() {
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("Envoy stopped; make watch ends");
    Ok(())
}

/// About 20 requests a second per rollout, each from a new user, until the process ends.
fn traffic(rollouts: &[Rollout]) {
    for round in 0u64.. {
        for r in rollouts {
            let key = |i: u32| format!("watch-{round}-{i}");
            if let Err(e) = drive(FRONT, 10, r.host.as_deref(), key) {
                eprintln!("make watch: traffic to {}: {e}", r.id);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
