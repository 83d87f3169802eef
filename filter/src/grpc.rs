//! gRPC outcomes. A gRPC call that fails still answers HTTP 200: its outcome is the
//! `grpc-status` of its trailers (or of the headers of a trailers-only response). This
//! module says which requests are gRPC, what their final code is, and which codes are
//! failures for the SLO. Pure: the host glue feeds it the header values it read.
//!
//! The failure rule (docs/grpc.md): the codes a server is to blame for, as
//! OpenTelemetry's semantic conventions mark gRPC server spans as errors and as Envoy maps
//! gRPC codes to 5xx (`Grpc::Utility::grpcToHttpStatus`): UNKNOWN, DEADLINE_EXCEEDED,
//! UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS; plus a call without a status
//! (`missing`) or cut short (`reset`). The other codes are the caller's (4xx-like) or OK.

/// How a request's content-type frames its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Not gRPC: judged by HTTP status class.
    Http,
    /// `application/grpc`, `application/grpc+proto`, ...: status in HTTP/2 trailers.
    Grpc,
    /// `application/grpc-web`, `application/grpc-web+proto`: status in a trailer frame
    /// at the end of the body (or in the headers of a trailers-only response).
    GrpcWeb,
    /// `application/grpc-web-text...`: the same frames, base64-encoded.
    GrpcWebText,
}

impl Protocol {
    /// From a request's `content-type` value (case-insensitive, parameters ignored).
    pub fn of(content_type: Option<&[u8]>) -> Protocol {
        let Some(ct) = content_type else {
            return Protocol::Http;
        };
        let ct = ct.trim_ascii_start();
        let starts = |p: &[u8]| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p);
        // What may follow the media type's name: its end, a `+suffix` or parameters.
        let ends_at = |n: usize| matches!(ct.get(n), None | Some(b'+' | b';' | b' ' | b'\t'));
        if starts(b"application/grpc-web-text") && ends_at(25) {
            Protocol::GrpcWebText
        } else if starts(b"application/grpc-web") && ends_at(20) {
            Protocol::GrpcWeb
        } else if starts(b"application/grpc") && ends_at(16) {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }

    pub fn is_grpc(self) -> bool {
        self != Protocol::Http
    }

    /// Whether the status may come in the response body (gRPC-Web trailer frame).
    pub fn status_in_body(self) -> bool {
        matches!(self, Protocol::GrpcWeb | Protocol::GrpcWebText)
    }
}

/// A gRPC call's final code: the 17 codes of the gRPC spec (doc/statuscodes.md), and two
/// for calls that ended without one. Also the `grpc_code` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
    /// The response ended (HTTP 200) without a `grpc-status`.
    Missing,
    /// The stream ended before any final status: a reset or an abort.
    Reset,
}

impl GrpcCode {
    /// In code order (0..=16), then `missing`, `reset`: `ALL[i] as usize == i`.
    pub const ALL: [GrpcCode; 19] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
        GrpcCode::Missing,
        GrpcCode::Reset,
    ];

    /// The codes that fail the SLO, as a PromQL regex over the `grpc_code` label: the one
    /// rule every shipped query and `rollout-report` use.
    pub const FAILURE_REGEX: &'static str =
        "UNKNOWN|DEADLINE_EXCEEDED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|missing|reset";

    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
            GrpcCode::Missing => "missing",
            GrpcCode::Reset => "reset",
        }
    }

    /// Whether this outcome counts against the SLO (see the module docs).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            GrpcCode::Unknown
                | GrpcCode::DeadlineExceeded
                | GrpcCode::Unimplemented
                | GrpcCode::Internal
                | GrpcCode::Unavailable
                | GrpcCode::DataLoss
                | GrpcCode::Missing
                | GrpcCode::Reset
        )
    }

    /// A `grpc-status` value: decimal digits. A number outside 0..=16 is UNKNOWN, as a gRPC
    /// client reads a code it does not know; `None` for a value that is not a number.
    pub fn parse(value: &[u8]) -> Option<GrpcCode> {
        let v = value.trim_ascii();
        if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = v.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        Some(match GrpcCode::ALL.get(n) {
            Some(c) if n <= 16 => *c,
            _ => GrpcCode::Unknown,
        })
    }

    /// What a gRPC client makes of a non-200 HTTP status without `grpc-status`
    /// (grpc doc/http-grpc-status-mapping.md; Envoy's `Grpc::Utility::httpToGrpcStatus`).
    pub fn from_http_status(status: u16) -> GrpcCode {
        match status {
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502 | 503 | 504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }
}

/// What was seen of one gRPC call's response; [`ResponseSeen::code`] is its outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseSeen {
    /// `:status` of the response headers.
    pub http_status: Option<u16>,
    /// The final status: from the trailers, the headers of a trailers-only response or a
    /// gRPC-Web trailer frame. `Some(None)`: a `grpc-status` that is not a number.
    pub status: Option<Option<GrpcCode>>,
    /// The response reached its end of stream (headers, body or trailers).
    pub complete: bool,
}

