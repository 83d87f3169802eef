// Shared by filter/benches/core.rs and bench/core-wasm (through `include!`), so the host
// and the V8 timings measure the same request.

/// Typical browser-ish request headers, before the ones a benchmark adds last
/// (where a scan finds them latest).
const TYPICAL_HEADERS: &[(&str, &[u8])] = &[
    (":authority", b"shop.example.com"),
    (":path", b"/checkout/cart?step=2"),
    (":method", b"GET"),
    (":scheme", b"https"),
    ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    ("accept", b"text/html,application/xhtml+xml"),
    ("accept-encoding", b"gzip, deflate, br"),
    ("x-request-id", b"4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
    ("x-forwarded-proto", b"https"),
];
