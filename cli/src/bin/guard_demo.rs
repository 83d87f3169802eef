//! `make run-guard`: the canary guard in Envoy (envoy-config/guard.yaml). Steady traffic over
//! many users; the canary's backend answers 503 to every request for a while, then heals. The
//! table shows when it failed, when the guard tripped, how many requests failed in between, and
//! the users coming back once the hold and the probe have passed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rollout_cli::http::{agent, get};
use rollout_cli::workspace_root;

const FRONT: &str = "http://127.0.0.1:18040";
const ADMIN: &str = "http://127.0.0.1:18940";
const USERS: usize = 2_000;
const THREADS: usize = 4;
/// Each client thread's pause between requests: about 650 requests/s in all, light on CPU.
const PAUSE: Duration = Duration::from_millis(4);
/// When the canary's backend starts failing, and when it heals (before the 10 s hold ends).
const FAIL_AT: Duration = Duration::from_secs(5);
const HEAL_AT: Duration = Duration::from_secs(12);
/// Traffic watched after the guard closes: where the users land then.
const AFTER_CLOSE: Duration = Duration::from_secs(5);
/// The demo gives up on the guard closing after this long.
const GIVE_UP: Duration = Duration::from_secs(90);
/// How often the gauge and the log are read.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// One response: when it ended (since the start), whose request, its status, the version the
/// filter sent it to (`x-rollout-version` on the response).
struct Sample {
    at: Duration,
    user: usize,
    status: u16,
    version: String,
}

/// What the script did, and when (since the start).
type Events = Vec<(Duration, String)>;

/// What the watcher saw: the canary's `rollout_guard_tripped` when it changed, and the guard's
/// log lines when they appeared.
#[derive(Default)]
struct Watched {
    gauge: Vec<(Duration, bool)>,
    lines: Vec<(Duration, String)>,
}

impl Watched {
    fn tripped_at(&self) -> Option<Duration> {
        self.gauge.iter().find(|(_, on)| *on).map(|(t, _)| *t)
    }

    fn closed_at(&self) -> Option<Duration> {
        let trip = self.tripped_at()?;
        self.gauge
            .iter()
            .find(|(t, on)| !on && *t > trip)
            .map(|(t, _)| *t)
    }

    fn line(&self, what: &str) -> Option<&(Duration, String)> {
        self.lines.iter().find(|(_, l)| l.contains(what))
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("make run-guard: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = workspace_root();
    let log_path = root.join("target/envoy-guard-demo.log");
    let envoy = rollout_cli::demo_envoy::start_with(
        &root.join("envoy-config/guard.yaml"),
        &log_path,
        FRONT,
        ADMIN,
        &["--component-log-level", "wasm:info"],
    )?;
    set_canary_failing(false)?;
    println!(
        "Envoy with envoy-config/guard.yaml: rollout checkout-2026-11, stable 90 / canary 10, \
         guard holdSeconds 10; {USERS} users, {THREADS} client threads"
    );
    let (samples, watched, events) = drive(&log_path)?;
    let shown = print_tables(&samples, &watched, &events);
    println!();
    rollout_cli::settle();
    print_report()?;
    drop(envoy);
    shown
}

/// `rollout-report` against the demo Envoy, with `$REPORT_ARGS`: its guard line, and its verdict
/// (abort: the guard tripped in the period judged). The demo does not fail on the verdict.
fn print_report() -> Result<(), String> {
    let args = std::env::var("REPORT_ARGS").unwrap_or_default();
    let argv = ["--admin", ADMIN.trim_start_matches("http://")]
        .into_iter()
        .chain(args.split_whitespace())
        .map(str::to_string);
    match rollout_cli::report::main(argv, &mut std::io::stdout(), &mut std::io::stderr()) {
        0..=2 => Ok(()),
        code => Err(format!("rollout-report failed (exit code {code})")),
    }
}

/// The canary's backend answers 503 to every request (`true`) or to none.
fn set_canary_failing(failing: bool) -> Result<(), String> {
    let percent = if failing { 100 } else { 0 };
    let url = format!("{ADMIN}/runtime_modify?demo.canary_fail_percent={percent}");
    ureq::post(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))
        .map(|_| ())
}

/// The traffic, the watcher and the script (fail, heal, wait for the close); what each saw
/// and when the script acted.
fn drive(log_path: &std::path::Path) -> Result<(Vec<Sample>, Watched, Events), String> {
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..THREADS)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || client(t, start, stop))
            })
            .collect();
        let watcher = s.spawn(|| watch(log_path, start, &stop));
        let script = script(start);
        stop.store(true, Ordering::Relaxed);
        let watched = watcher.join().map_err(|_| "watcher thread died")??;
        let mut samples = Vec::new();
        for c in clients {
            samples.extend(c.join().map_err(|_| "client thread died")??);
        }
        samples.sort_by_key(|x| x.at);
        Ok((samples, watched, script?))
    })
}

