//! Issue: anonymous visitors stay sticky with an issued cookie
//! (`{"cookie": NAME, "issue": true, "maxAge": SECONDS}`). The counting tests run with one
//! Envoy worker and with two: ids issued by two VMs stay unique, returning visitors may come
//! back through the other worker.

use base64::Engine as _;
use rollout_e2e::certs::{Ca, San};
use rollout_e2e::{agent, get, mtls_agent, Envoy, Options, Reply, Spread};
use rollout_filter::split;
use std::collections::{HashMap, HashSet};
use std::process::Command;

const ROLLOUT: &str = "checkout-2026-11";
const WEIGHTS: [(&str, u64); 2] = [("stable", 70), ("canary", 30)];
const ATTRS: &str = "; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax";

const CONFIG: &str = r#"{
  "rolloutId": "checkout-2026-11",
  "versions": [ { "name": "stable", "weight": 70 }, { "name": "canary", "weight": 30 } ],
  "stickyKeys": [ { "header": "x-user-id" }, { "cookie": "rsid", "issue": true, "maxAge": 86400 } ],
  "responseHeaders": { "version": "x-rollout-served" }
}"#;

fn start(opts: Options) -> Envoy {
    Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"))
}

/// flagd `fractional`: murmur3 x86_32 of rolloutId ++ key, bucket = hash * total >> 32,
/// first version whose running weight sum exceeds the bucket.
fn flagd_pick(key: &str) -> &'static str {
    let hash = u64::from(split::hash(ROLLOUT.as_bytes(), key.as_bytes()));
    let total: u64 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let bucket = (hash * total) >> 32;
    let mut acc = 0;
    for (name, w) in WEIGHTS {
        acc += w;
        if bucket < acc {
            return name;
        }
    }
    unreachable!("bucket {bucket} beyond {total}")
}

/// Our `Set-Cookie` values on a reply (the upstream's are `up0=…`, `up1=…`).
fn ours<'a>(set_cookies: &[&'a str]) -> Vec<&'a str> {
    set_cookies
        .iter()
        .copied()
        .filter(|c| c.starts_with("rsid="))
        .collect()
}

/// The id in one issued `Set-Cookie`, after checking every attribute.
fn issued_id(set_cookie: &str, secure: bool) -> String {
    let (pair, attrs) = set_cookie.split_once(';').expect("attributes");
    let want = if secure {
        format!("{ATTRS}; Secure")
    } else {
        ATTRS.to_string()
    };
    assert_eq!(format!(";{attrs}"), want, "attributes of {set_cookie:?}");
    let id = pair.strip_prefix("rsid=").expect("our cookie");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .unwrap_or_else(|e| panic!("id {id:?} is not unpadded base64url: {e}"));
    assert_eq!(
        raw.len(),
        16,
        "id {id:?} carries {} bytes, not 128 bits",
        raw.len()
    );
    id.to_string()
}

/// The one id issued on `r`.
fn one_id(r: &Reply, secure: bool) -> String {
    let set = r.header_all("set-cookie");
    let ours = ours(&set);
    assert_eq!(ours.len(), 1, "want one cookie of ours, got {set:?}");
    issued_id(ours[0], secure)
}

fn metric(envoy: &Envoy, version: &str, source: &str) -> u64 {
    envoy.metric(&format!(
        "rollout_requests_total;rollout={ROLLOUT};version={version};source={source}"
    ))
}

