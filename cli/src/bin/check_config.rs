//! Validate a filter configuration offline with the filter's own parser:
//! `rollout-check-config < config.json` prints `ok` or the error Envoy would log. Both forms:
//! the single rollout and `rollouts[]`, parsed as `on_configure` parses them; a `flagd`
//! rollout's flag is compiled as the filter compiles it.
//!
//! `rollout-check-config --flagd FILE --flag-key KEY [--fractional v2|v3]` checks a flagd
//! flag-set file on its own (the file flagd reads, or a `FeatureFlag`'s `spec.flagSpec` as
//! JSON): whether the filter can evaluate KEY exactly as flagd does, and which context
//! attributes its targeting reads (each must be mapped in the rollout's `flagd.context`).

use std::io::Read;

use rollout_filter::flagd::{self, Json, Mode, Spec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return check_stdin();
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(file), Some(key)) = (arg("--flagd"), arg("--flag-key")) else {
        eprintln!("usage: rollout-check-config < config.json");
        eprintln!("       rollout-check-config --flagd FILE --flag-key KEY [--fractional v2|v3]");
        std::process::exit(2);
    };
    let mode = match arg("--fractional").as_deref() {
        None | Some("v2") => Mode::V2,
        Some("v3") => Mode::V3,
        Some(other) => {
            eprintln!("--fractional must be v2 or v3, got {other:?}");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        eprintln!("cannot read {file}: {e}");
        std::process::exit(2);
    });
    match check_flag(&bytes, &key, mode) {
        Ok(report) => println!("ok: {report}"),
        Err(e) => {
            println!("invalid flag: {e}");
            std::process::exit(1);
        }
    }
}

fn check_stdin() {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read stdin: {e}");
        std::process::exit(2);
    }
    match rollout_filter::rollouts::FilterConfig::from_json(&input) {
        Ok(_) => println!("ok"),
        Err(e) => {
            println!("invalid configuration: {e}");
            std::process::exit(1);
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
