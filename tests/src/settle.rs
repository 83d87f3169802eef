//! Reading the filter's counters once they have settled, instead of after a fixed sleep.
//!
//! Each worker's VM hands its counts to Envoy on its own 100 ms tick, so a read right after a
//! test's last request may miss some. The old fixed 250 ms sleep was too short on a loaded
//! machine and hid a late count; here `/stats` is polled until the filter's values stop
//! changing, and a read that never settles fails naming what kept changing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the filter's values must stay unchanged to count as settled: every worker's VM
/// has flushed at least twice in it.
pub const QUIET: Duration = Duration::from_millis(250);
/// The VM-memory gauge is refreshed once a second at most: quiet for longer than that.
pub const MEMORY_QUIET: Duration = Duration::from_millis(1_250);
/// How long the values may keep changing before a read gives up.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Every counter and gauge of the Envoy admin at `admin` (`host:port`) as it is now, by full
/// name; empty if the admin does not answer.
pub fn stats_at(admin: &str) -> BTreeMap<String, u64> {
    // Every stat, zeros included (`usedonly` with any value lists only the used ones).
    let body = ureq::get(&format!("http://{admin}/stats"))
        .timeout(Duration::from_secs(10))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    parse_stats(&body)
}

/// An admin `/stats` answer (`name: value` lines) as numbers by name; other lines skipped.
pub fn parse_stats(body: &str) -> BTreeMap<String, u64> {
    body.lines()
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The filter's values (`wasmcustom.*`) that differ between two reads. A metric that
/// appears at 0 is no change (idle rollouts' metrics are defined a few per tick); one that
/// disappears is (an admin that did not answer).
pub fn changes(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    let ours = |m: &BTreeMap<String, u64>| {
        m.iter()
            .filter(|(k, _)| k.starts_with("wasmcustom."))
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    let mut out: Vec<String> = ours(after)
        .into_iter()
        .filter(|(k, v)| before.get(k).copied().unwrap_or(0) != *v)
        .map(|(k, v)| format!("{k}: {} -> {v}", before.get(&k).copied().unwrap_or(0)))
        .collect();
    out.extend(
        ours(before)
            .into_iter()
            .filter(|(k, _)| !after.contains_key(k))
            .map(|(k, _)| format!("{k}: gone")),
    );
    out
}

/// `/stats` of `admin` once the filter's values have not changed for `quiet`. Panics after
/// [`TIMEOUT`] with the last changes.
pub fn settled_at(admin: &str, quiet: Duration) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = stats_at(admin);
    let mut quiet_since = Instant::now();
    loop {
        std::thread::sleep(POLL);
        let now = stats_at(admin);
        let changed = changes(&last, &now);
        if !changed.is_empty() {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= quiet {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the filter's counters at {admin} still changed after {TIMEOUT:?} (traffic still \
             running? read with stats_now): {changed:?}"
        );
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn only_the_filters_values_count_and_new_zeros_do_not() {
        let a = map(&[("wasmcustom.x", 1), ("server.uptime", 5)]);
        assert!(changes(&a, &map(&[("wasmcustom.x", 1), ("server.uptime", 6)])).is_empty());
        assert!(changes(&a, &map(&[("wasmcustom.x", 1), ("wasmcustom.new", 0)])).is_empty());
        assert_eq!(
            changes(&a, &map(&[("wasmcustom.x", 2)])),
            ["wasmcustom.x: 1 -> 2"]
        );
        assert_eq!(
            changes(&a, &map(&[("wasmcustom.new", 3), ("wasmcustom.x", 1)])).len(),
            1
        );
        assert_eq!(changes(&a, &map(&[])), ["wasmcustom.x: gone"]);
    }
}
