//! Issue 5: no query ships unproven. A real Prometheus (Debian's `prometheus`)
//! scrapes a real Envoy running the filter while traffic flows to a healthy
//! stable and a canary that fails every 5th request — HTTP requests with 503, gRPC calls
//! (a real gRPC client and server over HTTP/2) with UNAVAILABLE or a reset while the
//! HTTP status stays 200; then EVERY PromQL query in
//! the shipped files under `istio/` (Argo Rollouts AnalysisTemplates, Flagger
//! MetricTemplates, Grafana dashboard targets and variables) is filled in and run
//! through Prometheus's HTTP API, and must return what it is for: canary success
//! ~0.8, stable 1.0, per version the p50/p99 this test computes itself from Envoy's raw
//! histogram buckets (to 1e-6; the canary's p99 made over twice stable's), requests/s,
//! decision sources,
//! rejected inputs, requests no rollout matched. A shipped query without an expectation here
//! fails the test.
//!
//! The filter runs the multi-rollout form (one `rollouts[]` entry for host 127.0.0.1), so
//! requests to another host are unmatched and `rollout_unmatched_requests_total` has data.
//!
//! `rollout-report` is run against the same Envoy and must agree with Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rollout_e2e::grpc::GrpcClient;
use rollout_e2e::prom::{Prometheus, QueryResult, Target};
use rollout_e2e::{agent, get, workspace_root, Envoy, Options, Traffic};
use serde::Deserialize;

mod common;

const ROLLOUT: &str = "checkout-2026-11";
const CONFIG: &str = r#"{
  "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version", "trustedPeers": ["*"] },
  "responseHeaders": { "version": "x-rollout-served" },
  "rollouts": [ { "match": { "hosts": ["127.0.0.1"] }, "rolloutId": "checkout-2026-11" } ]
}"#;
/// The Host of the requests no rollout matches.
const UNMATCHED_HOST: &str = "no-rollout.example.com";
/// The canary upstream answers every 5th request 503: 80 % success.
const CANARY_FAIL_EVERY: u64 = 5;
/// The requests pinned to the canary (1 in 20 of the HTTP ones, ~5 % of the canary's) ask its
/// echo to wait this long, so the canary's p99 falls in the 10-25 ms bucket while its p50 and
/// stable's p99 stay at a few ms: a latency query that mixes the versions or takes the wrong
/// quantile is off by far more than the tolerance.
const CANARY_DELAY_MS: &str = "12";
/// How far a shipped quantile may be from the one computed here from the same buckets
/// (relative): only float rounding separates them.
const QUANTILE_TOLERANCE: f64 = 1e-6;
const VERSIONS: [&str; 2] = ["stable", "canary"];
/// Both response counters: HTTP requests by class, gRPC calls by code.
const RESPONSES: &str = "__name__=~\"rollout_responses_total|rollout_grpc_responses_total\"";
/// How the shipped templates' variables are filled in.
const WINDOW: &str = "1m";

// ---------------------------------------------------------------------------------------------
// The shipped queries

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// An AnalysisTemplate metric with the prometheus provider.
    Argo {
        args: Vec<(String, Option<String>)>,
        address: String,
        success: Option<String>,
        failure: Option<String>,
    },
    /// A Flagger MetricTemplate with the prometheus provider.
    Flagger,
    /// A Grafana panel target.
    Grafana,
    /// A Grafana query variable (`label_values(metric, label)`).
    GrafanaVariable,
}

#[derive(Debug, Clone)]
struct Shipped {
    file: String,
    /// The expectation's key: `argo:<metric>`, `flagger:<template>`, `grafana:<panel>:<refId>`,
    /// `grafana-var:<name>`.
    key: String,
    query: String,
    kind: Kind,
}

/// An Argo Rollout's reference to an AnalysisTemplate, with the arg names it passes.
#[derive(Debug)]
struct TemplateUse {
    file: String,
    template: String,
    args: Vec<String>,
}

/// A Flagger Canary's metric on a MetricTemplate: the `thresholdRange` it judges it by.
#[derive(Debug, Clone, Copy, Default)]
struct Range {
    min: Option<f64>,
    max: Option<f64>,
}

/// What `istio/` ships: the queries, the Rollouts' template uses, the Canaries' ranges by
/// MetricTemplate name.
#[derive(Debug, Default)]
struct Found {
    queries: Vec<Shipped>,
    uses: Vec<TemplateUse>,
    ranges: BTreeMap<String, Range>,
}

