//! Issue 21: gRPC calls are judged by their final gRPC status. A real gRPC client and
//! server (HTTP/2 both ways, h2c) through the real Envoy with the filter: the canary
//! fails every 5th call — trailers-only UNAVAILABLE, UNAVAILABLE in the trailers, a
//! stream reset before the response (Envoy answers UNAVAILABLE itself) and one after
//! its headers — while every HTTP status stays 200. The filter's counters must match
//! what the client saw, per version and code, and `rollout-report` must abort.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use rollout_e2e::grpc::{Failure, GrpcClient};
use rollout_e2e::{Envoy, Options};
use rollout_filter::grpc::GrpcCode;

mod common;
use common::row;

const ROLLOUT: &str = "checkout-2026-11";
const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
  "stickyKeys": [ { "header": "x-user-id" } ],
  "responseHeaders": { "version": "x-rollout-served" }
}"#;
const CANARY_CALLS: u64 = 200;

#[test]
fn grpc_canary_failing_every_fifth_call_is_counted_by_code_and_aborted() {
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.grpc = true;
    opts.fail_every = vec![("canary".into(), 5)];
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let mut client = GrpcClient::connect(envoy.listener).unwrap();

    // Sticky keys from gRPC metadata (an ordinary request header), until the canary has
    // exactly CANARY_CALLS calls: its success is then exactly 80 %.
    let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_key: Vec<String> = Vec::new();
    let mut canary = 0;
    while canary < CANARY_CALLS {
        let i = by_key.len();
        // Every 10th call repeats an earlier key: it must keep its version.
        let key = if i % 10 == 9 {
            format!("grpc-user-{}", i - 5)
        } else {
            format!("grpc-user-{i}")
        };
        let r = client
            .call(&[("x-user-id", &key)])
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        let version = r.header("x-rollout-served").unwrap_or("none").to_string();
        if i % 10 == 9 {
            assert_eq!(version, by_key[i - 5], "{key} is sticky");
        }
        if r.code == "OK" {
            assert_eq!(r.header("x-served-by"), Some(version.as_str()), "{r:?}");
            assert!(
                String::from_utf8_lossy(&r.message).contains("read 12 bytes"),
                "{r:?}"
            );
        }
        canary += u64::from(version == "canary");
        *seen.entry((version.clone(), r.code.clone())).or_default() += 1;
        by_key.push(version);
    }
    println!("client saw (version, code) -> calls: {seen:?}");
    let calls = |v: &str| -> u64 { seen.iter().filter(|((x, _), _)| x == v).map(|(_, n)| n).sum() };
    let (canary, stable) = (calls("canary"), calls("stable"));
    assert!(stable > 100 && canary == CANARY_CALLS, "{seen:?}");
    assert_eq!(seen.keys().filter(|(v, _)| v == "none").count(), 0, "{seen:?}");

    // Every call reached its version's server; the client saw each failure the server made.
    let servers: BTreeMap<&str, u64> = envoy
        .grpc_upstreams
        .iter()
        .map(|g| (g.name.as_str(), g.calls.load(Ordering::SeqCst)))
        .collect();
    assert_eq!(servers["canary"], canary);
    assert_eq!(servers["stable"], stable);
    let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
    for call in 1..=canary {
        let code = Failure::of_call(call, 5).map_or("OK", Failure::code);
        *want.entry(("canary".into(), code.into())).or_default() += 1;
    }
    want.insert(("stable".into(), "OK".into()), stable);
    assert_eq!(seen, want, "what the client saw is what the server did");
    let failures = canary / 5;
    assert_eq!(seen[&("canary".to_string(), "reset".to_string())], failures / 4);

    // The filter's counters, per version and code, are exactly what the client saw.
    let stats = envoy.stats();
    let metric = |name: &str| stats.get(&format!("wasmcustom.{name}")).copied().unwrap_or(0);
    for v in ["stable", "canary"] {
        for c in GrpcCode::ALL {
            let n = metric(&format!(
                "rollout_grpc_responses_total;rollout={ROLLOUT};version={v};grpc_code={}",
                c.as_str()
            ));
            let want = seen
                .get(&(v.to_string(), c.as_str().to_string()))
                .copied()
                .unwrap_or(0);
            assert_eq!(n, want, "{v} {}", c.as_str());
        }
        // gRPC calls are judged by code only: none is in the HTTP class counter.
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx", "reset"] {
            let n = metric(&format!(
                "rollout_responses_total;rollout={ROLLOUT};version={v};code_class={class}"
            ));
            assert_eq!(n, 0, "{v} {class}");
        }
    }
    // Envoy's own UNAVAILABLE for the reset-before-headers calls, and nothing else.
    let envoy_made = (1..=canary)
        .filter(|c| Failure::of_call(*c, 5) == Some(Failure::ResetBeforeHeaders))
        .count() as u64;
    assert_eq!(
        metric(&format!(
            "rollout_local_replies_total;rollout={ROLLOUT};version=canary"
        )),
        envoy_made
    );
    assert_eq!(
        metric(&format!(
            "rollout_local_replies_total;rollout={ROLLOUT};version=stable"
        )),
        0
    );
    // The same on Prometheus's side of Envoy, with labels.
    assert_eq!(
        envoy.prom_value(
            "rollout_grpc_responses_total",
            &[("version", "canary"), ("grpc_code", "UNAVAILABLE")]
        ) as u64,
        seen[&("canary".to_string(), "UNAVAILABLE".to_string())]
    );

    let (code, text, err) = common::report(&envoy, common::ABORT_THRESHOLDS);
    println!("{text}{err}");
    assert_eq!(code, Some(2), "abort exits 2\n{text}{err}");
    let c = row(&text, "canary");
    assert_eq!(c[1], "candidate");
    assert_eq!(c[2], canary.to_string(), "requests");
    assert_eq!(c[4], canary.to_string(), "responses");
    assert_eq!(c[5], "80.00%", "success");
    assert_eq!(c[6], "0", "no 5xx: every HTTP status was 200");
    assert_eq!(c[8], envoy_made.to_string(), "local replies");
    assert_eq!(c[11], "abort");
    let s = row(&text, "stable");
    assert_eq!(s[4], stable.to_string());
    assert_eq!(s[5], "100.00%");
    assert!(
        text.contains(&format!(
            "({failures} of {canary} responses failed: 0 5xx or reset, {failures} gRPC calls with a failing code)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("grpc codes stable: OK {stable}\n")),
        "{text}"
    );
    assert!(text.trim_end().ends_with("verdict: ABORT"), "{text}");
}

/// A gRPC-Web upstream over HTTP/1.1: every response is HTTP 200 with a data frame, then what
/// the request's `x-reply` asks for: `ok` and `fail` a trailer frame (status 0, or 14
/// UNAVAILABLE), `none` no trailer frame at all.
fn grpc_web_upstream(name: &'static str) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut rd = BufReader::new(conn);
                loop {
                    let (mut reply, mut len) = (String::new(), 0usize);
                    loop {
                        let mut line = String::new();
                        if rd.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_ascii_lowercase();
                        if line.is_empty() {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("x-reply:") {
                            reply = v.trim().to_string();
                        }
                        if let Some(v) = line.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if rd.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut resp =
                        rollout_e2e::grpc::frame(&rollout_e2e::grpc::string_message(name)).to_vec();
                    let status = match reply.as_str() {
                        "ok" => Some("0"),
                        "fail" => Some("14"),
                        _ => None,
                    };
                    if let Some(s) = status {
                        let trailer = format!("grpc-status:{s}\r\ngrpc-message:x\r\n");
                        resp.push(0x80);
                        resp.extend_from_slice(&(trailer.len() as u32).to_be_bytes());
                        resp.extend_from_slice(trailer.as_bytes());
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\nx-served-by: {name}\r\ncontent-length: {}\r\n\r\n",
                        resp.len()
                    );
                    if out
                        .write_all(head.as_bytes())
                        .and_then(|_| out.write_all(&resp))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Issue 30: gRPC-Web through the real Envoy: the status in the body's trailer frame (success
/// and failure) and an HTTP 200 response with no status at all (`missing`), each counted by
/// code, never as an HTTP response.
#[test]
fn grpc_web_status_from_the_trailer_frame_or_missing() {
    let (stable, canary) = (grpc_web_upstream("stable"), grpc_web_upstream("canary"));
    let clusters = [("stable", stable.port()), ("canary", canary.port())];
    let yaml = rollout_e2e::front_bootstrap("", rollout_e2e::CANARY_HEADER_ROUTES, CONFIG, "", &clusters);
    let envoy = Envoy::start_yaml(&yaml, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let a = rollout_e2e::agent();
    let mut sent: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for i in 0..150 {
        let (reply, code) = [("ok", "OK"), ("fail", "UNAVAILABLE"), ("none", "missing")][i % 3];
        let r = a
            .post(&envoy.url("/rollout.test.Echo/Say"))
            .set("content-type", "application/grpc-web+proto")
            .set("x-user-id", &format!("web-{i}"))
            .set("x-reply", reply)
            .send_bytes(&rollout_e2e::grpc::frame(b"hi"))
            .unwrap();
        assert_eq!(r.status(), 200);
        let version = r.header("x-rollout-served").unwrap().to_string();
        assert_eq!(r.header("x-served-by"), Some(version.as_str()));
        // Read to the end, as a client does: a dropped response resets the stream.
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        *sent.entry((version, code)).or_default() += 1;
    }
    let stats = envoy.stats();
    for ((version, code), n) in &sent {
        let key = format!(
            "wasmcustom.rollout_grpc_responses_total;rollout={ROLLOUT};version={version};grpc_code={code}"
        );
        assert_eq!(stats.get(&key), Some(n), "{key}");
    }
    let http: u64 = stats
        .iter()
        .filter(|(k, _)| k.starts_with("wasmcustom.rollout_responses_total;"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(http, 0, "gRPC-Web calls are not HTTP responses");
    println!("gRPC-Web: {sent:?}");
}