fn fresh_visitors_split_by_weight_on_their_ids_and_returning_ones_stay(workers: u32) {
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.workers = workers;
    let envoy = start(opts);
    let a = Spread::new();
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut counts: HashMap<String, u64> = HashMap::new();
    for _ in 0..400 {
        let r = get(a.next(), &envoy.url("/"), &[]).unwrap();
        assert_eq!(r.status, 200);
        let id = one_id(&r, false);
        // Bucketed by the id in its cookie, exactly where flagd puts it.
        assert_eq!(r.version(), flagd_pick(&id), "id {id}");
        assert_eq!(r.header("x-rollout-served"), Some(r.version()));
        *counts.entry(r.version().to_string()).or_default() += 1;
        ids.push((id, r.version().to_string()));
    }
    let unique: HashSet<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(unique.len(), 400, "issued ids repeat");
    // 400 visitors at 30 %: 120 expected, sd 9.2; ±5 sd fails only if the ids are not random.
    let canary = counts.get("canary").copied().unwrap_or(0);
    assert!(
        (74..=166).contains(&canary),
        "canary {canary} of 400 ({counts:?})"
    );
    for v in ["stable", "canary"] {
        assert_eq!(
            metric(&envoy, v, "sticky_issued"),
            counts.get(v).copied().unwrap_or(0)
        );
    }
    // A label of its own in Prometheus, so new visitors are told from returning ones.
    assert_eq!(
        envoy.prom_value(
            "rollout_requests_total",
            &[("rollout", ROLLOUT), ("source", "sticky_issued")]
        ),
        400.0
    );

    // Returning visitors: same version, no second cookie, counted as plain sticky.
    let mut returned = HashMap::<&str, u64>::new();
    for (id, version) in ids.iter().take(60) {
        for cookie in [format!("rsid={id}"), format!("theme=dark; rsid={id}; a=b")] {
            let r = get(a.next(), &envoy.url("/page"), &[("cookie", &cookie)]).unwrap();
            assert_eq!(r.version(), version, "returning {id}");
            assert!(r.header_all("set-cookie").is_empty(), "{id} got {:?}", r.headers);
            *returned.entry(version.as_str()).or_default() += 1;
        }
    }
    for v in ["stable", "canary"] {
        assert_eq!(metric(&envoy, v, "sticky"), returned.get(v).copied().unwrap_or(0));
    }

    // An earlier key (the user id) decides: no cookie, whatever the cookie state.
    for i in 0..20 {
        let user = format!("user-{i}");
        let r = get(a.next(), &envoy.url("/"), &[("x-user-id", &user)]).unwrap();
        assert_eq!(r.version(), flagd_pick(&user));
        assert!(r.header_all("set-cookie").is_empty(), "{:?}", r.headers);
    }
    // An empty cookie is no key: a fresh one replaces it.
    let r = get(a.next(), &envoy.url("/"), &[("cookie", "rsid=")]).unwrap();
    one_id(&r, false);
    envoy.assert_every_worker_served(workers);
}

#[test]
fn upstream_set_cookies_are_all_kept() {
    let envoy = start(Options::new(CONFIG, &["stable", "canary"]));
    let a = agent();
    let r = get(&a, &envoy.url("/"), &[("x-echo-set-cookies", "3")]).unwrap();
    let set = r.header_all("set-cookie");
    assert_eq!(set.len(), 4, "{set:?}");
    for i in 0..3 {
        assert!(set.contains(&format!("up{i}=v{i}; Path=/").as_str()), "{set:?}");
    }
    let id = one_id(&r, false);
    // Returning: only the upstream's own.
    let r = get(
        &a,
        &envoy.url("/"),
        &[("x-echo-set-cookies", "2"), ("cookie", &format!("rsid={id}"))],
    )
    .unwrap();
    assert_eq!(
        r.header_all("set-cookie"),
        vec!["up0=v0; Path=/", "up1=v1; Path=/"]
    );
}

#[test]
fn secure_when_the_visitor_came_over_tls() {
    // A TLS listener (the harness's requires a client certificate).
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.tls = Some(ca.server_files(dir.path()));
    let envoy = start(opts);
    let client = ca.issue(&[San::Dns("browser.example.com")]);
    let a = mtls_agent(&ca.pem, Some((&client.cert, &client.key)));
    for _ in 0..10 {
        let r = get(&a, &envoy.https_url("/"), &[("x-echo-set-cookies", "1")]).unwrap();
        let id = one_id(&r, true);
        assert_eq!(r.version(), flagd_pick(&id));
        assert_eq!(r.header_all("set-cookie").len(), 2);
    }

    // Behind a TLS-terminating hop that says so (this Envoy is no edge: it keeps the
    // header), Secure too; plain HTTP without it, not.
    let plain = start(Options::new(CONFIG, &["stable", "canary"]));
    let a = agent();
    let r = get(&a, &plain.url("/"), &[("x-forwarded-proto", "https")]).unwrap();
    one_id(&r, true);
    let r = get(&a, &plain.url("/"), &[("x-forwarded-proto", "http")]).unwrap();
    one_id(&r, false);
}

