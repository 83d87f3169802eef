//! Issue 24: a client never steers routing with an input some rollout uses. In a two-rollout
//! gateway, another rollout's route header (with `Host` exact, with a trailing dot, with a
//! port), an override header or query parameter on a host no rollout matches, and a lane member
//! on an unmatched host of an inbound listener all stay away from the upstream; what a
//! trusted hop may pass on (a lane on an outbound listener) still does. And a peer read only
//! for `trustedPeers` is parsed once per certificate, with two callers taking turns.

use std::net::SocketAddr;

use rollout_e2e::certs::{Ca, San};
use rollout_e2e::{
    agent, front_bootstrap, get, http_filters_yaml, mtls_agent, static_cluster_yaml, Echo, Envoy, Seen,
    BOOTSTRAP_HEAD, CANARY_HEADER_ROUTES,
};

/// Canary weight 0: any request that reaches canary was steered by the client.
const TWO: &str = r#"{
  "versions": [ { "name": "stable", "weight": 100 }, { "name": "canary", "weight": 0 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "trace": { "enabled": false },
  "rollouts": [
    { "match": { "hosts": ["shop.example.com"] }, "rolloutId": "shop",
      "routeHeader": "x-shop-version",
      "override": { "header": "x-shop-pin", "query": "shop-pin",
                    "trustedPeers": ["spiffe://cluster.local/ns/qa/*"] } },
    { "match": { "hosts": ["search.example.com"] }, "rolloutId": "search",
      "routeHeader": "x-search-version",
      "lane": { "follow": true, "trustedPeers": ["spiffe://cluster.local/ns/edge/*"] } }
  ]
}"#;

/// Routes that take any of the rollouts' inputs to canary, in a vhost per rollout host and
/// a catch-all, as a gateway whose vhosts share routes would have them.
fn routes() -> String {
    let mut r = String::new();
    for h in ["x-shop-version", "x-search-version", "x-shop-pin"] {
        r.push_str(&format!(
            "              - match: {{ prefix: \"/\", headers: [{{ name: {h}, string_match: {{ exact: canary }} }}] }}\n                route: {{ cluster: canary }}\n"
        ));
    }
    r.push_str("              - match: { prefix: \"/\", query_parameters: [{ name: shop-pin, string_match: { exact: canary } }] }\n                route: { cluster: canary }\n");
    r.push_str("              - match: { prefix: \"/\" }\n                route: { cluster: stable }\n");
    r
}

fn listener(name: &str, direction: &str, filter: &str) -> String {
    let wasm = rollout_e2e::wasm_path();
    let routes = routes();
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    traffic_direction: {direction}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            name: {name}
            virtual_hosts:
            - name: shop
              domains: ["shop.example.com"]
              routes:
{routes}            - name: search
              domains: ["search.example.com"]
              routes:
{routes}            - name: other
              domains: ["*"]
              routes:
{routes}{filters}"#,
        filters = http_filters_yaml(&wasm, "FAIL_OPEN", filter),
    )
}

fn start() -> Envoy {
    let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
    let yaml = format!(
        "{BOOTSTRAP_HEAD}{}{}  clusters:\n{}{}",
        listener("front", "INBOUND", TWO),
        listener("out", "OUTBOUND", TWO),
        static_cluster_yaml("stable", stable.addr.port()),
        static_cluster_yaml("canary", canary.addr.port()),
    );
    Envoy::start_yaml(&yaml, vec![stable, canary]).unwrap_or_else(|e| panic!("{e}"))
}

fn send(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Seen {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    let url = format!("http://{addr}{path}");
    let r = get(&agent(), &url, &all).unwrap();
    assert_eq!(r.status, 200, "{host}{path} {headers:?}: {r:?}");
    r.seen.unwrap()
}

fn lane(seen: &Seen) -> Option<&str> {
    seen.header_all("baggage")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|m| m.strip_prefix("rollout-lane="))
}

