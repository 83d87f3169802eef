//! `rollout-report --serve HOST:PORT`: the report as a page that refreshes every 2 s, and the
//! same figures as JSON at `/api/rollouts`. A thread reads the source (`--admin` or
//! `--prometheus`) every 2 s and keeps 15 minutes of snapshots: the charts are the share and
//! success rate between consecutive snapshots. Plain HTTP/1.1 on a std listener, one thread per
//! connection; the page is one inline document (no external assets).

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{collect, delta, fetch, judge, prom, Args, RolloutStats, Verdict, VersionStats};
use crate::filter_config::loaded_weights;

const PAGE: &str = include_str!("watch.html");
const POLL: Duration = Duration::from_secs(2);
/// How far back the charts go.
const HISTORY_SECS: f64 = 15.0 * 60.0;

type Stats = BTreeMap<String, RolloutStats>;

#[derive(Default)]
struct Watch {
    /// (Unix time, cumulative figures), oldest first.
    snapshots: VecDeque<(f64, Stats)>,
    /// What the table shows (the window's figures with `--window`) and its scope line.
    table: Stats,
    scope: String,
    /// Configured weights in percent by rollout and version (from an admin's config dump).
    weights: BTreeMap<String, BTreeMap<String, f64>>,
    error: Option<String>,
    updated: f64,
}

struct Page {
    args: Args,
    watch: Mutex<Watch>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Bind `args.serve`, read the source once, and serve from background threads.
pub(super) fn start(args: Args) -> Result<SocketAddr, String> {
    let want = args.serve.clone().unwrap_or_default();
    let listener = TcpListener::bind(&want).map_err(|e| format!("cannot listen on {want}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let page = Arc::new(Page {
        args,
        watch: Mutex::default(),
    });
    poll(&page);
    let poller = Arc::clone(&page);
    std::thread::spawn(move || loop {
        std::thread::sleep(POLL);
        poll(&poller);
    });
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let page = Arc::clone(&page);
            std::thread::spawn(move || answer(stream, &page));
        }
    });
    Ok(local)
}

/// The source's figures since start; with `--admin` also the configured weights.
fn snapshot(args: &Args) -> Result<(Stats, String), String> {
    match &args.prometheus {
        Some(url) => prom::stats(url, None, None),
        None => Ok((
            collect(&fetch(&args.admin)?),
            "counters since Envoy started".into(),
        )),
    }
}

/// One read of the source: a new snapshot, the table's figures, the weights.
fn poll(page: &Page) {
    let args = &page.args;
    let t = now();
    let read = snapshot(args);
    let window = match (&args.prometheus, args.window) {
        (Some(url), Some(w)) => Some(prom::stats(url, Some(w), None)),
        _ => None,
    };
    let weights = match &args.prometheus {
        None => loaded_weights(&admin_url(&args.admin)).ok(),
        Some(_) => None,
    };
    let mut w = page.watch.lock().unwrap_or_else(|e| e.into_inner());
    w.updated = t;
    match read {
        Ok((stats, scope)) => {
            w.error = None;
            w.snapshots.push_back((t, stats));
            while w.snapshots.front().is_some_and(|(s, _)| *s < t - keep_secs(args)) {
                w.snapshots.pop_front();
            }
            match window {
                Some(Ok(figures)) => (w.table, w.scope) = figures,
                Some(Err(e)) => w.error = Some(e),
                None => (w.table, w.scope) = table_of(&w.snapshots, args.window, scope),
            }
        }
        Err(e) => w.error = Some(e),
    }
    if let Some(weights) = weights {
        w.weights = weights;
    }
}

fn admin_url(admin: &str) -> String {
    if admin.starts_with("http://") || admin.starts_with("https://") {
        admin.trim_end_matches('/').to_string()
    } else {
        format!("http://{admin}")
    }
}