fn istio_dir() -> PathBuf {
    workspace_root().join("istio")
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Every query in every YAML and JSON file under `istio/` (recursively), every Rollout's
/// use of an AnalysisTemplate and every Canary's threshold range.
fn shipped_queries() -> Result<Found, String> {
    let root = istio_dir();
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut found = Found::default();
    for path in files {
        // Relative to istio/, e.g. `analysis.yaml`, `file/wasmplugin.yaml`.
        let name = path
            .strip_prefix(&root)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let v =
                        serde_json::Value::deserialize(doc).map_err(|e| format!("{name}: not YAML: {e}"))?;
                    yaml_queries(&name, &v, &mut found)?;
                }
            }
            Some("json") => {
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
                if v.get("panels").is_some() {
                    dashboard_queries(&name, &v, &mut found.queries)?;
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

fn yaml_queries(file: &str, v: &serde_json::Value, found: &mut Found) -> Result<(), String> {
    let (out, uses) = (&mut found.queries, &mut found.uses);
    let kind = v["kind"].as_str().unwrap_or("");
    let name = str_at(v, &["metadata", "name"]).unwrap_or("?");
    match kind {
        "AnalysisTemplate" | "ClusterAnalysisTemplate" => {
            let args: Vec<(String, Option<String>)> = v["spec"]["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|a| {
                            (
                                a["name"].as_str().unwrap_or("").to_string(),
                                a["value"].as_str().map(str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            for m in v["spec"]["metrics"].as_array().into_iter().flatten() {
                let metric = m["name"].as_str().unwrap_or("?");
                let Some(prom) = m["provider"].get("prometheus") else {
                    return Err(format!(
                        "{file}: {kind} {name} metric {metric}: provider {} is not prometheus; \
                         this test only proves PromQL",
                        m["provider"]
                    ));
                };
                out.push(Shipped {
                    file: file.into(),
                    key: format!("argo:{metric}"),
                    query: prom["query"].as_str().unwrap_or("").to_string(),
                    kind: Kind::Argo {
                        args: args.clone(),
                        address: prom["address"].as_str().unwrap_or("").to_string(),
                        success: m["successCondition"].as_str().map(str::to_string),
                        failure: m["failureCondition"].as_str().map(str::to_string),
                    },
                });
            }
        }
        "MetricTemplate" => {
            let provider = str_at(v, &["spec", "provider", "type"]).unwrap_or("");
            if provider != "prometheus" {
                return Err(format!(
                    "{file}: MetricTemplate {name}: provider {provider:?} is not prometheus"
                ));
            }
            out.push(Shipped {
                file: file.into(),
                key: format!("flagger:{name}"),
                query: str_at(v, &["spec", "query"]).unwrap_or("").to_string(),
                kind: Kind::Flagger,
            });
        }
        "Rollout" => {
            let canary = &v["spec"]["strategy"]["canary"];
            let mut analyses = vec![&canary["analysis"]];
            for step in canary["steps"].as_array().into_iter().flatten() {
                analyses.push(&step["analysis"]);
            }
            for a in analyses {
                let args: Vec<String> = a["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["name"].as_str().map(str::to_string))
                    .collect();
                for t in a["templates"].as_array().into_iter().flatten() {
                    if let Some(template) = t["templateName"].as_str() {
                        uses.push(TemplateUse {
                            file: file.into(),
                            template: template.into(),
                            args: args.clone(),
                        });
                    }
                }
            }
        }
        "Canary" => {
            for m in v["spec"]["analysis"]["metrics"].as_array().into_iter().flatten() {
                if let Some(template) = str_at(m, &["templateRef", "name"]) {
                    let r = &m["thresholdRange"];
                    let range = Range {
                        min: r["min"].as_f64(),
                        max: r["max"].as_f64(),
                    };
                    found.ranges.insert(template.into(), range);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn dashboard_queries(file: &str, d: &serde_json::Value, out: &mut Vec<Shipped>) -> Result<(), String> {
    // Rows may nest their panels.
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .ok_or_else(|| format!("{file}: panel {title:?}: a target without expr: {t}"))?;
            out.push(Shipped {
                file: file.into(),
                key: format!("grafana:{title}:{}", t["refId"].as_str().unwrap_or("?")),
                query: expr.into(),
                kind: Kind::Grafana,
            });
        }
    }
    // Annotations with a PromQL `expr` (Grafana's Prometheus annotation query).
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Shipped {
                file: file.into(),
                key: format!("grafana-annotation:{}", a["name"].as_str().unwrap_or("?")),
                query: expr.into(),
                kind: Kind::Grafana,
            });
        }
    }
    for var in d["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]
            .as_str()
            .or_else(|| var["query"]["query"].as_str())
            .unwrap_or("");
        out.push(Shipped {
            file: file.into(),
            key: format!("grafana-var:{}", var["name"].as_str().unwrap_or("?")),
            query: q.into(),
            kind: Kind::GrafanaVariable,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Filling in the templates the way each tool does

/// Argo Rollouts: `{{args.NAME}}` anywhere in the metric (it templates the whole metric JSON).
fn argo_render(s: &str, args: &BTreeMap<String, String>) -> Result<String, String> {
    render_braces(s, |token| {
        let name = token
            .strip_prefix("args.")
            .ok_or_else(|| format!("Argo only knows {{{{args.NAME}}}}, not {{{{{token}}}}}"))?;
        args.get(name).cloned().ok_or_else(|| format!("no arg {name:?}"))
    })
}

/// Flagger (Go text/template): `{{ name }}`, `{{ namespace }}`, `{{ interval }}`, ...,
/// `{{ variables.KEY }}` from the Canary's templateVariables.
fn flagger_render(
    s: &str,
    model: &BTreeMap<&str, &str>,
    variables: &BTreeMap<&str, &str>,
) -> Result<String, String> {
    render_braces(s, |token| {
        let token = token.trim();
        let value = match token.strip_prefix("variables.") {
            Some(k) => variables.get(k),
            None => model.get(token),
        };
        value
            .map(|v| v.to_string())
            .ok_or_else(|| format!("Flagger has no {{{{ {token} }}}} here"))
    })
}

fn render_braces(s: &str, mut lookup: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or_else(|| format!("unclosed {{{{ in {s}"))?;
        out.push_str(&lookup(&after[..j])?);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Grafana: `$name`, `${name}`, `[[name]]`.
fn grafana_render(s: &str, vars: &BTreeMap<&str, &str>) -> Result<String, String> {
    let mut out = s.to_string();
    // Longest names first, so `$__rate_interval` is not taken for `$__rate` + `_interval`.
    let mut names: Vec<&&str> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        let v = vars[*n];
        out = out
            .replace(&format!("${{{n}}}"), v)
            .replace(&format!("[[{n}]]"), v)
            .replace(&format!("${n}"), v);
    }
    if out.contains('$') || out.contains("[[") {
        return Err(format!("unknown Grafana variable left in {out}"));
    }
    Ok(out)
}

/// The Argo condition forms shipped here: `result[0] OP NUMBER`.
fn argo_condition(cond: &str, result: &[f64]) -> Result<bool, String> {
    let c = cond.trim();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some((lhs, rhs)) = c.split_once(op) {
            if lhs.trim() != "result[0]" {
                break;
            }
            let want: f64 = rhs
                .trim()
                .parse()
                .map_err(|_| format!("condition {cond:?}: right side is not a number"))?;
            let got = *result
                .first()
                .ok_or_else(|| format!("condition {cond:?}: empty result"))?;
            return Ok(match op {
                ">=" => got >= want,
                "<=" => got <= want,
                "==" => got == want,
                "!=" => got != want,
                ">" => got > want,
                _ => got < want,
            });
        }
    }
    Err(format!(
        "condition {cond:?}: this test evaluates `result[0] OP NUMBER` only; extend it"
    ))
}

// ---------------------------------------------------------------------------------------------
// Traffic

/// What the client saw.
#[derive(Debug, Default)]
struct Observed {
    /// (version that answered, status) -> count.
    replies: BTreeMap<(String, u16), u64>,
    /// gRPC calls: (version, code the client saw) -> count.
    grpc: BTreeMap<(String, String), u64>,
    sent_bad_header: u64,
    sent_bad_query: u64,
    /// HTTP requests to `UNMATCHED_HOST` (not in `replies`: the filter counts them apart).
    unmatched: u64,
    /// Of those, answered by another version than the default route's stable: the client's
    /// own route header was not removed.
    unmatched_not_stable: u64,
    /// Not what the client saw but Envoy's own `/stats/prometheus` once traffic has ended, read
    /// without Prometheus: per version, the duration histogram's (le, cumulative count).
    buckets: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Observed {
    fn http_requests(&self, version: &str) -> u64 {
        self.replies
            .iter()
            .filter(|((v, _), _)| v == version)
            .map(|(_, n)| n)
            .sum()
    }

    fn grpc_calls(&self, version: &str, ok: Option<bool>) -> u64 {
        self.grpc
            .iter()
            .filter(|((v, c), _)| v == version && ok.is_none_or(|ok| ok != grpc_failure(c)))
            .map(|(_, n)| n)
            .sum()
    }

    /// HTTP requests and gRPC calls.
    fn requests(&self, version: &str) -> u64 {
        self.http_requests(version) + self.grpc_calls(version, None)
    }

    fn total(&self) -> u64 {
        self.replies.values().sum::<u64>() + self.grpc.values().sum::<u64>()
    }

    fn http_ok(&self, version: &str) -> u64 {
        self.replies
            .iter()
            .filter(|((v, s), _)| v == version && *s < 500)
            .map(|(_, n)| n)
            .sum()
    }

    /// The one success rule: HTTP neither 5xx nor reset, gRPC not a failing code.
    fn success(&self, version: &str) -> f64 {
        (self.http_ok(version) + self.grpc_calls(version, Some(true))) as f64 / self.requests(version) as f64
    }

    fn http_success(&self, version: &str) -> f64 {
        self.http_ok(version) as f64 / self.http_requests(version) as f64
    }

    fn share(&self, version: &str) -> f64 {
        self.requests(version) as f64 / self.total() as f64
    }

    /// The `q` quantile of `version`'s requests, computed here from Envoy's raw buckets.
    fn quantile(&self, q: f64, version: &str) -> Result<f64, String> {
        let b = self
            .buckets
            .get(version)
            .ok_or_else(|| format!("no raw buckets for {version}"))?;
        histogram_quantile(q, b).ok_or_else(|| format!("no {q} quantile in {b:?}"))
    }
}

/// Per version, (le, cumulative count) of `rollout_request_duration_milliseconds` in Envoy's
/// admin export, summed over series of the same `le` (what `sum by (version, le)` does).
fn raw_buckets(envoy: &Envoy) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut m: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in envoy.prometheus() {
        if s.name != "rollout_request_duration_milliseconds_bucket"
            || s.labels.get("rollout").map(String::as_str) != Some(ROLLOUT)
        {
            continue;
        }
        let le: f64 = match s.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(x) => x.parse().unwrap_or(f64::NAN),
            None => continue,
        };
        let b = m
            .entry(s.labels.get("version").cloned().unwrap_or_default())
            .or_default();
        match b.iter_mut().find(|(l, _)| *l == le) {
            Some((_, n)) => *n += s.value,
            None => b.push((le, s.value)),
        }
    }
    for b in m.values_mut() {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
    }
    m
}

/// The latency queries are checked tightly enough to catch a wrong query only if the right
/// answers are far apart: the canary's p99 well above stable's (so one value, such as a median
/// over all versions, cannot pass for both), and a version's p50 below its p99.
fn assert_latencies_apart(o: &Observed) {
    let q = |q: f64, v: &str| o.quantile(q, v).unwrap_or_else(|e| panic!("{e}"));
    let (stable, canary) = (q(0.99, "stable"), q(0.99, "canary"));
    println!(
        "p99 from Envoy's raw buckets: stable {stable:.4} ms, canary {canary:.4} ms; p50: \
         stable {:.4} ms, canary {:.4} ms",
        q(0.5, "stable"),
        q(0.5, "canary")
    );
    assert!(
        canary > 2.0 * stable,
        "canary p99 {canary} ms vs stable {stable} ms: {:?}",
        o.buckets
    );
    for v in VERSIONS {
        assert!(
            q(0.5, v) < q(0.99, v),
            "{v}: p50 not below p99: {:?}",
            o.buckets[v]
        );
    }
}

/// Prometheus's `histogram_quantile` over classic buckets (promql/quantile.go), written out
/// here so the shipped queries are checked against arithmetic of our own: linear
/// interpolation inside the bucket where rank `q * total` falls; the highest finite bound
/// if it falls in `+Inf`.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let (last_le, total) = *buckets.last()?;
    if buckets.len() < 2 || last_le != f64::INFINITY || total == 0.0 {
        return None;
    }
    let rank = q * total;
    let b = buckets.iter().position(|(_, n)| *n >= rank)?;
    if b == buckets.len() - 1 {
        return Some(buckets[b - 1].0);
    }
    let (end, n) = buckets[b];
    if b == 0 && end <= 0.0 {
        return Some(end);
    }
    let (start, below) = if b == 0 { (0.0, 0.0) } else { buckets[b - 1] };
    Some(start + (end - start) * (rank - below) / (n - below))
}

fn grpc_failure(code: &str) -> bool {
    rollout_filter::grpc::GrpcCode::ALL
        .iter()
        .any(|c| c.as_str() == code && c.is_failure())
}

/// gRPC calls with sticky keys in their metadata for `duration`, on one HTTP/2 connection.
fn drive_grpc(envoy: &Envoy, duration: Duration) -> Observed {
    let mut client = GrpcClient::connect(envoy.listener).unwrap_or_else(|e| panic!("{e}"));
    let mut o = Observed::default();
    let end = Instant::now() + duration;
    let mut i = 0u64;
    while Instant::now() < end && i < 5_000 {
        let key = format!("g-{i}");
        let r = client
            .call(&[("x-user-id", &key)])
            .unwrap_or_else(|e| panic!("gRPC call {i}: {e}"));
        let v = r.header("x-rollout-served").unwrap_or("none").to_string();
        *o.grpc.entry((v, r.code)).or_default() += 1;
        std::thread::sleep(Duration::from_millis(2));
        i += 1;
    }
    o
}

/// Mixed traffic from 2 HTTP client threads and a gRPC one for `duration`: sticky keys,
/// header and query overrides, overrides naming no version (rejected), and keyless
/// requests (random).
fn drive(envoy: &Envoy, duration: Duration) -> Observed {
    let results: Vec<Observed> = std::thread::scope(|s| {
        let grpc = s.spawn(move || drive_grpc(envoy, duration));
        let handles: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || {
                    let a = agent();
                    let mut o = Observed::default();
                    let end = Instant::now() + duration;
                    let mut i = 0u64;
                    while Instant::now() < end && i < 5_000 {
                        let key = format!("u-{t}-{i}");
                        let mut path = "/".to_string();
                        let mut headers = vec![("x-user-id", key.as_str())];
                        match i % 20 {
                            0 => {
                                headers.push(("x-rollout-pin", "canary"));
                                headers.push(("x-echo-delay-ms", CANARY_DELAY_MS));
                            }
                            1 => path = "/?rollout-version=stable".into(),
                            2 => {
                                headers.push(("x-rollout-pin", "no-such-version"));
                                o.sent_bad_header += 1;
                            }
                            3 => {
                                path = "/?rollout-version=no-such-version".into();
                                o.sent_bad_query += 1;
                            }
                            4 => headers.clear(),
                            5 => {
                                // No rollout for this host: the client's route header is removed,
                                // so the default route (stable) answers.
                                headers.push(("host", UNMATCHED_HOST));
                                headers.push(("x-rollout-version", "canary"));
                                let r = get(&a, &envoy.url(&path), &headers)
                                    .unwrap_or_else(|e| panic!("request {i}: {e}"));
                                o.unmatched += 1;
                                if r.header("x-served-by") != Some("stable") || r.status != 200 {
                                    o.unmatched_not_stable += 1;
                                }
                                std::thread::sleep(Duration::from_millis(2));
                                i += 1;
                                continue;
                            }
                            _ => {}
                        }
                        let r = get(&a, &envoy.url(&path), &headers)
                            .unwrap_or_else(|e| panic!("request {i}: {e}"));
                        let v = r.header("x-served-by").unwrap_or("none").to_string();
                        *o.replies.entry((v, r.status)).or_default() += 1;
                        // ~400 requests/s per thread: spread over several scrapes, light on CPU.
                        std::thread::sleep(Duration::from_millis(2));
                        i += 1;
                    }
                    o
                })
            })
            .collect();
        handles
            .into_iter()
            .chain([grpc])
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut all = Observed::default();
    for o in results {
        for (k, n) in o.replies {
            *all.replies.entry(k).or_default() += n;
        }
        for (k, n) in o.grpc {
            *all.grpc.entry(k).or_default() += n;
        }
        all.sent_bad_header += o.sent_bad_header;
        all.sent_bad_query += o.sent_bad_query;
        all.unmatched += o.unmatched;
        all.unmatched_not_stable += o.unmatched_not_stable;
    }
    all
}

// ---------------------------------------------------------------------------------------------
// Expectations

fn by_label(r: &QueryResult, label: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut m = BTreeMap::new();
    for s in &r.series {
        let k = s.label(label).to_string();
        if m.insert(k.clone(), s.value).is_some() {
            return Err(format!("two series with {label}={k:?}"));
        }
    }
    Ok(m)
}

fn per_version(r: &QueryResult) -> Result<BTreeMap<String, f64>, String> {
    let m = by_label(r, "version")?;
    for v in VERSIONS {
        if !m.contains_key(v) {
            return Err(format!("no series for version {v}"));
        }
    }
    Ok(m)
}

fn single(r: &QueryResult) -> Result<f64, String> {
    if r.result_type != "vector" || r.series.len() != 1 {
        return Err(format!(
            "Argo/Flagger read one value: want a 1-element vector, got {} with {} series",
            r.result_type,
            r.series.len()
        ));
    }
    Ok(r.series[0].value)
}

fn near(what: &str, got: f64, want: f64, tol: f64) -> Result<(), String> {
    if (got - want).abs() <= tol {
        Ok(())
    } else {
        Err(format!("{what}: {got} is not {want} ± {tol}"))
    }
}

/// `got` within [`QUANTILE_TOLERANCE`] (relative) of `want`.
fn near_quantile(what: &str, got: f64, want: f64) -> Result<(), String> {
    near(what, got, want, QUANTILE_TOLERANCE * want.abs())
}

fn positive_finite(what: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{what}: {v} is not a finite number > 0"))
    }
}

fn fmt_map(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a shipped query must return. `version`: the version filled into Argo/Flagger templates.
fn expect(key: &str, version: Option<&str>, r: &QueryResult, o: &Observed) -> Result<String, String> {
    if r.series.is_empty() {
        return Err("empty result".into());
    }
    let v = version.unwrap_or("");
    match key {
        "argo:success-rate" => {
            let x = single(r)?;
            near("success rate", x, o.success(v), 0.01)?;
            if v == "stable" {
                near("stable success rate", x, 1.0, 1e-9)?;
            }
            Ok(format!("{x:.4}"))
        }
        "flagger:rollout-filter-success-rate" => {
            let x = single(r)?;
            near("success percent", x, 100.0 * o.success(v), 1.0)?;
            Ok(format!("{x:.2}"))
        }
        "argo:latency-p99" | "flagger:rollout-filter-latency-p99" => {
            let x = single(r)?;
            near_quantile(&format!("{v} p99 ms"), x, o.quantile(0.99, v)?)?;
            Ok(format!("{x:.3}"))
        }
        "grafana:Requests/s by version:A" => {
            let m = per_version(r)?;
            let sum: f64 = m.values().sum();
            for (ver, x) in &m {
                positive_finite(&format!("{ver} requests/s"), *x)?;
                near(&format!("{ver} part of requests/s"), x / sum, o.share(ver), 0.01)?;
            }
            Ok(fmt_map(&m))
        }
        "grafana:Share of requests by version:A" => {
            let m = per_version(r)?;
            for (ver, x) in &m {
                near(&format!("{ver} share"), *x, o.share(ver), 0.01)?;
            }
            near("sum of shares", m.values().sum(), 1.0, 1e-9)?;
            Ok(fmt_map(&m))
        }
        "grafana:Success rate by version:A" => {
            let m = per_version(r)?;
            for (ver, x) in &m {
                near(&format!("{ver} success rate"), *x, o.success(ver), 0.01)?;
            }
            near("stable success rate", m["stable"], 1.0, 1e-9)?;
            Ok(fmt_map(&m))
        }
        "grafana:Latency p50 / p99 by version:A" | "grafana:Latency p50 / p99 by version:B" => {
            let q = if key.ends_with(":A") { 0.5 } else { 0.99 };
            let m = per_version(r)?;
            for (ver, x) in &m {
                near_quantile(&format!("{ver} {q} quantile ms"), *x, o.quantile(q, ver)?)?;
            }
            Ok(fmt_map(&m))
        }
        "grafana:Responses/s by version and class:A" => {
            let mut m = BTreeMap::new();
            for s in &r.series {
                m.insert(
                    format!("{}/{}", s.label("version"), s.label("code_class")),
                    s.value,
                );
            }
            let at = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
            positive_finite("stable 2xx/s", at("stable/2xx"))?;
            positive_finite("canary 2xx/s", at("canary/2xx"))?;
            positive_finite("canary 5xx/s", at("canary/5xx"))?;
            near("stable 5xx/s", at("stable/5xx"), 0.0, 0.0)?;
            near(
                "canary 5xx part",
                at("canary/5xx") / (at("canary/2xx") + at("canary/5xx")),
                1.0 - o.http_success("canary"),
                0.01,
            )?;
            Ok(fmt_map(&m.into_iter().filter(|(_, x)| *x > 0.0).collect()))
        }
        "grafana:Envoy local replies/s by version:A" => {
            // The canary's 503s come from the upstream: none of them is a local reply. Its gRPC
            // calls reset before any response are answered UNAVAILABLE by Envoy itself.
            let m = per_version(r)?;
            near("stable local replies/s", m["stable"], 0.0, 0.0)?;
            positive_finite("canary local replies/s", m["canary"])?;
            Ok(fmt_map(&m))
        }
        "grafana:gRPC responses/s by version and code:A" => {
            let mut m = BTreeMap::new();
            for s in &r.series {
                m.insert(
                    format!("{}/{}", s.label("version"), s.label("grpc_code")),
                    s.value,
                );
            }
            let at = |k: &str| m.get(k).copied().unwrap_or(0.0);
            for k in ["stable/OK", "canary/OK", "canary/UNAVAILABLE", "canary/reset"] {
                positive_finite(&format!("{k}/s"), at(k))?;
            }
            let sum = |v: &str, fail: bool| -> f64 {
                m.iter()
                    .filter(|(k, _)| {
                        k.split_once('/')
                            .is_some_and(|(kv, c)| kv == v && grpc_failure(c) == fail)
                    })
                    .map(|(_, x)| x)
                    .sum()
            };
            near("stable failing gRPC/s", sum("stable", true), 0.0, 0.0)?;
            let (ok, bad) = (sum("canary", false), sum("canary", true));
            let seen = o.grpc_calls("canary", Some(true)) as f64 / o.grpc_calls("canary", None) as f64;
            near("canary gRPC success", ok / (ok + bad), seen, 0.01)?;
            Ok(fmt_map(&m.into_iter().filter(|(_, x)| *x > 0.0).collect()))
        }
        "grafana:Decision sources:A" => {
            let m = by_label(r, "source")?;
            for s in ["override_header", "override_query", "sticky", "random"] {
                positive_finite(&format!("{s}/s"), m.get(s).copied().unwrap_or(0.0))?;
            }
            near(
                "certificate/s (no TLS here)",
                m.get("certificate").copied().unwrap_or(0.0),
                0.0,
                0.0,
            )?;
            Ok(fmt_map(&m))
        }
        "grafana:Requests no rollout matched:A" => {
            let x = single(r)?;
            positive_finite("unmatched requests/s", x)?;
            Ok(format!("{x:.3}"))
        }
        "grafana:Requests no rollout matched:B" => {
            let x = single(r)?;
            let sent = o.unmatched as f64 / (o.unmatched + o.total()) as f64;
            near("unmatched share of requests", x, sent, 0.01)?;
            Ok(format!("{x:.4}"))
        }
        "grafana:Rejected inputs/s by reason:A" => {
            let m = by_label(r, "reason")?;
            for s in ["unknown_override_header", "unknown_override_query"] {
                positive_finite(&format!("{s}/s"), m.get(s).copied().unwrap_or(0.0))?;
            }
            Ok(fmt_map(&m.into_iter().filter(|(_, x)| *x > 0.0).collect()))
        }
        _ => Err(format!(
            "no expectation for shipped query {key:?}: add one to tests/tests/prometheus.rs"
        )),
    }
}

/// The canary guard in a test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardState {
    /// No guard in the filter's configuration: no `rollout_guard_*` series.
    Unconfigured,
    /// Configured and closed: every version's `rollout_guard_tripped` is 0.
    Closed,
    /// The canary's guard tripped: its `rollout_guard_tripped` is 1.
    CanaryTripped,
}

fn is_guard_query(q: &str) -> bool {
    q.contains("rollout_guard_")
}

/// Whether the Argo / Flagger check of `s` for `version` must fail: the canary failing every
/// 5th request fails the success rate; a tripped canary guard fails the guard checks.
fn should_fail(s: &Shipped, version: Option<&str>, guard: GuardState) -> bool {
    let canary = version == Some("canary");
    if is_guard_query(&s.query) {
        return canary && guard == GuardState::CanaryTripped;
    }
    canary && s.key.ends_with("success-rate")
}

/// What a query on the guard's metrics must return.
fn expect_guard(
    key: &str,
    version: Option<&str>,
    r: &QueryResult,
    guard: GuardState,
) -> Result<String, String> {
    let tripped = guard == GuardState::CanaryTripped;
    match key {
        "argo:guard" | "flagger:rollout-filter-guard" => {
            // `or vector(0)`: one value whether or not a guard is configured.
            let x = single(r)?;
            let want = if tripped && version == Some("canary") {
                1.0
            } else {
                0.0
            };
            near("guard tripped", x, want, 0.0)?;
            Ok(format!("{x}"))
        }
        "grafana:Guard tripped:A" => {
            if guard == GuardState::Unconfigured {
                return match r.series.len() {
                    0 => Ok("no data (no guard configured)".into()),
                    n => Err(format!("{n} series without a guard configured")),
                };
            }
            let m = per_version(r)?;
            near("stable guard", m["stable"], 0.0, 0.0)?;
            near("canary guard", m["canary"], if tripped { 1.0 } else { 0.0 }, 0.0)?;
            Ok(fmt_map(&m))
        }
        "grafana-annotation:Guard tripped" => {
            let m = by_label(r, "version")?;
            let want: BTreeMap<String, f64> = if tripped {
                [("canary".to_string(), 1.0)].into_iter().collect()
            } else {
                BTreeMap::new()
            };
            if m != want {
                return Err(format!("annotated {}, want {}", fmt_map(&m), fmt_map(&want)));
            }
            Ok(if m.is_empty() {
                "no annotation".into()
            } else {
                fmt_map(&m)
            })
        }
        _ => Err(format!(
            "no expectation for shipped guard query {key:?}: add one to tests/tests/prometheus.rs"
        )),
    }
}

/// Flagger's check of a MetricTemplate's value against the Canary's `thresholdRange`
/// (fluxcd/flagger pkg/controller/scheduler_metrics.go, runMetricChecks): below `min` or above
/// `max` fails. No value (an empty result, or NaN: ErrNoValuesFound in
/// pkg/metrics/providers/prometheus.go RunQuery, which keeps the last series' value) halts the
/// analysis, a failed check too (pkg/controller/scheduler.go).
fn flagger_passes(r: &QueryResult, range: Range) -> bool {
    let Some(val) = r.series.last().map(|s| s.value).filter(|v| !v.is_nan()) else {
        return false;
    };
    !(range.min.is_some_and(|m| val < m) || range.max.is_some_and(|m| val > m))
}

/// What one shipped query is run with.
struct Ctx<'a> {
    prom: &'a Prometheus,
    observed: &'a Observed,
    /// Flagger's template model (Canary name, namespace, interval, ...).
    model: &'a BTreeMap<&'a str, &'a str>,
    grafana_vars: &'a BTreeMap<&'a str, &'a str>,
    /// The shipped Canaries' `thresholdRange` by MetricTemplate name.
    ranges: &'a BTreeMap<String, Range>,
    guard: GuardState,
}

impl Ctx<'_> {
    fn expect(&self, s: &Shipped, version: Option<&str>, r: &QueryResult) -> Result<String, String> {
        if is_guard_query(&s.query) {
            expect_guard(&s.key, version, r, self.guard)
        } else {
            expect(&s.key, version, r, self.observed)
        }
    }
}

/// A rollout whose series do not exist yet (a `rollouts[]` config still defining its metrics):
/// every Argo metric must still return a value, since Argo takes an empty result for an Error
/// (argo-rollouts utils/evaluate/evaluate.go) and ends the analysis after a few; NaN is
/// Inconclusive, as with no traffic. Flagger halts on an empty result and on NaN alike.
fn absent_series_are_not_errors(shipped: &[&Shipped], prom: &Prometheus) {
    for s in shipped {
        let Kind::Argo {
            args,
            success,
            failure,
            ..
        } = &s.kind
        else {
            continue;
        };
        let mut values: BTreeMap<String, String> = args
            .iter()
            .filter_map(|(n, d)| Some((n.clone(), d.clone()?)))
            .collect();
        values.insert("rollout-id".into(), "not-defined-yet".into());
        values.insert("version".into(), "canary".into());
        let q = argo_render(&s.query, &values).unwrap_or_else(|e| panic!("{e}"));
        let r = prom.query(&q).unwrap_or_else(|e| panic!("{e}"));
        let result: Vec<f64> = r.series.iter().map(|s| s.value).collect();
        assert_eq!(
            result.len(),
            1,
            "{}: {q} gave {result:?} for absent series",
            s.key
        );
        let holds = |c: &Option<String>| {
            c.as_deref()
                .map(|c| argo_condition(&argo_render(c, &values).unwrap_or_default(), &result))
                .transpose()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let verdict = match (holds(success), holds(failure)) {
            (Some(true), _) => "successful",
            (_, Some(true)) => "failed",
            _ => "inconclusive",
        };
        // The guard's `or vector(0)`: no guard, nothing tripped.
        let want = if s.key == "argo:guard" {
            "successful"
        } else {
            "inconclusive"
        };
        assert_eq!(verdict, want, "{}: {result:?} for absent series", s.key);
        println!("absent series: {} -> {result:?} {verdict}", s.key);
    }
}

/// Fill in, run and check one shipped query; `Ok` is a summary of what it returned.
fn run_one(s: &Shipped, version: Option<&str>, ctx: &Ctx) -> Result<String, String> {
    match &s.kind {
        Kind::Argo {
            args,
            address,
            success,
            failure,
        } => {
            let mut values: BTreeMap<String, String> = args
                .iter()
                .filter_map(|(n, d)| Some((n.clone(), d.clone()?)))
                .collect();
            values.insert("rollout-id".into(), ROLLOUT.into());
            values.insert("version".into(), version.unwrap_or("").into());
            values.insert("prometheus-address".into(), ctx.prom.url());
            for (n, _) in args {
                if !values.contains_key(n) {
                    return Err(format!("required arg {n:?} not filled in by the test"));
                }
            }
            let q = argo_render(&s.query, &values)?;
            let addr = argo_render(address, &values)?;
            // The query goes to the address the template names, args filled in.
            let r = Prometheus::query_at(&addr, &q)?;
            let summary = ctx.expect(s, version, &r)?;
            let result: Vec<f64> = r.series.iter().map(|s| s.value).collect();
            let ok = success
                .as_deref()
                .map(|c| argo_condition(&argo_render(c, &values)?, &result))
                .transpose()?;
            let bad = failure
                .as_deref()
                .map(|c| argo_condition(&argo_render(c, &values)?, &result))
                .transpose()?;
            let should_fail = should_fail(s, version, ctx.guard);
            let verdict = match (ok, bad) {
                (Some(true), Some(false) | None) => "successful",
                (Some(false) | None, Some(true)) => "failed",
                _ => "inconclusive",
            };
            let want = if should_fail { "failed" } else { "successful" };
            if verdict != want {
                return Err(format!(
                    "measurement {summary} is {verdict} under {success:?} / \
                         {failure:?}, want {want}"
                ));
            }
            Ok(format!("{summary} -> {verdict}"))
        }
        Kind::Flagger => {
            let vars: BTreeMap<&str, &str> = [("rollout", ROLLOUT), ("version", version.unwrap_or(""))]
                .into_iter()
                .collect();
            let q = flagger_render(&s.query, ctx.model, &vars)?;
            let r = ctx.prom.query(&q)?;
            let summary = ctx.expect(s, version, &r)?;
            // Judged as the shipped Canary judges it, if one uses the template.
            let Some(range) = ctx.ranges.get(s.key.trim_start_matches("flagger:")) else {
                return Ok(summary);
            };
            let verdict = if flagger_passes(&r, *range) {
                "passed"
            } else {
                "failed"
            };
            let want = if should_fail(s, version, ctx.guard) {
                "failed"
            } else {
                "passed"
            };
            if verdict != want {
                return Err(format!(
                    "value {summary} {verdict} the Canary's thresholdRange {range:?}, want {want}"
                ));
            }
            Ok(format!("{summary} -> {verdict}"))
        }
        Kind::Grafana => {
            let q = grafana_render(&s.query, ctx.grafana_vars)?;
            let r = ctx.prom.query(&q)?;
            ctx.expect(s, version, &r)
        }
        Kind::GrafanaVariable => {
            let inner = s
                .query
                .trim()
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .ok_or("only label_values(metric, label) variables are proven here")?;
            let (metric, label) = inner.rsplit_once(',').ok_or("label_values without a metric")?;
            let values = ctx.prom.label_values(label.trim(), metric.trim())?;
            if s.key == "grafana-var:rollout" && !values.iter().any(|v| v == ROLLOUT) {
                return Err(format!("{ROLLOUT} not among {values:?}"));
            }
            if values.is_empty() {
                return Err("no values".into());
            }
            Ok(values.join(","))
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// The cells of the report's row for `version`.
fn report_row(text: &str, version: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(version))
        .unwrap_or_else(|| panic!("no row for {version} in the report:\n{text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Run `shipped`, each for both versions where the tool fills one in; one line per run, and
/// the failures.
fn run_queries(shipped: &[&Shipped], ctx: &Ctx) -> (Vec<String>, Vec<String>) {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for s in shipped {
        let runs: Vec<Option<&str>> = match s.kind {
            Kind::Argo { .. } | Kind::Flagger => VERSIONS.iter().map(|v| Some(*v)).collect(),
            Kind::Grafana | Kind::GrafanaVariable => vec![None],
        };
        for version in runs {
            let label = format!(
                "{} {}{}",
                s.file,
                s.key,
                version.map(|v| format!(" [{v}]")).unwrap_or_default()
            );
            match run_one(s, version, ctx) {
                Ok(summary) => table.push(format!("ok    {label}: {summary}")),
                Err(e) => {
                    table.push(format!("FAIL  {label}: {e}"));
                    failures.push(format!("{label}: {e}\n  query: {}", s.query.trim()));
                }
            }
        }
    }
    (table, failures)
}

/// How the tests fill in Flagger's template model and Grafana's variables.
fn model_and_vars() -> (
    BTreeMap<&'static str, &'static str>,
    BTreeMap<&'static str, &'static str>,
) {
    let model = [
        ("name", "checkout"),
        ("namespace", "shop"),
        ("target", "checkout"),
        ("service", "checkout"),
        ("interval", WINDOW),
    ]
    .into_iter()
    .collect();
    let grafana_vars = [
        ("rollout", ROLLOUT),
        ("__rate_interval", WINDOW),
        ("__interval", "15s"),
        ("__range", WINDOW),
    ]
    .into_iter()
    .collect();
    (model, grafana_vars)
}

/// The tests that run Envoy, Prometheus and traffic take turns: they share few cores.
static HEAVY: Mutex<()> = Mutex::new(());

#[test]
fn every_shipped_query_returns_what_it_should() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let found = shipped_queries().unwrap_or_else(|e| panic!("{e}"));
    let (shipped, uses) = (&found.queries, &found.uses);
    let files: BTreeSet<&str> = shipped.iter().map(|s| s.file.as_str()).collect();
    for f in ["analysis.yaml", "flagger-metrics.yaml", "grafana-dashboard.json"] {
        assert!(files.contains(f), "no queries found in istio/{f}: {files:?}");
    }

    // A Rollout that uses a shipped AnalysisTemplate passes only args it declares, and all
    // that have no default.
    for u in uses {
        let Some(Kind::Argo { args, .. }) = shipped
            .iter()
            .find(|s| matches!(s.kind, Kind::Argo { .. }) && s.file == "analysis.yaml")
            .map(|s| &s.kind)
        else {
            continue;
        };
        if u.template != "rollout-filter-analysis" {
            continue;
        }
        for a in &u.args {
            assert!(
                args.iter().any(|(n, _)| n == a),
                "{}: passes arg {a:?} that rollout-filter-analysis does not declare",
                u.file
            );
        }
        for (n, default) in args {
            assert!(
                default.is_some() || u.args.contains(n),
                "{}: does not pass required arg {n:?} to rollout-filter-analysis",
                u.file
            );
        }
    }

    let mut opts = Options::new(CONFIG, &VERSIONS);
    opts.fail_every = vec![("canary".into(), CANARY_FAIL_EVERY)];
    opts.grpc = true;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let mut target = Target::envoy("rollout-gateway", envoy.admin);
    // As Kubernetes service discovery labels the gateway pods' series.
    target.labels.push(("namespace".into(), "istio-system".into()));
    let prom = Prometheus::start(&[target], "1s").unwrap_or_else(|e| panic!("{e}"));

    // Scraped once before any traffic, so rate() sees every request from zero.
    prom.wait_until(
        "a first scrape of the filter's counters",
        Duration::from_secs(20),
        |p| {
            let r = p.query(&format!("count(rollout_requests_total{{rollout=\"{ROLLOUT}\"}})"))?;
            Ok(r.series.first().is_some_and(|s| s.value > 0.0))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let started = Instant::now();
    let mut observed = drive(&envoy, Duration::from_secs(6));
    let total = observed.total();
    println!(
        "sent {total} requests and gRPC calls in {:.1} s: HTTP {:?}, gRPC {:?}",
        started.elapsed().as_secs_f64(),
        observed.replies,
        observed.grpc
    );
    assert!(observed.requests("canary") > 200 && observed.requests("stable") > 200);
    assert!(
        observed.unmatched > 100,
        "{} unmatched requests",
        observed.unmatched
    );
    assert_eq!(
        observed.unmatched_not_stable, 0,
        "unmatched requests must reach the default route"
    );
    for v in VERSIONS {
        assert!(observed.grpc_calls(v, None) > 100, "{v}: {:?}", observed.grpc);
    }

    // Wait until Prometheus has the final counts.
    let envoy_responses: f64 = envoy
        .prometheus()
        .iter()
        .filter(|s| s.name == "rollout_responses_total" || s.name == "rollout_grpc_responses_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(envoy_responses as u64, total, "Envoy counted every response");
    // Envoy merges histograms when its admin is read (stats_flush_on_admin), after answering:
    // a scrape shows the merge the previous one triggered. Wait for both to be complete.
    prom.wait_until("the last scrape", Duration::from_secs(20), |p| {
        let sum =
            |q: String| -> Result<f64, String> { Ok(p.query(&q)?.series.first().map_or(-1.0, |s| s.value)) };
        let sel = format!("rollout=\"{ROLLOUT}\"");
        Ok(sum(format!("sum({{{RESPONSES},{sel}}})"))? == envoy_responses
            && sum(format!(
                "sum(rollout_request_duration_milliseconds_count{{{sel}}})"
            ))? == envoy_responses
            && sum("sum(rollout_unmatched_requests_total)".into())? == observed.unmatched as f64)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    observed.buckets = raw_buckets(&envoy);
    assert_latencies_apart(&observed);

    let (model, grafana_vars) = model_and_vars();
    let ctx = Ctx {
        prom: &prom,
        observed: &observed,
        model: &model,
        grafana_vars: &grafana_vars,
        ranges: &found.ranges,
        guard: GuardState::Unconfigured,
    };
    let all: Vec<&Shipped> = shipped.iter().collect();
    let (table, failures) = run_queries(&all, &ctx);
    let ran = table.len();
    println!("{}", table.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {ran} shipped queries did not return what they should:\n{}\nPrometheus log:\n{}",
        failures.len(),
        failures.join("\n"),
        prom.log()
    );
    assert!(ran >= 16, "only {ran} query runs");
    absent_series_are_not_errors(&all, &prom);

    // rollout-report reads the same Envoy; its numbers must be Prometheus's, computed over the
    // raw counters (no rate): success rate and histogram_quantile.
    let (code, text, err) = common::report(&envoy, common::ABORT_THRESHOLDS);
    println!("{text}");
    assert_eq!(code, Some(2), "abort\n{text}{err}");
    let sel = format!("rollout=\"{ROLLOUT}\"");
    let success = prom
        .query(&format!(
            "100 * sum by (version) ({{{RESPONSES},{sel},code_class!~\"5xx|reset\",grpc_code!~\"{}\"}}) \
             / sum by (version) ({{{RESPONSES},{sel}}})",
            rollout_filter::grpc::GrpcCode::FAILURE_REGEX
        ))
        .and_then(|r| per_version(&r))
        .unwrap_or_else(|e| panic!("{e}"));
    for q in ["0.5", "0.99"] {
        let p = prom
            .query(&format!(
                "histogram_quantile({q}, sum by (version, le) \
                 (rollout_request_duration_milliseconds_bucket{{{sel}}}))"
            ))
            .and_then(|r| per_version(&r))
            .unwrap_or_else(|e| panic!("{e}"));
        let col = if q == "0.5" { 9 } else { 10 };
        for v in VERSIONS {
            let row = report_row(&text, v);
            let cell: f64 = row[col].parse().unwrap_or(f64::NAN);
            near(&format!("report p{q} {v} vs Prometheus"), cell, p[v], 0.006)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }
    for v in VERSIONS {
        let row = report_row(&text, v);
        assert_eq!(row[2], observed.requests(v).to_string(), "{v} requests\n{text}");
        assert_eq!(row[5], format!("{:.2}%", success[v]), "{v} success\n{text}");
    }
    assert!(text.contains("canary: abort: success 8"), "{text}");
}

/// The guard test's filter: 50/50 sticky on x-user-id, the guard held an hour so that it stays
/// tripped while the queries run.
const GUARD_CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "guard": { "baseline": "stable", "holdSeconds": 3600 }
}"#;

/// One request of the guard test's traffic: when it ended, its status, who answered.
type Sent = (Instant, u16, String);

/// Every guard query (Argo, Flagger, Grafana panel and annotation) run against `prom` for
/// `guard`; panics with the table if one is not what it should be.
fn check_guard_queries(found: &Found, prom: &Prometheus, guard: GuardState) -> Vec<String> {
    let (model, grafana_vars) = model_and_vars();
    let observed = Observed::default();
    let ctx = Ctx {
        prom,
        observed: &observed,
        model: &model,
        grafana_vars: &grafana_vars,
        ranges: &found.ranges,
        guard,
    };
    let queries: Vec<&Shipped> = found
        .queries
        .iter()
        .filter(|s| is_guard_query(&s.query))
        .collect();
    let (table, failures) = run_queries(&queries, &ctx);
    println!("guard {guard:?}:\n{}", table.join("\n"));
    assert!(
        failures.is_empty(),
        "guard {guard:?}: {} shipped guard queries wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    table
}

/// Prometheus's latest `max(rollout_guard_tripped{...})` of `version` equals `want`, after at
/// least `requests` requests were scraped.
fn wait_for_gauge(prom: &Prometheus, version: &str, want: f64, requests: f64) {
    let what = format!("rollout_guard_tripped of {version} = {want}");
    prom.wait_until(&what, Duration::from_secs(30), |p| {
        let one =
            |q: String| -> Result<f64, String> { Ok(p.query(&q)?.series.first().map_or(-1.0, |s| s.value)) };
        let sel = format!("rollout=\"{ROLLOUT}\"");
        Ok(one(format!(
            "max(rollout_guard_tripped{{{sel},version=\"{version}\"}})"
        ))? == want
            && one(format!("sum(rollout_requests_total{{{sel}}})"))? >= requests)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Polls Envoy until the canary's gauge is 1; when that was seen.
fn wait_for_trip(envoy: &Envoy, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        // Read as it is now: under continuous traffic the counters never settle.
        let tripped = envoy
            .stats_now()
            .get(&format!(
                "wasmcustom.rollout_guard_tripped;rollout={ROLLOUT};version=canary"
            ))
            .copied();
        if tripped == Some(1) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the guard did not trip in {timeout:?}:\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tripped_guard_fails_the_shipped_guard_checks() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let found = shipped_queries().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = Options::new(GUARD_CONFIG, &VERSIONS);
    opts.workers = 2;
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let canary = envoy
        .upstreams
        .iter()
        .find(|u| u.name == "canary")
        .expect("canary upstream");
    let prom = Prometheus::start(&[Target::envoy("rollout-gateway", envoy.admin)], "1s")
        .unwrap_or_else(|e| panic!("{e}"));

    // Distinct users on two client threads, about 400 requests/s each.
    let url = envoy.url("/");
    let traffic = Traffic::start(
        Duration::from_millis(2),
        move |a: &ureq::Agent, n: usize| -> Sent {
            let user = format!("u-{n}");
            match get(a, &url, &[("x-user-id", &user)]) {
                Ok(r) => (
                    Instant::now(),
                    r.status,
                    r.header("x-served-by").unwrap_or("none").to_string(),
                ),
                Err(_) => (Instant::now(), 0, "error".into()),
            }
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    wait_for_gauge(&prom, "canary", 0.0, 500.0);
    let before = check_guard_queries(&found, &prom, GuardState::Closed);

    canary.fail_every.store(1, Ordering::SeqCst);
    let failed_at = Instant::now();
    let tripped_at = wait_for_trip(&envoy, Duration::from_secs(30));
    wait_for_gauge(&prom, "canary", 1.0, 0.0);
    let in_prometheus = failed_at.elapsed();
    let after = check_guard_queries(&found, &prom, GuardState::CanaryTripped);
    let sent = traffic.finish();

    let failed: Vec<&Sent> = sent.iter().filter(|(_, status, _)| *status >= 500).collect();
    let failed_later = failed.iter().filter(|(t, _, _)| *t > tripped_at).count();
    assert!(
        failed.iter().all(|(_, _, v)| v == "canary"),
        "only the canary fails"
    );
    let trip_line = envoy
        .log()
        .lines()
        .find(|l| l.contains("guard tripped"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no trip logged:\n{}", envoy.log()));
    println!(
        "{} requests; the canary failed every request from +0 s; Envoy's gauge 1 after {} ms, \
         Prometheus's after {:.1} s; {} requests failed, {failed_later} of them after the gauge was seen\n{trip_line}\n\
         before:\n{}\nafter:\n{}",
        sent.len(),
        (tripped_at - failed_at).as_millis(),
        in_prometheus.as_secs_f64(),
        failed.len(),
        before.join("\n"),
        after.join("\n")
    );
    assert!(tripped_at - failed_at < Duration::from_secs(10), "slow trip");
}

/// The test's own `histogram_quantile` on hand-computed cases (promql/quantile.go's rules).
#[test]
fn histogram_quantile_interpolates_like_prometheus() {
    let inf = f64::INFINITY;
    let b = [(1.0, 10.0), (5.0, 30.0), (10.0, 40.0), (inf, 40.0)];
    // Rank 20 is half-way through (1, 5]: 10 of its 20 observations.
    assert_eq!(histogram_quantile(0.5, &b), Some(3.0));
    // Rank 39.6 is 9.6 of the 10 in (5, 10].
    assert_eq!(histogram_quantile(0.99, &b), Some(9.8));
    // In the first bucket: from 0.
    assert_eq!(histogram_quantile(0.125, &b), Some(0.5));
    // In +Inf: the highest finite bound.
    let tail = [(1.0, 10.0), (5.0, 10.0), (inf, 20.0)];
    assert_eq!(histogram_quantile(0.99, &tail), Some(5.0));
    assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (inf, 0.0)]), None);
    assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0), (5.0, 3.0)]), None);
}

#[test]
fn templates_fill_in_like_the_tools_do() {
    let args: BTreeMap<String, String> = [("rollout-id", "r"), ("window", "2m")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        argo_render("x{a=\"{{args.rollout-id}}\"}[{{args.window}}]", &args).unwrap(),
        "x{a=\"r\"}[2m]"
    );
    assert!(argo_render("{{args.nope}}", &args).is_err());
    assert!(
        argo_render("{{ args.window }}", &args).is_err(),
        "Argo's tags have no spaces"
    );
    let model: BTreeMap<&str, &str> = [("interval", "1m")].into_iter().collect();
    let vars: BTreeMap<&str, &str> = [("rollout", "r")].into_iter().collect();
    assert_eq!(
        flagger_render("x{a=\"{{ variables.rollout }}\"}[{{ interval }}]", &model, &vars).unwrap(),
        "x{a=\"r\"}[1m]"
    );
    assert!(flagger_render("{{ variables.version }}", &model, &vars).is_err());
    let g: BTreeMap<&str, &str> = [("rollout", "r"), ("__rate_interval", "1m"), ("__interval", "15s")]
        .into_iter()
        .collect();
    assert_eq!(
        grafana_render(
            "x{a=\"$rollout\",b=\"${rollout}\"}[$__rate_interval] [$__interval]",
            &g
        )
        .unwrap(),
        "x{a=\"r\",b=\"r\"}[1m] [15s]"
    );
    assert!(grafana_render("x[$__range]", &g).is_err());
    assert!(argo_condition("result[0] >= 0.99", &[0.995]).unwrap());
    assert!(!argo_condition("result[0] >= 0.99", &[f64::NAN]).unwrap());
    assert!(!argo_condition("result[0] < 0.99", &[f64::NAN]).unwrap());
    assert!(argo_condition("result[0] <= 300", &[4.2]).unwrap());
    assert!(argo_condition("len(result) == 0 || result[0] > 1", &[1.0]).is_err());
}

/// The files the test reads exist where the issue ships them.
#[test]
fn shipped_files_are_found() {
    let dir = istio_dir();
    for f in ["analysis.yaml", "flagger-metrics.yaml", "grafana-dashboard.json"] {
        assert!(Path::new(&dir.join(f)).is_file(), "missing istio/{f}");
    }
    let found = shipped_queries().unwrap_or_else(|e| panic!("{e}"));
    let keys: BTreeSet<&str> = found.queries.iter().map(|s| s.key.as_str()).collect();
    for k in [
        "argo:success-rate",
        "argo:latency-p99",
        "argo:guard",
        "flagger:rollout-filter-success-rate",
        "flagger:rollout-filter-latency-p99",
        "flagger:rollout-filter-guard",
        "grafana:Guard tripped:A",
        "grafana-annotation:Guard tripped",
        "grafana-var:rollout",
    ] {
        assert!(keys.contains(k), "{k} not shipped: {keys:?}");
    }
    // The shipped Canary judges every MetricTemplate, the guard's by `max: 0`.
    for t in [
        "rollout-filter-success-rate",
        "rollout-filter-latency-p99",
        "rollout-filter-guard",
    ] {
        assert!(
            found.ranges.contains_key(t),
            "no Canary uses {t}: {:?}",
            found.ranges
        );
    }
    let guard = found.ranges["rollout-filter-guard"];
    assert_eq!((guard.min, guard.max), (None, Some(0.0)));
}
