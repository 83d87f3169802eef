//! flagd peers for the e2e tests: OpenFeature's own evaluator (npm `@openfeature/flagd-core`,
//! `make flagd-node`) and a flagd sync server on OpenFeature's generated code (PyPI
//! `openfeature-provider-flagd` with grpcio in the project's virtual environment,
//! `make flagd-sync-server`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use crate::workspace_root;

/// What flagd-core answers for each `(flag, context)`: `(variant, reason)`.
pub fn evaluate(flag_set: &Value, cases: &[(&str, Value)]) -> Vec<(Option<String>, String)> {
    let dir = workspace_root().join("tests/flagd");
    assert!(
        dir.join("node_modules/@openfeature/flagd-core").exists(),
        "run `make flagd-node` (npm ci in tests/flagd) first"
    );
    let input = json!({
        "flagSet": flag_set,
        "cases": cases.iter().map(|(flag, ctx)| json!({"flag": flag, "context": ctx})).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg("evaluate.cjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    results
        .iter()
        .map(|r| {
            assert!(r["errorCode"].is_null(), "flagd-core error: {r}");
            (
                r["variant"].as_str().map(String::from),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A flag set with one boolean flag `key` ("on" / "off", default "off") whose targeting puts
/// `on_percent` % of targetingKeys on "on".
pub fn fractional_flag_set(key: &str, on_percent: u32) -> Value {
    json!({"flags": {key: {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"fractional": [["on", on_percent], ["off", 100 - on_percent]]}
    }}})
}

/// Where flagd-core puts each targetingKey under [`fractional_flag_set`] at `on_percent`, as
/// the version mapped to "on" (`canary`) or "off" (`stable`).
pub fn placements(key: &str, on_percent: u32, users: &[String]) -> Vec<String> {
    let cases: Vec<(&str, Value)> = users.iter().map(|u| (key, json!({"targetingKey": u}))).collect();
    evaluate(&fractional_flag_set(key, on_percent), &cases)
        .into_iter()
        .map(|(variant, _)| match variant.as_deref() {
            Some("on") => "canary".to_string(),
            _ => "stable".to_string(),
        })
        .collect()
}

/// `tests/flagd/sync_server.py`, driven over its stdin. Killed on drop.
pub struct SyncServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub port: u16,
}

impl SyncServer {
    pub fn start() -> SyncServer {
        let python = workspace_root().join(".venv/bin/python");
        assert!(python.exists(), "run `make flagd-sync-server` first");
        let mut child = Command::new(python)
            .arg("sync_server.py")
            .current_dir(workspace_root().join("tests/flagd"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("sync server said {line:?}"));
        SyncServer {
            child,
            stdin,
            stdout,
            port,
        }
    }

    fn command(&mut self, cmd: Value) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// Every stream of `selector`, now and later, gets `text` as its flag configuration.
    pub fn push(&mut self, selector: &str, text: &str) {
        assert_eq!(
            self.command(json!({"push": selector, "config": text})).trim(),
            "ok"
        );
    }

    pub fn stop(&mut self) {
        assert_eq!(self.command(json!({"stop": true})).trim(), "ok");
    }

    pub fn start_again(&mut self) {
        assert_eq!(self.command(json!({"start": true})).trim(), "ok");
    }

    /// `{"open": {selector: streams}, "opened": {selector: streams ever}}`.
    pub fn streams(&mut self) -> Value {
        serde_json::from_str(&self.command(json!({"streams": true}))).unwrap()
    }
}

impl Drop for SyncServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
