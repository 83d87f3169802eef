//! Issue 32: with `"filterState": true` every decision is Envoy filter state `wasm.rollout`,
//! which an access log prints with `%FILTER_STATE(wasm.rollout:PLAIN)%`. Every line's version
//! is the one that served the request, in filter-weights and in route-weights mode.

use std::collections::BTreeMap;

use rollout_e2e::{agent, front_bootstrap, get, Echo, Envoy, CANARY_HEADER_ROUTES};

const USERS: usize = 200;

/// `routes` under a listener whose HCM writes one access log line per request: the filter
/// state, then the cluster that served it.
fn envoy(filter: &str, routes: &str, log: &std::path::Path) -> Envoy {
    let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
    let access_log = format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "{}"
              log_format:
                text_format_source:
                  inline_string: "%FILTER_STATE(wasm.rollout:PLAIN)% cluster=%UPSTREAM_CLUSTER% status=%RESPONSE_CODE%\n"
"#,
        log.display()
    );
    let clusters = [("stable", stable.addr.port()), ("canary", canary.addr.port())];
    let yaml = front_bootstrap(&access_log, routes, filter, "", &clusters);
    Envoy::start_yaml(&yaml, vec![stable, canary]).unwrap_or_else(|e| panic!("{e}"))
}

const WEIGHTED_ROUTES: &str = r#"              - match: { prefix: "/", headers: [{ name: x-rollout-version, string_match: { exact: canary } }] }
                route: { cluster: canary }
              - match: { prefix: "/", headers: [{ name: x-rollout-version, string_match: { exact: stable } }] }
                route: { cluster: stable }
              - match: { prefix: "/" }
                route:
                  weighted_clusters:
                    header_name: x-rollout-bucket
                    clusters: [ { name: stable, weight: 70 }, { name: canary, weight: 30 } ]
"#;

/// Sends the users (and a few pinned requests), waits for the log, and checks every line.
fn every_line_names_the_version_that_served(filter: &str, routes: &str, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let envoy = envoy(filter, routes, &log);
    let a = agent();
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..USERS {
        let pin = if i % 20 == 0 { "canary" } else { "" };
        let r = get(
            &a,
            &envoy.url("/"),
            &[("x-user-id", &format!("u{i}")), ("x-rollout-pin", pin)],
        )
        .unwrap();
        *served.entry(r.version().to_string()).or_default() += 1;
    }
    // Envoy flushes access-log files every 10 s by default.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= USERS || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(lines.len(), USERS, "{label}: one line per request");
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    for line in &lines {
        let field = |k: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .unwrap_or_else(|| panic!("{label}: no {k} in {line:?}"))
        };
        assert_eq!(field("rollout"), "checkout", "{line}");
        assert_eq!(field("version"), field("cluster"), "{label}: {line}");
        *sources.entry(field("source").to_string()).or_default() += 1;
    }
    println!(
        "{label}: {} lines, served {served:?}, sources {sources:?}",
        lines.len()
    );
    assert_eq!(sources.get("override_header"), Some(&(USERS / 20)), "{label}");
}

#[test]
fn every_access_log_line_names_the_version_that_served() {
    let filter = r#"{"rolloutId":"checkout","filterState":true,
        "versions":[{"name":"stable","weight":70},{"name":"canary","weight":30}],
        "stickyKeys":[{"header":"x-user-id"}],"override":{"header":"x-rollout-pin","trustedPeers":["*"]}}"#;
    every_line_names_the_version_that_served(filter, CANARY_HEADER_ROUTES, "filter weights");
    let filter = r#"{"rolloutId":"checkout","filterState":true,
        "versions":[{"name":"stable"},{"name":"canary"}],"routeWeights":{"bucketHeader":"x-rollout-bucket"},
        "stickyKeys":[{"header":"x-user-id"}],"override":{"header":"x-rollout-pin","trustedPeers":["*"]}}"#;
    every_line_names_the_version_that_served(filter, WEIGHTED_ROUTES, "route weights");
}
