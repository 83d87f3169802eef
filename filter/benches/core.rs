//! Host micro-benchmarks of the pure core (issue 7): what one request costs
//! before any proxy-wasm host call. `make bench` runs them and puts the means
//! in BENCHMARKS.md; `cargo bench -p rollout-filter --bench core` alone works too.
//!
//! Budget: a full decision for a request well under 1 µs.

// Setup works on constants; a failure there is a broken bench, not a result.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rollout_filter::baggage;
use rollout_filter::config::Config;
use rollout_filter::decision::{decide, Peer, RequestView};
use rollout_filter::identity::{parse_certificate, LabelCache};
use rollout_filter::rollouts::{config_with_rollouts, FilterConfig};
use rollout_filter::split;
use rollout_filter::trace::{self, TraceSettings};

/// The product configuration of `bench/configs/f-full.json` (trace on) plus
/// certificate labels, so every path below is configured as in production.
const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
  "routeHeader": "x-rollout-version",
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
  "override": { "header": "x-rollout-pin", "query": "rollout-version" },
  "trace": { "enabled": true },
  "certificate": { "source": "auto" }
}"#;

/// A P-256 client certificate with the URI SAN label
/// `rollout://checkout-2026-11?version=canary`, a SPIFFE ID and a DNS SAN
/// (made by `bench/run.py`'s openssl steps; its validity dates do not matter here).
const CLIENT_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----
MIICIzCCAcmgAwIBAgIUQhjzUfq5lCKM6rCY1M+7TSEcI6IwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcm9sbG91dC1iZW5jaCBDQTAeFw0yNjExMjYwNDAyMjhaFw0y
NjExMjkwNDAyMjhaMB8xHTAbBgNVBAMMFHJvbGxvdXQtYmVuY2ggY2xpZW50MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoyXNWM85OsTHompazyhjkHiRGCZzPHk5
7RDBZMlGxweekzH4qoW1arMyeGX4L4pI8jrULtD24i0ogrDrfcy35KOB5jCB4zAJ
BgNVHRMEAjAAMA4GA1UdDwEB/wQEAwIHgDBxBgNVHREEajBohilyb2xsb3V0Oi8v
Y2hlY2tvdXQtMjAyNi0xMT92ZXJzaW9uPWNhbmFyeYYnc3BpZmZlOi8vYmVuY2gu
bG9jYWwvbnMvYmVuY2gvc2EvY2xpZW50ghJiZW5jaC1jbGllbnQubG9jYWwwEwYD
VR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFManB6zxOkFohl4RSLmWcrY8rFLr
MB8GA1UdIwQYMBaAFOOY4LYNkrNUd5pb8gNWitPbdY6zMAoGCCqGSM49BAMCA0gA
MEUCIHAzG8+scv/2cUI3BFXKUak39v7MFHpW6NXVlCiKUYWrAiEAmnPY82cK3O4Q
ilqBaT7EdBMwLLYPu15oM2/zHIp64bY=
-----END CERTIFICATE-----
";

/// A request as the host glue sees it: headers looked up by a linear scan,
/// as in Envoy's header map.
struct Request<'a> {
    headers: &'a [(&'a str, &'a [u8])],
    source: &'a [u8],
}

fn lookup<'a>(headers: &[(&str, &'a [u8])], name: &str) -> &'a [u8] {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, v)| *v)
}

impl RequestView for Request<'_> {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn source_address(&mut self) -> Option<&[u8]> {
        Some(self.source)
    }

    fn random_u32(&mut self) -> u32 {
        0x9e37_79b9
    }
}

include!("common/typical_headers.rs");

type Headers<'a> = &'a [(&'a str, &'a [u8])];

/// [`TYPICAL_HEADERS`], then `extra`.
fn headers<'a>(extra: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut h = TYPICAL_HEADERS.to_vec();
    h.extend_from_slice(extra);
    h
}

