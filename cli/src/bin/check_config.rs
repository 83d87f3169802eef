//! Validate filter configurations offline with the filter's own parser (`rollout_cli::check`).
//!
//! `rollout-check-config FILE...` prints one line per configuration: `NAME: ok` or
//! `NAME: invalid: FIELD.PATH: reason`; the exit code is 1 if any is invalid. Without arguments
//! it reads one JSON config from stdin and prints `ok` or `invalid configuration: ...`, the form
//! tools/validate_manifests.py and tools/ecds_update.py run.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use rollout_cli::check;

/// Check rollout-filter configurations with the filter's own parser, as Envoy would load them.
#[derive(Parser)]
#[command(
    name = "rollout-check-config",
    version,
    after_help = "Each FILE is a filter config (JSON), a WasmPlugin (its spec.pluginConfig), or an \
Envoy config or ECDS resource (every Wasm HTTP filter's configuration; a filter delivered by ECDS \
from a file is checked in that file, its path read as Envoy reads it, from the current directory). \
YAML may hold several documents. One line per configuration: NAME: ok, or NAME: invalid: \
FIELD.PATH: reason; NAME is FILE, FILE#N for the Nth document and FILE#FILTER for a filter in an \
Envoy config. Exit code 1 if any configuration is invalid, 2 if a file cannot be read.\n\n\
Examples:\n  rollout-check-config istio/wasmplugin.yaml istio/gateway-multi/wasmplugin.yaml\n  \
rollout-check-config envoy-config/*.yaml\n  kubectl get wasmplugin rollout-filter -n istio-system \
-o yaml | rollout-check-config -\n  rollout-check-config < my.json    (prints just ok)"
)]
struct Args {
    /// Files to check (`-` for stdin). None: one JSON config from stdin.
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.files.is_empty() {
        return legacy_stdin();
    }
    let mut out = std::io::stdout().lock();
    let mut code = ExitCode::SUCCESS;
    for file in &args.files {
        let (name, text) = match read_input(file) {
            Ok(input) => input,
            Err(e) => {
                let _ = writeln!(out, "{}: cannot read: {e}", file.display());
                code = ExitCode::from(2);
                continue;
            }
        };
        for (label, outcome) in check::check(&name, &text, &|p| std::fs::read(p)) {
            let _ = writeln!(out, "{label}: {outcome}");
            if outcome.is_error() && code == ExitCode::SUCCESS {
                code = ExitCode::from(1);
            }
        }
    }
    code
}

/// The input's name for the output and its bytes; `-` is stdin.
fn read_input(file: &PathBuf) -> std::io::Result<(String, Vec<u8>)> {
    if file.as_os_str() == "-" {
        let mut text = Vec::new();
        std::io::stdin().read_to_end(&mut text)?;
        return Ok(("<stdin>".into(), text));
    }
    Ok((file.display().to_string(), std::fs::read(file)?))
}

/// No arguments: one JSON config from stdin, `ok` or `invalid configuration: ...` (scripts
/// compare the output). A terminal on stdin means someone wants the usage, not a wait.
fn legacy_stdin() -> ExitCode {
    if std::io::stdin().is_terminal() {
        let _ = Args::command().print_help();
        return ExitCode::from(2);
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    match rollout_filter::rollouts::FilterConfig::from_json(&input) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid configuration: {e}");
            ExitCode::from(1)
        }
    }
}
