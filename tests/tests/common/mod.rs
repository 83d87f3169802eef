//! Shared by the integration tests that run the `rollout-report` binary. It cannot live in
//! the harness library: `CARGO_BIN_EXE_*` is only set when integration tests are compiled.

use std::path::PathBuf;
use std::process::{Command, Output};

use rollout_e2e::Envoy;

/// Thresholds that a canary failing every 5th request breaks (an abort) and a healthy one meets.
pub const ABORT_THRESHOLDS: &[&str] = &[
    "--min-success",
    "99.9",
    "--max-p99-ms",
    "300",
    "--min-requests",
    "50",
];

pub fn report_bin() -> PathBuf {
    let bin = option_env!("CARGO_BIN_EXE_rollout-report")
        .or(option_env!("CARGO_BIN_EXE_report"))
        .expect("the rollout-report binary ([[bin]] in tests/Cargo.toml)");
    PathBuf::from(bin)
}

/// `rollout-report` against `envoy` once its counters have been flushed:
/// (exit code, stdout, stderr).
pub fn report(envoy: &Envoy, args: &[&str]) -> (Option<i32>, String, String) {
    rollout_e2e::settle();
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(report_bin())
        .args(["--admin", &envoy.admin.to_string()])
        .args(args)
        .output()
        .expect("run rollout-report");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