#[test]
fn another_rollouts_inputs_never_reach_the_upstream() {
    let envoy = start();
    let front = envoy.listener;
    let out = envoy.listener_named("out").unwrap();
    // Another rollout's route header on a request the filter decides for `shop`, whatever
    // form of the host picked it (Envoy routes the last two by the catch-all vhost).
    for host in [
        "shop.example.com",
        "shop.example.com.",
        "shop.example.com:8443",
        "SHOP.example.com",
    ] {
        let seen = send(
            front,
            host,
            "/",
            &[("x-search-version", "canary"), ("x-user-id", "u1")],
        );
        assert_eq!(seen.upstream, "stable", "{host}");
        assert_eq!(seen.header("x-search-version"), None, "{host}");
        assert_eq!(seen.header("x-shop-version"), Some("stable"), "{host}");
    }
    // And for `search`: the other rollout's override header, route header and query.
    let seen = send(
        front,
        "search.example.com",
        "/q?shop-pin=canary&a=1",
        &[("x-shop-pin", "canary"), ("x-shop-version", "canary")],
    );
    assert_eq!(seen.upstream, "stable");
    assert_eq!(
        (seen.header("x-shop-pin"), seen.header("x-shop-version")),
        (None, None)
    );
    assert_eq!(seen.path, "/q?a=1");
    // A host no rollout matches: every rollout's inputs are removed.
    for listener in [front, out] {
        let seen = send(
            listener,
            "other.example.com",
            "/x?shop-pin=canary",
            &[
                ("x-shop-pin", "canary"),
                ("x-shop-version", "canary"),
                ("x-search-version", "canary"),
                ("x-rollout-id", "forged"),
            ],
        );
        assert_eq!(seen.upstream, "stable");
        for h in ["x-shop-pin", "x-shop-version", "x-search-version", "x-rollout-id"] {
            assert_eq!(seen.header(h), None, "{h}");
        }
        assert_eq!(seen.path, "/x");
    }
    // A lane member on an unmatched host: removed on the inbound listener (untrusted caller),
    // passed on by the outbound one (the local app forwards what its inbound side accepted).
    let bag = [("baggage", "userId=u1, rollout-lane=canary")];
    let inbound = send(front, "other.example.com", "/", &bag);
    assert_eq!(lane(&inbound), None, "{inbound:?}");
    assert_eq!(inbound.header("baggage"), Some("userId=u1"));
    let outbound = send(out, "other.example.com", "/", &bag);
    assert_eq!(lane(&outbound), Some("canary"));
    // On a request decided by `shop` (no lane of its own), `search`'s lane is judged by
    // `search`'s trust: removed inbound, kept outbound.
    assert_eq!(lane(&send(front, "shop.example.com", "/", &bag)), None);
    assert_eq!(lane(&send(out, "shop.example.com", "/", &bag)), Some("canary"));
    // Nothing above reached canary.
    assert_eq!(
        envoy.upstreams[1]
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// `override.trustedPeers` alone (no `certificate` block): each caller's certificate is
/// parsed once per worker, not on every request when two callers take turns.
#[test]
fn two_callers_taking_turns_parse_each_certificate_once() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let tls = ca.server_files(dir.path());
    let (stable, canary) = (Echo::start("stable"), Echo::start("canary"));
    let filter = r#"{"rolloutId":"r","versions":[{"name":"stable","weight":100},{"name":"canary","weight":0}],
        "override":{"header":"x-rollout-pin","trustedPeers":["spiffe://cluster.local/ns/qa/*"]}}"#;
    let yaml = front_bootstrap(
        "",
        CANARY_HEADER_ROUTES,
        filter,
        &tls.transport_socket_yaml(),
        &[("stable", stable.addr.port()), ("canary", canary.addr.port())],
    );
    let envoy = Envoy::start_yaml_with(&yaml, vec![stable, canary], 1, "wasm:debug")
        .unwrap_or_else(|e| panic!("{e}"));
    let port = envoy.listener.port();
    let url = format!("https://localhost:{port}/");
    let callers: Vec<(ureq::Agent, &str)> = [
        ("spiffe://cluster.local/ns/qa/sa/tester", "canary"),
        ("spiffe://cluster.local/ns/web/sa/frontend", "stable"),
    ]
    .iter()
    .map(|(id, want)| {
        let cert = ca.issue(&[San::Uri(id)]);
        (mtls_agent(&ca.pem, Some((&cert.cert, &cert.key))), *want)
    })
    .collect();
    const ROUNDS: usize = 50;
    for _ in 0..ROUNDS {
        for (a, want) in &callers {
            let r = get(a, &url, &[("x-rollout-pin", "canary")]).unwrap();
            assert_eq!(r.version(), *want);
        }
    }
    let parses = envoy.log().matches("peer certificate parsed").count();
    assert_eq!(parses, 2, "{} requests; Envoy log:\n{}", 2 * ROUNDS, envoy.log());
}
