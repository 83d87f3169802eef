//! Issue 18: call-chain lanes. The edge's decision travels in `baggage` as
//! `rollout-lane=<version>`; every later hop that has that version follows it, the
//! others fall back to their own split, and an inbound listener removes a lane sent by
//! a caller it does not trust, so a forged lane is never followed.
//!
//! Layout (one Envoy, several listeners, as sidecars and a gateway would have them):
//! client → `front` (gateway, OUTBOUND: decides `shop`, sets the lane) → the `shop-<v>`
//! app (forwards only `baggage` and `traceparent`, as an OpenTelemetry app does) →
//! `a_out` (the app's outbound listener: follows the lane for `payments`) → `payments-<v>`.
//! And: client with an mTLS certificate → `b_in` (INBOUND: strips untrusted lanes) → the
//! payments app → `b_out` (follows, for `ledger`) → `ledger-<v>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rollout_e2e::certs::{Ca, San};
use rollout_e2e::{
    agent, get, http_filters_yaml, mtls_agent, static_cluster_yaml, Echo, Envoy, Seen, ServerTls,
    BOOTSTRAP_HEAD,
};

/// One listener with the filter, routing on `x-rollout-version` to its clusters.
struct Listener<'a> {
    name: &'a str,
    /// `traffic_direction`; `None` leaves it unspecified.
    direction: Option<&'a str>,
    tls: Option<&'a ServerTls>,
    filter: String,
    /// (version, upstream); the first is also the default route.
    clusters: Vec<(&'a str, SocketAddr)>,
}

fn render(listeners: &[Listener]) -> String {
    let wasm = rollout_e2e::wasm_path();
    let mut out = String::from(BOOTSTRAP_HEAD);
    let mut clusters = String::new();
    for l in listeners {
        let mut routes = String::new();
        for (v, addr) in &l.clusters {
            routes.push_str(&format!(
                "              - match: {{ prefix: \"/\", headers: [{{ name: x-rollout-version, string_match: {{ exact: {v} }} }}] }}\n                route: {{ cluster: {n}_{v} }}\n",
                n = l.name
            ));
            clusters.push_str(&static_cluster_yaml(&format!("{}_{v}", l.name), addr.port()));
        }
        routes.push_str(&format!(
            "              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {}_{} }}\n",
            l.name, l.clusters[0].0
        ));
        let direction = l
            .direction
            .map(|d| format!("    traffic_direction: {d}\n"))
            .unwrap_or_default();
        let transport = l.tls.map(ServerTls::transport_socket_yaml).unwrap_or_default();
        out.push_str(&format!(
            r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{direction}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            name: {name}
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
{routes}{http_filters}{transport}"#,
            name = l.name,
            http_filters = http_filters_yaml(&wasm, "FAIL_OPEN", &l.filter),
        ));
    }
    out.push_str("  clusters:\n");
    out.push_str(&clusters);
    out
}

fn baggage_member<'a>(seen: &'a Seen, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    seen.header_all("baggage")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|m| m.strip_prefix(prefix.as_str()))
}

fn count(envoy: &Envoy, name: &str, labels: &str) -> u64 {
    envoy.metric(&format!("{name};{labels}"))
}

