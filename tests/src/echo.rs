//! An HTTP/1.1 echo upstream: answers every request with JSON naming itself and
//! listing the request line and headers it received, so tests see exactly what
//! left Envoy. A request header `x-echo-status: NNN` sets the response status, and
//! `x-echo-set-cookies: N` adds N `Set-Cookie` headers (`up0=v0; Path=/`, `up1=v1; Path=/`, …),
//! and `x-echo-delay-ms: N` holds the answer back N ms (at most 1 s), for a known latency.
//! It counts what it served per `Host` header too ([`Echo::served_by_host`]).
//!
//! [`Echo::start_forwarding`] makes it an app in a call chain: each request is first passed to the
//! next hop with only `baggage` and `traceparent` (what an OpenTelemetry-instrumented app
//! propagates by itself), and the next hop's reply is reported as [`Seen::next`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seen {
    pub upstream: String,
    pub path: String,
    /// Lowercased names, in arrival order, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// A forwarding echo: what the next hop reported (`None` if it did not answer in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Box<Seen>>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub struct Echo {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    /// Requests served, by `Host` header as received.
    hosts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Every n-th request gets a 503 (0: none, 1: all); a test may change it at any time.
    pub fail_every: Arc<AtomicU64>,
}

impl Echo {
    pub fn start(name: &str) -> Echo {
        Self::start_failing(name, 0)
    }

    /// An address where nothing listens: Envoy's connection attempts fail.
    pub fn dead(name: &str) -> Echo {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        Echo {
            name: name.to_string(),
            addr,
            requests: Arc::new(AtomicU64::new(0)),
            hosts: Arc::default(),
            fail_every: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Like `start`, but every `fail_every`th request (counting from 1) gets a 503.
    pub fn start_failing(name: &str, fail_every: u64) -> Echo {
        Self::spawn(name, fail_every, None)
    }

    /// An app that calls `http://<next><path>` (set once the next hop is up) for every request,
    /// forwarding only `baggage` and `traceparent`, and reports that hop's reply as `next`.
    pub fn start_forwarding(name: &str, next: Arc<OnceLock<SocketAddr>>) -> Echo {
        Self::spawn(name, 0, Some(next))
    }

    fn spawn(name: &str, fail_every: u64, next: Option<Arc<OnceLock<SocketAddr>>>) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo address");
        let requests = Arc::new(AtomicU64::new(0));
        let hosts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let fail_every = Arc::new(AtomicU64::new(fail_every));
        let (n, r, h, f) = (
            name.to_string(),
            requests.clone(),
            hosts.clone(),
            fail_every.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (n, r, h, f, next) = (n.clone(), r.clone(), h.clone(), f.clone(), next.clone());
                std::thread::spawn(move || serve(conn, &n, (&r, &h), &f, next.as_deref()));
            }
        });
        Echo {
            name: name.to_string(),
            addr,
            requests,
            hosts,
            fail_every,
        }
    }

    /// Requests served so far, by `Host` header (as received, port included).
    pub fn served_by_host(&self) -> BTreeMap<String, u64> {
        self.hosts.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// The app's outgoing call: the propagated context only, never the other headers.
fn forward(next: &OnceLock<SocketAddr>, path: &str, headers: &[(String, String)]) -> Option<Box<Seen>> {
    let addr = next.get()?;
    let mut req = ureq::get(&format!("http://{addr}{path}")).timeout(std::time::Duration::from_secs(10));
    for (k, v) in headers {
        if k == "baggage" || k == "traceparent" {
            req = req.set(k, v);
        }
    }
    let body = match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_string().ok()?,
        Err(_) => return None,
    };
    serde_json::from_str(&body).ok().map(Box::new)
}

/// What an echo counts: every request, and requests by `Host`.
type Counts<'a> = (&'a AtomicU64, &'a Mutex<BTreeMap<String, u64>>);

fn serve(
    conn: TcpStream,
    name: &str,
    (count, hosts): Counts,
    fail_every: &AtomicU64,
    next: Option<&OnceLock<SocketAddr>>,
) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut rd = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        match rd.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request_line = String::from_utf8_lossy(&line).trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        let mut close = false;
        let mut status = 200u16;
        let mut set_cookies = 0usize;
        let mut delay_ms = 0u64;
        loop {
            let mut h = Vec::new();
            if rd.read_until(b'\n', &mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = String::from_utf8_lossy(&h).trim_end().to_string();
            if h.is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            match k.as_str() {
                "content-length" => content_length = v.parse().unwrap_or(0),
                "connection" if v.eq_ignore_ascii_case("close") => close = true,
                "x-echo-status" => status = v.parse().unwrap_or(200),
                "x-echo-set-cookies" => set_cookies = v.parse().unwrap_or(0).min(16),
                "x-echo-delay-ms" => delay_ms = v.parse().unwrap_or(0).min(1000),
                _ => {}
            }
            headers.push((k, v));
        }
        let mut body = vec![0u8; content_length];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        let nth = count.fetch_add(1, Ordering::Relaxed) + 1;
        if let (Ok(mut by_host), Some((_, host))) = (hosts.lock(), headers.iter().find(|(k, _)| k == "host"))
        {
            *by_host.entry(host.clone()).or_default() += 1;
        }
        let fail_every = fail_every.load(Ordering::Relaxed);
        if fail_every > 0 && nth.is_multiple_of(fail_every) {
            status = 503;
        }
        let next = next.and_then(|n| forward(n, &path, &headers));
        let seen = Seen {
            upstream: name.to_string(),
            path,
            headers,
            next,
        };
        let json = serde_json::to_vec(&seen).unwrap_or_default();
        let cookies: String = (0..set_cookies)
            .map(|i| format!("set-cookie: up{i}=v{i}; Path=/\r\n"))
            .collect();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-served-by: {name}\r\ncontent-length: {}\r\n{cookies}{}\r\n",
            json.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&json).is_err() || close {
            return;
        }
    }
}
