//! A real gRPC exchange for the e2e tests: a unary gRPC server and client over HTTP/2
//! without TLS (h2c), on the `h2` crate. The wire format is gRPC's own (grpc
//! doc/PROTOCOL-HTTP2.md): `POST`, `content-type: application/grpc`, `te: trailers`,
//! length-prefixed protobuf messages, `grpc-status` in the trailers or, for an error
//! without a message, in the headers of a trailers-only response.
//!
//! The server answers every `n`th call with a failure, rotating through [`Failure`], so a
//! test sees each way a gRPC call can fail; the client reports what it saw, as a gRPC
//! client library would: the final code, or `reset` / `missing`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// How a failing call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `:status 200` + `grpc-status: 14` in the headers, end of stream: trailers-only.
    TrailersOnly,
    /// Headers, then trailers with `grpc-status: 14`.
    Trailers,
    /// RST_STREAM before any response headers: Envoy answers the call itself
    /// (trailers-only UNAVAILABLE, a local reply).
    ResetBeforeHeaders,
    /// Headers, then RST_STREAM: the client's stream is reset; no status at all.
    ResetAfterHeaders,
}

impl Failure {
    pub const ROTATION: [Failure; 4] = [
        Failure::TrailersOnly,
        Failure::Trailers,
        Failure::ResetBeforeHeaders,
        Failure::ResetAfterHeaders,
    ];

    /// What the filter (and a client) should make of it.
    pub fn code(self) -> &'static str {
        match self {
            Failure::ResetAfterHeaders => "reset",
            _ => "UNAVAILABLE",
        }
    }

    /// The failure of the `call`th call (1-based) of a server failing every `every`th.
    pub fn of_call(call: u64, every: u64) -> Option<Failure> {
        (every > 0 && call.is_multiple_of(every))
            .then(|| Failure::ROTATION[((call / every - 1) % Failure::ROTATION.len() as u64) as usize])
    }
}

/// A gRPC server on 127.0.0.1 in its own thread; stops with the process.
pub struct GrpcServer {
    pub name: String,
    pub addr: SocketAddr,
    pub calls: Arc<AtomicU64>,
    /// Every n-th call fails (0: none); a test may change it at any time.
    pub fail_every: Arc<AtomicU64>,
}

/// One gRPC message: uncompressed flag, big-endian length, payload.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(0);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    Bytes::from(f)
}

/// A protobuf message with one string field (number 1): `message Reply { string text = 1; }`.
pub fn string_message(text: &str) -> Vec<u8> {
    let mut m = vec![0x0a, text.len() as u8];
    m.extend_from_slice(&text.as_bytes()[..text.len().min(127)]);
    m
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

impl GrpcServer {
    /// A server that fails every `fail_every`th call (0: never), rotating through [`Failure`].
    pub fn start(name: &str, fail_every: u64) -> GrpcServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let calls = Arc::new(AtomicU64::new(0));
        let fail_every = Arc::new(AtomicU64::new(fail_every));
        let (n, c, f) = (name.to_string(), calls.clone(), fail_every.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let (n, c, f) = (n.clone(), c.clone(), f.clone());
                    tokio::spawn(serve(sock, n, c, f));
                }
            })
        });
        GrpcServer {
            name: name.to_string(),
            addr,
            calls,
            fail_every,
        }
    }
}

async fn serve(sock: tokio::net::TcpStream, name: String, calls: Arc<AtomicU64>, fail_every: Arc<AtomicU64>) {
    let Ok(mut conn) = h2::server::handshake(sock).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail_every = fail_every.load(Ordering::Relaxed);
        let name = name.clone();
        tokio::spawn(async move {
            // Read the request message to its end, as a unary server does.
            let mut body = req.into_body();
            let mut got = 0usize;
            while let Some(Ok(chunk)) = body.data().await {
                got += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let head = |status: Option<&str>| {
                let mut b = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .header("x-served-by", name.as_str());
                if let Some(s) = status {
                    b = b
                        .header("grpc-status", s)
                        .header("grpc-message", "canary%20says%20no");
                }
                b.body(()).expect("response")
            };
            let trailers = |status: &str| {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", status.parse().expect("value"));
                t
            };
            match Failure::of_call(call, fail_every) {
                None => {
                    let Ok(mut stream) = respond.send_response(head(None), false) else {
                        return;
                    };
                    let reply = string_message(&format!("{name} read {got} bytes"));
                    let _ = stream.send_data(frame(&reply), false);
                    let _ = stream.send_trailers(trailers("0"));
                }
                Some(Failure::TrailersOnly) => {
                    let _ = respond.send_response(head(Some("14")), true);
                }
                Some(Failure::Trailers) => {
                    if let Ok(mut stream) = respond.send_response(head(None), false) {
                        let _ = stream.send_trailers(trailers("14"));
                    }
                }
                Some(Failure::ResetBeforeHeaders) => respond.send_reset(h2::Reason::INTERNAL_ERROR),
                Some(Failure::ResetAfterHeaders) => {
                    if let Ok(mut stream) = respond.send_response(head(None), false) {
                        // Let the headers leave before the reset.
                        tokio::task::yield_now().await;
                        stream.send_reset(h2::Reason::INTERNAL_ERROR);
                    }
                }
            }
        });
    }
}