/// The edge colours each user once; the next service follows where it has the colour.
#[test]
fn the_edge_lane_is_followed_down_the_chain() {
    let next = Arc::new(OnceLock::new());
    let apps: Vec<Echo> = ["stable", "canary", "beta"]
        .iter()
        .map(|v| Echo::start_forwarding(&format!("shop-{v}"), next.clone()))
        .collect();
    let payments: Vec<Echo> = ["stable", "canary"]
        .iter()
        .map(|v| Echo::start(&format!("payments-{v}")))
        .collect();
    let yaml = render(&[
        Listener {
            name: "front",
            direction: Some("OUTBOUND"),
            tls: None,
            // The gateway decides and sets the lane; it does not follow one from the internet.
            filter: r#"{"rolloutId":"shop","versions":[{"name":"stable","weight":50},{"name":"canary","weight":30},{"name":"beta","weight":20}],
                        "stickyKeys":[{"header":"x-user-id"}],"lane":{"set":true,"follow":false}}"#
                .into(),
            clusters: vec![
                ("stable", apps[0].addr),
                ("canary", apps[1].addr),
                ("beta", apps[2].addr),
            ],
        },
        Listener {
            name: "a_out",
            direction: Some("OUTBOUND"),
            tls: None,
            // No beta here; no sticky key reaches it (the app forwards only trace context).
            filter: r#"{"rolloutId":"payments","versions":[{"name":"stable","weight":50},{"name":"canary","weight":50}],
                        "lane":{"follow":true,"trustedPeers":["spiffe://cluster.local/ns/shop/*"]}}"#
                .into(),
            clusters: vec![("stable", payments[0].addr), ("canary", payments[1].addr)],
        },
    ]);
    let mut upstreams = apps;
    upstreams.extend(payments);
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    next.set(envoy.listener_named("a_out").unwrap()).unwrap();

    let a = agent();
    let mut edge: BTreeMap<String, u64> = BTreeMap::new();
    let mut fell_back: BTreeMap<String, u64> = BTreeMap::new();
    const USERS: u64 = 1200;
    for i in 0..USERS {
        let user = format!("user-{i}");
        let baggage = format!("userId={user}");
        let mut headers = vec![("x-user-id", user.as_str())];
        // A client's own lane is replaced at the edge, never followed.
        if i % 3 == 0 {
            headers.push(("baggage", "rollout-lane=canary,x=1"));
        } else {
            headers.push(("baggage", baggage.as_str()));
        }
        let r = get(&a, &envoy.url("/"), &headers).unwrap();
        assert_eq!(r.status, 200);
        let app = r.seen.as_ref().unwrap();
        let v = app.upstream.strip_prefix("shop-").unwrap().to_string();

        // The app received the lane, once, beside the decision member.
        assert_eq!(baggage_member(app, "rollout-lane"), Some(v.as_str()), "{user}");
        assert_eq!(baggage_member(app, "rollout.shop"), Some(v.as_str()), "{user}");
        assert_eq!(app.header_all("baggage").len(), 1);
        assert_eq!(app.header_all("baggage")[0].matches("rollout-lane=").count(), 1);
        let hop = app.next.as_deref().expect("the app reached payments");
        let w = hop.upstream.strip_prefix("payments-").unwrap();
        // The lane reached the next hop unchanged, whichever version served it.
        assert_eq!(baggage_member(hop, "rollout-lane"), Some(v.as_str()), "{user}");
        assert_eq!(baggage_member(hop, "rollout.payments"), Some(w), "{user}");
        assert_eq!(hop.header("traceparent"), app.header("traceparent"));
        if v == "beta" {
            *fell_back.entry(w.to_string()).or_default() += 1;
        } else {
            assert_eq!(w, v, "{user}: the edge said {v}, payments served {w}");
        }
        *edge.entry(v).or_default() += 1;
    }
    // Every edge version had its users (50/30/20), and beta users fell back to both of
    // payments' versions (its own random split).
    for (v, min) in [("stable", 450), ("canary", 250), ("beta", 150)] {
        assert!(edge.get(v).copied().unwrap_or(0) > min, "{edge:?}");
    }
    assert!(
        fell_back.len() == 2 && fell_back.values().all(|n| *n > 30),
        "{fell_back:?}"
    );

    // Per hop: the edge decided by the sticky key; payments followed the lane exactly for
    // the versions it has and counted the rest as unknown lanes.
    let shop = |v: &str, s: &str| {
        count(
            &envoy,
            "rollout_requests_total",
            &format!("rollout=shop;version={v};source={s}"),
        )
    };
    let pay = |v: &str, s: &str| {
        count(
            &envoy,
            "rollout_requests_total",
            &format!("rollout=payments;version={v};source={s}"),
        )
    };
    assert_eq!(
        shop("stable", "sticky") + shop("canary", "sticky") + shop("beta", "sticky"),
        USERS
    );
    assert_eq!(shop("canary", "lane"), 0, "the gateway follows no lane");
    assert_eq!(pay("stable", "lane"), edge["stable"]);
    assert_eq!(pay("canary", "lane"), edge["canary"]);
    assert_eq!(pay("stable", "random") + pay("canary", "random"), edge["beta"]);
    let reject = |r: &str, reason: &str| {
        count(
            &envoy,
            "rollout_rejected_total",
            &format!("rollout={r};reason={reason}"),
        )
    };
    assert_eq!(reject("payments", "unknown_lane"), edge["beta"]);
    // Both listeners are OUTBOUND (detected from listener_direction): nothing is stripped.
    assert_eq!(reject("shop", "untrusted_lane"), 0);
    assert_eq!(reject("payments", "untrusted_lane"), 0);
    // The same in Prometheus form: lane consistency per hop, as the query in docs/metrics.md reads it.
    let followed = envoy.prom_value(
        "rollout_requests_total",
        &[("rollout", "payments"), ("source", "lane")],
    );
    assert_eq!(followed as u64, edge["stable"] + edge["canary"]);
}

