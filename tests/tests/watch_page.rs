//! `rollout-report --serve` (issue 32) in a real browser: headless Chromium loads the page
//! against a real Envoy with traffic. Once the traffic has stopped and the page has the final
//! counts, every figure in the rendered DOM is checked against the admin's counters, and p99 and
//! the verdicts against the table `rollout-report --admin` prints. The screenshot goes to
//! target/watch.png (docs/watch.png is a copy); at phone width the page must fit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rollout_e2e::{get, Envoy, Options, Traffic};

const ROLLOUT: &str = "checkout-2026-11";
/// Both versions fail every 25th request: the same rate, so the guard stays closed, and the
/// canary's 96 % is an abort against `--min-success 99`.
const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 70 }, { "name": "canary", "weight": 30 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "guard": { "holdSeconds": 60 }
}"#;
const THRESHOLDS: [&str; 6] = [
    "--min-success",
    "99",
    "--max-p99-ms",
    "300",
    "--min-requests",
    "50",
];

/// `$CHROMIUM`, else Debian's `chromium`; `None` (the test skips) only outside CI.
fn chromium() -> Option<PathBuf> {
    let bin = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if bin.exists() {
        return Some(bin);
    }
    let ci = std::env::var("CI").unwrap_or_default();
    assert!(
        ci.is_empty() || ci == "false",
        "CI={ci}: no Chromium at {} (apt-get install -y chromium, as .ci/run does)",
        bin.display()
    );
    eprintln!(
        "watch_page skipped: no Chromium at {} (apt-get install -y chromium)",
        bin.display()
    );
    None
}

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`): its stdout.
fn browse(chromium: &Path, url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--virtual-time-budget=5000")
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What the admin counted for one version.
#[derive(Debug, Default, Clone, PartialEq)]
struct Counted {
    requests: f64,
    responses: f64,
    failures: f64,
    sources: BTreeMap<String, f64>,
    guard_tripped: Option<f64>,
    guard_trips: f64,
}

fn admin_counts(envoy: &Envoy) -> BTreeMap<String, Counted> {
    let mut out: BTreeMap<String, Counted> = BTreeMap::new();
    for s in envoy.prometheus() {
        let label = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or("");
        if label("rollout") != ROLLOUT || label("version").is_empty() {
            continue;
        }
        let c = out.entry(label("version").to_string()).or_default();
        match s.name.as_str() {
            "rollout_requests_total" => {
                c.requests += s.value;
                *c.sources.entry(label("source").to_string()).or_default() += s.value;
            }
            "rollout_responses_total" => {
                c.responses += s.value;
                if matches!(label("code_class"), "5xx" | "reset") {
                    c.failures += s.value;
                }
            }
            "rollout_guard_tripped" => c.guard_tripped = Some(s.value),
            "rollout_guard_trips_total" => c.guard_trips += s.value,
            _ => {}
        }
    }
    out
}

/// The table `rollout-report --admin` prints for `envoy` with [`THRESHOLDS`].
fn table(envoy: &Envoy) -> String {
    let argv = ["--admin".to_string(), envoy.admin.to_string()]
        .into_iter()
        .chain(THRESHOLDS.iter().map(|s| s.to_string()));
    let mut out = Vec::new();
    rollout_cli::report::main(argv, &mut out, &mut Vec::new());
    String::from_utf8_lossy(&out).into_owned()
}

fn table_cells(table: &str, version: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(version));
    let line = line.unwrap_or_else(|| panic!("no row {version}:\n{table}"));
    line.split_whitespace().map(str::to_string).collect()
}

fn api(page: &str) -> serde_json::Value {
    let url = format!("{page}/api/rollouts");
    let r = rollout_cli::http::get(&rollout_e2e::agent(), &url, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/api/rollouts: {e}"))
}

/// The JSON's figure `field` of `version`.
fn api_figure(json: &serde_json::Value, version: &str, field: &str) -> serde_json::Value {
    let r = &json["rollouts"].as_array().unwrap()[0];
    let v = r["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version);
    v.map_or(serde_json::Value::Null, |v| v[field].clone())
}

/// Poll until `done` holds (every 200 ms, at most `secs`).
fn wait(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_page_shows_the_admins_figures_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.fail_every = vec![("stable".into(), 25), ("canary".into(), 25)];
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let admin = envoy.admin.to_string();
    let argv = ["--admin", &admin, "--serve", "127.0.0.1:0"]
        .into_iter()
        .chain(THRESHOLDS);
    let argv = argv.map(str::to_string);
    let page = format!("http://{}", rollout_cli::report::serve_background(argv).unwrap());

    let url = envoy.url("/");
    let traffic = Traffic::start(Duration::from_millis(5), move |a, n| {
        get(a, &url, &[("x-user-id", &format!("user-{n}"))]).map(|r| r.status)
    });
    wait("5 intervals of traffic in the page's history", 60, || {
        let h = api(&page)["rollouts"][0]["history"].clone();
        let busy = h.as_array().map_or(0, |a| {
            a.iter().filter(|p| p["share"]["canary"].is_number()).count()
        });
        busy >= 5
    });
    screenshot(&chromium, &page);
    let sent = traffic.finish();
    assert!(sent.iter().all(|s| s.is_ok()), "every request answered");

    let (counts, text) = final_figures(&envoy, &page);
    let dom = browse(&chromium, &page, &["--dump-dom", "--window-size=1000,1400"]);
    check_dom(&dom, &counts, &text);
    let phone = browse(&chromium, &page, &["--dump-dom", "--window-size=390,900"]);
    assert!(
        phone.contains("data-fits=\"true\""),
        "the page is wider than a phone:\n{phone}"
    );
}

/// During traffic: target/watch.png, 1000 px wide.
fn screenshot(chromium: &Path, page: &str) {
    let path = rollout_cli::workspace_root().join("target/watch.png");
    let _ = std::fs::remove_file(&path);
    browse(
        chromium,
        page,
        &[
            &format!("--screenshot={}", path.display()),
            "--window-size=1000,490",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", path.display());
}

/// The admin's counts and table once the page's JSON has the same (twice in a row: the
/// histograms merge a read after the counters).
fn final_figures(envoy: &Envoy, page: &str) -> (BTreeMap<String, Counted>, String) {
    let mut last = None;
    wait("the page has the admin's final figures", 60, || {
        let (counts, text) = (admin_counts(envoy), table(envoy));
        let json = api(page);
        let same = counts.iter().all(|(v, c)| {
            api_figure(&json, v, "requests") == c.requests
                && table_cells(&text, v)[10] == fmt_opt(api_figure(&json, v, "p99").as_f64(), "")
        });
        let stable = last.as_ref() == Some(&(counts.clone(), text.clone()));
        last = Some((counts, text));
        same && stable
    });
    last.unwrap()
}

fn fmt_opt(v: Option<f64>, suffix: &str) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}{suffix}"))
}

/// Every figure of every version in the DOM against the admin's counts and the table.
fn check_dom(dom: &str, counts: &BTreeMap<String, Counted>, table: &str) {
    let total: f64 = counts.values().map(|c| c.requests).sum();
    let weights = BTreeMap::from([("stable", 70.0), ("canary", 30.0)]);
    for (v, c) in counts {
        let id = |f: &str| format!("{ROLLOUT}/{v}/{f}");
        let (raw, text) = cell(dom, &id("requests"));
        assert_eq!(
            (raw.parse::<f64>().unwrap(), text.clone()),
            (c.requests, c.requests.to_string())
        );
        near(dom, &id("share"), c.requests * 100.0 / total);
        near(
            dom,
            &id("success"),
            (c.responses - c.failures) * 100.0 / c.responses,
        );
        near(dom, &id("weight"), weights[v.as_str()]);
        let row = table_cells(table, v);
        assert_eq!(cell(dom, &id("p99")).1, row[10], "p99 of {v}");
        assert_eq!(
            cell(dom, &id("verdict")).1,
            row[11].replace('-', "–"),
            "verdict of {v}"
        );
        assert_eq!(
            cell(dom, &id("sources")).1,
            format!("sticky {}", c.sources["sticky"])
        );
        let guard = c
            .guard_tripped
            .map(|g| if g >= 1.0 { "TRIPPED" } else { "closed" });
        let guard = guard.map_or("–".into(), |g| format!("{g} (trips {})", c.guard_trips));
        assert_eq!(cell(dom, &id("guard")).1, guard, "guard of {v}");
    }
    let verdict = table
        .lines()
        .last()
        .unwrap()
        .trim_start_matches("verdict: ")
        .to_lowercase();
    assert_eq!(cell(dom, &format!("{ROLLOUT}/verdict")).1, verdict, "{table}");
    let reason = table
        .lines()
        .find(|l| l.starts_with("canary: "))
        .expect("a reason");
    assert!(
        cell(dom, &format!("{ROLLOUT}/reasons")).1.contains(reason),
        "{reason}"
    );
    let limits = cell(dom, "thresholds").1;
    assert!(
        limits.starts_with("success ≥ 99%, p99 ≤ 300 ms, at least 50 requests"),
        "{limits}"
    );
    assert!(dom.contains("<polyline"), "the charts have lines");
}

/// A percentage cell: its raw value is `want`, its text that value to 2 decimals.
fn near(dom: &str, id: &str, want: f64) {
    let (raw, text) = cell(dom, id);
    let raw: f64 = raw.parse().unwrap_or_else(|_| panic!("{id}: data-value {raw:?}"));
    assert!((raw - want).abs() < 1e-9, "{id}: {raw} != {want}");
    let shown: f64 = text.trim_end_matches('%').parse().unwrap();
    assert!((shown - want).abs() <= 0.005 + 1e-9, "{id}: {text} for {want}");
}

/// The `data-value` attribute (raw, HTML-unescaped) and the text of the element with `id`.
fn cell(dom: &str, id: &str) -> (String, String) {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let tag_end = at + dom[at..].find('>').unwrap();
    let tag = &dom[at..tag_end];
    let raw = tag
        .split_once("data-value=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(v, _)| v);
    let text_end = tag_end + dom[tag_end..].find("</").unwrap();
    let inner = &dom[tag_end + 1..text_end];
    // The text after any child element (the name cell's swatch); entities as Chromium writes them.
    let text = inner.rsplit('>').next().unwrap_or(inner);
    (unescape(raw), unescape(text))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