/// Snapshots kept: the charts' 15 minutes, or the admin's `--window` if longer.
fn keep_secs(args: &Args) -> f64 {
    let window = args.window.map_or(0.0, |w| w.as_secs_f64());
    HISTORY_SECS.max(window) + POLL.as_secs_f64()
}

/// The table from the snapshots: the latest, or with `--window` (from an admin) its difference
/// with the newest snapshot at least that old (the oldest while there is none).
fn table_of(snaps: &VecDeque<(f64, Stats)>, window: Option<Duration>, scope: String) -> (Stats, String) {
    let Some((t, last)) = snaps.back() else {
        return (Stats::new(), scope);
    };
    let Some(w) = window else {
        return (last.clone(), scope);
    };
    let since = t - w.as_secs_f64();
    let base = snaps.iter().rev().find(|(s, _)| *s <= since).or(snaps.front());
    let (t0, first) = base.expect("a snapshot");
    let scope = format!("what happened during the last {:.1} s", t - t0);
    (delta(last, first), scope)
}

/// One HTTP/1.1 exchange: `/` the page, `/api/rollouts` the JSON.
fn answer(mut stream: TcpStream, page: &Page) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/" | "/index.html") => ("200 OK", "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        ("GET", "/api/rollouts") => ("200 OK", "application/json", api(page).to_string().into_bytes()),
        ("GET", _) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => ("405 Method Not Allowed", "text/plain", b"GET only\n".to_vec()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(&body);
}

/// What `/api/rollouts` answers: the table's figures and verdicts, the thresholds, the history.
fn api(page: &Page) -> Value {
    let args = &page.args;
    let w = page.watch.lock().unwrap_or_else(|e| e.into_inner());
    let mut overall = Verdict::Promote;
    let mut rollouts = Vec::new();
    for (id, r) in &w.table {
        if args.rollout.as_ref().is_some_and(|want| want != id) {
            continue;
        }
        let (json, verdict) = rollout_json(id, r, &w, args);
        overall = overall.max(verdict);
        rollouts.push(json);
    }
    if rollouts.is_empty() {
        overall = Verdict::Hold;
    }
    let t = &args.thresholds;
    json!({
        "source": source(args),
        "scope": w.scope,
        "updated": w.updated,
        "error": w.error,
        "baseline": args.baseline,
        "thresholds": {
            "min_success": t.min_success,
            "max_p99_ms": t.max_p99_ms,
            "min_requests": t.min_requests,
        },
        "verdict": overall.as_str(),
        "rollouts": rollouts,
    })
}

fn source(args: &Args) -> String {
    match &args.prometheus {
        Some(url) => format!("Prometheus {url}, every Envoy it scrapes"),
        None => format!("Envoy admin {}", args.admin),
    }
}

/// One rollout: its versions (baseline first), their verdicts and the rollout's, its history.
fn rollout_json(id: &str, r: &RolloutStats, w: &Watch, args: &Args) -> (Value, Verdict) {
    let total: f64 = r.versions.values().map(VersionStats::requests_total).sum();
    let mut order: Vec<&String> = r.versions.keys().collect();
    order.sort_by_key(|n| (n.as_str() != args.baseline, n.as_str()));
    let weights = w.weights.get(id);
    let mut worst = None::<Verdict>;
    let mut versions = Vec::new();
    for name in order {
        let v = &r.versions[name];
        let judged = (name != &args.baseline).then(|| judge(v, &args.thresholds));
        if let Some((vd, _)) = &judged {
            worst = Some(worst.map_or(*vd, |o| o.max(*vd)));
        }
        let weight = weights.and_then(|m| m.get(name)).copied();
        versions.push(version_json(name, v, total, weight, judged, &args.baseline));
    }
    let verdict = worst.unwrap_or(Verdict::Hold);
    let json = json!({
        "id": id,
        "verdict": verdict.as_str(),
        "rejected": r.rejected,
        "versions": versions,
        "history": history(id, &w.snapshots),
    });
    (json, verdict)
}

