//! The Envoy the demos run: started from a config file beside any other Envoy on the machine,
//! proven to be the one answering, killed on drop.
//!
//! Another Envoy can break a demo three ways: it holds base id 0 (hot-restart domain socket),
//! it holds a port the config names, or it shares a listener port through `SO_REUSEPORT` and
//! takes part of the traffic. So: a base id of our own (`--use-dynamic-base-id`), every port
//! checked free before the start, listeners with `enable_reuse_port: false` in the shipped
//! configs, and the admin asked whether it is ours (its `admin_address_path` is a per-run file).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http::{agent, get};
use crate::{envoy_bin, workspace_root};

/// A running Envoy, killed when dropped.
pub struct Running {
    child: Child,
    marker: PathBuf,
}

impl Running {
    /// Whether Envoy is still running (it exits by itself on SIGINT, e.g. a terminal's Ctrl-C).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.marker);
    }
}

/// Start Envoy (one worker) with `config`, logging to `log_path`; ready once `admin`
/// (`http://HOST:PORT`) is proven ours and `front` answers.
pub fn start(config: &Path, log_path: &Path, front: &str, admin: &str) -> Result<Running, String> {
    start_with(config, log_path, front, admin, &[])
}

/// [`start`] with more Envoy arguments (e.g. `--component-log-level wasm:info`).
pub fn start_with(
    config: &Path,
    log_path: &Path,
    front: &str,
    admin: &str,
    extra: &[&str],
) -> Result<Running, String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let ports = ports_of(&text);
    check_free(&ports)?;
    let marker = log_path.with_extension(format!("{}.admin", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let log = std::fs::File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let child = Command::new(envoy_bin())
        .current_dir(workspace_root())
        .arg("-c")
        .arg(config)
        .args([
            "--concurrency",
            "1",
            "--log-level",
            "warn",
            "--use-dynamic-base-id",
        ])
        .arg("--admin-address-path")
        .arg(&marker)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", envoy_bin().display()))?;
    let mut envoy = Running { child, marker };
    wait_ready(&mut envoy, log_path, front, admin)?;
    Ok(envoy)
}

/// Until our Envoy's admin is at `admin` and proven ours, and `front` answers; Envoy's own
/// words if it exits first.
fn wait_ready(envoy: &mut Running, log_path: &Path, front: &str, admin: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admin_ok = false;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = envoy.child.try_wait() {
            return Err(exited(status, log_path));
        }
        if !admin_ok && envoy.marker.exists() {
            admin_ok = check_admin_is_ours(&envoy.marker, admin)?;
        }
        let answered = admin_ok
            && ureq::get(&format!("{front}/"))
                .timeout(Duration::from_secs(1))
                .call()
                .is_ok();
        if answered {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "Envoy did not become ready in 60 s; its log ({}):\n{}",
        log_path.display(),
        tail(&std::fs::read_to_string(log_path).unwrap_or_default(), 10)
    ))
}