fn bench_decide(c: &mut Criterion) {
    let cfg = Config::from_json(CONFIG.as_bytes()).expect("bench config");
    let mut g = c.benchmark_group("decide");

    // Which sticky key decides: a header, a cookie, or (neither sent) the source address.
    let sticky: [(&str, Headers); 3] = [
        ("sticky_header", &[("x-user-id", b"user-4711")]),
        (
            "sticky_cookie",
            &[("cookie", b"theme=dark; lang=en; uid=user-4711; _ga=GA1.2.3")],
        ),
        ("source_address", &[]),
    ];
    for (name, extra) in sticky {
        let h = headers(extra);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut req = Request {
                    headers: &h,
                    source: b"10.1.2.3:51234",
                };
                black_box(decide(black_box(&cfg), &mut req, None))
            })
        });
    }

    // The whole pure part of a request in the full product (f): decide, then
    // the trace context to send upstream and this version's baggage member.
    let h = headers(&[
        ("x-user-id", b"user-4711"),
        (
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", b"congo=t61rcWkgMzE"),
        ("baggage", b"userId=alice"),
    ]);
    let random = [0x5au8; 24];
    g.bench_function("full_request_with_trace", |b| {
        b.iter(|| {
            let mut req = Request {
                headers: &h,
                source: b"10.1.2.3:51234",
            };
            let d = decide(black_box(&cfg), &mut req, None);
            let parent = lookup(&h, "traceparent");
            let state = lookup(&h, "tracestate");
            let bag = lookup(&h, "baggage");
            let member = cfg
                .trace
                .baggage_members
                .get(d.version.unwrap_or(0))
                .map_or("", |m| m.as_str());
            let edit = baggage::Edit::Set {
                key: &cfg.trace.baggage_key,
                member,
            };
            black_box(trace::propagate(&[parent], &[state], &cfg.trace.settings, random));
            black_box(baggage::apply(&[bag], &[edit]))
        })
    });

    // The certificate's meaning comes from the per-worker cache; deciding with it.
    let cert = parse_certificate(CLIENT_PEM, None).expect("bench certificate");
    let peer = Peer::from_cert(&cfg, &cert);
    assert!(
        peer.pin.is_some(),
        "the bench certificate's label must pin a version"
    );
    let h = headers(&[("x-user-id", b"user-4711")]);
    g.bench_function("certificate_label", |b| {
        b.iter(|| {
            let mut req = Request {
                headers: &h,
                source: b"10.1.2.3:51234",
            };
            black_box(decide(black_box(&cfg), &mut req, Some(black_box(&peer))))
        })
    });
    g.finish();
}

fn bench_split(c: &mut Criterion) {
    let mut g = c.benchmark_group("split");
    let (weights, total) = ([90u32, 10], 100u32);
    g.bench_function("flagd_bucket", |b| {
        b.iter(|| {
            let h = split::hash(black_box(b"checkout-2026-11"), black_box(b"user-4711"));
            black_box(split::pick(h, black_box(&weights), total))
        })
    });
    g.finish();
}

fn bench_trace(c: &mut Criterion) {
    let settings = TraceSettings::default();
    let random = [0x5au8; 24];
    let mut g = c.benchmark_group("trace");
    let parent: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let state: &[u8] = b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    g.bench_function("propagate_continue", |b| {
        b.iter(|| {
            black_box(trace::propagate(
                black_box(&[parent]),
                black_box(&[state]),
                &settings,
                random,
            ))
        })
    });
    let new_span = TraceSettings {
        new_span: true,
        ..TraceSettings::default()
    };
    g.bench_function("propagate_new_span", |b| {
        b.iter(|| {
            black_box(trace::propagate(
                black_box(&[parent]),
                black_box(&[state]),
                &new_span,
                random,
            ))
        })
    });
    let bag: &[u8] = b"userId=alice,isProduction=false";
    let edit = baggage::Edit::Set {
        key: "rollout.checkout-2026-11",
        member: "rollout.checkout-2026-11=canary",
    };
    g.bench_function("baggage_set", |b| {
        b.iter(|| black_box(baggage::apply(black_box(&[bag]), &[edit])))
    });
    g.bench_function("propagate_new_trace", |b| {
        b.iter(|| {
            black_box(trace::propagate(
                black_box(&[]),
                black_box(&[]),
                &settings,
                random,
            ))
        })
    });
    g.finish();
}