struct Trust {
    envoy: Envoy,
    ca: Ca,
    _dir: tempfile::TempDir,
}

/// Callers with these identities may send lanes to the inbound listeners.
const SHOP: &str = "spiffe://cluster.local/ns/shop/*";

fn lane_filter(rollout: &str, weights: (u32, u32), side: Option<&str>) -> String {
    let side = side.map(|s| format!(r#","side":"{s}""#)).unwrap_or_default();
    format!(
        r#"{{"rolloutId":"{rollout}","versions":[{{"name":"stable","weight":{}}},{{"name":"canary","weight":{}}}],
            "lane":{{"follow":true,"trustedPeers":["{SHOP}"]{side}}}}}"#,
        weights.0, weights.1
    )
}

/// `b_in` (INBOUND, mTLS) → payments app → `b_out` (OUTBOUND) → ledger; and four mTLS
/// listeners straight to stable/canary echoes showing how the side is told.
fn start_trust() -> Trust {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let tls = ca.server_files(dir.path());
    let next = Arc::new(OnceLock::new());
    let app = Echo::start_forwarding("payments-app", next.clone());
    let ledger: Vec<Echo> = ["stable", "canary"]
        .iter()
        .map(|v| Echo::start(&format!("ledger-{v}")))
        .collect();
    let plain: Vec<Echo> = ["stable", "canary"].iter().map(|v| Echo::start(v)).collect();
    let direct = |addrs: &[Echo]| vec![("stable", addrs[0].addr), ("canary", addrs[1].addr)];
    // Canary has weight 0 wherever a lane is checked: only a followed lane reaches it.
    let mut listeners = vec![
        Listener {
            name: "front", // b_in: the harness waits for a listener called front
            direction: Some("INBOUND"),
            tls: Some(&tls),
            // Its decision routes nothing (one cluster); its own rolloutId keeps its counts
            // apart from the callers' decisions.
            filter: lane_filter("payments-inbound", (1, 0), None),
            clusters: vec![("stable", app.addr)],
        },
        Listener {
            name: "b_out",
            direction: Some("OUTBOUND"),
            tls: None,
            filter: lane_filter("ledger", (1, 0), None),
            clusters: direct(&ledger),
        },
    ];
    for (name, direction, side) in [
        ("in_auto", Some("INBOUND"), None),
        ("out_auto", Some("OUTBOUND"), None),
        ("plain_auto", None, None),
        ("plain_outbound", None, Some("outbound")),
        ("out_inbound", Some("OUTBOUND"), Some("inbound")),
    ] {
        listeners.push(Listener {
            name,
            direction,
            tls: Some(&tls),
            filter: lane_filter(name, (1, 0), side),
            clusters: direct(&plain),
        });
    }
    let yaml = render(&listeners);
    let mut upstreams = vec![app];
    upstreams.extend(ledger);
    upstreams.extend(plain);
    let envoy = Envoy::start_yaml(&yaml, upstreams).unwrap_or_else(|e| panic!("{e}"));
    next.set(envoy.listener_named("b_out").unwrap()).unwrap();
    Trust { envoy, ca, _dir: dir }
}

