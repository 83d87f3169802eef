//! `make report`: read a running Envoy's admin `/stats/prometheus` and print, per
//! rollout and version, what the filter counted: requests, share, success rate,
//! p50/p99 latency, and a promote / hold / abort verdict for every version other
//! than the baseline, against thresholds given on the command line. A version whose
//! canary guard is tripped (or tripped during the period judged) is an abort, whatever
//! the other figures.
//!
//! `--serve HOST:PORT` shows it as a page refreshing every 2 s, with charts ([`serve`]).
//! With `--prometheus URL` the same table comes from a Prometheus that scrapes every Envoy of
//! the fleet ([`prom`]): the figures are summed over every sidecar and gateway.
//!
//! Exit code: 0 promote, 1 hold, 2 abort, 3 no report (bad arguments, Envoy
//! unreachable, no filter metrics).

mod prom;
mod serve;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use rollout_filter::grpc::GrpcCode;

use crate::exposition::{parse_prometheus, Sample};

const ABOUT: &str = "\
Reads Envoy's admin /stats/prometheus and prints per version: requests, share,
success rate (responses that succeeded / all responses: HTTP neither 5xx nor
reset, gRPC calls not UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
UNAVAILABLE, DATA_LOSS, missing or reset), p50/p99 latency
(estimated from the histogram buckets), and a verdict for every version except
the baseline. A tripped canary guard (rollout_guard_tripped 1, or a trip counted in
the period judged) makes the verdict abort. With --prometheus the figures are those
of every Envoy that Prometheus scrapes, summed.";

/// The command line; [`Args`] is what the report runs with.
#[derive(Debug, Parser)]
#[command(name = "rollout-report", about = ABOUT, after_help = "exit code: 0 promote, 1 hold, 2 abort, 3 no report")]
struct Cli {
    /// Envoy admin address
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:18900")]
    admin: String,
    /// read the whole fleet from this Prometheus instead of one Envoy admin (e.g. http://prometheus:9090)
    #[arg(long, value_name = "URL", conflicts_with = "admin")]
    prometheus: Option<String>,
    /// with --prometheus: judge as of this time (Unix seconds) instead of now
    #[arg(long, value_name = "UNIX_SECONDS", requires = "prometheus", conflicts_with = "serve", value_parser = non_negative)]
    at: Option<f64>,
    /// serve the report as a page refreshing every 2 s (and /api/rollouts as JSON) instead of printing it
    #[arg(long, value_name = "HOST:PORT")]
    serve: Option<String>,
    /// only this rolloutId [default: every rollout]
    #[arg(long, value_name = "ID")]
    rollout: Option<String>,
    /// the version the others replace
    #[arg(long, value_name = "VERSION", default_value = "stable")]
    baseline: String,
    /// abort below this success rate
    #[arg(long, value_name = "PERCENT", default_value_t = 99.9, value_parser = percentage)]
    min_success: f64,
    /// abort above this p99 latency
    #[arg(long, value_name = "MS", default_value_t = 300.0, value_parser = non_negative)]
    max_p99_ms: f64,
    /// hold while a version has fewer
    #[arg(long, value_name = "N", default_value_t = 100)]
    min_requests: u64,
    /// judge only what happens during DURATION (e.g. 30s, 2m) instead of everything since Envoy
    /// started; with --prometheus the range of increase() up to now, else a wait of DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    window: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
struct Args {
    admin: String,
    prometheus: Option<String>,
    at: Option<f64>,
    serve: Option<String>,
    rollout: Option<String>,
    baseline: String,
    thresholds: Thresholds,
    window: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Thresholds {
    /// Percent, 0..=100.
    min_success: f64,
    max_p99_ms: f64,
    min_requests: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            admin: "127.0.0.1:18900".into(),
            prometheus: None,
            at: None,
            serve: None,
            rollout: None,
            baseline: "stable".into(),
            thresholds: Thresholds {
                min_success: 99.9,
                max_p99_ms: 300.0,
                min_requests: 100,
            },
            window: None,
        }
    }
}

/// `Ok(None)`: `--help` was asked for.
fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let cli = match Cli::try_parse_from(std::iter::once("rollout-report".to_string()).chain(argv)) {
        Ok(cli) => cli,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Some(Args {
        admin: cli.admin,
        prometheus: cli.prometheus,
        at: cli.at,
        serve: cli.serve,
        rollout: cli.rollout,
        baseline: cli.baseline,
        thresholds: Thresholds {
            min_success: cli.min_success,
            max_p99_ms: cli.max_p99_ms,
            min_requests: cli.min_requests,
        },
        window: cli.window,
    }))
}

fn non_negative(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("not a number >= 0: {v:?}"))
}

fn percentage(v: &str) -> Result<f64, String> {
    let v = non_negative(v)?;
    if v > 100.0 {
        return Err(format!("--min-success is a percentage, got {v}"));
    }
    Ok(v)
}

/// `500ms`, `30s`, `2m`, `1h`; a bare number is seconds.
// Not humantime: it takes neither fractions (`1.5m`) nor a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("--window: not a duration: {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("--window: unknown unit in {s:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("--window must be > 0: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the filter counted for one version.
#[derive(Debug, Clone, Default, PartialEq)]
struct VersionStats {
    /// `rollout_requests_total` by `source`.
    requests: BTreeMap<String, f64>,
    /// `rollout_responses_total` by `code_class`.
    responses: BTreeMap<String, f64>,
    /// `rollout_grpc_responses_total` by `grpc_code`.
    grpc: BTreeMap<String, f64>,
    local_replies: f64,
    /// `rollout_request_duration_milliseconds_bucket`: (le, cumulative count), ascending le.
    buckets: Vec<(f64, f64)>,
    /// `rollout_guard_tripped` (a gauge: its latest value), when a guard is configured.
    guard_tripped: Option<f64>,
    /// `rollout_guard_trips_total`.
    guard_trips: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct RolloutStats {
    versions: BTreeMap<String, VersionStats>,
    /// `rollout_rejected_total` by `reason`.
    rejected: BTreeMap<String, f64>,
}

fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.labels.get(name).map(String::as_str)
}

