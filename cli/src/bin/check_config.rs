//! Validate filter configurations offline with the filter's own parser (`rollout_cli::check`).
//!
//! `rollout-check-config FILE...` prints one line per configuration: `NAME: ok` or
//! `NAME: invalid: FIELD.PATH: reason`; the exit code is 1 if any is invalid. Without arguments
//! it reads one JSON config from stdin and prints `ok` or `invalid configuration: ...`, the form
//! tools/validate_manifests.py and tools/ecds_update.py run.
//!
//! `rollout-check-config --flagd FILE --flag-key KEY [--fractional v2|v3]` checks a flagd
//! flag-set file on its own (the file flagd reads, or a `FeatureFlag`'s `spec.flagSpec` as
//! JSON): whether the filter can evaluate KEY exactly as flagd does, and which context
//! attributes its targeting reads (each must be mapped in the rollout's `flagd.context`).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueEnum};
use rollout_cli::check;
use rollout_filter::flagd::{self, Json, Mode, Spec};

/// Check rollout-filter configurations with the filter's own parser, as Envoy would load them.
#[derive(Parser)]
#[command(
    name = "rollout-check-config",
    version,
    after_help = "Each FILE is a filter config (JSON), a WasmPlugin (its spec.pluginConfig), an \
EnvoyExtensionPolicy (each spec.wasm[].config), or an Envoy config or ECDS resource (every Wasm HTTP filter's configuration; a filter delivered by ECDS \
from a file is checked in that file, its path read as Envoy reads it, from the current directory). \
YAML may hold several documents. One line per configuration: NAME: ok, or NAME: invalid: \
FIELD.PATH: reason; NAME is FILE, FILE#N for the Nth document and FILE#FILTER for a filter in an \
Envoy config. Exit code 1 if any configuration is invalid, 2 if a file cannot be read.\n\n\
Examples:\n  rollout-check-config istio/wasmplugin.yaml istio/gateway-multi/wasmplugin.yaml\n  \
rollout-check-config envoy-config/*.yaml\n  kubectl get wasmplugin rollout-filter -n istio-system \
-o yaml | rollout-check-config -\n  rollout-check-config < my.json    (prints just ok)\n  \
rollout-check-config --flagd flags.json --flag-key checkout-v2"
)]
struct Args {
    /// Files to check (`-` for stdin). None: one JSON config from stdin.
    #[arg(conflicts_with = "flagd")]
    files: Vec<PathBuf>,
    /// A flagd flag-set file to check on its own (prints `ok: ...` with the attributes it reads).
    #[arg(long, value_name = "FILE", requires = "flag_key")]
    flagd: Option<PathBuf>,
    /// The flag in the --flagd file.
    #[arg(long, value_name = "KEY", requires = "flagd")]
    flag_key: Option<String>,
    /// flagd's fractional bucketing for --flagd.
    #[arg(long, value_enum, default_value_t = Fractional::V2, requires = "flagd")]
    fractional: Fractional,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fractional {
    V2,
    V3,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(file), Some(key)) = (&args.flagd, &args.flag_key) {
        return flag_file(file, key, args.fractional);
    }
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

/// `--flagd FILE --flag-key KEY`: `ok: ...` or `invalid flag: ...`.
fn flag_file(file: &PathBuf, key: &str, fractional: Fractional) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mode = match fractional {
        Fractional::V2 => Mode::V2,
        Fractional::V3 => Mode::V3,
    };
    match check_flag(&bytes, key, mode) {
        Ok(report) => {
            println!("ok: {report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid flag: {e}");
            ExitCode::from(1)
        }
    }
}

/// Compiles `key` with every variant given a version and every attribute the document reads
/// mapped, so only the flag itself is judged.
fn check_flag(bytes: &[u8], key: &str, mode: Mode) -> Result<String, String> {
    // serde_json first: its syntax errors name line and column.
    serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let set = Json::parse(bytes).map_err(|e| e.to_string())?;
    let variants: Vec<(String, usize)> = set
        .get("flags")
        .and_then(|f| f.get(key))
        .and_then(|f| f.get("variants"))
        .and_then(Json::as_object)
        .map(|v| v.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect())
        .unwrap_or_default();
    let (mut attrs, mut refs) = (Vec::new(), Vec::new());
    if let Some(t) = set
        .get("flags")
        .and_then(|f| f.get(key))
        .and_then(|f| f.get("targeting"))
    {
        vars(t, &mut attrs, &mut refs);
    }
    for name in refs.clone() {
        if let Some(e) = set.get("$evaluators").and_then(|e| e.get(&name)) {
            vars(e, &mut attrs, &mut refs);
        }
    }
    attrs.retain(|a| !a.starts_with("$flagd"));
    if !attrs.iter().any(|a| a == "targetingKey") {
        attrs.push("targetingKey".into());
    }
    attrs.sort();
    attrs.dedup();
    let flag = flagd::compile(&Spec {
        flag_key: key,
        flag_set: &set,
        variants: &variants,
        attrs: &attrs,
        mode,
    })
    .map_err(|r| {
        if r.path.is_empty() {
            r.reason
        } else {
            format!("{}: {}", r.path, r.reason)
        }
    })?;
    let names: Vec<&str> = variants.iter().map(|(k, _)| k.as_str()).collect();
    let default = names.get(flag.default).copied().unwrap_or_default();
    Ok(format!(
        "flag {key:?}: variants {} (default {default}); context attributes it may read: {}",
        names.join(", "),
        attrs.join(", ")
    ))
}

/// Every `var` name in a rule, and the `$ref`s it makes.
fn vars(v: &Json, out: &mut Vec<String>, refs: &mut Vec<String>) {
    match v {
        Json::Obj(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("var", Json::Str(name)) => out.push(name.clone()),
                    ("var", Json::Arr(a)) => {
                        if let Some(Json::Str(name)) = a.first() {
                            out.push(name.clone());
                        }
                    }
                    ("$ref", Json::Str(name)) => refs.push(name.clone()),
                    _ => vars(x, out, refs),
                }
            }
        }
        Json::Arr(a) => a.iter().for_each(|x| vars(x, out, refs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &str = include_str!("../../../tests/flagd/flags.json");

    #[test]
    fn a_flag_file_on_its_own() {
        let ok = check_flag(FLAGS.as_bytes(), "search", Mode::V2).unwrap();
        assert!(ok.contains("variants on, off (default off)"), "{ok}");
        assert!(ok.ends_with("email, targetingKey"), "{ok}");
        let e = check_flag(FLAGS.as_bytes(), "legacy-clients", Mode::V2).unwrap_err();
        assert!(
            e.starts_with("flags.legacy-clients.targeting.if[0].sem_ver: operator \"sem_ver\""),
            "{e}"
        );
        assert!(check_flag(b"{", "x", Mode::V2)
            .unwrap_err()
            .starts_with("not JSON"));
        assert_eq!(
            check_flag(FLAGS.as_bytes(), "nope", Mode::V3).unwrap_err(),
            "flags: has no flag \"nope\" (flagKey)"
        );
    }
}
