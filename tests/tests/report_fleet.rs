//! `rollout-report --prometheus URL` (issue 30): the table and verdict for the whole fleet. Two
//! real Envoys with the filter, a real Prometheus scraping both admins every second; once it has
//! their final counts, the report's figures are the sums of both admins' counters, and its
//! verdict the one those sums give. The canary fails only behind the first Envoy, so one
//! Envoy's figures alone give other numbers and the opposite verdict. `--serve` on the same
//! Prometheus answers the same sums at `/api/rollouts`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollout_e2e::prom::{Prometheus, Target};
use rollout_e2e::{agent, get, Envoy, Options};

// Only its report-row reader is used here.
#[allow(dead_code)]
mod common;
use common::row;

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
  "stickyKeys": [ { "header": "x-user-id" } ]
}"#;

/// What one Envoy's admin counted for a version.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    requests: f64,
    responses: f64,
    fivexx: f64,
    /// Observations in the duration histogram (its `+Inf` bucket).
    durations: f64,
}

impl Counts {
    fn add(self, o: Counts) -> Counts {
        Counts {
            requests: self.requests + o.requests,
            responses: self.responses + o.responses,
            fivexx: self.fivexx + o.fivexx,
            durations: self.durations + o.durations,
        }
    }

    fn success_pct(&self) -> f64 {
        (self.responses - self.fivexx) * 100.0 / self.responses
    }
}

/// Per version, from `envoy`'s admin `/stats/prometheus`.
fn admin_counts(envoy: &Envoy) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for s in envoy.prometheus() {
        let Some(v) = s.labels.get("version") else {
            continue;
        };
        let c = out.entry(v.clone()).or_default();
        match s.name.as_str() {
            "rollout_requests_total" => c.requests += s.value,
            "rollout_responses_total" => {
                c.responses += s.value;
                if s.labels.get("code_class").map(String::as_str) == Some("5xx") {
                    c.fivexx += s.value;
                }
            }
            "rollout_request_duration_milliseconds_bucket"
                if s.labels.get("le").map(String::as_str) == Some("+Inf") =>
            {
                c.durations += s.value
            }
            _ => {}
        }
    }
    out
}

fn summed(a: &BTreeMap<String, Counts>, b: &BTreeMap<String, Counts>) -> BTreeMap<String, Counts> {
    let mut out = a.clone();
    for (v, c) in b {
        let e = out.entry(v.clone()).or_default();
        *e = e.add(*c);
    }
    out
}

type Setter = fn(&mut Counts, f64);

/// The same figures as Prometheus has them now, summed over every target.
fn prometheus_counts(prom: &Prometheus) -> Result<BTreeMap<String, Counts>, String> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    let queries: [(&str, Setter); 4] = [
        ("sum by (version) (rollout_requests_total)", |c, n| c.requests = n),
        ("sum by (version) (rollout_responses_total)", |c, n| {
            c.responses = n
        }),
        (
            "sum by (version) (rollout_responses_total{code_class=\"5xx\"})",
            |c, n| c.fivexx = n,
        ),
        (
            "sum by (version) (rollout_request_duration_milliseconds_bucket{le=~\"[+]Inf\"})",
            |c, n| c.durations = n,
        ),
    ];
    for (q, set) in queries {
        for s in prom.query(q)?.series {
            set(out.entry(s.label("version").to_string()).or_default(), s.value);
        }
    }
    Ok(out)
}