/// Fail the canary at [`FAIL_AT`], heal it at [`HEAL_AT`], then wait for the guard to close
/// and watch [`AFTER_CLOSE`] more.
fn script(start: Instant) -> Result<Events, String> {
    let mut events = vec![(
        Duration::ZERO,
        "start: every user placed by the split".to_string(),
    )];
    std::thread::sleep(FAIL_AT.saturating_sub(start.elapsed()));
    set_canary_failing(true)?;
    events.push((
        start.elapsed(),
        "canary backend starts failing (503 to every request)".into(),
    ));
    std::thread::sleep(HEAL_AT.saturating_sub(start.elapsed()));
    set_canary_failing(false)?;
    events.push((start.elapsed(), "canary backend healed".into()));
    while canary_gauge()? && start.elapsed() < GIVE_UP {
        std::thread::sleep(WATCH_EVERY);
    }
    std::thread::sleep(AFTER_CLOSE);
    Ok(events)
}

/// One client thread: users `t`, `t + THREADS`, ... in turn, round and round, until `stop`.
fn client(t: usize, start: Instant, stop: &AtomicBool) -> Result<Vec<Sample>, String> {
    let agent = agent();
    let mut out = Vec::new();
    let mut user = t;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("user-{user}");
        let r = get(&agent, &format!("{FRONT}/"), &[("x-user-id", &id)])?;
        out.push(Sample {
            at: start.elapsed(),
            user,
            status: r.status,
            version: r.header("x-rollout-version").unwrap_or("none").to_string(),
        });
        user = (user + THREADS) % USERS;
        std::thread::sleep(PAUSE);
    }
    Ok(out)
}

/// The canary's `rollout_guard_tripped` on Envoy's admin `/stats`.
fn canary_gauge() -> Result<bool, String> {
    let url = format!("{ADMIN}/stats?filter=rollout_guard_tripped");
    let body = ureq::get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .into_string()
        .map_err(|e| e.to_string())?;
    Ok(body
        .lines()
        .any(|l| l.contains(";version=canary") && l.trim_end().ends_with(": 1")))
}

/// Reads the gauge and the new lines of Envoy's log every [`WATCH_EVERY`] until `stop`.
fn watch(log_path: &std::path::Path, start: Instant, stop: &AtomicBool) -> Result<Watched, String> {
    let mut w = Watched::default();
    let mut read = 0;
    while !stop.load(Ordering::Relaxed) {
        let on = canary_gauge()?;
        if w.gauge.last().map(|(_, was)| *was) != Some(on) {
            w.gauge.push((start.elapsed(), on));
        }
        let log = std::fs::read(log_path).map_err(|e| e.to_string())?;
        let fresh = String::from_utf8_lossy(log.get(read..).unwrap_or_default()).into_owned();
        // Only whole lines; a partial one is read again next time.
        let whole = fresh.rfind('\n').map_or(0, |i| i + 1);
        read += whole;
        for line in fresh[..whole].lines().filter(|l| l.contains(": guard ")) {
            let text = line.find("rollout ").map_or(line, |i| &line[i..]);
            w.lines.push((start.elapsed(), text.to_string()));
        }
        std::thread::sleep(WATCH_EVERY);
    }
    Ok(w)
}

