//! Shared by the integration tests that run `rollout-report` (the report of the `rollout-cli`
//! crate, called in-process).

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

/// `rollout-report` against `envoy` once its counters have settled:
/// (exit code, stdout, stderr).
pub fn report(envoy: &Envoy, args: &[&str]) -> (Option<i32>, String, String) {
    envoy.stats();
    report_at(&envoy.admin.to_string(), args)
}

/// `rollout-report --admin <admin> <args>`, run in this process (`rollout_cli::report`).
pub fn report_at(admin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let argv = ["--admin", admin]
        .into_iter()
        .chain(args.iter().copied())
        .map(str::to_string);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = rollout_cli::report::main(argv, &mut stdout, &mut stderr);
    (
        Some(i32::from(code)),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The whitespace-separated cells of the report row for `version`.
// Not every test file that includes this module reads rows.
#[allow(dead_code)]
pub fn row(text: &str, version: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(version))
        .unwrap_or_else(|| panic!("no row for {version}:\n{text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
