//! Certificate, SAN and label extraction (`identity::parse_certificate`), the
//! XFCC element that carries the certificate (`identity::xfcc_certificate`),
//! and the trust patterns and OIDs of the same module.
//!
//! Byte 0 picks the mode (modulo 6), the rest is the mode's input:
//! - 0 DER: raw DER. Also wrapped in PEM, which must give the same result.
//! - 1 PEM: PEM text as-is.
//! - 2 XFCC: `<digest hex>\n<header>`, both arbitrary.
//! - 3 XFCC built: DER, filed as PEM in a well-formed XFCC header under its
//!   real SHA-256 (beside a decoy element): it must come back byte-exact and
//!   parse as the DER does; a wrong or repeated digest must be refused.
//! - 4 pattern: `<peer pattern>\n<identity>`.
//! - 5 OID: a dotted OID.
//!
//! The label otherName OID is 1.3.6.1.4.1.55555.1.1, as in the fixtures.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rollout_filter::identity::{
    parse_certificate, parse_oid, xfcc_certificate, CertReject, LabelOid, PeerCert, PeerPattern, XfccReject,
    MAX_CERT_BYTES,
};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const OID: &str = "1.3.6.1.4.1.55555.1.1";

fn oid() -> &'static LabelOid {
    static OID_CELL: OnceLock<LabelOid> = OnceLock::new();
    OID_CELL.get_or_init(|| parse_oid(OID).expect("label OID"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => der_mode(rest),
        1 => {
            if let Ok(peer) = parse_certificate(rest, Some(oid())) {
                check_peer(&peer);
            }
        }
        2 => {
            let (digest, header) = split_line(rest);
            xfcc_raw(header, digest);
        }
        3 => xfcc_built(rest),
        4 => {
            let (pattern, identity) = split_line(rest);
            patterns(
                &String::from_utf8_lossy(pattern),
                &String::from_utf8_lossy(identity),
            );
        }
        _ => oids(&String::from_utf8_lossy(rest)),
    }
});

