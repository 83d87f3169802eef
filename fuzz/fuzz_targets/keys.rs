//! Sticky-key and override extraction: `keys::cookie`, `keys::query_param`,
//! `keys::strip_query_param` and `keys::source_ip`.
//!
//! Input: byte 0 = name length (modulo 64), then the name, then the value
//! (a Cookie header, a `:path`, a source address).
//!
//! Invariants: results borrow from the input; a cookie value has no `;`, a
//! query value no `&` or `#`; appending a `name=…` cookie/parameter finds it
//! unless an earlier one wins; `strip_query_param` strips exactly when the
//! parameter is there, and its output never contains that parameter, keeps
//! the path, the fragment and every other parameter in order, and is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::keys::{cookie, query_param, source_ip, strip_query_param};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 64).min(rest.len());
    let (name, value) = rest.split_at(n);
    cookies(value, name);
    queries(value, name);
    source(value);
});

fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

/// A plain model of `cookie`: the first `;`-separated pair whose name, trimmed, is exactly
/// `name` (not one ending or starting with it); its value trimmed, one pair of quotes removed.
fn cookie_model<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        let v = pair[eq + 1..].trim_ascii();
        let quoted = v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"';
        (pair[..eq].trim_ascii() == name).then(|| if quoted { &v[1..v.len() - 1] } else { v })
    })
}

fn cookies(header: &[u8], name: &[u8]) {
    let got = cookie(header, name);
    assert_eq!(got, cookie_model(header, name));
    if let Some(v) = got {
        assert!(within(v, header));
        assert!(!v.contains(&b';'));
    }
    // A well-formed name appended after the header is found unless an earlier one wins.
    let plain = |s: &[u8]| !s.is_empty() && s.trim_ascii() == s && !s.contains(&b';') && !s.contains(&b'=');
    if plain(name) {
        let mut built = header.to_vec();
        built.extend_from_slice(b"; ");
        built.extend_from_slice(name);
        built.extend_from_slice(b"=fz1");
        assert_eq!(cookie(&built, name), Some(got.unwrap_or(b"fz1")));
        let mut first = name.to_vec();
        first.extend_from_slice(b"=\"fz2\";");
        first.extend_from_slice(header);
        assert_eq!(cookie(&first, name), Some(&b"fz2"[..]));
    }
}

fn pairs(q: &[u8]) -> Vec<&[u8]> {
    q.split(|b| *b == b'&').collect()
}

fn key(pair: &[u8]) -> &[u8] {
    pair.split(|b| *b == b'=').next().unwrap_or_default()
}

/// (before `?`, query, from `#`) of a path, our own way.
fn parts(path: &[u8]) -> (&[u8], Option<&[u8]>, &[u8]) {
    let hash = path.iter().position(|b| *b == b'#').unwrap_or(path.len());
    let (head, frag) = path.split_at(hash);
    match head.iter().position(|b| *b == b'?') {
        Some(q) => (&head[..q], Some(&head[q + 1..]), frag),
        None => (head, None, frag),
    }
}

fn queries(path: &[u8], name: &[u8]) {
    let got = query_param(path, name);
    if let Some(v) = got {
        assert!(within(v, path));
        assert!(!v.contains(&b'&') && !v.contains(&b'#'));
    }
    let (head, query, frag) = parts(path);
    let want = query.and_then(|q| {
        pairs(q)
            .into_iter()
            .find(|p| key(p) == name)
            .map(|p| p.get(name.len() + 1..).unwrap_or_default())
    });
    assert_eq!(got, want, "query_param disagrees with a plain split");

    let stripped = strip_query_param(path, name);
    assert_eq!(stripped.is_some(), got.is_some(), "strips iff present");
    if let Some(out) = &stripped {
        assert!(out.len() < path.len());
        assert_eq!(
            query_param(out, name),
            None,
            "stripped path still has the parameter"
        );
        assert_eq!(strip_query_param(out, name), None, "stripping is not stable");
        let (h2, q2, f2) = parts(out);
        assert_eq!((h2, f2), (head, frag), "path or fragment changed");
        let kept: Vec<&[u8]> = pairs(query.unwrap_or_default())
            .into_iter()
            .filter(|p| key(p) != name)
            .collect();
        match q2 {
            None => assert!(kept.is_empty()),
            Some(q2) => assert_eq!(pairs(q2), kept, "other parameters changed"),
        }
    }

    // A well-formed name appended to the query is found unless an earlier one wins.
    let plain = |s: &[u8]| !s.is_empty() && !s.iter().any(|b| b"&=#?".contains(b));
    if plain(name) {
        let mut built: Vec<u8> = path.iter().copied().filter(|b| *b != b'#').collect();
        let had_query = built.contains(&b'?');
        let before = query_param(&built, name).map(<[u8]>::to_vec);
        built.push(if had_query { b'&' } else { b'?' });
        built.extend_from_slice(name);
        built.extend_from_slice(b"=fz1#frag?");
        built.extend_from_slice(name);
        built.extend_from_slice(b"=fz2");
        assert_eq!(
            query_param(&built, name).map(<[u8]>::to_vec),
            Some(before.unwrap_or(b"fz1".to_vec()))
        );
        let out = strip_query_param(&built, name).expect("appended parameter is stripped");
        let mut frag = b"#frag?".to_vec();
        frag.extend_from_slice(name);
        frag.extend_from_slice(b"=fz2");
        assert!(out.ends_with(&frag), "fragment lost");
    }
}

fn source(addr: &[u8]) {
    let ip = source_ip(addr);
    assert!(within(ip, addr));
    assert!(ip.len() <= addr.len());
    // ip:port and [ipv6]:port give the ip back.
    let colons = addr.iter().filter(|b| **b == b':').count();
    if !addr.is_empty() && colons == 0 && addr[0] != b'[' {
        let mut v4 = addr.to_vec();
        v4.extend_from_slice(b":8080");
        assert_eq!(source_ip(&v4), addr);
        assert_eq!(source_ip(addr), addr);
    }
    if !addr.contains(&b']') {
        let mut v6 = b"[".to_vec();
        v6.extend_from_slice(addr);
        v6.extend_from_slice(b"]:443");
        assert_eq!(source_ip(&v6), addr);
    }
    if colons >= 2 && addr.first() != Some(&b'[') {
        assert_eq!(ip, addr, "a bare IPv6 address is kept whole");
    }
}