/// What a client saw of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// The final code's name (`OK`, `UNAVAILABLE`, ...), `reset` for a reset stream,
    /// `missing` for a response that ended without `grpc-status`.
    pub code: String,
    /// Response headers (empty when the stream was reset before them).
    pub headers: http::HeaderMap,
    /// The reply message's payload, for an OK call.
    pub message: Vec<u8>,
}

impl CallResult {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn code_name(v: &[u8]) -> String {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .and_then(|n| rollout_filter::grpc::GrpcCode::ALL.get(n).filter(|_| n <= 16))
        .map_or("UNKNOWN", |c| c.as_str())
        .to_string()
}

/// A gRPC client over one h2c connection (prior knowledge, as gRPC clients do).
pub struct GrpcClient {
    rt: tokio::runtime::Runtime,
    send: h2::client::SendRequest<Bytes>,
    authority: String,
}

impl GrpcClient {
    pub fn connect(addr: SocketAddr) -> Result<GrpcClient, String> {
        let rt = runtime();
        let send = rt.block_on(async {
            let sock = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let (send, conn) = h2::client::handshake(sock).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(send)
        })?;
        Ok(GrpcClient {
            rt,
            send,
            authority: format!("127.0.0.1:{}", addr.port()),
        })
    }

    /// One unary call of `/rollout.test.Echo/Say` with `metadata` as request headers.
    pub fn call(&mut self, metadata: &[(&str, &str)]) -> Result<CallResult, String> {
        let mut b = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/rollout.test.Echo/Say", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in metadata {
            b = b.header(*k, *v);
        }
        let req = b.body(()).map_err(|e| e.to_string())?;
        let send = self.send.clone();
        let fut = async move {
            let mut send = send.ready().await.map_err(|e| e.to_string())?;
            let (resp, mut stream) = send.send_request(req, false).map_err(|e| e.to_string())?;
            stream
                .send_data(frame(&string_message("hello")), true)
                .map_err(|e| e.to_string())?;
            let resp = match resp.await {
                Ok(r) => r,
                Err(e) if e.is_reset() => {
                    return Ok(CallResult {
                        code: "reset".into(),
                        headers: http::HeaderMap::new(),
                        message: Vec::new(),
                    })
                }
                Err(e) => return Err(e.to_string()),
            };
            let (parts, mut body) = resp.into_parts();
            let mut result = CallResult {
                code: String::new(),
                headers: parts.headers.clone(),
                message: Vec::new(),
            };
            if let Some(s) = parts.headers.get("grpc-status").filter(|_| body.is_end_stream()) {
                result.code = code_name(s.as_bytes());
                return Ok(result);
            }
            let mut data = Vec::new();
            loop {
                match body.data().await {
                    Some(Ok(chunk)) => {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        data.extend_from_slice(&chunk);
                    }
                    Some(Err(e)) if e.is_reset() => {
                        result.code = "reset".into();
                        return Ok(result);
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => break,
                }
            }
            result.code = match body.trailers().await {
                Ok(Some(t)) => t
                    .get("grpc-status")
                    .map_or_else(|| "missing".to_string(), |s| code_name(s.as_bytes())),
                Ok(None) => "missing".into(),
                Err(e) if e.is_reset() => "reset".into(),
                Err(e) => return Err(e.to_string()),
            };
            if data.len() >= 5 {
                result.message = data[5..].to_vec();
            }
            Ok(result)
        };
        self.rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(10), fut).await {
                Ok(r) => r,
                Err(_) => Err("gRPC call timed out".to_string()),
            }
        })
    }
}