fn split_line(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|c| *c == b'\n') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn der_mode(der: &[u8]) {
    let with_oid = parse_certificate(der, Some(oid()));
    let without = parse_certificate(der, None);
    match (&with_oid, &without) {
        (Ok(a), Ok(b)) => {
            check_peer(a);
            check_peer(b);
            assert_eq!((&a.spiffe_id, &a.uris, &a.dns), (&b.spiffe_id, &b.uris, &b.dns));
            // Without the OID only URI labels are read.
            let uri_labels = b
                .uris
                .iter()
                .filter(|u| {
                    let l = u.to_ascii_lowercase();
                    l.starts_with("rollout://") || l.starts_with("rollout=")
                })
                .count();
            assert_eq!(b.labels.len() + b.label_rejects.len(), uri_labels);
            for l in &b.labels {
                assert!(a.labels.contains(l));
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("the label OID changed whether the certificate parses: {with_oid:?} vs {without:?}"),
    }
    let trimmed = der.trim_ascii();
    if trimmed.is_empty() || trimmed.starts_with(b"-----BEGIN") || der.len() > MAX_CERT_BYTES {
        return;
    }
    let pem = to_pem(der, 64);
    if pem.len() <= MAX_CERT_BYTES {
        assert_eq!(
            parse_certificate(&pem, Some(oid())),
            with_oid,
            "PEM and DER disagree"
        );
    }
}

fn to_pem(der: &[u8], width: usize) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.as_bytes().chunks(width.max(1)) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

fn check_peer(p: &PeerCert) {
    assert_eq!(
        p.spiffe_id.as_ref(),
        p.uris.iter().find(|u| u.starts_with("spiffe://")),
        "spiffe_id is not the first spiffe:// URI"
    );
    for l in &p.labels {
        let id_ok = (1..=128).contains(&l.rollout_id.len())
            && l.rollout_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        assert!(id_ok, "bad rollout id in {l:?}");
        assert!(l.version.is_some() || l.weight.is_some(), "{l:?}");
        assert!(l.weight.is_none_or(|w| w <= 100), "{l:?}");
        if let Some(v) = &l.version {
            assert!((1..=63).contains(&v.len()), "{l:?}");
            assert!(
                v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{l:?}"
            );
        }
        let same = p.labels.iter().filter(|o| o.rollout_id == l.rollout_id).count();
        match p.label_for(&l.rollout_id) {
            Ok(Some(found)) => assert!(same == 1 && found == l),
            Err(_) => assert!(same > 1),
            Ok(None) => panic!("label_for lost {l:?}"),
        }
        assert_eq!(
            p.has_labels_for_other_rollouts(&l.rollout_id),
            p.labels.iter().any(|o| o.rollout_id != l.rollout_id)
        );
    }
    assert_eq!(p.label_for("not a rollout id"), Ok(None));
    let any = PeerPattern::parse("*").expect("*");
    assert!(p.is_trusted(&[any]));
    assert!(!p.is_trusted(&[]));
    // A certificate is trusted by a pattern spelling its own SPIFFE ID or DNS
    // name. (A DNS SAN spelled like a SPIFFE ID is not a SPIFFE ID: no trust.)
    let own = |id: &String, spiffe: bool| {
        if id.contains('*') {
            return;
        }
        if let Ok(pat) = PeerPattern::parse(id) {
            let want = spiffe || !id.starts_with("spiffe://") || p.spiffe_id.as_ref() == Some(id);
            assert_eq!(p.is_trusted(&[pat]), want, "{id:?} (SPIFFE: {spiffe}) trust");
        }
    };
    p.spiffe_id.iter().for_each(|id| own(id, true));
    p.dns.iter().for_each(|id| own(id, false));
}

fn xfcc_raw(header: &[u8], digest: &[u8]) {
    let Ok(pem) = xfcc_certificate(header, digest) else {
        return;
    };
    assert!(pem.len() <= MAX_CERT_BYTES);
    let der = pem_body(&pem).expect("returned certificate is one PEM block");
    assert!(hex_eq(&Sha256::digest(&der), digest), "digest mismatch accepted");
    match parse_certificate(&pem, Some(oid())) {
        Err(CertReject::Empty | CertReject::TooLarge | CertReject::BadPem) => {
            panic!("XFCC certificate is not readable PEM")
        }
        Ok(peer) => check_peer(&peer),
        Err(_) => {}
    }
}

/// Our own PEM decoder, to check the filter's.
fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    let body = pem
        .trim_ascii()
        .strip_prefix(b"-----BEGIN CERTIFICATE-----")?
        .strip_suffix(b"-----END CERTIFICATE-----")?;
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_eq(bytes: &[u8], hex_text: &[u8]) -> bool {
    hex(bytes).as_bytes().eq_ignore_ascii_case(hex_text)
}

fn percent_encode(bytes: &[u8], all: bool) -> String {
    let mut s = String::new();
    for &b in bytes {
        if !all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn xfcc_built(input: &[u8]) {
    let Some((&style, der)) = input.split_first() else {
        return;
    };
    if der.is_empty() || der == b"decoy" {
        return;
    }
    let pem = to_pem(der, usize::from(style % 80) + 1);
    let digest = hex(&Sha256::digest(der));
    let cert = percent_encode(&pem, style & 0x80 != 0);
    let decoy = hex(&Sha256::digest(b"decoy"));
    let element = if style & 0x40 != 0 {
        format!("By=spiffe://cluster.local/ns/a/sa/b;Hash={digest};Cert=\"{cert}\";Subject=\"O=x,CN=y\";URI=spiffe://cluster.local/ns/c/sa/d")
    } else {
        format!("hash={digest};cert={cert}")
    };
    let header = format!("By=spiffe://x/y;Hash={decoy};Cert=\"%2D\",{element}");
    let got = xfcc_certificate(header.as_bytes(), digest.as_bytes());
    if pem.len() > MAX_CERT_BYTES {
        assert_eq!(got, Err(XfccReject::TooLarge));
        return;
    }
    assert_eq!(got.as_deref(), Ok(pem.as_slice()), "header {header}");
    // Digests compare case-insensitively.
    let upper = digest.to_ascii_uppercase();
    assert_eq!(
        xfcc_certificate(header.as_bytes(), upper.as_bytes()).as_deref(),
        Ok(pem.as_slice())
    );
    // Someone else's digest, or the same one claimed twice, gets nothing.
    let other = hex(&Sha256::digest(&pem));
    assert_eq!(
        xfcc_certificate(header.as_bytes(), other.as_bytes()),
        Err(XfccReject::HashMismatch)
    );
    let twice = format!("{header},{element}");
    assert_eq!(
        xfcc_certificate(twice.as_bytes(), digest.as_bytes()),
        Err(XfccReject::Ambiguous)
    );
    // The certificate filed under a digest that is not its own is refused.
    let forged = element.replace(&digest, &other);
    assert_eq!(
        xfcc_certificate(forged.as_bytes(), other.as_bytes()),
        Err(XfccReject::DigestMismatch)
    );
    // What comes out of XFCC reads as the DER itself.
    let trimmed = der.trim_ascii();
    if !trimmed.is_empty() && !trimmed.starts_with(b"-----BEGIN") {
        assert_eq!(
            parse_certificate(&pem, Some(oid())),
            parse_certificate(der, Some(oid()))
        );
    }
}

fn patterns(pattern: &str, identity: &str) {
    let Ok(p) = PeerPattern::parse(pattern) else {
        return;
    };
    let _ = p.matches(identity);
    if pattern == "*" {
        assert!(p.matches(identity));
        return;
    }
    assert!(!pattern.contains("**"));
    if !pattern.contains('*') {
        assert!(p.matches(pattern), "{pattern:?} does not match itself");
        assert_eq!(
            p.matches(identity),
            identity == pattern
                || (!pattern.starts_with("spiffe://") && identity.eq_ignore_ascii_case(pattern))
        );
        if !pattern.starts_with("spiffe://") {
            assert!(
                p.matches(&pattern.to_ascii_uppercase()),
                "DNS matching is case-insensitive"
            );
        }
    } else {
        // A wildcard pattern matches what it matches with each `*` filled in by a plain segment.
        let filled = fill_wildcards(pattern);
        assert!(p.matches(&filled), "{pattern:?} does not match {filled:?}");
    }
}

fn fill_wildcards(pattern: &str) -> String {
    let sep = if pattern.starts_with("spiffe://") {
        '/'
    } else {
        '.'
    };
    let (scheme, rest) = pattern.split_at(if sep == '/' { 9 } else { 0 });
    let segs: Vec<&str> = rest
        .split(sep)
        .enumerate()
        .map(|(i, s)| {
            if s == "*" {
                if sep == '/' && i == 0 {
                    "td"
                } else {
                    "x"
                }
            } else {
                s
            }
        })
        .collect();
    format!("{scheme}{}", segs.join(&sep.to_string()))
}

/// An accepted OID is the DER encoding of its arcs (our own encoder). Its
/// display is der-parser's business (arcs over 63 bits show as hex, `0.0` as `0`).
fn oids(dotted: &str) {
    let Ok(o) = parse_oid(dotted) else { return };
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|a| a.parse().expect("accepted arc is a u64"))
        .collect();
    assert!(arcs.len() >= 2 && arcs[0] <= 2 && arcs[1] < 40);
    let mut der: Vec<u8> = Vec::new();
    for arc in std::iter::once(arcs[0] * 40 + arcs[1]).chain(arcs[2..].iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        der.extend(groups.iter().rev().copied());
    }
    assert_eq!(o.as_bytes(), der.as_slice(), "OID {dotted:?} encodes wrongly");
}