/// The timeline, the table of what happened between its events, and the users coming back.
fn print_tables(samples: &[Sample], w: &Watched, script: &[(Duration, String)]) -> Result<(), String> {
    let trip = w.tripped_at().ok_or("the guard never tripped")?;
    let mut events: Vec<(Duration, String)> = script.to_vec();
    events.push((trip, "guard tripped (rollout_guard_tripped 1)".into()));
    if let Some((t, _)) = w.line("guard probing") {
        events.push((*t, "guard probing (10 % of the canary's users)".into()));
    }
    let closed = w.closed_at();
    if let Some(t) = closed {
        events.push((t, "guard closed (rollout_guard_tripped 0)".into()));
    }
    events.sort_by_key(|e| e.0);
    let end = samples.last().map_or(Duration::ZERO, |s| s.at);

    println!();
    println!(
        "{:>7} {:>7}  {:<52} {:>8} {:>9} {:>7} {:>7}",
        "from_s", "to_s", "after", "requests", "to_canary", "share", "failed"
    );
    for (i, (from, what)) in events.iter().enumerate() {
        let to = events.get(i + 1).map_or(end, |e| e.0);
        let inside: Vec<&Sample> = samples.iter().filter(|s| s.at >= *from && s.at < to).collect();
        let canary = inside.iter().filter(|s| s.version == "canary").count();
        let failed = inside.iter().filter(|s| s.status >= 500).count();
        let share = 100.0 * canary as f64 / inside.len().max(1) as f64;
        println!(
            "{:>7.2} {:>7.2}  {:<52} {:>8} {:>9} {:>6.1}% {:>7}",
            from.as_secs_f64(),
            to.as_secs_f64(),
            what,
            inside.len(),
            canary,
            share,
            failed
        );
    }
    print_summary(samples, w, script, trip, closed)
}

/// Failures between the failure and the trip, the log lines, and users back where the split
/// puts them.
fn print_summary(
    samples: &[Sample],
    w: &Watched,
    script: &[(Duration, String)],
    trip: Duration,
    closed: Option<Duration>,
) -> Result<(), String> {
    let failed_at = script.get(1).map(|e| e.0).ok_or("no failure scripted")?;
    let failed = samples.iter().filter(|s| s.status >= 500);
    let before_trip = failed.clone().filter(|s| s.at <= trip).count();
    let after_trip = failed.count() - before_trip;
    println!();
    println!(
        "canary failing from {:.2} s; guard tripped {:.2} s (+{} ms): {before_trip} split requests \
         reached the failing canary and failed, {after_trip} after the trip",
        failed_at.as_secs_f64(),
        trip.as_secs_f64(),
        (trip.saturating_sub(failed_at)).as_millis()
    );
    for (t, line) in &w.lines {
        println!("log at {:>6.2} s: {line}", t.as_secs_f64());
    }
    let closed = closed.ok_or("the guard did not close")?;
    let placed = placements(samples, |s| s.at < failed_at);
    // A margin for requests decided just before the close that ended after it.
    let after = placements(samples, |s| s.at > closed + Duration::from_millis(200));
    let back = |only: Option<&str>| -> (usize, usize) {
        let users: Vec<_> = after
            .iter()
            .filter(|(u, _)| only.is_none_or(|v| placed.get(*u).map(String::as_str) == Some(v)))
            .filter(|(u, _)| placed.contains_key(*u))
            .collect();
        let same = users.iter().filter(|(u, v)| placed.get(*u) == Some(*v)).count();
        (same, users.len())
    };
    let (all, seen) = back(None);
    let (canary, canary_seen) = back(Some("canary"));
    println!(
        "after the close ({:.2} s on): {all} of {seen} users ({:.1} %) back where the split put them \
         before the failure; of the canary's users, {canary} of {canary_seen} back on the canary",
        closed.as_secs_f64(),
        100.0 * all as f64 / seen.max(1) as f64
    );
    if all != seen {
        return Err("not every user came back where the split puts them".into());
    }
    Ok(())
}

/// Each user's version in the samples `keep` selects (the last one seen).
fn placements(samples: &[Sample], keep: impl Fn(&Sample) -> bool) -> BTreeMap<usize, String> {
    samples
        .iter()
        .filter(|s| keep(s))
        .map(|s| (s.user, s.version.clone()))
        .collect()
}