/// Bucket bound of a `le` label; `+Inf` is infinity.
fn le_value(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => le.parse().ok(),
    }
}

/// Group the filter's samples by `rollout`, then `version`.
fn collect(samples: &[Sample]) -> BTreeMap<String, RolloutStats> {
    let mut out: BTreeMap<String, RolloutStats> = BTreeMap::new();
    for s in samples {
        let Some(rollout) = label(s, "rollout") else {
            continue;
        };
        let r = out.entry(rollout.to_string()).or_default();
        if s.name == "rollout_rejected_total" {
            if let Some(reason) = label(s, "reason") {
                *r.rejected.entry(reason.to_string()).or_default() += s.value;
            }
            continue;
        }
        let Some(version) = label(s, "version") else {
            continue;
        };
        let vs = r.versions.entry(version.to_string()).or_default();
        match s.name.as_str() {
            "rollout_requests_total" => {
                let source = label(s, "source").unwrap_or("").to_string();
                *vs.requests.entry(source).or_default() += s.value;
            }
            "rollout_responses_total" => {
                let class = label(s, "code_class").unwrap_or("").to_string();
                *vs.responses.entry(class).or_default() += s.value;
            }
            "rollout_grpc_responses_total" => {
                let code = label(s, "grpc_code").unwrap_or("").to_string();
                *vs.grpc.entry(code).or_default() += s.value;
            }
            "rollout_local_replies_total" => vs.local_replies += s.value,
            "rollout_guard_tripped" => {
                vs.guard_tripped = Some(vs.guard_tripped.unwrap_or(0.0).max(s.value));
            }
            "rollout_guard_trips_total" => vs.guard_trips += s.value,
            "rollout_request_duration_milliseconds_bucket" => {
                if let Some(le) = label(s, "le").and_then(le_value) {
                    match vs.buckets.iter_mut().find(|(b, _)| *b == le) {
                        Some((_, n)) => *n += s.value,
                        None => vs.buckets.push((le, s.value)),
                    }
                }
            }
            _ => {}
        }
    }
    for r in out.values_mut() {
        for v in r.versions.values_mut() {
            v.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    out
}

fn sub_maps(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// What happened between two snapshots (every series here is a counter).
fn delta(
    after: &BTreeMap<String, RolloutStats>,
    before: &BTreeMap<String, RolloutStats>,
) -> BTreeMap<String, RolloutStats> {
    let empty_r = RolloutStats::default();
    let empty_v = VersionStats::default();
    after
        .iter()
        .map(|(id, a)| {
            let b = before.get(id).unwrap_or(&empty_r);
            let versions = a
                .versions
                .iter()
                .map(|(name, av)| {
                    let bv = b.versions.get(name).unwrap_or(&empty_v);
                    let buckets = av
                        .buckets
                        .iter()
                        .map(|(le, n)| {
                            let was = bv.buckets.iter().find(|(l, _)| l == le).map_or(0.0, |(_, n)| *n);
                            (*le, n - was)
                        })
                        .collect();
                    let d = VersionStats {
                        requests: sub_maps(&av.requests, &bv.requests),
                        responses: sub_maps(&av.responses, &bv.responses),
                        grpc: sub_maps(&av.grpc, &bv.grpc),
                        local_replies: av.local_replies - bv.local_replies,
                        buckets,
                        // A gauge: the state at the end of the window.
                        guard_tripped: av.guard_tripped,
                        guard_trips: av.guard_trips - bv.guard_trips,
                    };
                    (name.clone(), d)
                })
                .collect();
            let rejected = sub_maps(&a.rejected, &b.rejected);
            (id.clone(), RolloutStats { versions, rejected })
        })
        .collect()
}

/// The `q` quantile of a cumulative histogram, the way Prometheus's `histogram_quantile`
/// computes it: find the bucket holding rank `q * count` and interpolate linearly inside it
/// (from 0 for the first bucket); a rank in the `+Inf` bucket gives the highest finite bound.
/// `None` without observations or without a `+Inf` bucket.
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || buckets.len() < 2 {
        return None;
    }
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().map(|l| l.0) != Some(f64::INFINITY) {
        return None;
    }
    // Counts must not decrease with le (Prometheus's ensureMonotonic).
    let mut max = 0.0_f64;
    for (_, n) in b.iter_mut() {
        max = max.max(*n);
        *n = max;
    }
    let total = b[b.len() - 1].1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let last = b.len() - 1;
    let i = b[..last].iter().position(|(_, n)| *n >= rank).unwrap_or(last);
    if i == last {
        return Some(b[last - 1].0);
    }
    if i == 0 && b[0].0 <= 0.0 {
        return Some(b[0].0);
    }
    let (start, below) = if i == 0 { (0.0, 0.0) } else { b[i - 1] };
    let (end, upto) = b[i];
    let inside = upto - below;
    if inside <= 0.0 {
        return Some(start);
    }
    Some(start + (end - start) * ((rank - below) / inside))
}

impl VersionStats {
    fn requests_total(&self) -> f64 {
        self.requests.values().sum()
    }

    /// HTTP responses and gRPC calls.
    fn responses_total(&self) -> f64 {
        self.responses.values().sum::<f64>() + self.grpc.values().sum::<f64>()
    }

    /// HTTP 5xx and resets (streams that ended without a response status).
    fn http_failures(&self) -> f64 {
        ["5xx", "reset"]
            .iter()
            .map(|c| self.responses.get(*c).copied().unwrap_or(0.0))
            .sum()
    }

    /// gRPC calls that ended with a failing code.
    fn grpc_failures(&self) -> f64 {
        self.grpc
            .iter()
            .filter(|(c, _)| grpc_failure(c))
            .map(|(_, n)| n)
            .sum()
    }

    fn failures(&self) -> f64 {
        self.http_failures() + self.grpc_failures()
    }

    /// Percent of responses that succeeded.
    fn success_pct(&self) -> Option<f64> {
        let all = self.responses_total();
        (all > 0.0).then(|| (all - self.failures()) * 100.0 / all)
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        bucket_quantile(q, &self.buckets)
    }

    /// Its guard diverts it now: `rollout_guard_tripped` is 1 (tripped or probing).
    fn guard_is_tripped(&self) -> bool {
        self.guard_tripped.is_some_and(|g| g >= 1.0)
    }

    /// Why its guard aborts it: tripped now, or tripped during the period judged (it failed
    /// then, even if the guard has closed since).
    fn guard_abort(&self) -> Option<String> {
        let trips = fmt_count(self.guard_trips);
        if self.guard_is_tripped() {
            Some(format!(
                "guard tripped (trips {trips}): the filter sends its split users to the guard's baseline"
            ))
        } else if self.guard_trips > 0.0 {
            Some(format!("guard tripped {trips} time(s) in the period judged"))
        } else {
            None
        }
    }

    /// `guard NAME: TRIPPED (trips N)` or `closed`; `None` without a guard.
    fn guard_line(&self, name: &str) -> Option<String> {
        self.guard_tripped?;
        let state = if self.guard_is_tripped() {
            "TRIPPED"
        } else {
            "closed"
        };
        Some(format!(
            "guard {name}: {state} (trips {})",
            fmt_count(self.guard_trips)
        ))
    }
}

/// Whether a `grpc_code` label value fails the success rate: the filter's one rule
/// (`GrpcCode::is_failure`, docs/grpc.md), which the shipped queries spell as a regex.
fn grpc_failure(code: &str) -> bool {
    GrpcCode::ALL.iter().any(|c| c.as_str() == code && c.is_failure())
}

/// The failing `grpc_code` values, for the report's footer.
fn grpc_failure_codes() -> String {
    GrpcCode::FAILURE_REGEX.replace('|', ", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Promote,
    Hold,
    Abort,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::Hold => "hold",
            Verdict::Abort => "abort",
        }
    }

    fn exit_code(self) -> u8 {
        match self {
            Verdict::Promote => 0,
            Verdict::Hold => 1,
            Verdict::Abort => 2,
        }
    }
}

/// A candidate version: abort when its guard tripped, whatever the figures; otherwise
/// [`judge_slo`].
fn judge(v: &VersionStats, t: &Thresholds) -> (Verdict, Vec<String>) {
    let (verdict, mut why) = judge_slo(v, t);
    match v.guard_abort() {
        Some(reason) => {
            why.insert(0, reason);
            (Verdict::Abort, why)
        }
        None => (verdict, why),
    }
}

/// A candidate version against the thresholds: abort when it fails one with enough traffic,
/// hold while it has too little traffic to tell, promote otherwise.
fn judge_slo(v: &VersionStats, t: &Thresholds) -> (Verdict, Vec<String>) {
    let requests = v.requests_total();
    if requests < t.min_requests as f64 {
        return (
            Verdict::Hold,
            vec![format!(
                "{} requests < --min-requests {}",
                fmt_count(requests),
                t.min_requests
            )],
        );
    }
    let mut verdict = Verdict::Promote;
    let mut why = Vec::new();
    match v.success_pct() {
        Some(s) if s < t.min_success => {
            verdict = Verdict::Abort;
            let grpc = v.grpc_failures();
            why.push(if grpc > 0.0 {
                format!(
                    "success {s:.2}% < {}% ({} of {} responses failed: {} 5xx or reset, {} gRPC calls with a failing code)",
                    t.min_success,
                    fmt_count(v.failures()),
                    fmt_count(v.responses_total()),
                    fmt_count(v.http_failures()),
                    fmt_count(grpc),
                )
            } else {
                format!(
                    "success {s:.2}% < {}% ({} of {} responses 5xx or reset)",
                    t.min_success,
                    fmt_count(v.failures()),
                    fmt_count(v.responses_total())
                )
            });
        }
        Some(_) => {}
        None => {
            verdict = verdict.max(Verdict::Hold);
            why.push("no completed responses".into());
        }
    }
    match v.quantile(0.99) {
        Some(p) if p > t.max_p99_ms => {
            verdict = Verdict::Abort;
            why.push(format!("p99 ~{p:.2} ms > {} ms", t.max_p99_ms));
        }
        Some(_) => {}
        None => {
            verdict = verdict.max(Verdict::Hold);
            why.push("no duration samples".into());
        }
    }
    (verdict, why)
}

fn fmt_opt(v: Option<f64>, decimals: usize, suffix: &str) -> String {
    match v {
        Some(x) => format!("{x:.decimals$}{suffix}"),
        None => "-".into(),
    }
}

/// A count: whole as Envoy counts it, one decimal when Prometheus's increase() extrapolated it.
fn fmt_count(n: f64) -> String {
    if (n - n.round()).abs() < 1e-6 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// Append the report for one rollout to `out`; its verdict is the worst of its candidates'
/// (hold when there is no candidate).
fn render_rollout(id: &str, r: &RolloutStats, baseline: &str, t: &Thresholds, out: &mut String) -> Verdict {
    let total: f64 = r.versions.values().map(VersionStats::requests_total).sum();
    // Baseline first, then the candidates by name.
    let mut order: Vec<&String> = r.versions.keys().collect();
    order.sort_by_key(|n| (n.as_str() != baseline, n.as_str()));

    let _ = writeln!(out, "rollout {id}");
    let _ = writeln!(
        out,
        "{:<12} {:<9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>6} {:>6} {:>8} {:>8}  verdict",
        "version",
        "role",
        "requests",
        "share",
        "responses",
        "success",
        "5xx",
        "reset",
        "local",
        "p50_ms",
        "p99_ms"
    );
    let mut overall = None::<Verdict>;
    let mut reasons = Vec::new();
    for name in order {
        let v = &r.versions[name];
        let is_base = name == baseline;
        let (verdict, why) = if is_base {
            (None, Vec::new())
        } else {
            let (v, w) = judge(v, t);
            (Some(v), w)
        };
        if let Some(vd) = verdict {
            overall = Some(overall.map_or(vd, |o| o.max(vd)));
            if !why.is_empty() {
                reasons.push(format!("{name}: {}: {}", vd.as_str(), why.join("; ")));
            }
        }
        let requests = v.requests_total();
        let share = (total > 0.0).then(|| requests * 100.0 / total);
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>6} {:>6} {:>8} {:>8}  {}",
            name,
            if is_base { "baseline" } else { "candidate" },
            fmt_count(requests),
            fmt_opt(share, 2, "%"),
            fmt_count(v.responses_total()),
            fmt_opt(v.success_pct(), 2, "%"),
            fmt_count(v.responses.get("5xx").copied().unwrap_or(0.0)),
            fmt_count(v.responses.get("reset").copied().unwrap_or(0.0)),
            fmt_count(v.local_replies),
            fmt_opt(v.quantile(0.5), 2, ""),
            fmt_opt(v.quantile(0.99), 2, ""),
            verdict.map_or("-", Verdict::as_str),
        );
    }
    let mut sources: BTreeMap<&str, f64> = BTreeMap::new();
    for v in r.versions.values() {
        for (s, n) in &v.requests {
            *sources.entry(s.as_str()).or_default() += n;
        }
    }
    let list = |m: &BTreeMap<&str, f64>| -> String {
        let mut items: Vec<(&str, f64)> = m
            .iter()
            .map(|(k, v)| (*k, *v))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        items.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        if items.is_empty() {
            return "none".into();
        }
        items
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt_count(*v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in r.versions.keys().filter(|n| *n != baseline) {
        if let Some(line) = r.versions[name].guard_line(name) {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out, "decisions: {}", list(&sources));
    // gRPC calls by code, per version (only versions that had any).
    for (name, v) in &r.versions {
        if v.grpc.values().any(|n| *n > 0.0) {
            let codes: BTreeMap<&str, f64> = v.grpc.iter().map(|(k, n)| (k.as_str(), *n)).collect();
            let _ = writeln!(out, "grpc codes {name}: {}", list(&codes));
        }
    }
    let rejected: BTreeMap<&str, f64> = r.rejected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let _ = writeln!(out, "rejected inputs: {}", list(&rejected));
    for line in &reasons {
        let _ = writeln!(out, "{line}");
    }
    if !r.versions.contains_key(baseline) {
        let _ = writeln!(
            out,
            "note: no version named {baseline:?}; every version was judged (set --baseline)"
        );
    }
    match overall {
        Some(v) => v,
        None => {
            let _ = writeln!(out, "{id}: hold: no version other than the baseline {baseline:?}");
            Verdict::Hold
        }
    }
}

/// The whole report and the verdict across rollouts (the worst one).
fn render(
    stats: &BTreeMap<String, RolloutStats>,
    args: &Args,
    scope: &str,
) -> Result<(String, Verdict), String> {
    let selected: Vec<(&String, &RolloutStats)> = stats
        .iter()
        .filter(|(id, _)| args.rollout.as_ref().is_none_or(|want| want == *id))
        .collect();
    if selected.is_empty() {
        return Err(match &args.rollout {
            Some(want) => format!(
                "no rollout {want:?} in the filter's metrics (rollouts: {})",
                stats.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            None => "no rollout_* metrics with a `rollout` label".into(),
        });
    }
    let t = &args.thresholds;
    let mut out = String::new();
    let _ = match &args.prometheus {
        Some(url) => writeln!(out, "Prometheus {url}, every Envoy it scrapes: {scope}"),
        None => writeln!(out, "Envoy admin {}: {scope}", args.admin),
    };
    let mut verdict = Verdict::Promote;
    for (id, r) in selected {
        let _ = writeln!(out);
        verdict = verdict.max(render_rollout(id, r, &args.baseline, t, &mut out));
    }
    let bounds: Vec<String> = stats
        .values()
        .flat_map(|r| r.versions.values())
        .find(|v| !v.buckets.is_empty())
        .map(|v| {
            v.buckets
                .iter()
                .filter(|(le, _)| le.is_finite())
                .take(10)
                .map(|(le, _)| le.to_string())
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "success = responses that succeeded / all responses (HTTP: neither 5xx nor reset; gRPC: \
         none of {}). p50/p99 are estimates: linear \
         interpolation inside Envoy's histogram buckets (as Prometheus's histogram_quantile), \
         bounds {} ... ms; durations are whole milliseconds.",
        grpc_failure_codes(),
        bounds.join(", ")
    );
    let _ = writeln!(
        out,
        "thresholds for every version but {:?}: success >= {}%, p99 <= {} ms, at least {} requests; \
         a guard tripped now or during the period aborts",
        args.baseline, t.min_success, t.max_p99_ms, t.min_requests
    );
    let _ = writeln!(out, "verdict: {}", verdict.as_str().to_uppercase());
    Ok((out, verdict))
}

/// `make run` stops its Envoy when it ends; this command leaves one running.
const NO_ENVOY_HINT: &str = "is Envoy running? For a standing demo Envoy run \
    `.venv/bin/envoy -c envoy-config/envoy.yaml --concurrency 1 --use-dynamic-base-id` from the \
    repository root (after `make build envoy`), then send it traffic";

fn fetch(admin: &str) -> Result<Vec<Sample>, String> {
    let base = if admin.starts_with("http://") || admin.starts_with("https://") {
        admin.trim_end_matches('/').to_string()
    } else {
        format!("http://{admin}")
    };
    let url = format!("{base}/stats/prometheus");
    let read = || -> Result<String, String> {
        ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| format!("cannot read {url}: {e} ({NO_ENVOY_HINT})"))?
            .into_string()
            .map_err(|e| format!("{url}: {e}"))
    };
    // With stats_flush_on_admin, a read makes Envoy merge the workers' histograms, but the merge
    // completes after that read is answered: read once to merge, then read what was merged.
    // (Counters are always current.)
    read()?;
    std::thread::sleep(Duration::from_millis(200));
    let text = read()?;
    let samples = parse_prometheus(&text);
    let tagged = samples
        .iter()
        .any(|s| s.name.starts_with("rollout_") && s.labels.contains_key("rollout"));
    if !tagged {
        let untagged = samples
            .iter()
            .any(|s| s.name.starts_with("rollout_requests_total_"));
        return Err(if untagged {
            format!(
                "{url}: the filter's metrics are there but without labels: the bootstrap lacks \
                 the stats_config.stats_tags for rollout/version/source/code_class/reason \
                 (envoy-config/envoy.yaml; in Istio istio/stats-bootstrap.yaml)"
            )
        } else {
            format!("{url}: no rollout_* metrics (is the rollout filter loaded?)")
        });
    }
    Ok(samples)
}

fn run(args: &Args) -> Result<(String, Verdict), String> {
    if let Some(url) = &args.prometheus {
        let (stats, scope) = prom::stats(url, args.window, args.at)?;
        return render(&stats, args, &scope);
    }
    let first = collect(&fetch(&args.admin)?);
    match args.window {
        None => render(&first, args, "counters since Envoy started"),
        Some(w) => {
            std::thread::sleep(w);
            let second = collect(&fetch(&args.admin)?);
            render(
                &delta(&second, &first),
                args,
                &format!("what happened during the last {:.1} s", w.as_secs_f64()),
            )
        }
    }
}

/// The report with the command line `argv` (without the program name): what it prints goes
/// to `out` and `err`, the exit code is returned.
pub fn main(argv: impl IntoIterator<Item = String>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let args = match parse_args(argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            let _ = writeln!(out, "{}", Cli::command().render_help());
            return 0;
        }
        Err(e) => {
            let _ = write!(err, "{e}");
            return 3;
        }
    };
    if args.serve.is_some() {
        return serve_forever(args, out, err);
    }
    match run(&args) {
        Ok((text, verdict)) => {
            let _ = write!(out, "{text}");
            verdict.exit_code()
        }
        Err(e) => {
            let _ = writeln!(err, "rollout-report: {e}");
            3
        }
    }
}

/// `--serve`: the page until the process is stopped; exit code 3 when it cannot start.
fn serve_forever(args: Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match serve::start(args) {
        Ok(addr) => {
            let _ = writeln!(
                out,
                "rollout-report: the page is at http://{addr}/ (JSON: /api/rollouts)"
            );
            let _ = out.flush();
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            let _ = writeln!(err, "rollout-report: {e}");
            3
        }
    }
}

/// Start the page of `rollout-report ARGV` (which must hold `--serve HOST:PORT`) on background
/// threads; its address (`--serve 127.0.0.1:0` takes a free port).
pub fn serve_background(argv: impl IntoIterator<Item = String>) -> Result<std::net::SocketAddr, String> {
    let args = parse_args(argv)?.ok_or("--help is no page")?;
    if args.serve.is_none() {
        return Err("no --serve HOST:PORT".into());
    }
    serve::start(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        assert_eq!(args(&[]).unwrap(), Some(Args::default()));
        let a = args(&[
            "--admin",
            "127.0.0.1:9901",
            "--min-success=99.5",
            "--max-p99-ms",
            "250",
            "--min-requests",
            "40",
            "--baseline",
            "v1",
            "--rollout",
            "r1",
            "--window",
            "1.5m",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.admin, "127.0.0.1:9901");
        assert_eq!(a.baseline, "v1");
        assert_eq!(a.rollout.as_deref(), Some("r1"));
        assert_eq!(
            a.thresholds,
            Thresholds {
                min_success: 99.5,
                max_p99_ms: 250.0,
                min_requests: 40
            }
        );
        assert_eq!(a.window, Some(Duration::from_secs(90)));
        assert_eq!(args(&["--help"]).unwrap(), None);
        assert!(args(&["--min-success", "120"]).is_err());
        assert!(args(&["--min-success", "abc"]).is_err());
        assert!(args(&["--max-p99-ms"]).is_err());
        assert!(args(&["--min-requests", "1.5"]).is_err());
        assert!(args(&["--frobnicate"]).is_err());
        assert!(args(&["--window", "0s"]).is_err());
        assert!(args(&["--window", "5d"]).is_err());
        let fleet = args(&[
            "--prometheus",
            "http://p:9090",
            "--at",
            "1700000000.5",
            "--window",
            "2m",
        ]);
        let fleet = fleet.unwrap().unwrap();
        assert_eq!(fleet.prometheus.as_deref(), Some("http://p:9090"));
        assert_eq!(fleet.at, Some(1_700_000_000.5));
        assert!(args(&["--at", "1700000000"]).is_err(), "--at needs --prometheus");
        assert!(args(&["--prometheus", "http://p:9090", "--admin", "h:1"]).is_err());
        assert!(args(&["--prometheus", "http://p", "--serve", "h:1", "--at", "1"]).is_err());
        let served = args(&["--serve", "127.0.0.1:0"]).unwrap().unwrap();
        assert_eq!(served.serve.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    }

    fn inf_buckets(pairs: &[(f64, f64)]) -> Vec<(f64, f64)> {
        pairs.to_vec()
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        // 100 observations: 50 in (0, 1], 40 in (1, 5], 10 in (5, 10].
        let b = inf_buckets(&[
            (0.5, 0.0),
            (1.0, 50.0),
            (5.0, 90.0),
            (10.0, 100.0),
            (f64::INFINITY, 100.0),
        ]);
        // rank 50 is the top of (0.5, 1]: 0.5 + 0.5 * 50/50.
        assert_eq!(bucket_quantile(0.5, &b), Some(1.0));
        // rank 99 is 9 of 10 into (5, 10].
        assert!((bucket_quantile(0.99, &b).unwrap() - 9.5).abs() < 1e-9);
        // rank 25 in the first non-empty bucket (0.5, 1]: 0.5 + 0.5 * 25/50.
        assert_eq!(bucket_quantile(0.25, &b), Some(0.75));
        // The first bucket starts at 0.
        let first = inf_buckets(&[(0.5, 10.0), (1.0, 10.0), (f64::INFINITY, 10.0)]);
        assert!((bucket_quantile(0.99, &first).unwrap() - 0.495).abs() < 1e-9);
        // A rank in +Inf gives the highest finite bound.
        let tail = inf_buckets(&[(1.0, 1.0), (5.0, 2.0), (f64::INFINITY, 10.0)]);
        assert_eq!(bucket_quantile(0.99, &tail), Some(5.0));
        // Unsorted input and a count that dips are repaired, as Prometheus does.
        let messy = inf_buckets(&[
            (f64::INFINITY, 100.0),
            (5.0, 90.0),
            (1.0, 50.0),
            (10.0, 99.0),
            (0.5, 0.0),
        ]);
        assert_eq!(bucket_quantile(0.5, &messy), Some(1.0));
        // No observations, no +Inf bucket, or a bad q: no estimate.
        assert_eq!(
            bucket_quantile(0.5, &inf_buckets(&[(1.0, 0.0), (f64::INFINITY, 0.0)])),
            None
        );
        assert_eq!(
            bucket_quantile(0.5, &inf_buckets(&[(1.0, 3.0), (5.0, 4.0)])),
            None
        );
        assert_eq!(bucket_quantile(1.5, &b), None);
        assert_eq!(bucket_quantile(0.5, &[]), None);
    }

    /// Envoy 1.40's exposition for the filter (abridged; `le` and `+Inf` as Envoy writes them).
    const EXPOSITION: &str = r#"# TYPE rollout_rejected_total counter
rollout_rejected_total{rollout="r1",reason="unknown_override_header"} 3
rollout_rejected_total{rollout="r1",reason="unknown_override_query"} 0
# TYPE rollout_requests_total counter
rollout_requests_total{rollout="r1",version="canary",source="sticky"} 90
rollout_requests_total{rollout="r1",version="canary",source="override_header"} 10
rollout_requests_total{rollout="r1",version="stable",source="sticky"} 300
rollout_requests_total{rollout="r1",version="stable",source="random"} 0
# TYPE rollout_responses_total counter
rollout_responses_total{rollout="r1",version="canary",code_class="2xx"} 75
rollout_responses_total{rollout="r1",version="canary",code_class="4xx"} 5
rollout_responses_total{rollout="r1",version="canary",code_class="5xx"} 18
rollout_responses_total{rollout="r1",version="canary",code_class="reset"} 2
rollout_responses_total{rollout="r1",version="stable",code_class="2xx"} 300
# TYPE rollout_local_replies_total counter
rollout_local_replies_total{rollout="r1",version="canary"} 4
rollout_local_replies_total{rollout="r1",version="stable"} 0
# TYPE rollout_request_duration_milliseconds histogram
rollout_request_duration_milliseconds_bucket{rollout="r1",version="canary",le="0.5"} 0
rollout_request_duration_milliseconds_bucket{rollout="r1",version="canary",le="1"} 50
rollout_request_duration_milliseconds_bucket{rollout="r1",version="canary",le="5"} 90
rollout_request_duration_milliseconds_bucket{rollout="r1",version="canary",le="10"} 100
rollout_request_duration_milliseconds_bucket{rollout="r1",version="canary",le="+Inf"} 100
rollout_request_duration_milliseconds_sum{rollout="r1",version="canary"} 250
rollout_request_duration_milliseconds_count{rollout="r1",version="canary"} 100
rollout_request_duration_milliseconds_bucket{rollout="r1",version="stable",le="0.5"} 150
rollout_request_duration_milliseconds_bucket{rollout="r1",version="stable",le="1"} 300
rollout_request_duration_milliseconds_bucket{rollout="r1",version="stable",le="+Inf"} 300
envoy_server_uptime{} 12
"#;

    #[test]
    fn collects_per_rollout_and_version() {
        let stats = collect(&parse_prometheus(EXPOSITION));
        assert_eq!(stats.len(), 1);
        let r = &stats["r1"];
        assert_eq!(r.rejected["unknown_override_header"], 3.0);
        let c = &r.versions["canary"];
        assert_eq!(c.requests_total(), 100.0);
        assert_eq!(c.responses_total(), 100.0);
        assert_eq!(c.failures(), 20.0);
        assert_eq!(c.success_pct(), Some(80.0));
        assert_eq!(c.local_replies, 4.0);
        assert_eq!(c.buckets.len(), 5);
        assert_eq!(c.buckets[4], (f64::INFINITY, 100.0));
        assert!((c.quantile(0.99).unwrap() - 9.5).abs() < 1e-9);
        let s = &r.versions["stable"];
        assert_eq!(s.success_pct(), Some(100.0));
        // rank 297 is 147 of 150 into (0.5, 1].
        assert!((s.quantile(0.99).unwrap() - 0.99).abs() < 1e-9);
        assert_eq!(s.quantile(0.5), Some(0.5));
    }

    fn thresholds(min_requests: u64) -> Thresholds {
        Thresholds {
            min_success: 99.0,
            max_p99_ms: 300.0,
            min_requests,
        }
    }

    #[test]
    fn verdicts() {
        let stats = collect(&parse_prometheus(EXPOSITION));
        let r = &stats["r1"];
        let (v, why) = judge(&r.versions["canary"], &thresholds(50));
        assert_eq!(v, Verdict::Abort);
        assert!(why[0].contains("success 80.00% < 99%"), "{why:?}");
        // Too little traffic to judge: hold, whatever the numbers say.
        assert_eq!(judge(&r.versions["canary"], &thresholds(101)).0, Verdict::Hold);
        assert_eq!(judge(&r.versions["stable"], &thresholds(100)).0, Verdict::Promote);
        // Slow: p99 over the limit aborts.
        let slow = Thresholds {
            max_p99_ms: 5.0,
            min_success: 50.0,
            ..thresholds(10)
        };
        let (v, why) = judge(&r.versions["canary"], &slow);
        assert_eq!(v, Verdict::Abort);
        assert!(why[0].contains("p99 ~9.50 ms > 5 ms"), "{why:?}");
        // Requests without a finished response yet: hold.
        let mut pending = VersionStats::default();
        pending.requests.insert("sticky".into(), 500.0);
        assert_eq!(judge(&pending, &thresholds(100)).0, Verdict::Hold);
        assert!(Verdict::Abort > Verdict::Hold && Verdict::Hold > Verdict::Promote);
        assert_eq!(
            [Verdict::Promote, Verdict::Hold, Verdict::Abort].map(Verdict::exit_code),
            [0, 1, 2]
        );
    }

    #[test]
    fn report_text_and_overall_verdict() {
        let stats = collect(&parse_prometheus(EXPOSITION));
        let a = Args {
            thresholds: thresholds(50),
            ..Args::default()
        };
        let (text, v) = render(&stats, &a, "test").unwrap();
        assert_eq!(v, Verdict::Abort);
        let row = |name: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no row {name} in\n{text}"))
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            row("stable"),
            ["stable", "baseline", "300", "75.00%", "300", "100.00%", "0", "0", "0", "0.50", "0.99", "-"]
        );
        assert_eq!(
            row("canary"),
            [
                "canary",
                "candidate",
                "100",
                "25.00%",
                "100",
                "80.00%",
                "18",
                "2",
                "4",
                "1.00",
                "9.50",
                "abort"
            ]
        );
        // Baseline first.
        assert!(text.find("\nstable ").unwrap() < text.find("\ncanary ").unwrap());
        assert!(
            text.contains("decisions: sticky 390, override_header 10\n"),
            "{text}"
        );
        assert!(
            text.contains("rejected inputs: unknown_override_header 3\n"),
            "{text}"
        );
        assert!(text.contains("canary: abort: success 80.00% < 99%"), "{text}");
        assert!(text.contains("p50/p99 are estimates"));
        assert!(text.ends_with("verdict: ABORT\n"));

        let wrong = Args {
            rollout: Some("nope".into()),
            ..Args::default()
        };
        assert!(render(&stats, &wrong, "test")
            .unwrap_err()
            .contains("rollouts: r1"));
        // Another baseline: stable is the candidate now, and healthy.
        let other = Args {
            baseline: "canary".into(),
            ..a.clone()
        };
        let (text, v) = render(&stats, &other, "test").unwrap();
        assert_eq!(v, Verdict::Promote, "{text}");
        assert!(text.contains("\nstable       candidate "), "{text}");
        // Only the baseline left: nothing to judge, hold.
        let only_stable: String = EXPOSITION
            .lines()
            .filter(|l| !l.contains("canary"))
            .map(|l| format!("{l}\n"))
            .collect();
        let (text, v) = render(&collect(&parse_prometheus(&only_stable)), &a, "test").unwrap();
        assert_eq!(v, Verdict::Hold, "{text}");
        assert!(text.contains("no version other than the baseline"), "{text}");
    }

    #[test]
    fn window_is_the_difference_of_two_snapshots() {
        let before = collect(&parse_prometheus(EXPOSITION));
        let after_text = EXPOSITION
            .replace(
                r#"version="canary",code_class="5xx"} 18"#,
                r#"version="canary",code_class="5xx"} 28"#,
            )
            .replace(
                r#"version="canary",code_class="2xx"} 75"#,
                r#"version="canary",code_class="2xx"} 85"#,
            )
            .replace(
                r#"version="canary",source="sticky"} 90"#,
                r#"version="canary",source="sticky"} 110"#,
            )
            .replace(
                r#"version="canary",le="+Inf"} 100"#,
                r#"version="canary",le="+Inf"} 120"#,
            );
        let after = collect(&parse_prometheus(&after_text));
        let d = delta(&after, &before);
        let c = &d["r1"].versions["canary"];
        assert_eq!(c.requests_total(), 20.0);
        assert_eq!(c.responses_total(), 20.0);
        assert_eq!(c.success_pct(), Some(50.0));
        // 20 new observations, all above 10 ms: the estimate is the highest finite bound.
        assert_eq!(c.quantile(0.5), Some(10.0));
        assert_eq!(d["r1"].rejected["unknown_override_header"], 0.0);
    }

    #[test]
    fn grpc_calls_are_judged_by_their_code() {
        let text = r#"rollout_requests_total{rollout="r1",version="canary",source="sticky"} 100
rollout_responses_total{rollout="r1",version="canary",code_class="2xx"} 50
rollout_responses_total{rollout="r1",version="canary",code_class="5xx"} 0
rollout_grpc_responses_total{rollout="r1",version="canary",grpc_code="OK"} 38
rollout_grpc_responses_total{rollout="r1",version="canary",grpc_code="NOT_FOUND"} 2
rollout_grpc_responses_total{rollout="r1",version="canary",grpc_code="UNAVAILABLE"} 8
rollout_grpc_responses_total{rollout="r1",version="canary",grpc_code="reset"} 2
"#;
        let stats = collect(&parse_prometheus(text));
        let c = &stats["r1"].versions["canary"];
        assert_eq!(c.responses_total(), 100.0);
        assert_eq!(c.grpc_failures(), 10.0, "NOT_FOUND is the caller's");
        assert_eq!(c.success_pct(), Some(90.0));
        let (v, why) = judge(c, &thresholds(50));
        assert_eq!(v, Verdict::Abort);
        assert!(
            why[0].contains("(10 of 100 responses failed: 0 5xx or reset, 10 gRPC calls"),
            "{why:?}"
        );
        assert!(grpc_failure("DATA_LOSS") && grpc_failure("missing") && !grpc_failure("OK"));
        assert!(!grpc_failure("CANCELLED") && !grpc_failure("nonsense"));
    }

    /// The guard's series as Envoy 1.40 exposes them (`wasmcustom.rollout_guard_tripped;...`
    /// through the shipped stats_tags), appended to [`EXPOSITION`].
    fn with_guard(tripped: u8, trips: u32) -> String {
        format!(
            "{EXPOSITION}# TYPE rollout_guard_tripped gauge\n\
             rollout_guard_tripped{{rollout=\"r1\",version=\"stable\"}} 0\n\
             rollout_guard_tripped{{rollout=\"r1\",version=\"canary\"}} {tripped}\n\
             # TYPE rollout_guard_trips_total counter\n\
             rollout_guard_trips_total{{rollout=\"r1\",version=\"stable\"}} 0\n\
             rollout_guard_trips_total{{rollout=\"r1\",version=\"canary\"}} {trips}\n"
        )
    }

    /// Thresholds the canary of [`EXPOSITION`] meets (80 % success, p99 9.5 ms).
    fn lenient() -> Args {
        Args {
            thresholds: Thresholds {
                min_success: 50.0,
                max_p99_ms: 300.0,
                min_requests: 50,
            },
            ..Args::default()
        }
    }

    #[test]
    fn a_tripped_guard_aborts_whatever_the_figures() {
        let healthy = collect(&parse_prometheus(&with_guard(0, 0)));
        let c = &healthy["r1"].versions["canary"];
        assert_eq!((c.guard_tripped, c.guard_trips), (Some(0.0), 0.0));
        let (text, v) = render(&healthy, &lenient(), "test").unwrap();
        assert_eq!(v, Verdict::Promote, "{text}");
        assert!(text.contains("\nguard canary: closed (trips 0)\n"), "{text}");
        assert!(
            !text.contains("guard stable"),
            "the baseline has no guard line:\n{text}"
        );

        let tripped = collect(&parse_prometheus(&with_guard(1, 1)));
        let (text, v) = render(&tripped, &lenient(), "test").unwrap();
        assert_eq!(v, Verdict::Abort, "{text}");
        assert_eq!(v.exit_code(), 2);
        assert!(text.contains("\nguard canary: TRIPPED (trips 1)\n"), "{text}");
        assert!(
            text.contains("canary: abort: guard tripped (trips 1): the filter sends its split users"),
            "{text}"
        );
        assert_eq!(
            report_cells(&text, "canary").last().map(String::as_str),
            Some("abort")
        );
        assert!(text.ends_with("verdict: ABORT\n"), "{text}");

        // Too few requests to judge the SLO is a hold, but not with the guard tripped.
        let few = Args {
            thresholds: Thresholds {
                min_requests: 1000,
                ..lenient().thresholds
            },
            ..lenient()
        };
        assert_eq!(render(&healthy, &few, "test").unwrap().1, Verdict::Hold);
        let (text, v) = render(&tripped, &few, "test").unwrap();
        assert_eq!(v, Verdict::Abort, "{text}");
        assert!(text.contains("guard tripped (trips 1): the filter sends its split users to the guard's baseline; 100 requests < --min-requests 1000"), "{text}");

        // Closed again after a trip: the canary failed during the period judged.
        let closed = collect(&parse_prometheus(&with_guard(0, 2)));
        let (text, v) = render(&closed, &lenient(), "test").unwrap();
        assert_eq!(v, Verdict::Abort, "{text}");
        assert!(text.contains("\nguard canary: closed (trips 2)\n"), "{text}");
        assert!(
            text.contains("canary: abort: guard tripped 2 time(s) in the period judged"),
            "{text}"
        );
    }

    #[test]
    fn a_window_judges_the_guard_by_its_trips_in_the_window_and_its_state_at_the_end() {
        let before = collect(&parse_prometheus(&with_guard(0, 1)));
        let still_closed = collect(&parse_prometheus(&with_guard(0, 1)));
        let d = delta(&still_closed, &before);
        let c = &d["r1"].versions["canary"];
        assert_eq!((c.guard_tripped, c.guard_trips), (Some(0.0), 0.0));
        // No traffic in the window: a hold, not an abort for the trip before it.
        let (text, v) = render(&d, &lenient(), "test").unwrap();
        assert_eq!(v, Verdict::Hold, "{text}");
        assert!(!text.contains("canary: abort"), "{text}");
        let tripped_again = collect(&parse_prometheus(&with_guard(1, 2)));
        let d = delta(&tripped_again, &before);
        let (text, v) = render(&d, &lenient(), "test").unwrap();
        assert_eq!(v, Verdict::Abort, "{text}");
        assert!(text.contains("guard canary: TRIPPED (trips 1)"), "{text}");
    }

    #[test]
    fn no_guard_no_guard_line() {
        let stats = collect(&parse_prometheus(EXPOSITION));
        assert_eq!(stats["r1"].versions["canary"].guard_tripped, None);
        let (text, _) = render(&stats, &lenient(), "test").unwrap();
        assert!(!text.contains("\nguard "), "{text}");
    }

    fn report_cells(text: &str, version: &str) -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("{version} ")))
            .unwrap_or_else(|| panic!("no row {version} in\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn le_bounds() {
        assert_eq!(le_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(le_value("0.5"), Some(0.5));
        assert_eq!(le_value("3600000"), Some(3_600_000.0));
        assert_eq!(le_value("x"), None);
    }
}