impl Trust {
    fn agent(&self, spiffe: &str) -> ureq::Agent {
        let id = self.ca.issue(&[San::Uri(spiffe)]);
        mtls_agent(&self.ca.pem, Some((&id.cert, &id.key)))
    }

    fn url(&self, listener: &str) -> String {
        let port = self.envoy.listener_named(listener).unwrap().port();
        format!("https://localhost:{port}/")
    }
}

#[test]
fn an_inbound_listener_strips_lanes_from_untrusted_callers() {
    let t = start_trust();
    let trusted = t.agent("spiffe://cluster.local/ns/shop/sa/frontend");
    let untrusted = t.agent("spiffe://cluster.local/ns/web/sa/attacker");
    let url = t.url("front");
    const EACH: u64 = 150;
    for i in 0..EACH {
        let user = format!("userId=u{i}");
        for (a, is_trusted) in [(&trusted, true), (&untrusted, false)] {
            let baggage = format!("{user},rollout-lane=canary;p=1");
            let r = get(a, &url, &[("baggage", &baggage)]).unwrap();
            assert_eq!(r.status, 200);
            let app = r.seen.unwrap();
            let hop = app.next.as_deref().expect("the app reached ledger").clone();
            if is_trusted {
                // Kept as it came, and followed by the app's outbound listener.
                assert_eq!(baggage_member(&app, "rollout-lane"), Some("canary;p=1"));
                assert_eq!(hop.upstream, "ledger-canary");
            } else {
                // Removed before the app saw it: the app cannot forward what it never got.
                assert_eq!(baggage_member(&app, "rollout-lane"), None, "{:?}", app.headers);
                assert_eq!(baggage_member(&app, "userId"), Some(&user["userId=".len()..]));
                assert_eq!(baggage_member(&hop, "rollout-lane"), None);
                assert_eq!(hop.upstream, "ledger-stable", "a forged lane is never followed");
            }
        }
    }
    let e = &t.envoy;
    assert_eq!(
        count(
            e,
            "rollout_rejected_total",
            "rollout=payments-inbound;reason=untrusted_lane"
        ),
        EACH
    );
    assert_eq!(
        count(
            e,
            "rollout_requests_total",
            "rollout=ledger;version=canary;source=lane"
        ),
        EACH
    );
    assert_eq!(
        count(
            e,
            "rollout_requests_total",
            "rollout=ledger;version=stable;source=random"
        ),
        EACH
    );
    assert_eq!(
        count(
            e,
            "rollout_rejected_total",
            "rollout=ledger;reason=untrusted_lane"
        ),
        0
    );
}

/// The side comes from Envoy's `listener_direction` (`traffic_direction` on the listener, which
/// Istio sets), an unspecified direction is treated as inbound, and `lane.side` overrides both.
#[test]
fn the_side_is_detected_or_configured() {
    let t = start_trust();
    let untrusted = t.agent("spiffe://cluster.local/ns/web/sa/attacker");
    let trusted = t.agent("spiffe://cluster.local/ns/shop/sa/frontend");
    for (listener, follows_anyone) in [
        ("in_auto", false),
        ("out_auto", true),
        ("plain_auto", false),
        ("plain_outbound", true),
        ("out_inbound", false),
    ] {
        let url = t.url(listener);
        for i in 0..20 {
            let r = get(&untrusted, &url, &[("baggage", "rollout-lane=canary")]).unwrap();
            let seen = r.seen.unwrap();
            let want = if follows_anyone { "canary" } else { "stable" };
            assert_eq!(seen.upstream, want, "{listener} #{i}");
            let lane = baggage_member(&seen, "rollout-lane");
            assert_eq!(lane, follows_anyone.then_some("canary"), "{listener}");
            // A trusted caller's lane is followed on every side.
            let r = get(&trusted, &url, &[("baggage", "rollout-lane=canary")]).unwrap();
            assert_eq!(r.version(), "canary", "{listener}");
        }
        let stripped = count(
            &t.envoy,
            "rollout_rejected_total",
            &format!("rollout={listener};reason=untrusted_lane"),
        );
        assert_eq!(stripped, if follows_anyone { 0 } else { 20 }, "{listener}");
    }
}
