//! The first hour (issue 29): the commands a newcomer runs tell the truth with other Envoys on
//! the machine. `make run` beside a documented Envoy on its ports fails naming the port and that
//! Envoy; beside one holding base id 0 it prints its own table. The Envoy commands of the README
//! and of its pages under docs/ run side by side. `make report` exits 0 exactly when
//! `rollout-report` does and prints its code.
//!
//! These tests use the shipped configs' fixed ports, so they take turns (`FIXED_PORTS`).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rollout_cli::demo_envoy;
use rollout_cli::http::{agent, get};
use rollout_e2e::{envoy_bin, settle, workspace_root};

static FIXED_PORTS: Mutex<()> = Mutex::new(());

fn fixed_ports() -> MutexGuard<'static, ()> {
    FIXED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// An Envoy started from the repository root with `args`, as a documented command does; killed on drop.
struct Other {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Other {
    fn start(args: &[&str]) -> Other {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("envoy.log");
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(envoy_bin())
            .current_dir(workspace_root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("envoy");
        Other {
            child,
            log,
            _dir: dir,
        }
    }

    /// The admin's `/server_info` once it answers; `Err(log)` if Envoy exits first.
    fn server_info(&mut self, admin: &str) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            let info = ureq::get(&format!("http://{admin}/server_info"))
                .timeout(Duration::from_secs(1))
                .call()
                .ok()
                .and_then(|r| r.into_json::<serde_json::Value>().ok());
            if let Some(info) = info {
                return Ok(info);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{admin} never answered");
    }
}

/// `make ARGS` in the repository root, its output printed.
fn make(args: &[&str]) -> Output {
    let out = Command::new("make")
        .current_dir(workspace_root())
        .arg("--no-print-directory")
        .args(args)
        .env("ENVOY", envoy_bin())
        .stdin(Stdio::null())
        .output()
        .expect("make");
    println!(
        "$ make {} -> {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The "Plain Envoy" command (docs/deploying.md) as it was before issue 29: base id 0 and the demo's ports.
/// If base id 0 is taken already (another Envoy on this machine), it runs on a dynamic one: the
/// ports are what this test is about.
#[test]
fn make_run_beside_a_documented_envoy_on_its_ports_fails_naming_port_and_envoy() {
    let _turn = fixed_ports();
    let plain = ["-c", "envoy-config/envoy.yaml", "--concurrency", "1"];
    let mut other = Other::start(&plain);
    if let Err(log) = other.server_info("127.0.0.1:18900") {
        assert!(log.contains("unable to bind domain socket"), "{log}");
        other = Other::start(&[&plain[..], &["--use-dynamic-base-id"]].concat());
        other
            .server_info("127.0.0.1:18900")
            .expect("the documented Envoy");
    }
    let a = agent();
    for _ in 0..3 {
        get(&a, "http://127.0.0.1:18000/", &[("x-rollout-pin", "canary")]).expect("curl");
    }

    let out = make(&["run"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "make run must fail");
    for what in [
        "18000",
        "18900",
        "already in use",
        "another Envoy",
        "-c envoy-config/envoy.yaml",
    ] {
        assert!(stderr.contains(what), "the error names {what:?}:\n{stderr}");
    }
    assert!(
        !stdout.contains("observed"),
        "no table from another Envoy:\n{stdout}"
    );
    assert!(
        !stdout.contains("override_header"),
        "not the other Envoy's numbers:\n{stdout}"
    );
}

/// The Istio-shaped Envoy of docs/deploying.md as it was before issue 29 holds base id 0 (or something else
/// does); `make run` still starts its own Envoy and prints its own numbers, none of the other's.
#[test]
fn make_run_beside_a_documented_envoy_holding_base_id_0_prints_its_own_table() {
    let _turn = fixed_ports();
    let mut other = Other::start(&["-c", "envoy-config/istio-ecds.yaml", "--concurrency", "1"]);
    match other.server_info("127.0.0.1:18910") {
        Ok(info) => {
            assert_eq!(info["command_line_options"]["base_id"], "0");
            let a = agent();
            for _ in 0..3 {
                get(&a, "http://127.0.0.1:18010/", &[("x-rollout-pin", "canary")]).expect("curl");
            }
        }
        Err(log) => assert!(
            log.contains("unable to bind domain socket with base_id=0"),
            "{log}"
        ),
    }

    let out = make(&["run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "make run beside another Envoy");
    let canary = stdout
        .lines()
        .find(|l| l.starts_with("checkout-2026-11") && l.contains(" canary "))
        .unwrap_or_else(|| panic!("no checkout canary row:\n{stdout}"));
    let observed: f64 = canary
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!((8.0..12.0).contains(&observed), "canary near its 10%: {canary}");
    assert!(stdout.contains("Envoy admin 127.0.0.1:18900"), "{stdout}");
    assert!(
        !stdout.contains("override_header"),
        "the other Envoy's overrides:\n{stdout}"
    );
}

/// An Envoy command of the docs: its arguments (without the binary), its config and admin
/// port, and the `python3 tools/…` lines its sh block runs before it.
struct DocCommand {
    setup: Vec<String>,
    args: Vec<String>,
    config: String,
    admin_port: u16,
}

/// The README and every page of docs/: where a newcomer finds Envoy commands to copy.
fn docs() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.insert(0, root.join("README.md"));
    pages
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a page of the docs");
            (p.strip_prefix(&root).unwrap().display().to_string(), text)
        })
        .collect()
}

/// The Envoy commands of the docs' sh blocks.
fn documented_envoy_commands() -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut setup = Vec::new();
    let mut in_sh = false;
    let docs = docs();
    for (page, line) in docs.iter().flat_map(|(p, t)| t.lines().map(move |l| (p, l))) {
        let l = line.trim();
        if l.starts_with("```") {
            in_sh = l == "```sh";
            setup.clear();
            continue;
        }
        let cmd = l
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_end_matches('&')
            .trim();
        if !in_sh {
            continue;
        }
        if cmd.starts_with("func-e run ") {
            assert!(cmd.contains("--use-dynamic-base-id"), "{page}: {cmd}");
        }
        if let Some(rest) = cmd.strip_prefix(".venv/bin/envoy ") {
            let args: Vec<String> = rest.split_whitespace().map(String::from).collect();
            let config = args[args.iter().position(|a| a == "-c").expect("-c") + 1].clone();
            out.push(DocCommand {
                setup: setup.clone(),
                args,
                config,
                admin_port: 0,
            });
        } else if cmd.starts_with("python3 tools/") {
            setup.push(cmd.to_string());
        }
    }
    out
}

/// The first port after `admin:` in an Envoy config.
fn admin_port(config: &str) -> u16 {
    let after = &config[config.find("\nadmin:").expect("an admin")..];
    demo_envoy::ports_of(&after[..after.find("\n\n").unwrap_or(after.len())])[0]
}

/// Run the command's setup lines, then learn its admin port (from the config they may write).
fn prepare(c: &mut DocCommand) {
    for cmd in &c.setup {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(workspace_root())
            .status();
        assert!(ok.map(|s| s.success()).unwrap_or(false), "{cmd}");
    }
    let yaml = std::fs::read_to_string(workspace_root().join(&c.config)).expect("config");
    c.admin_port = admin_port(&yaml);
}

#[test]
fn documented_envoy_commands_run_side_by_side() {
    let _turn = fixed_ports();
    let commands = documented_envoy_commands();
    assert!(
        commands.len() >= 2,
        "documented Envoy commands: {}",
        commands.len()
    );
    // Commands on the same ports are the same Envoy shape: one of each runs at a time.
    let mut rounds: Vec<Vec<DocCommand>> = Vec::new();
    for mut c in commands {
        assert!(
            c.args.iter().any(|a| a == "--use-dynamic-base-id"),
            "{:?}",
            c.args
        );
        prepare(&mut c);
        match rounds
            .iter()
            .position(|r| r.iter().all(|o| o.admin_port != c.admin_port))
        {
            Some(i) => rounds[i].push(c),
            None => rounds.push(vec![c]),
        }
    }
    for round in &rounds {
        side_by_side(round);
    }
}

/// Every command of `round` started at once; each one's admin answers with its config.
fn side_by_side(round: &[DocCommand]) {
    let mut running: Vec<Other> = round
        .iter()
        .map(|c| Other::start(&c.args.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    for (envoy, c) in running.iter_mut().zip(round) {
        let info = envoy.server_info(&format!("127.0.0.1:{}", c.admin_port));
        let info = info.unwrap_or_else(|log| panic!("{}: {log}", c.config));
        assert_eq!(info["command_line_options"]["config_path"], c.config.as_str());
    }
    for (envoy, c) in running.iter_mut().zip(round) {
        assert!(
            envoy.child.try_wait().unwrap().is_none(),
            "{} still running",
            c.config
        );
    }
    let names: Vec<&str> = round.iter().map(|c| c.config.as_str()).collect();
    println!("side by side: {}", names.join(", "));
}

/// `make report` and `rollout-report` on the same Envoy: `(rollout-report's code, make's)`.
fn both_reports(admin: &str, args: &str) -> (u8, Output) {
    settle::settled_at(admin, settle::QUIET);
    let argv = ["--admin", admin]
        .into_iter()
        .chain(args.split_whitespace())
        .map(String::from);
    let code = rollout_cli::report::main(argv, &mut Vec::new(), &mut Vec::new());
    let out = make(&[
        "report",
        &format!("REPORT_ADMIN={admin}"),
        &format!("REPORT_ARGS={args}"),
    ]);
    (code, out)
}

fn assert_make_follows(code: u8, out: &Output, want: u8) {
    assert_eq!(code, want, "rollout-report's exit code");
    assert_eq!(
        out.status.success(),
        code == 0,
        "make report fails exactly when the report does"
    );
    if code != 0 {
        // make reports any failing command as its own exit 2 (abort's code too); it says which.
        assert_eq!(out.status.code(), Some(2));
        let line = format!("rollout-report exit code {code} (");
        assert!(text(&out.stderr).contains(&line), "make report prints {line:?}");
    }
}

/// The report example of docs/metrics.md on the guard demo's Envoy: no traffic yet (hold), healthy users
/// (promote), the canary failing (abort), and no Envoy (no report).
#[test]
fn make_report_exits_as_rollout_report_does() {
    let _turn = fixed_ports();
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let envoy = demo_envoy::start(
        &root.join("envoy-config/guard.yaml"),
        &dir.path().join("envoy.log"),
        "http://127.0.0.1:18040",
        "http://127.0.0.1:18940",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (admin, args) = ("127.0.0.1:18940", "--rollout checkout-2026-11 --min-requests 20");
    let (code, out) = both_reports(admin, args);
    assert_make_follows(code, &out, 1);

    send_users(0..500);
    let (code, out) = both_reports(admin, args);
    assert_make_follows(code, &out, 0);

    let url = "http://127.0.0.1:18940/runtime_modify?demo.canary_fail_percent=100";
    ureq::post(url).call().expect("runtime_modify");
    send_users(500..1000);
    let (code, out) = both_reports(admin, args);
    assert_make_follows(code, &out, 2);
    assert!(text(&out.stdout).contains("verdict: ABORT"));
    drop(envoy);

    let (code, out) = both_reports(admin, args);
    assert_make_follows(code, &out, 3);
    assert!(
        text(&out.stderr).contains("--use-dynamic-base-id"),
        "the hint leaves an Envoy running"
    );
}

fn send_users(users: std::ops::Range<u32>) {
    let a = agent();
    for i in users {
        let user = format!("user-{i}");
        get(&a, "http://127.0.0.1:18040/", &[("x-user-id", &user)]).expect("request");
    }
}

/// A demo's Envoy that exits says why in Envoy's own words: here the filter refusing its config.
#[test]
fn a_demo_envoy_that_exits_says_why_in_envoys_words() {
    let _turn = fixed_ports();
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = rollout_e2e::read_workspace_file("envoy-config/envoy.yaml");
    let bad = shipped.replace("\"weight\": 10 }", "\"weight\": -1 }");
    assert_ne!(bad, shipped);
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, bad).expect("config");
    let log = dir.path().join("envoy.log");
    let started = demo_envoy::start(&config, &log, "http://127.0.0.1:18000", "http://127.0.0.1:18900");
    let err = started.err().expect("Envoy refuses the config");
    println!("{err}");
    assert!(
        err.contains("invalid configuration: versions[1].weight"),
        "the filter's reason:\n{err}"
    );
    assert!(
        err.contains(&log.display().to_string()),
        "where the whole log is:\n{err}"
    );
}