impl ResponseSeen {
    /// Record a `grpc-status` value; the last one read wins (trailers come after headers).
    pub fn status_value(&mut self, value: &[u8]) {
        self.status = Some(GrpcCode::parse(value));
    }

    pub fn code(&self) -> GrpcCode {
        match self.status {
            Some(Some(c)) => c,
            // A status that is not a number: the client cannot read it either.
            Some(None) => GrpcCode::Unknown,
            None => match self.http_status {
                Some(s) if s != 200 => GrpcCode::from_http_status(s),
                Some(_) if self.complete => GrpcCode::Missing,
                _ => GrpcCode::Reset,
            },
        }
    }
}

/// Finds the `grpc-status` in a gRPC-Web response body without keeping the body: frames
/// are `flags(1) length(4, big-endian) payload`; the trailer frame has flag bit 0x80 and
/// holds `name: value\r\n` lines. Data frames are skipped as they stream by; only the
/// trailer frame is kept (at most [`MAX_TRAILER_FRAME`] bytes).
#[derive(Debug, Clone, Default)]
pub struct WebTrailerScanner {
    /// Base64 text (grpc-web-text): pending characters of an incomplete quad.
    text: bool,
    quad: [u8; 4],
    quad_len: usize,
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    in_trailer: bool,
    trailer: Vec<u8>,
    /// The stream is not gRPC-Web framing after all: stop looking.
    broken: bool,
}

/// Longer trailer frames are read up to this size (a `grpc-status` comes first in practice).
pub const MAX_TRAILER_FRAME: usize = 8192;

impl WebTrailerScanner {
    pub fn new(protocol: Protocol) -> Self {
        WebTrailerScanner {
            text: protocol == Protocol::GrpcWebText,
            ..Default::default()
        }
    }

    /// Feed the next chunk of the response body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        if !self.text {
            self.feed_binary(chunk);
            return;
        }
        for &c in chunk {
            if c.is_ascii_whitespace() {
                continue;
            }
            self.quad[self.quad_len] = c;
            self.quad_len += 1;
            if self.quad_len == 4 {
                self.quad_len = 0;
                // Each quad decodes alone: grpc-web-text may concatenate padded segments.
                let mut out = [0u8; 3];
                match decode_quad(self.quad, &mut out) {
                    Some(n) => self.feed_binary(&out[..n]),
                    None => {
                        self.broken = true;
                        return;
                    }
                }
            }
        }
    }

    fn feed_binary(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.broken {
            if self.remaining == 0 && self.header_len < 5 {
                let take = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                if self.header_len == 5 {
                    let [flags, a, b, c, d] = self.header;
                    self.remaining = u32::from_be_bytes([a, b, c, d]) as usize;
                    self.in_trailer = flags & 0x80 != 0;
                    if self.in_trailer {
                        self.trailer.clear();
                    }
                    self.header_len = if self.remaining == 0 { 0 } else { 5 };
                }
                continue;
            }
            let take = self.remaining.min(data.len());
            if self.in_trailer {
                let room = MAX_TRAILER_FRAME.saturating_sub(self.trailer.len());
                self.trailer.extend_from_slice(&data[..take.min(room)]);
            }
            self.remaining -= take;
            data = &data[take..];
            if self.remaining == 0 {
                self.header_len = 0;
            }
        }
    }

    /// The `grpc-status` value of the last complete trailer frame, if any.
    pub fn status(&self) -> Option<&[u8]> {
        if !self.in_trailer || self.remaining != 0 {
            return None;
        }
        self.trailer.split(|b| *b == b'\n').find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let (name, value) = line.split_at(colon);
            name.trim_ascii()
                .eq_ignore_ascii_case(b"grpc-status")
                .then(|| value[1..].trim_ascii())
        })
    }
}

