//! `FilterConfig::from_json` (the `rollouts[]` form: entries merged over top-level defaults) and
//! its matcher, on arbitrary bytes.
//!
//! Input: a configuration, then optionally a 0xFF byte and requests, one per line, each
//! `authority` TAB `path`. Invariants, beyond "no panic":
//! - an accepted `rollouts[]` configuration has one rollout per entry, each carrying the
//!   top-level fields the entry does not set (checked on `routeHeader`);
//! - every request is matched as a plain model says: the first entry, in configuration order,
//!   whose hosts match the request's host (exact, `*.SUFFIX` with at least one byte before the
//!   dot, or `*` / no `hosts`; case-insensitive; port and one trailing dot ignored) and whose
//!   `pathPrefix`, if any, is a byte prefix of the path;
//! - a rejected configuration has a one-line, non-empty message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::rollouts::{host_of, FilterConfig};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (cfg_bytes, requests) = match data.iter().position(|b| *b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let f = match FilterConfig::from_json(cfg_bytes) {
        Ok(f) => f,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains(['\n', '\r']), "bad error {msg:?}");
            return;
        }
    };
    if !f.multi {
        assert_eq!(f.rollouts.len(), 1);
        return;
    }
    let doc: Value = serde_json::from_slice(cfg_bytes).expect("accepted config is JSON");
    let entries = doc["rollouts"].as_array().expect("rollouts[] is an array");
    assert_eq!(entries.len(), f.rollouts.len());
    for (e, cfg) in entries.iter().zip(&f.rollouts) {
        let want = e
            .get("routeHeader")
            .or_else(|| doc.get("routeHeader"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        if let Some(want) = want {
            assert_eq!(cfg.route_header, want, "entry {e}");
        }
    }
    for line in requests.split(|b| *b == b'\n') {
        let mut parts = line.splitn(2, |b| *b == b'\t');
        let authority = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        let want = entries.iter().position(|e| matches(e, authority, path));
        assert_eq!(f.select(Some(authority), Some(path)), want, "{authority:?} {path:?}");
    }
});

fn matches(entry: &Value, authority: &[u8], path: &[u8]) -> bool {
    let m = &entry["match"];
    let prefix_ok = m
        .get("pathPrefix")
        .and_then(Value::as_str)
        .is_none_or(|p| path.starts_with(p.as_bytes()));
    let host = host_of(authority).to_ascii_lowercase();
    let hosts_ok = match m.get("hosts").and_then(Value::as_array) {
        None => true,
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|h| host_matches(&h.to_ascii_lowercase(), &host)),
    };
    prefix_ok && hosts_ok
}

fn host_matches(pattern: &str, host: &[u8]) -> bool {
    if pattern == "*" {
        return true;
    }
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            let dotted = [b".", suffix.as_bytes()].concat();
            // At least one byte before the dot: `*.a` does not match `.a`.
            host.len() > dotted.len() && host.ends_with(&dotted)
        }
        None => host == pattern.as_bytes(),
    }
}
