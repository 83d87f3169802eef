//! Certificate, SAN and label extraction (`identity::parse_certificate`), the
//! XFCC element that carries the certificate (`identity::xfcc_certificate`),
//! and the trust patterns and OIDs of the same module.
//!
//! Byte 0 picks the mode (modulo 7), the rest is the mode's input:
//! - 0 DER: raw DER. Also wrapped in PEM, which must give the same result.
//! - 1 PEM: PEM text as-is.
//! - 2 XFCC: `<digest hex>\n<header>`, both arbitrary.
//! - 3 XFCC built: DER, filed as PEM in a well-formed XFCC header under its
//!   real SHA-256 (beside a decoy element): it must come back byte-exact and
//!   parse as the DER does; a wrong or repeated digest must be refused.
//! - 4 pattern: `<peer pattern>\n<identity>`.
//! - 5 OID: a dotted OID.
//! - 6 label: `<style byte><text>` put into a certificate built here: style
//!   bit 0 an otherName (bit 1: base64 of the text, as JSON labels are; else
//!   the text itself), else a URI SAN of the text. A JSON label is checked
//!   against the JSON itself (every field, `weight` / `canaryWeight`
//!   ambiguity, `traceId`), a URI label against its parameters.
//!
//! The label otherName OID is 1.3.6.1.4.1.55555.1.1, as in the fixtures.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rollout_filter::identity::certificate::der_tlv as tlv;
use rollout_filter::identity::{
    parse_certificate, parse_oid, xfcc_certificate, CertReject, LabelOid, LabelReject, PeerCert, PeerPattern,
    XfccReject, MAX_CERT_BYTES,
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
    match mode % 7 {
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
        5 => oids(&String::from_utf8_lossy(rest)),
        _ => built_label(rest),
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
        assert!(
            l.version.is_some() || l.weight.is_some() || l.trace_id.is_some(),
            "{l:?}"
        );
        assert!(l.trace_id.is_none_or(|t| t != [0; 16]), "{l:?}");
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

/// A minimal X.509 v3 certificate (unsigned: nobody verifies it here) whose
/// subjectAltName holds exactly `general_name`.
fn certificate_with(general_name: &[u8]) -> Vec<u8> {
    let ecdsa_sha256 = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let spki_alg = [
        tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
        tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
    ]
    .concat();
    let mut point = vec![0x00, 0x04];
    point.extend([1u8; 64]);
    let san = tlv(0x04, &tlv(0x30, general_name));
    let extension = tlv(0x30, &[tlv(0x06, &[0x55, 0x1d, 0x11]), san].concat());
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            ecdsa_sha256.clone(),
            tlv(0x30, &[]),
            tlv(
                0x30,
                &[tlv(0x17, b"250101000000Z"), tlv(0x17, b"350101000000Z")].concat(),
            ),
            tlv(0x30, &[]),
            tlv(0x30, &[tlv(0x30, &spki_alg), tlv(0x03, &point)].concat()),
            tlv(0xa3, &tlv(0x30, &extension)),
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[tbs, ecdsa_sha256, tlv(0x03, &[0x00, 0x30, 0x00])].concat(),
    )
}

fn built_label(input: &[u8]) {
    let Some((&style, text)) = input.split_first() else {
        return;
    };
    if text.len() > 4096 {
        return;
    }
    let json_text = style & 3 == 3;
    let general_name = if style & 1 != 0 {
        let value = if json_text {
            base64::engine::general_purpose::STANDARD
                .encode(text)
                .into_bytes()
        } else {
            text.to_vec()
        };
        let inner = [tlv(0x06, oid().as_bytes()), tlv(0xa0, &tlv(0x0c, &value))].concat();
        tlv(0xa0, &inner)
    } else {
        tlv(0x86, text)
    };
    let parsed = parse_certificate(&certificate_with(&general_name), Some(oid()));
    // The otherName value is opaque to X.509: the built certificate always parses.
    assert!(style & 1 == 0 || parsed.is_ok(), "built certificate: {parsed:?}");
    let Ok(peer) = parsed else {
        return;
    };
    check_peer(&peer);
    assert!(peer.labels.len() + peer.label_rejects.len() <= 1);
    if json_text {
        check_json_label(text, &peer);
    } else if style & 1 == 0 {
        if let Ok(uri) = std::str::from_utf8(text) {
            check_uri_label(uri, &peer);
        }
    }
}

fn valid_trace_id(v: &str) -> bool {
    v.len() == 32
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && v.bytes().any(|b| b != b'0')
}

/// The label read from a JSON otherName agrees with the JSON.
fn check_json_label(text: &[u8], peer: &PeerCert) {
    let obj = match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => o,
        // Not a JSON object: never a label.
        _ => return assert!(peer.labels.is_empty(), "{peer:?}"),
    };
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let both = field("weight").is_some() && field("canaryWeight").is_some();
    let trace = field("traceId").and_then(|v| v.as_str());
    match (peer.labels.as_slice(), peer.label_rejects.as_slice()) {
        ([l], []) => {
            assert!(!both, "weight and canaryWeight both accepted: {l:?}");
            assert!(
                obj.keys()
                    .all(|k| ["rolloutId", "version", "weight", "canaryWeight", "traceId"]
                        .contains(&k.as_str()))
            );
            assert_eq!(
                obj.get("rolloutId").and_then(|v| v.as_str()),
                Some(l.rollout_id.as_str())
            );
            assert_eq!(field("version").and_then(|v| v.as_str()), l.version.as_deref());
            let weight = field("weight").or(field("canaryWeight")).and_then(|v| v.as_u64());
            assert_eq!(weight, l.weight.map(u64::from), "{l:?}");
            assert_eq!(trace.map(str::to_owned), l.trace_id.map(|t| hex(&t)), "{l:?}");
        }
        ([], [LabelReject::AmbiguousWeight]) => assert!(both),
        ([], [LabelReject::BadTraceId]) => {
            assert!(!trace.is_some_and(valid_trace_id), "{trace:?} refused")
        }
        ([], [_]) => {}
        other => panic!("one otherName, {other:?}"),
    }
}

/// The label read from a URI SAN agrees with its parameters.
fn check_uri_label(uri: &str, peer: &PeerCert) {
    let lower = uri.to_ascii_lowercase();
    let params: Vec<(&str, &str)> = if lower.starts_with("rollout://") {
        uri[10..]
            .split_once('?')
            .map(|(_, q)| q.split('&').filter_map(|p| p.split_once('=')).collect())
            .unwrap_or_default()
    } else if lower.starts_with("rollout=") {
        uri[8..]
            .split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .collect()
    } else {
        return assert!(peer.labels.is_empty() && peer.label_rejects.is_empty());
    };
    let get = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let both = get("weight").is_some() && get("canaryWeight").is_some();
    match (peer.labels.as_slice(), peer.label_rejects.as_slice()) {
        ([l], []) => {
            assert!(!both, "weight and canaryWeight both accepted: {l:?}");
            assert_eq!(get("version"), l.version.as_deref());
            let weight = get("weight").or(get("canaryWeight"));
            assert_eq!(weight, l.weight.map(|w| w.to_string()).as_deref(), "{l:?}");
            assert_eq!(
                get("traceId").map(str::to_owned),
                l.trace_id.map(|t| hex(&t)),
                "{l:?}"
            );
        }
        ([], [LabelReject::AmbiguousWeight]) => assert!(both),
        ([], [LabelReject::BadTraceId]) => {
            assert!(!get("traceId").is_some_and(valid_trace_id))
        }
        ([], [_]) => {}
        other => panic!("one URI label, {other:?}"),
    }
}