/// The ports a config binds (listeners, admin; its clusters point at its own listeners).
pub fn ports_of(config: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = config
        .split("port_value:")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .filter(|p| *p != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Every port free on 127.0.0.1, else which are taken and, when one is an Envoy admin, whose.
fn check_free(ports: &[u16]) -> Result<(), String> {
    let busy: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = busy.iter().map(u16::to_string).collect();
    let holder = busy
        .iter()
        .find_map(|p| envoy_at(&format!("127.0.0.1:{p}")))
        .map(|who| format!("held by another Envoy ({who})"))
        .unwrap_or_else(|| "held by another process (`ss -ltnp` names it)".into());
    Err(format!(
        "{} {} on 127.0.0.1 already in use, {holder}; this demo needs ports {}: stop that \
         process and run it again (see docs/troubleshooting.md)",
        if busy.len() == 1 { "port" } else { "ports" },
        list.join(", "),
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    ))
}

/// Our Envoy wrote its admin address to `marker`: it must be `admin`, and the admin there must
/// name `marker` as its `admin_address_path`. `Ok(false)`: that admin does not answer yet.
fn check_admin_is_ours(marker: &Path, admin: &str) -> Result<bool, String> {
    let want = admin.trim_start_matches("http://");
    let got = std::fs::read_to_string(marker).unwrap_or_default();
    if got.trim() != want {
        return Err(format!("our Envoy's admin is at {}, not {want}", got.trim()));
    }
    let Some(info) = server_info(want) else {
        return Ok(false);
    };
    let path = info["command_line_options"]["admin_address_path"]
        .as_str()
        .unwrap_or("");
    if Path::new(path) != marker {
        return Err(format!(
            "{want} answers as another Envoy ({}), not the one this demo started",
            describe(&info)
        ));
    }
    Ok(true)
}

fn server_info(hostport: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = ureq::get(&format!("http://{hostport}/server_info"))
        .timeout(Duration::from_secs(1))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    v["command_line_options"].is_object().then_some(v)
}

/// "Envoy 1.40.0, -c CONFIG, base id N, up S s" for the Envoy whose admin is `hostport`.
pub fn envoy_at(hostport: &str) -> Option<String> {
    server_info(hostport).map(|v| format!("admin {hostport}: {}", describe(&v)))
}

fn describe(info: &serde_json::Value) -> String {
    let opts = &info["command_line_options"];
    let version = info["version"].as_str().unwrap_or("?");
    format!(
        "Envoy {}, -c {}, base id {}{}, up {} s",
        version.split('/').nth(1).unwrap_or(version),
        opts["config_path"].as_str().unwrap_or("?"),
        opts["base_id"].as_str().unwrap_or("?"),
        if opts["use_dynamic_base_id"] == true {
            " (dynamic)"
        } else {
            ""
        },
        info["uptime_current_epoch"]
            .as_str()
            .unwrap_or("?")
            .trim_end_matches('s'),
    )
}

/// Why Envoy exited, in its own words (the error lines of its log), and where the log is.
fn exited(status: ExitStatus, log_path: &Path) -> String {
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    format!(
        "Envoy exited ({status}): {}\n(full log: {})",
        cause(&log),
        log_path.display()
    )
}

/// The lines of an Envoy log that say why it stopped: its critical and error lines, and the
/// plain lines it prints last (`cannot bind '127.0.0.1:18900': Address already in use`, `unable
/// to bind domain socket with base_id=0 …`); else its last lines.
pub fn cause(log: &str) -> String {
    let wanted: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("][critical]")
                || l.contains("][error]")
                || (!l.starts_with('[') && !l.starts_with(' ') && !l.trim().is_empty())
        })
        .collect();
    if wanted.is_empty() {
        return tail(log, 5);
    }
    let mut out: Vec<&str> = Vec::new();
    for l in wanted {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out.join("\n")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Send `n` requests to `front` (4 client threads) with `host` as the Host header (else the URL's), keyed
/// by `key(i)`; count which backend answered.
pub fn drive(
    front: &str,
    n: u32,
    host: Option<&str>,
    key: impl Fn(u32) -> String + Sync,
) -> Result<BTreeMap<String, u64>, String> {
    let threads = 4;
    let results: Vec<Result<BTreeMap<String, u64>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let key = &key;
                s.spawn(move || {
                    let agent = agent();
                    let mut counts = BTreeMap::new();
                    for i in (t..n).step_by(threads as usize) {
                        let user = key(i);
                        let mut headers = vec![("x-user-id", user.as_str())];
                        if let Some(h) = host {
                            headers.push(("host", h));
                        }
                        let r = get(&agent, &format!("{front}/"), &headers)?;
                        if r.status != 200 {
                            return Err(format!("status {} from the demo", r.status));
                        }
                        let v = r.header("x-served-by").unwrap_or("none").to_string();
                        *counts.entry(v).or_insert(0) += 1;
                    }
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client thread died".into())))
            .collect()
    });
    let mut total = BTreeMap::new();
    for r in results {
        for (k, v) in r? {
            *total.entry(k).or_insert(0) += v;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_a_config() {
        let yaml = "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 18900 } }\n\
                    x: { port_value: 18000 }\ny: { port_value:18101 }\nz: { port_value: 18000 }\n\
                    w: { port_value: 0 }\n";
        assert_eq!(ports_of(yaml), vec![18000, 18101, 18900]);
    }

    #[test]
    fn cause_is_envoys_own_words() {
        let base_id = "[2026-12-04 18:57:55.269][9537][debug][init] init manager Server destroyed\n\
                       unable to bind domain socket with base_id=0, id=0, errno=98 (see --base-id option)\n";
        assert_eq!(
            cause(base_id),
            "unable to bind domain socket with base_id=0, id=0, errno=98 (see --base-id option)"
        );
        let port = "[t][1][warning][main] no limit\n\
                    [t][1][critical][main] [server.cc:449] error `cannot bind '127.0.0.1:18900': Address already in use` initializing config 'goo.gle/debugonly   \n  \
                    c.yaml'\n\
                    cannot bind '127.0.0.1:18900': Address already in use\n";
        let c = cause(port);
        assert!(c.contains("[critical]"), "{c}");
        assert!(
            c.ends_with("cannot bind '127.0.0.1:18900': Address already in use"),
            "{c}"
        );
        assert!(!c.contains("no limit"), "{c}");
    }
}