fn bench_identity(c: &mut Criterion) {
    let cfg = Config::from_json(CONFIG.as_bytes()).expect("bench config");
    let mut g = c.benchmark_group("identity");
    // What a worker does the first time it sees a certificate.
    g.bench_function("parse_certificate_cold", |b| {
        b.iter(|| {
            let cert = parse_certificate(black_box(CLIENT_PEM), None).expect("parses");
            black_box(Peer::from_cert(&cfg, &cert))
        })
    });
    // Every later request: a lookup by SHA-256 digest in a cache holding 256 peers.
    let mut cache: LabelCache<Peer> = LabelCache::new(1024);
    let peer = Peer::from_cert(&cfg, &parse_certificate(CLIENT_PEM, None).expect("parses"));
    let digest = |i: u32| -> Vec<u8> {
        let mut d = format!("{:064x}", u64::from(i) * 0x9e37_79b9_7f4a_7c15).into_bytes();
        d.truncate(64);
        d
    };
    for i in 0..256 {
        cache.insert(digest(i), peer.clone());
    }
    let key = digest(77);
    g.bench_function("label_cache_hit", |b| {
        b.iter(|| black_box(cache.get(black_box(&key))).is_some())
    });
    g.finish();
}

/// Choosing the rollout of a request (issue 16): the cost must not grow with the number of
/// exact-host entries.
fn bench_rollouts(c: &mut Criterion) {
    let mut g = c.benchmark_group("rollouts");
    for n in [1usize, 1000] {
        let f = FilterConfig::from_json(config_with_rollouts(n).as_bytes()).expect("bench rollouts");
        let exact = format!("svc-{}.example.com:8443", (n.max(2) - 2) / 2);
        let hosts: [(&str, &[u8]); 3] = [
            (
                "exact",
                if n > 1 {
                    exact.as_bytes()
                } else {
                    b"a.wild.example.com"
                },
            ),
            ("wildcard_depth2", b"a.b.wild.example.com"),
            ("unmatched", b"www.other-site.example.org"),
        ];
        for (name, host) in hosts {
            g.bench_function(format!("select_{name}_{n}"), |b| {
                b.iter(|| black_box(f.select(Some(black_box(host)), Some(black_box(b"/cart/42")))))
            });
        }
    }
    let json = config_with_rollouts(1000);
    g.sample_size(10);
    g.bench_function("load_1000", |b| {
        b.iter(|| black_box(FilterConfig::from_json(black_box(json.as_bytes())).expect("loads")))
    });
    g.finish();
}

/// `n` rollouts (`n >= 1`) differing only by `pathPrefix` (`/p<i>/`), all on `host` or, with
/// `None`, on any host: the single-host gateway and the host-less list.
fn config_with_paths(n: usize, host: Option<&str>) -> String {
    let hosts = host.map_or(String::new(), |h| format!(r#""hosts":["{h}"],"#));
    let entries: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"match":{{{hosts}"pathPrefix":"/p{i}/"}},"rolloutId":"r-{i}"}}"#))
        .collect();
    format!(
        r#"{{"versions":[{{"name":"stable","weight":90}},{{"name":"canary","weight":10}}],"rollouts":[{}]}}"#,
        entries.join(",")
    )
}

/// Choosing the rollout by path (issue 24): the request matches the last entry, so a scan in
/// configuration order would try all `n`. The host-keyed case beside it for comparison.
fn bench_rollout_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("rollout_paths");
    for n in [1usize, 1000, 10_000] {
        let path = format!("/p{}/items/42", n - 1);
        let cases = [
            (
                "one_host",
                config_with_paths(n, Some("shop.example.com")),
                "shop.example.com",
            ),
            ("any_host", config_with_paths(n, None), "shop.example.com"),
            ("host_keyed", config_with_rollouts(n), "a.wild.example.com"),
        ];
        for (name, json, host) in cases {
            let f = FilterConfig::from_json(json.as_bytes()).expect("bench rollouts");
            // Every case matches the last entry (`config_with_rollouts`' wildcard is last).
            assert_eq!(
                f.select(Some(host.as_bytes()), Some(path.as_bytes())),
                Some(n - 1)
            );
            g.bench_function(format!("select_{name}_{n}"), |b| {
                b.iter(|| {
                    black_box(f.select(Some(black_box(host.as_bytes())), Some(black_box(path.as_bytes()))))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_decide,
    bench_split,
    bench_trace,
    bench_identity,
    bench_rollouts,
    bench_rollout_paths
);
criterion_main!(benches);
