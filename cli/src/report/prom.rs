//! `rollout-report --prometheus URL`: the report's figures for the whole fleet, read from a
//! Prometheus through `/api/v1/query` in the shapes of the shipped queries (istio/analysis.yaml,
//! istio/grafana-dashboard.json): `sum by (rollout, version, ...)` over every Envoy it scrapes,
//! of `increase(...[WINDOW])` with `--window`, else of the counters' latest values. Each answer
//! becomes samples named after the metric, so the table is built by the same [`collect`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{collect, RolloutStats};
use crate::exposition::Sample;

/// The filter's counters and the labels the report groups them by (besides `rollout`).
const COUNTERS: [(&str, &str); 7] = [
    ("rollout_requests_total", "version, source"),
    ("rollout_responses_total", "version, code_class"),
    ("rollout_grpc_responses_total", "version, grpc_code"),
    ("rollout_local_replies_total", "version"),
    ("rollout_guard_trips_total", "version"),
    ("rollout_rejected_total", "reason"),
    ("rollout_request_duration_milliseconds_bucket", "version, le"),
];

/// The PromQL for one counter: summed over every Envoy, over the window or since each started.
pub(super) fn counter_query(metric: &str, by: &str, window: Option<Duration>) -> String {
    match window {
        Some(w) => format!("sum by (rollout, {by}) (increase({metric}[{}]))", range(w)),
        None => format!("sum by (rollout, {by}) ({metric})"),
    }
}

/// The guard's state now: tripped on any Envoy (the dashboard's `max by (version)`).
const GUARD_QUERY: &str = "max by (rollout, version) (rollout_guard_tripped)";

/// A PromQL range in whole milliseconds (Prometheus takes `1500ms`).
fn range(w: Duration) -> String {
    format!("{}ms", w.as_millis().max(1))
}

/// Every rollout's figures and the scope line of the report.
pub(super) fn stats(
    url: &str,
    window: Option<Duration>,
    at: Option<f64>,
) -> Result<(BTreeMap<String, RolloutStats>, String), String> {
    let base = url.trim_end_matches('/');
    // One evaluation time for every query, so the figures belong together.
    let at = match at {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs_f64(),
    };
    let mut samples = Vec::new();
    for (metric, by) in COUNTERS {
        samples.extend(query(base, metric, &counter_query(metric, by, window), at)?);
    }
    samples.extend(query(base, "rollout_guard_tripped", GUARD_QUERY, at)?);
    if !samples.iter().any(|s| s.name == "rollout_requests_total") {
        return Err(format!(
            "{base}: no rollout_requests_total series with a `rollout` label (does this \
             Prometheus scrape the Envoys' admin /stats/prometheus, with the filter's stats_tags?)"
        ));
    }
    let scope = match window {
        Some(w) => format!(
            "increase() over the {:.1} s up to {at:.3} (Prometheus extrapolates to the window's \
             edges: counts are estimates)",
            w.as_secs_f64()
        ),
        None => format!("counters summed over every Envoy, as last scraped at {at:.3}"),
    };
    Ok((collect(&samples), scope))
}

/// An instant query at `at`; its series as samples named `metric`.
fn query(base: &str, metric: &str, promql: &str, at: f64) -> Result<Vec<Sample>, String> {
    let url = format!("{base}/api/v1/query");
    let answer = ureq::get(&url)
        .timeout(Duration::from_secs(30))
        .query("query", promql)
        .query("time", &format!("{at:.3}"))
        .call();
    let body: serde_json::Value = match answer {
        Ok(r) => r.into_json().map_err(|e| format!("{url}: {e}"))?,
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            return Err(format!("{url}: HTTP {code} for {promql}: {text}"));
        }
        Err(e) => return Err(format!("cannot read {url}: {e} (is Prometheus at {base}?)")),
    };
    samples_of(metric, &body).map_err(|e| format!("{url}: {promql}: {e}"))
}

/// The vector of an `/api/v1/query` answer as samples named `metric` (NaN values left out).
pub(super) fn samples_of(metric: &str, body: &serde_json::Value) -> Result<Vec<Sample>, String> {
    if body["status"] != "success" {
        return Err(format!("query failed: {}", body["error"].as_str().unwrap_or("?")));
    }
    let result = body["data"]["result"]
        .as_array()
        .ok_or("the answer has no vector")?;
    let mut out = Vec::new();
    for r in result {
        let value: f64 = r["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("sample without a value: {r}"))?;
        let labels = r["metric"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if !value.is_nan() {
            out.push(Sample {
                name: metric.to_string(),
                labels,
                value,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_have_the_shipped_shapes() {
        let q = counter_query("rollout_requests_total", "version, source", None);
        assert_eq!(q, "sum by (rollout, version, source) (rollout_requests_total)");
        let q = counter_query(
            "rollout_responses_total",
            "version, code_class",
            Some(Duration::from_secs(120)),
        );
        assert_eq!(
            q,
            "sum by (rollout, version, code_class) (increase(rollout_responses_total[120000ms]))"
        );
        assert_eq!(range(Duration::from_micros(10)), "1ms");
    }

    #[test]
    fn answers_become_samples_the_report_collects() {
        let body: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"rollout":"r1","version":"canary","le":"+Inf"},"value":[1.5,"40.5"]},
              {"metric":{"rollout":"r1","version":"stable","le":"+Inf"},"value":[1.5,"NaN"]},
              {"metric":{"rollout":"r1","version":"canary","le":"1.0"},"value":[1.5,"20"]}]}}"#,
        )
        .unwrap();
        let s = samples_of("rollout_request_duration_milliseconds_bucket", &body).unwrap();
        assert_eq!(s.len(), 2);
        let stats = collect(&s);
        let c = &stats["r1"].versions["canary"];
        assert_eq!(c.buckets, vec![(1.0, 20.0), (f64::INFINITY, 40.5)]);
        let err: serde_json::Value =
            serde_json::from_str(r#"{"status":"error","error":"parse error at char 3"}"#).unwrap();
        assert!(samples_of("x", &err).unwrap_err().contains("parse error"));
    }
}