fn version_json(
    name: &str,
    v: &VersionStats,
    total: f64,
    weight: Option<f64>,
    judged: Option<(Verdict, Vec<String>)>,
    baseline: &str,
) -> Value {
    let requests = v.requests_total();
    let guard = v
        .guard_tripped
        .map(|_| json!({"tripped": v.guard_is_tripped(), "trips": v.guard_trips}));
    let (verdict, reasons) = match judged {
        Some((vd, why)) => (Some(vd.as_str()), why),
        None => (None, Vec::new()),
    };
    json!({
        "name": name,
        "role": if name == baseline { "baseline" } else { "candidate" },
        "weight": weight,
        "share": (total > 0.0).then(|| requests * 100.0 / total),
        "requests": requests,
        "responses": v.responses_total(),
        "success": v.success_pct(),
        "fivexx": v.responses.get("5xx").copied().unwrap_or(0.0),
        "reset": v.responses.get("reset").copied().unwrap_or(0.0),
        "local": v.local_replies,
        "p50": v.quantile(0.5),
        "p99": v.quantile(0.99),
        "sources": v.requests,
        "guard": guard,
        "verdict": verdict,
        "reasons": reasons,
    })
}

/// Share and success rate of each version between consecutive snapshots (null: no traffic).
fn history(id: &str, snaps: &VecDeque<(f64, Stats)>) -> Value {
    let empty = RolloutStats::default();
    let points: Vec<Value> = snaps
        .iter()
        .zip(snaps.iter().skip(1))
        .map(|((_, before), (t, after))| {
            let d = delta(after, before);
            let r = d.get(id).unwrap_or(&empty);
            let total: f64 = r.versions.values().map(VersionStats::requests_total).sum();
            let share: BTreeMap<&String, Option<f64>> = r
                .versions
                .iter()
                .map(|(n, v)| (n, (total > 0.0).then(|| v.requests_total() * 100.0 / total)))
                .collect();
            let success: BTreeMap<&String, Option<f64>> =
                r.versions.iter().map(|(n, v)| (n, v.success_pct())).collect();
            json!({"t": t, "share": share, "success": success})
        })
        .collect();
    Value::Array(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse_prometheus;

    fn stats(canary_ok: u32, canary_5xx: u32) -> Stats {
        let text = format!(
            "rollout_requests_total{{rollout=\"r\",version=\"stable\",source=\"sticky\"}} 100\n\
             rollout_responses_total{{rollout=\"r\",version=\"stable\",code_class=\"2xx\"}} 100\n\
             rollout_requests_total{{rollout=\"r\",version=\"canary\",source=\"sticky\"}} {}\n\
             rollout_responses_total{{rollout=\"r\",version=\"canary\",code_class=\"2xx\"}} {canary_ok}\n\
             rollout_responses_total{{rollout=\"r\",version=\"canary\",code_class=\"5xx\"}} {canary_5xx}\n",
            canary_ok + canary_5xx
        );
        collect(&parse_prometheus(&text))
    }

    #[test]
    fn history_is_per_interval_and_the_window_a_difference() {
        let snaps: VecDeque<(f64, Stats)> =
            [(0.0, stats(0, 0)), (2.0, stats(90, 10)), (4.0, stats(90, 10))].into();
        let h = history("r", &snaps);
        assert_eq!(h.as_array().unwrap().len(), 2);
        assert_eq!(h[0]["t"], 2.0);
        assert_eq!(h[0]["share"]["canary"], 100.0);
        assert_eq!(h[0]["success"]["canary"], 90.0);
        assert_eq!(h[1]["share"]["canary"], Value::Null, "no traffic, no point");

        let (table, scope) = table_of(&snaps, Some(Duration::from_secs(3)), String::new());
        assert_eq!(table["r"].versions["canary"].requests_total(), 100.0);
        assert_eq!(scope, "what happened during the last 4.0 s");
        let (table, _) = table_of(&snaps, None, "since".into());
        assert_eq!(table["r"].versions["stable"].requests_total(), 100.0);
    }
}