fn b64(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// One base64 quad, `=` padding allowed at its end: the number of bytes written.
fn decode_quad(q: [u8; 4], out: &mut [u8; 3]) -> Option<usize> {
    let pad = q.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut v = 0u32;
    for &c in &q[..4 - pad] {
        v = (v << 6) | u32::from(b64(c)?);
    }
    v <<= 6 * pad as u32;
    let bytes = v.to_be_bytes();
    out.copy_from_slice(&bytes[1..]);
    Some(3 - pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn protocols() {
        let p = |s: &str| Protocol::of(Some(s.as_bytes()));
        assert_eq!(p("application/grpc"), Protocol::Grpc);
        assert_eq!(p("application/grpc+proto"), Protocol::Grpc);
        assert_eq!(p("Application/GRPC+json"), Protocol::Grpc);
        assert_eq!(p("application/grpc; charset=utf-8"), Protocol::Grpc);
        assert_eq!(p("application/grpc-web"), Protocol::GrpcWeb);
        assert_eq!(p("application/grpc-web+proto"), Protocol::GrpcWeb);
        assert_eq!(p("application/grpc-web-text"), Protocol::GrpcWebText);
        assert_eq!(p("application/grpc-web-text+proto"), Protocol::GrpcWebText);
        assert_eq!(p("application/grpcx"), Protocol::Http);
        assert_eq!(p("application/grpc-webby"), Protocol::Http);
        assert_eq!(p("application/json"), Protocol::Http);
        assert_eq!(p(""), Protocol::Http);
        assert_eq!(Protocol::of(None), Protocol::Http);
        assert!(!Protocol::Http.is_grpc() && Protocol::GrpcWebText.is_grpc());
    }

    #[test]
    fn codes_and_the_failure_rule() {
        for (i, c) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        assert_eq!(GrpcCode::parse(b"0"), Some(GrpcCode::Ok));
        assert_eq!(GrpcCode::parse(b"14"), Some(GrpcCode::Unavailable));
        assert_eq!(GrpcCode::parse(b" 16 "), Some(GrpcCode::Unauthenticated));
        assert_eq!(GrpcCode::parse(b"17"), Some(GrpcCode::Unknown));
        assert_eq!(GrpcCode::parse(b"99999999999"), None);
        assert_eq!(GrpcCode::parse(b"-1"), None);
        assert_eq!(GrpcCode::parse(b""), None);
        let failing: Vec<&str> = GrpcCode::ALL
            .iter()
            .filter(|c| c.is_failure())
            .map(|c| c.as_str())
            .collect();
        assert_eq!(failing.join("|"), GrpcCode::FAILURE_REGEX);
        assert_eq!(GrpcCode::from_http_status(503), GrpcCode::Unavailable);
        assert_eq!(GrpcCode::from_http_status(404), GrpcCode::Unimplemented);
        assert_eq!(GrpcCode::from_http_status(500), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_http_status(401), GrpcCode::Unauthenticated);
    }

    #[test]
    fn outcome_of_a_response() {
        let mut r = ResponseSeen::default();
        assert_eq!(r.code(), GrpcCode::Reset, "nothing seen");
        r.http_status = Some(200);
        assert_eq!(r.code(), GrpcCode::Reset, "headers, then the stream was cut");
        r.complete = true;
        assert_eq!(r.code(), GrpcCode::Missing, "ended without grpc-status");
        r.status_value(b"0");
        assert_eq!(r.code(), GrpcCode::Ok);
        r.status_value(b"x");
        assert_eq!(r.code(), GrpcCode::Unknown);
        // Trailers-only from an intermediary with a non-200 status: its grpc-status wins.
        let mut t = ResponseSeen {
            http_status: Some(503),
            ..Default::default()
        };
        assert_eq!(t.code(), GrpcCode::Unavailable);
        t.status_value(b"8");
        assert_eq!(t.code(), GrpcCode::ResourceExhausted);
    }

    fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![flags];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn grpc_web_trailer_frame_in_any_chunking() {
        let mut body = frame(0, b"\x0a\x05hello");
        body.extend(frame(0, b""));
        body.extend(frame(0x80, b"grpc-status:14\r\ngrpc-message:down\r\n"));
        for split in 0..body.len() {
            let mut s = WebTrailerScanner::new(Protocol::GrpcWeb);
            s.feed(&body[..split]);
            s.feed(&body[split..]);
            assert_eq!(s.status(), Some(&b"14"[..]), "split at {split}");
        }
        let mut s = WebTrailerScanner::new(Protocol::GrpcWeb);
        s.feed(&body[..body.len() - 1]);
        assert_eq!(s.status(), None, "incomplete trailer frame");
        let mut s = WebTrailerScanner::new(Protocol::GrpcWeb);
        s.feed(&frame(0x80, b"Grpc-Status: 0\r\n"));
        assert_eq!(s.status(), Some(&b"0"[..]));
    }

    #[test]
    fn grpc_web_text_is_decoded_quad_by_quad() {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD;
        let data = b.encode(frame(0, b"\x0a\x02hi"));
        let trailer = b.encode(frame(0x80, b"grpc-status:13\r\n"));
        // Separately padded segments, as a streaming server writes them.
        let body = format!("{data}{trailer}");
        for split in 0..body.len() {
            let mut s = WebTrailerScanner::new(Protocol::GrpcWebText);
            s.feed(&body.as_bytes()[..split]);
            s.feed(&body.as_bytes()[split..]);
            assert_eq!(s.status(), Some(&b"13"[..]), "split at {split}");
        }
        let mut s = WebTrailerScanner::new(Protocol::GrpcWebText);
        s.feed(b"!!!!");
        s.feed(trailer.as_bytes());
        assert_eq!(s.status(), None, "not base64: stops looking");
    }
}