/// `n` requests with distinct sticky keys through `envoy`.
fn send(envoy: &Envoy, prefix: &str, n: u32) {
    let a = agent();
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        get(&a, &envoy.url("/"), &[("x-user-id", &key)]).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// `rollout-report --prometheus <url> <args>`, in this process.
fn fleet_report(prom: &Prometheus, args: &[&str]) -> (u8, String) {
    let argv = ["--prometheus".to_string(), prom.url()]
        .into_iter()
        .chain(args.iter().map(|s| s.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = rollout_cli::report::main(argv, &mut out, &mut err);
    let text = String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err);
    println!("{text}");
    (code, text)
}

/// Both Envoys, scraped by one Prometheus that has seen the filter's series on both.
fn fleet() -> (Envoy, Envoy, Prometheus) {
    let mut failing = Options::new(CONFIG, &["stable", "canary"]);
    failing.fail_every = vec![("canary".into(), 5)];
    let a = Envoy::start(&failing).unwrap_or_else(|e| panic!("{e}"));
    let b = Envoy::start(&Options::new(CONFIG, &["stable", "canary"])).unwrap_or_else(|e| panic!("{e}"));
    let targets = [
        Target::envoy("gateway-a", a.admin),
        Target::envoy("gateway-b", b.admin),
    ];
    let prom = Prometheus::start(&targets, "1s").unwrap_or_else(|e| panic!("{e}"));
    prom.wait_until("a scrape of both Envoys", Duration::from_secs(30), |p| {
        let r = p.query("count(count by (instance) (rollout_requests_total))")?;
        Ok(r.series.first().is_some_and(|s| s.value == 2.0))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (a, b, prom)
}

/// Both admins' counts, once Prometheus has the same (twice in a row: histograms merge a
/// scrape after the counters).
fn final_counts(a: &Envoy, b: &Envoy, prom: &Prometheus) -> [BTreeMap<String, Counts>; 3] {
    let mut last = None;
    let mut result = None;
    prom.wait_until("the admins' final counts", Duration::from_secs(60), |p| {
        let (ca, cb) = (admin_counts(a), admin_counts(b));
        let sum = summed(&ca, &cb);
        let same = prometheus_counts(p)? == sum && last.as_ref() == Some(&sum);
        last = Some(sum.clone());
        result = Some([ca, cb, sum]);
        Ok(same)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    result.unwrap()
}

/// Requests, share, responses, success and 5xx of every version: the admins' sums.
fn rows_are_the_sums(text: &str, sum: &BTreeMap<String, Counts>) {
    let total: f64 = sum.values().map(|c| c.requests).sum();
    for (version, c) in sum {
        let r = row(text, version);
        assert_eq!(r[2], c.requests.to_string(), "{version} requests\n{text}");
        assert_eq!(r[3], pct(c.requests * 100.0 / total), "{version} share\n{text}");
        assert_eq!(r[4], c.responses.to_string(), "{version} responses\n{text}");
        assert_eq!(r[5], pct(c.success_pct()), "{version} success\n{text}");
        assert_eq!(r[6], c.fivexx.to_string(), "{version} 5xx\n{text}");
    }
    assert!(text.contains(&format!("decisions: sticky {total}\n")), "{text}");
}

fn pct(x: f64) -> String {
    format!("{x:.2}%")
}

#[test]
fn the_fleet_report_is_the_sum_of_every_envoy() {
    let (a, b, prom) = fleet();
    send(&a, "a", 200);
    send(&b, "b", 500);
    let [only_a, only_b, sum] = final_counts(&a, &b, &prom);
    println!("admin a {only_a:?}\nadmin b {only_b:?}");
    let total: f64 = sum.values().map(|c| c.requests).sum();
    assert_eq!(total, 700.0, "every request counted by one of the two admins");
    assert!(only_a["canary"].requests > 0.0 && only_b["canary"].requests > 0.0);

    // A threshold between the fleet's canary success and the failing Envoy's alone.
    let canary = sum["canary"];
    let fleet_success = canary.success_pct();
    let a_success = only_a["canary"].success_pct();
    assert!(a_success < fleet_success, "{a_success} {fleet_success}");
    let lenient = format!("{:.3}", (fleet_success + a_success) / 2.0);
    let args = [
        "--min-success",
        &lenient,
        "--max-p99-ms",
        "300",
        "--min-requests",
        "50",
    ];
    let (code, text) = fleet_report(&prom, &args);
    assert!(
        text.starts_with(&format!("Prometheus {}, every Envoy", prom.url())),
        "{text}"
    );
    rows_are_the_sums(&text, &sum);
    let p99 = shipped_p99(&prom, "canary");
    assert_eq!(row(&text, "canary")[10], format!("{p99:.2}"), "{text}");

    let expected = verdict(canary, lenient.parse().unwrap(), p99);
    assert_eq!(row(&text, "canary")[11], expected, "{text}");
    assert_eq!(code, exit_code(expected), "{text}");

    // A threshold between the fleet's success and the healthy Envoy's alone: the other way.
    let strict = format!("{:.3}", (fleet_success + only_b["canary"].success_pct()) / 2.0);
    let (code, text) = fleet_report(&prom, &["--min-success", &strict, "--min-requests", "50"]);
    let expected = verdict(canary, strict.parse().unwrap(), p99);
    assert_ne!(expected, verdict(canary, lenient.parse().unwrap(), p99));
    assert_eq!(row(&text, "canary")[11], expected, "{text}");
    assert_eq!(code, exit_code(expected), "{text}");

    window_figures_are_increases(&prom, total);
    the_page_has_the_sums(&prom, &sum);
}

/// `--serve` on `--prometheus`: `/api/rollouts` has the same sums.
fn the_page_has_the_sums(prom: &Prometheus, sum: &BTreeMap<String, Counts>) {
    let argv = ["--prometheus", &prom.url(), "--serve", "127.0.0.1:0"].map(str::to_string);
    let page = rollout_cli::report::serve_background(argv).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{page}/api/rollouts");
    let r = rollout_cli::http::get(&agent(), &url, &[]).unwrap_or_else(|e| panic!("{e}"));
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        json["source"].as_str().unwrap().starts_with("Prometheus"),
        "{json}"
    );
    let versions = json["rollouts"][0]["versions"].as_array().unwrap();
    for (version, c) in sum {
        let v = versions
            .iter()
            .find(|v| v["name"] == version.as_str())
            .expect(version);
        assert_eq!(v["requests"], c.requests, "{version}: {v}");
        assert_eq!(v["responses"], c.responses, "{version}: {v}");
        assert_eq!(v["fivexx"], c.fivexx, "{version}: {v}");
        assert_eq!(v["weight"], serde_json::Value::Null, "no weights from Prometheus");
    }
}

/// The verdict the report's rule gives for `c` (p99 limit 300 ms, at least 50 requests).
fn verdict(c: Counts, min_success: f64, p99: f64) -> &'static str {
    if c.requests < 50.0 {
        "hold"
    } else if c.success_pct() < min_success || p99 > 300.0 {
        "abort"
    } else {
        "promote"
    }
}

fn exit_code(verdict: &str) -> u8 {
    match verdict {
        "promote" => 0,
        "hold" => 1,
        _ => 2,
    }
}

/// The dashboard's p99 query over every Envoy's buckets (counters since start).
fn shipped_p99(prom: &Prometheus, version: &str) -> f64 {
    let q = format!(
        "histogram_quantile(0.99, sum by (le) (rollout_request_duration_milliseconds_bucket{{version=\"{version}\"}}))"
    );
    let r = prom.query(&q).unwrap_or_else(|e| panic!("{e}"));
    r.series.first().map(|s| s.value).expect("a p99")
}

/// `--window` at a given `--at`: the increase() over that range, summed over both Envoys, as
/// Prometheus computes it for the same range and time (it extrapolates, so not the admins' sums).
fn window_figures_are_increases(prom: &Prometheus, total: f64) {
    let q = "sum by (version) (increase(rollout_requests_total[10m]))";
    // Three seconds ago (every scrape up to then is stored: a scrape's samples are appended
    // when it completes, after the time they carry), once every request and duration is in the
    // range up to that instant: the report and Prometheus then read the same complete samples.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let at = loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let at = format!("{:.3}", now - 3.0);
        let t: f64 = at.parse().unwrap();
        let seen = |m: &str| {
            let q = format!("sum(max_over_time({m}[10m]))");
            prom.query_at_time(&q, t)
                .ok()
                .and_then(|r| r.series.first().map(|s| s.value))
        };
        if seen("rollout_requests_total") == Some(total)
            && seen("rollout_request_duration_milliseconds_count") == Some(total)
        {
            break at;
        }
        assert!(std::time::Instant::now() < deadline, "no increase() at {at}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (_, text) = fleet_report(prom, &["--window", "10m", "--at", &at, "--min-requests", "50"]);
    assert!(
        text.contains(&format!("increase() over the 600.0 s up to {at}")),
        "{text}"
    );
    let t: f64 = at.parse().unwrap();
    let inc: BTreeMap<String, f64> = (prom.query_at_time(q, t).unwrap_or_else(|e| panic!("{e}")).series)
        .iter()
        .map(|s| (s.label("version").to_string(), s.value))
        .collect();
    let total: f64 = inc.values().sum();
    for (version, n) in &inc {
        let r = row(&text, version);
        assert_eq!(r[2], count(*n), "{version} requests, Prometheus {inc:?}\n{text}");
        assert_eq!(r[3], pct(n * 100.0 / total), "{version} share\n{text}");
    }
    let q = "histogram_quantile(0.99, sum by (le) (rate(rollout_request_duration_milliseconds_bucket{version=\"canary\"}[10m])))";
    let p99 = prom.query_at_time(q, t).unwrap_or_else(|e| panic!("{e}")).series[0].value;
    assert_eq!(row(&text, "canary")[10], format!("{p99:.2}"), "{text}");
}

/// As the report prints a count: whole, else one decimal.
fn count(n: f64) -> String {
    if (n - n.round()).abs() < 1e-6 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}
