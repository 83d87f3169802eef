//! The Envoy the demos run: started from a config file, killed on drop, ready once its front
//! listener answers.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{envoy_bin, workspace_root};

/// A running Envoy, killed when dropped.
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start Envoy (one worker) with `config`, logging to `log_path`, and wait until `front`
/// answers. `ports` names the ports the config binds, for the error when Envoy exits.
pub fn start(config: &Path, log_path: &Path, front: &str, ports: &str) -> Result<Running, String> {
    start_with(config, log_path, front, ports, &[])
}

/// [`start`] with more Envoy arguments (e.g. `--component-log-level wasm:info`).
pub fn start_with(
    config: &Path,
    log_path: &Path,
    front: &str,
    ports: &str,
    extra: &[&str],
) -> Result<Running, String> {
    let log = std::fs::File::create(log_path).map_err(|e| e.to_string())?;
    let child = Command::new(envoy_bin())
        .current_dir(workspace_root())
        .arg("-c")
        .arg(config)
        .args(["--concurrency", "1", "--log-level", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", envoy_bin().display()))?;
    let mut envoy = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = envoy.0.try_wait() {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            return Err(format!(
                "Envoy exited with {status} (ports {ports} busy?):\n{log}"
            ));
        }
        if ureq::get(&format!("{front}/"))
            .timeout(Duration::from_secs(1))
            .call()
            .is_ok()
        {
            return Ok(envoy);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("Envoy did not become ready in 60 s".into())
}