fn local_replies_carry_the_cookie_too(workers: u32) {
    // The canary's upstream is down: Envoy answers 503 itself.
    let mut opts = Options::new(CONFIG, &["stable", "canary"]);
    opts.dead_versions = vec!["canary".into()];
    opts.workers = workers;
    let envoy = start(opts);
    let a = Spread::new();
    let mut seen = HashMap::<&str, Vec<String>>::new();
    for _ in 0..60 {
        let r = get(a.next(), &envoy.url("/"), &[]).unwrap();
        let id = one_id(&r, false);
        let want = flagd_pick(&id);
        assert_eq!(r.header("x-rollout-served"), Some(want));
        assert_eq!(r.status, if want == "canary" { 503 } else { 200 }, "id {id}");
        seen.entry(want).or_default().push(id);
    }
    // 60 visitors at 30 %: no canary at all has probability 0.7^60 < 1e-9.
    let canary = seen.get("canary").cloned().unwrap_or_default();
    assert!(!canary.is_empty() && seen.contains_key("stable"), "{seen:?}");
    // Back with its cookie, a canary visitor stays on the canary: no new cookie, no flip.
    for id in canary.iter().take(5) {
        let r = get(a.next(), &envoy.url("/"), &[("cookie", &format!("rsid={id}"))]).unwrap();
        assert_eq!((r.status, r.header("x-rollout-served")), (503, Some("canary")));
        assert!(r.header_all("set-cookie").is_empty());
    }
    assert_eq!(
        envoy.metric(&format!(
            "rollout_local_replies_total;rollout={ROLLOUT};version=canary"
        )),
        canary.len() as u64 + canary.len().min(5) as u64
    );
    envoy.assert_every_worker_served(workers);
}

/// `curl --http2-prior-knowledge -i`: status line, headers (lowercase names), body.
fn curl_h2(url: &str, headers: &[&str]) -> (String, Vec<(String, String)>, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--http2-prior-knowledge", "--max-time", "10"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// `nghttp -v` (HTTP/2 prior knowledge), which sends each `-H cookie:` as its own header
/// field as browsers do: the response headers received, and the body.
fn nghttp(url: &str, headers: &[&str]) -> (Vec<(String, String)>, String) {
    let mut cmd = Command::new("nghttp");
    cmd.args(["-v", "-t", "10"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("nghttp");
    assert!(
        out.status.success(),
        "nghttp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut recv = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        // `[  0.014] recv (stream_id=13) :status: 200`
        if let Some((_, h)) = line
            .split_once(") ")
            .filter(|_| line.contains("] recv (stream_id="))
        {
            if let Some((k, v)) = h.trim_start_matches(':').split_once(": ") {
                recv.push((k.to_string(), v.to_string()));
            }
        } else if line.starts_with('{') {
            // The body, with nghttp's next log line glued to its end.
            body = line[..=line.rfind('}').unwrap_or(0)].to_string();
        }
    }
    (recv, body)
}

#[test]
fn http2_visitors_get_and_keep_their_cookie() {
    let envoy = start(Options::new(CONFIG, &["stable", "canary"]));
    let url = envoy.url("/");
    for _ in 0..10 {
        let (status, headers, body) = curl_h2(&url, &["x-echo-set-cookies: 2"]);
        assert!(status.starts_with("HTTP/2 200"), "{status}");
        let set: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(set.len(), 3, "{set:?}");
        assert!(set.contains(&"up0=v0; Path=/") && set.contains(&"up1=v1; Path=/"));
        let ours = ours(&set);
        assert_eq!(ours.len(), 1, "{set:?}");
        let id = issued_id(ours[0], false);
        let seen: rollout_e2e::Seen = serde_json::from_str(&body).expect("echo body");
        assert_eq!(seen.upstream, flagd_pick(&id));

        // Back over HTTP/2 with the cookie crumbled into several header fields.
        let (recv, body) = nghttp(
            &url,
            &["cookie: theme=dark", &format!("cookie: rsid={id}"), "cookie: a=b"],
        );
        assert!(recv.iter().any(|(k, v)| k == "status" && v == "200"), "{recv:?}");
        assert!(!recv.iter().any(|(k, _)| k == "set-cookie"), "{recv:?}");
        let seen: rollout_e2e::Seen = serde_json::from_str(&body).expect("echo body");
        assert_eq!(seen.upstream, flagd_pick(&id), "returning {id}");
    }
}

rollout_e2e::on_one_and_two_workers!(
    fresh_visitors_split_by_weight_on_their_ids_and_returning_ones_stay,
    local_replies_carry_the_cookie_too,
);
