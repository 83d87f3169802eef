//! Extracting sticky keys and overrides from raw request bytes.
//!
//! Everything works on `&[u8]`: header values need not be UTF-8, and a
//! non-UTF-8 value is just another key, never an error.

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`), first match wins.
/// A value wrapped in double quotes is returned without them (RFC 6265).
pub fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (k, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        if trim(k) != name {
            return None;
        }
        let v = trim(v);
        Some(match v {
            [b'"', inner @ .., b'"'] => inner,
            _ => v,
        })
    })
}

/// The raw (not percent-decoded) value of query parameter `name` in a request path.
/// `?name` without `=` gives an empty value.
pub fn query_param<'a>(path: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query(path)?.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = split_pair(pair);
        (k == name).then_some(v)
    })
}

/// `path` without any `name=…` parameters, or `None` when there were none.
pub fn strip_query_param(path: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let q_start = query_start(path)?;
    let q = query(path)?;
    if !q.split(|b| *b == b'&').any(|pair| split_pair(pair).0 == name) {
        return None;
    }
    let fragment = path.get(q_start + 1 + q.len()..).unwrap_or_default();
    let mut out = Vec::with_capacity(path.len());
    out.extend_from_slice(path.get(..q_start).unwrap_or_default());
    let mut first = true;
    for pair in q.split(|b| *b == b'&').filter(|p| split_pair(p).0 != name) {
        out.push(if first { b'?' } else { b'&' });
        out.extend_from_slice(pair);
        first = false;
    }
    out.extend_from_slice(fragment);
    Some(out)
}

/// The IP of a `host:port` / `[v6]:port` source address, without port and brackets.
pub fn source_ip(addr: &[u8]) -> &[u8] {
    if let Some(rest) = addr.strip_prefix(b"[") {
        return match rest.iter().position(|b| *b == b']') {
            Some(end) => rest.get(..end).unwrap_or(rest),
            None => addr,
        };
    }
    // One colon: IPv4 with port. More: a bare IPv6 address.
    match addr.iter().filter(|b| **b == b':').count() {
        1 => addr.split(|b| *b == b':').next().unwrap_or(addr),
        _ => addr,
    }
}

fn query(path: &[u8]) -> Option<&[u8]> {
    let start = query_start(path)? + 1;
    let rest = path.get(start..)?;
    let end = rest.iter().position(|b| *b == b'#').unwrap_or(rest.len());
    rest.get(..end)
}

/// The `?` that starts the query, unless a `#` comes first.
fn query_start(path: &[u8]) -> Option<usize> {
    let at = path.iter().position(|b| *b == b'?' || *b == b'#')?;
    (path.get(at) == Some(&b'?')).then_some(at)
}

fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|b| *b == b'=') {
        Some(eq) => (
            pair.get(..eq).unwrap_or_default(),
            pair.get(eq + 1..).unwrap_or_default(),
        ),
        None => (pair, &[]),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn cookies() {
        let h = b"a=1; uid=alice;b=2";
        assert_eq!(cookie(h, b"uid"), Some(&b"alice"[..]));
        assert_eq!(cookie(h, b"a"), Some(&b"1"[..]));
        assert_eq!(cookie(h, b"b"), Some(&b"2"[..]));
        assert_eq!(cookie(h, b"c"), None);
        assert_eq!(cookie(b"uid=\"q\"", b"uid"), Some(&b"q"[..]));
        assert_eq!(cookie(b"uid=", b"uid"), Some(&b""[..]));
        assert_eq!(cookie(b"xuid=1; uid=2", b"uid"), Some(&b"2"[..]));
        assert_eq!(cookie(b"uid=1; uid=2", b"uid"), Some(&b"1"[..]));
        assert_eq!(cookie(b";;; ;", b"uid"), None);
        assert_eq!(cookie(b"uid", b"uid"), None);
        assert_eq!(cookie(b"uid=\xff\xfe", b"uid"), Some(&b"\xff\xfe"[..]));
        assert_eq!(cookie(b"uid=\"", b"uid"), Some(&b"\""[..]));
    }

    #[test]
    fn query_params() {
        let p = b"/x?a=1&rollout-version=canary&b#frag";
        assert_eq!(query_param(p, b"rollout-version"), Some(&b"canary"[..]));
        assert_eq!(query_param(p, b"b"), Some(&b""[..]));
        assert_eq!(query_param(p, b"frag"), None);
        assert_eq!(query_param(b"/x", b"a"), None);
        assert_eq!(query_param(b"/x?", b"a"), None);
        assert_eq!(query_param(b"/x?a=1=2", b"a"), Some(&b"1=2"[..]));
        assert_eq!(query_param(b"/x?v=%63anary", b"v"), Some(&b"%63anary"[..]));
    }

    #[test]
    fn strip_params() {
        let s = |p: &[u8], n: &[u8]| strip_query_param(p, n).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(s(b"/x?v=1", b"v").as_deref(), Some("/x"));
        assert_eq!(s(b"/x?a=1&v=1&b=2", b"v").as_deref(), Some("/x?a=1&b=2"));
        assert_eq!(s(b"/x?v=1&v=2&a#f", b"v").as_deref(), Some("/x?a#f"));
        assert_eq!(s(b"/x?v#f", b"v").as_deref(), Some("/x#f"));
        assert_eq!(s(b"/x?a=1", b"v"), None);
        assert_eq!(s(b"/x", b"v"), None);
        assert_eq!(s(b"/x#?v=1", b"v"), None);
        assert_eq!(query_param(b"/x#?v=1", b"v"), None);
    }

    #[test]
    fn source_ips() {
        assert_eq!(source_ip(b"10.0.0.7:51234"), b"10.0.0.7");
        assert_eq!(source_ip(b"10.0.0.7"), b"10.0.0.7");
        assert_eq!(source_ip(b"[::1]:8080"), b"::1");
        assert_eq!(source_ip(b"::1"), b"::1");
        assert_eq!(source_ip(b"[::1"), b"[::1");
        assert_eq!(source_ip(b""), b"");
    }
}
