//! The rollout tools: `rollout-report` (per-version SLO verdict from an Envoy admin or a
//! Prometheus, printed or served as a page), `rollout-check-config` (a filter config through the
//! filter's own parser), `rollout-demo` (`make run`), `rollout-demo-guard` (`make run-guard`) and
//! `rollout-watch` (`make watch`). The end-to-end tests (`rollout-e2e`) reuse the report, the
//! Prometheus text reader and the HTTP clients from here.

pub mod check;
pub mod demo_envoy;
pub mod exposition;
pub mod filter_config;
pub mod http;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The source tree this crate was built from (its demo configs and certificates).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `$ENVOY`, else the project's virtual environment (`make envoy` installs it).
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".venv/bin/envoy"),
    }
}

/// Long enough for the filter's 100 ms counter flush to have run since the last request.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(250));
}
