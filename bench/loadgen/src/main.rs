//! `rollout-bench-load`: a closed-loop HTTP/1.1 keep-alive load client for
//! `bench/run.py`, over plain TCP or over TLS presenting a client certificate.
//!
//! wrk 4.1 and h2load 1.52 (the Debian packages) speak TLS but cannot present
//! a client certificate, which the mTLS rows need. One OS thread per
//! connection, one request in flight per connection (like wrk), handshakes
//! done before the clock starts. Prints one JSON line:
//! `{"requests":…,"seconds":…,"rps":…,"p50_us":…,"p99_us":…,"errors":…,"non_2xx":…}`.
//!
//! ```text
//! rollout-bench-load --addr 127.0.0.1:PORT [--seconds 5] [--connections 32]
//!     [--header 'x-user-id: alice']... [--path /]
//!     [--ca ca.pem --cert client.pem --key client.key [--server-name localhost]]
//! ```
//! `--ca` switches TLS on; `--cert`/`--key` add the client certificate.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

struct Args {
    addr: SocketAddr,
    seconds: f64,
    connections: usize,
    path: String,
    headers: Vec<String>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    server_name: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        seconds: 5.0,
        connections: 32,
        path: "/".into(),
        headers: Vec::new(),
        ca: None,
        cert: None,
        key: None,
        server_name: "localhost".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--connections" => a.connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?,
            "--path" => a.path = value()?,
            "--header" => a.headers.push(value()?),
            "--ca" => a.ca = Some(value()?),
            "--cert" => a.cert = Some(value()?),
            "--key" => a.key = Some(value()?),
            "--server-name" => a.server_name = value()?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if a.addr.port() == 0 {
        return Err("--addr 127.0.0.1:PORT is required".into());
    }
    // Load only ever targets this machine.
    if !a.addr.ip().is_loopback() {
        return Err(format!("--addr {} is not a loopback address", a.addr));
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0) || a.connections == 0 || a.connections > 1024 {
        return Err("--seconds must be in (0, 600] and --connections in 1..=1024".into());
    }
    Ok(a)
}

fn tls_config(a: &Args, ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let open = |p: &str| File::open(p).map(BufReader::new).map_err(|e| format!("{p}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut open(ca)?) {
        let c = c.map_err(|e| format!("{ca}: {e}"))?;
        roots.add(c).map_err(|e| format!("{ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => {
            let chain = rustls_pemfile::certs(&mut open(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{cert}: {e}"))?;
            let key_der = rustls_pemfile::private_key(&mut open(key)?)
                .map_err(|e| format!("{key}: {e}"))?
                .ok_or(format!("{key}: no private key"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| e.to_string())?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(Arc::new(config))
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn connect(
    addr: SocketAddr,
    tls: Option<(&Arc<rustls::ClientConfig>, &ServerName<'static>)>,
) -> Result<Box<dyn Conn>, String> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let Some((config, name)) = tls else {
        return Ok(Box::new(tcp));
    };
    let conn = rustls::ClientConnection::new(Arc::clone(config), name.clone()).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(Box::new(stream))
}

/// Reads one response (Content-Length framed) and returns its status code.
fn read_response(conn: &mut dyn Conn, buf: &mut Vec<u8>) -> Result<u16, String> {
    let mut chunk = [0u8; 4096];
    let mut head_end = None;
    let mut need = usize::MAX;
    loop {
        if head_end.is_none() {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let end = at + 4;
                head_end = Some(end);
                need = end + content_length(&buf[..end])?;
            }
        }
        if buf.len() >= need {
            break;
        }
        let n = conn.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = buf
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    buf.drain(..need);
    Ok(status)
}

fn content_length(head: &[u8]) -> Result<usize, String> {
    for line in head.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            return std::str::from_utf8(&line[15..])
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| "bad content-length".to_string());
        }
    }
    Err("response without content-length (chunked responses are not supported)".into())
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    non_2xx: u64,
    finished: Option<Instant>,
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let tls = match &a.ca {
        Some(ca) => Some((
            tls_config(&a, ca)?,
            ServerName::try_from(a.server_name.clone()).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let mut request = format!("GET {} HTTP/1.1\r\nhost: bench\r\n", a.path);
    for h in &a.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = Arc::new(request.into_bytes());

    let mut conns = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        conns.push(connect(a.addr, tls.as_ref().map(|(c, n)| (c, n)))?);
    }
    let barrier = Arc::new(Barrier::new(a.connections + 1));
    let run_for = Duration::from_secs_f64(a.seconds);
    let mut threads = Vec::with_capacity(a.connections);
    for mut conn in conns {
        let barrier = Arc::clone(&barrier);
        let request = Arc::clone(&request);
        threads.push(std::thread::spawn(move || {
            let mut t = Tally {
                latencies_us: Vec::with_capacity(1 << 16),
                ..Tally::default()
            };
            let mut buf = Vec::with_capacity(4096);
            barrier.wait();
            let deadline = Instant::now() + run_for;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let status = conn
                    .write_all(&request)
                    .map_err(|e| format!("write: {e}"))
                    .and_then(|()| read_response(conn.as_mut(), &mut buf));
                match status {
                    Ok(s) => {
                        let us = t0.elapsed().as_micros();
                        t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        if !(200..300).contains(&s) {
                            t.non_2xx += 1;
                        }
                    }
                    Err(e) => {
                        if t.errors == 0 {
                            eprintln!("rollout-bench-load: {e}");
                        }
                        t.errors += 1;
                        break;
                    }
                }
            }
            t.finished = Some(Instant::now());
            t
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut all = Vec::new();
    let (mut errors, mut non_2xx, mut end) = (0, 0, start);
    for th in threads {
        let t = th.join().map_err(|_| "a load thread panicked")?;
        all.extend_from_slice(&t.latencies_us);
        errors += t.errors;
        non_2xx += t.non_2xx;
        end = end.max(t.finished.unwrap_or(start));
    }
    all.sort_unstable();
    let pct = |p: usize| all.get(all.len() * p / 100).copied().unwrap_or(0);
    let seconds = end.duration_since(start).as_secs_f64();
    let rps = if seconds > 0.0 {
        all.len() as f64 / seconds
    } else {
        0.0
    };
    println!(
        "{{\"requests\":{},\"seconds\":{seconds:.3},\"rps\":{rps:.1},\"p50_us\":{},\"p99_us\":{},\"errors\":{errors},\"non_2xx\":{non_2xx}}}",
        all.len(),
        pct(50),
        pct(99)
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("rollout-bench-load: {e}");
        std::process::exit(2);
    }
}
