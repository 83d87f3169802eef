//! A real Prometheus server for the tests: Debian's `prometheus` binary on
//! 127.0.0.1, scraping the Envoy admin `/stats/prometheus` of a harness Envoy,
//! queried through its HTTP API (`/api/v1/query`) like Argo Rollouts, Flagger
//! and Grafana query it. Killed on drop.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `$PROMETHEUS`, else `/usr/bin/prometheus` (Debian's package, `apt-get install prometheus`).
pub fn prometheus_bin() -> PathBuf {
    match std::env::var_os("PROMETHEUS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/bin/prometheus"),
    }
}

/// One static scrape target.
#[derive(Clone, Debug)]
pub struct Target {
    pub job: String,
    pub addr: SocketAddr,
    pub metrics_path: String,
    /// Target labels added to every series, as Kubernetes service discovery adds `namespace`, `pod`.
    pub labels: Vec<(String, String)>,
}

impl Target {
    /// An Envoy admin endpoint, scraped at `/stats/prometheus`.
    pub fn envoy(job: &str, admin: SocketAddr) -> Target {
        Target {
            job: job.to_string(),
            addr: admin,
            metrics_path: "/stats/prometheus".into(),
            labels: Vec::new(),
        }
    }
}

/// One element of an instant query result: a vector sample, or the scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// An instant query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// `vector` or `scalar` (a range query's `matrix` is refused).
    pub result_type: String,
    pub series: Vec<Series>,
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start Prometheus scraping `targets` every `scrape_interval` (e.g. `1s`) and wait until
    /// it answers `/-/ready`. `Err` carries the reason and Prometheus's log.
    pub fn start(targets: &[Target], scrape_interval: &str) -> Result<Prometheus, String> {
        let bin = prometheus_bin();
        if !bin.exists() {
            return Err(format!(
                "no Prometheus at {} (install Debian's package: `apt-get install -y prometheus`, \
                 as .ci/run does, or set PROMETHEUS=/path/to/prometheus)",
                bin.display()
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, render_config(targets, scrape_interval)).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("prometheus.log");
        let mut last_err = String::new();
        // The free port is found by binding and releasing it; another process may take it in
        // between, so try a few.
        for _ in 0..3 {
            let addr = free_port()?;
            let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
            let mut child = Command::new(&bin)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
            match wait_ready(&mut child, addr, &log_path) {
                Ok(()) => return Ok(Prometheus { child, addr, dir }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An instant query at the current time against `base` (e.g. the address a shipped
    /// AnalysisTemplate names after its args are filled in), through `/api/v1/query`.
    pub fn query_at(base: &str, promql: &str) -> Result<QueryResult, String> {
        Self::query_when(base, promql, None)
    }

    /// An instant query evaluated at `time` (Unix seconds), e.g. the time a report was made for.
    pub fn query_at_time(&self, promql: &str, time: f64) -> Result<QueryResult, String> {
        Self::query_when(&self.url(), promql, Some(time))
    }

    fn query_when(base: &str, promql: &str, time: Option<f64>) -> Result<QueryResult, String> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let mut req = ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .query("query", promql);
        if let Some(t) = time {
            req = req.query("time", &format!("{t:.3}"));
        }
        let body: serde_json::Value = match req.call() {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            // Prometheus answers 400/422 with a JSON error body.
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(format!("HTTP {code} for {promql}: {text}"));
            }
            Err(e) => return Err(format!("{url}: {e}")),
        };
        parse_query_response(&body)
    }

    pub fn query(&self, promql: &str) -> Result<QueryResult, String> {
        Self::query_at(&self.url(), promql)
    }

    /// Values of `label` on series matching `matcher` (`/api/v1/label/<label>/values?match[]=`),
    /// which is what Grafana's `label_values(metric, label)` variable query asks.
    pub fn label_values(&self, label: &str, matcher: &str) -> Result<Vec<String>, String> {
        let url = format!("{}/api/v1/label/{label}/values", self.url());
        let body: serde_json::Value = ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .query("match[]", matcher)
            .call()
            .map_err(|e| format!("{url}: {e}"))?
            .into_json()
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{url}: {body}"));
        }
        Ok(body["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    /// Poll `check` every 200 ms until it returns `Ok(true)`; `Err` after `timeout` says `what`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Prometheus) -> Result<bool, String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match check(self) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Prometheus: {what} not reached in {timeout:?} (last error: {last})\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, addr: SocketAddr, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://{addr}/-/ready");
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("Prometheus exited with {status}:\n{}", log()));
        }
        if ureq::get(&url).timeout(Duration::from_secs(1)).call().is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("Prometheus not ready after 30 s:\n{}", log()))
}

fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// The `prometheus.yml` for `targets`.
pub fn render_config(targets: &[Target], scrape_interval: &str) -> String {
    let mut s = format!(
        "global:\n  scrape_interval: {scrape_interval}\n  scrape_timeout: {scrape_interval}\n  evaluation_interval: {scrape_interval}\nscrape_configs:\n"
    );
    for t in targets {
        s.push_str(&format!(
            "- job_name: {job:?}\n  metrics_path: {path:?}\n  static_configs:\n  - targets: [{addr:?}]\n",
            job = t.job,
            path = t.metrics_path,
            addr = t.addr.to_string(),
        ));
        if !t.labels.is_empty() {
            s.push_str("    labels:\n");
            for (k, v) in &t.labels {
                s.push_str(&format!("      {k}: {v:?}\n"));
            }
        }
    }
    s
}

/// Parse an `/api/v1/query` answer. Sample values are strings (`"0.8"`, `"NaN"`, `"+Inf"`).
pub fn parse_query_response(body: &serde_json::Value) -> Result<QueryResult, String> {
    if body["status"] != "success" {
        return Err(format!(
            "query failed: {} {}",
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        ));
    }
    let data = &body["data"];
    let result_type = data["resultType"].as_str().unwrap_or("").to_string();
    let value = |v: &serde_json::Value| -> Result<f64, String> {
        let s = v[1]
            .as_str()
            .ok_or_else(|| format!("sample without a value: {v}"))?;
        s.parse::<f64>().map_err(|e| format!("sample value {s:?}: {e}"))
    };
    let series = match result_type.as_str() {
        "vector" => data["result"]
            .as_array()
            .ok_or("vector result is not an array")?
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Series {
                    labels,
                    value: value(&r["value"])?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        "scalar" => vec![Series {
            labels: BTreeMap::new(),
            value: value(&data["result"])?,
        }],
        other => return Err(format!("unexpected result type {other:?}")),
    };
    Ok(QueryResult { result_type, series })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vector_scalar_and_errors() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"version":"canary"},"value":[1700000000.1,"0.8"]},
                {"metric":{"version":"stable"},"value":[1700000000.1,"NaN"]},
                {"metric":{},"value":[1700000000.1,"+Inf"]}]}}"#,
        )
        .unwrap();
        let r = parse_query_response(&v).unwrap();
        assert_eq!(r.result_type, "vector");
        assert_eq!(r.series.len(), 3);
        assert_eq!(r.series[0].label("version"), "canary");
        assert_eq!(r.series[0].value, 0.8);
        assert!(r.series[1].value.is_nan());
        assert_eq!(r.series[2].value, f64::INFINITY);

        let s: serde_json::Value = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"2"]}}"#,
        )
        .unwrap();
        assert_eq!(parse_query_response(&s).unwrap().series[0].value, 2.0);

        let e: serde_json::Value =
            serde_json::from_str(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
                .unwrap();
        assert!(parse_query_response(&e).unwrap_err().contains("parse error"));
    }

    #[test]
    fn config_names_every_target() {
        let mut t = Target::envoy("envoy", "127.0.0.1:9901".parse().unwrap());
        t.labels.push(("namespace".into(), "istio-system".into()));
        let cfg = render_config(&[t], "1s");
        assert!(cfg.contains("scrape_interval: 1s"));
        assert!(cfg.contains("metrics_path: \"/stats/prometheus\""));
        assert!(cfg.contains("targets: [\"127.0.0.1:9901\"]"));
        assert!(cfg.contains("namespace: \"istio-system\""));
    }
}
