//! The peer certificate Envoy forwards in `x-forwarded-client-cert`.

use percent_encoding::percent_decode;
use sha2::{Digest, Sha256};

use super::certificate::{pem_to_der, MAX_CERT_BYTES};

/// Why no certificate was taken from an XFCC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XfccReject {
    /// Unterminated quote, a pair without `=`, a key given twice in the
    /// matching element, …
    Malformed,
    /// No element has `Hash=` equal to the connection's digest.
    HashMismatch,
    /// More than one element claims the connection's digest.
    Ambiguous,
    /// The matching element has no `Cert=`.
    NoCert,
    /// Bad percent-encoding, or the decoded value is not one PEM certificate.
    BadEncoding,
    /// The decoded certificate is over [`MAX_CERT_BYTES`].
    TooLarge,
    /// The certificate's SHA-256 is not the digest it was filed under.
    DigestMismatch,
}

impl XfccReject {
    pub const ALL: [XfccReject; 7] = [
        XfccReject::Malformed,
        XfccReject::HashMismatch,
        XfccReject::Ambiguous,
        XfccReject::NoCert,
        XfccReject::BadEncoding,
        XfccReject::TooLarge,
        XfccReject::DigestMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            XfccReject::Malformed => "malformed",
            XfccReject::HashMismatch => "hash_mismatch",
            XfccReject::Ambiguous => "ambiguous",
            XfccReject::NoCert => "no_cert",
            XfccReject::BadEncoding => "bad_encoding",
            XfccReject::TooLarge => "too_large",
            XfccReject::DigestMismatch => "digest_mismatch",
        }
    }
}
/// The PEM certificate of the `x-forwarded-client-cert` element whose `Hash=`
/// equals `digest_hex` (the connection's SHA-256 certificate digest, hex,
/// compared case-insensitively).
///
/// The header is `,`-separated elements of `;`-separated `Key=Value` pairs
/// (keys case-insensitive, values optionally double-quoted with `\` escapes).
/// Only the matching element is believed, and only if it is the single
/// element claiming that digest, its `Cert=` percent-decodes to one PEM
/// certificate, and that certificate's SHA-256 is `digest_hex`: a client
/// cannot slip in a certificate of its own under the connection's hash.
pub fn xfcc_certificate(header: &[u8], digest_hex: &[u8]) -> Result<Vec<u8>, XfccReject> {
    if digest_hex.is_empty() {
        return Err(XfccReject::HashMismatch);
    }
    let elements = parse_xfcc(header)?;
    let mut matching = elements.iter().filter(|pairs| {
        pairs
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(b"hash") && v.eq_ignore_ascii_case(digest_hex))
    });
    let element = matching.next().ok_or(XfccReject::HashMismatch)?;
    if matching.next().is_some() {
        return Err(XfccReject::Ambiguous);
    }
    let unique = |key: &[u8]| -> Result<Option<&Vec<u8>>, XfccReject> {
        let mut values = element.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key));
        let first = values.next().map(|(_, v)| v);
        if values.next().is_some() {
            return Err(XfccReject::Malformed);
        }
        Ok(first)
    };
    unique(b"hash")?;
    let encoded = unique(b"cert")?.ok_or(XfccReject::NoCert)?;
    // A `%` not followed by two hex digits stays as it is; it is not base64, so the PEM
    // reading below refuses it (BadEncoding).
    let pem: Vec<u8> = percent_decode(encoded).collect();
    if pem.len() > MAX_CERT_BYTES {
        return Err(XfccReject::TooLarge);
    }
    let der = pem_to_der(pem.trim_ascii()).ok_or(XfccReject::BadEncoding)?;
    if !hex_eq(&Sha256::digest(&der), digest_hex) {
        return Err(XfccReject::DigestMismatch);
    }
    Ok(pem)
}

type XfccElement = Vec<(Vec<u8>, Vec<u8>)>;

/// Split an XFCC header into elements of (key, unquoted value) pairs.
fn parse_xfcc(header: &[u8]) -> Result<Vec<XfccElement>, XfccReject> {
    let mut elements = Vec::new();
    let mut element: XfccElement = Vec::new();
    let mut i = 0;
    let at = |i: usize| header.get(i).copied();
    loop {
        // Key, up to `=`; a blank pair (`;;`, trailing `,`) is skipped.
        let start = i;
        while let Some(b) = at(i) {
            if matches!(b, b'=' | b';' | b',' | b'"') {
                break;
            }
            i += 1;
        }
        let key = header.get(start..i).unwrap_or_default().trim_ascii();
        let sep = match at(i) {
            Some(b'=') if !key.is_empty() => {
                i += 1;
                while at(i).is_some_and(|b| b == b' ' || b == b'\t') {
                    i += 1;
                }
                let mut value = Vec::new();
                if at(i) == Some(b'"') {
                    i += 1;
                    loop {
                        match at(i) {
                            None => return Err(XfccReject::Malformed),
                            Some(b'"') => break,
                            Some(b'\\') => {
                                i += 1;
                                value.push(at(i).ok_or(XfccReject::Malformed)?);
                            }
                            Some(b) => value.push(b),
                        }
                        i += 1;
                    }
                    i += 1;
                    while at(i).is_some_and(|b| b == b' ' || b == b'\t') {
                        i += 1;
                    }
                } else {
                    let start = i;
                    while let Some(b) = at(i) {
                        if matches!(b, b';' | b',') {
                            break;
                        }
                        if b == b'"' {
                            return Err(XfccReject::Malformed);
                        }
                        i += 1;
                    }
                    value.extend_from_slice(header.get(start..i).unwrap_or_default().trim_ascii());
                }
                element.push((key.to_vec(), value));
                at(i)
            }
            Some(b';' | b',') | None if key.is_empty() => at(i),
            _ => return Err(XfccReject::Malformed),
        };
        match sep {
            None => break,
            Some(b';') => {}
            Some(b',') => elements.push(std::mem::take(&mut element)),
            Some(_) => return Err(XfccReject::Malformed),
        }
        i += 1;
    }
    elements.push(element);
    Ok(elements)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `hex` is the hex spelling (either case) of `bytes`.
fn hex_eq(bytes: &[u8], hex: &[u8]) -> bool {
    hex.len() == bytes.len() * 2
        && bytes.iter().zip(hex.chunks_exact(2)).all(|(b, pair)| match pair {
            [hi, lo] => hex_value(*hi) == Some(b >> 4) && hex_value(*lo) == Some(b & 0x0f),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fixtures::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sha256(data: &[u8]) -> Vec<u8> {
        Sha256::digest(data).to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(hex(&sha256(SPIFFE_DER)), SPIFFE_SHA256.trim());
        assert!(hex_eq(
            &sha256(SPIFFE_DER),
            SPIFFE_SHA256.trim().to_uppercase().as_bytes()
        ));
        assert!(!hex_eq(&sha256(SPIFFE_DER), b"00"));
    }

    /// Envoy-style URL encoding of a PEM certificate.
    fn url_encode(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|&b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn element(hash: &str, pem: &[u8]) -> String {
        format!(
            r#"By=spiffe://cluster.local/ns/app/sa/server;Hash={hash};Cert="{}";Subject="O=rollout-filter tests,CN=x";URI={SPIFFE}"#,
            url_encode(pem)
        )
    }

    #[test]
    fn xfcc_matching_element() {
        let hash = SPIFFE_SHA256.trim();
        let header = element(hash, SPIFFE_PEM);
        let pem = xfcc_certificate(header.as_bytes(), hash.as_bytes()).unwrap();
        assert_eq!(pem, SPIFFE_PEM);
        assert_eq!(parse(&pem), parse(SPIFFE_PEM));
        // Digest case does not matter, on either side.
        let upper = hash.to_uppercase();
        assert_eq!(
            xfcc_certificate(header.as_bytes(), upper.as_bytes()).unwrap(),
            SPIFFE_PEM
        );
        let header_upper = element(&upper, SPIFFE_PEM);
        assert_eq!(
            xfcc_certificate(header_upper.as_bytes(), hash.as_bytes()).unwrap(),
            SPIFFE_PEM
        );
        // Unquoted Cert, lower-case keys, spaces around pairs.
        let plain = format!(" hash={hash} ; cert={} ", url_encode(SPIFFE_PEM));
        assert_eq!(
            xfcc_certificate(plain.as_bytes(), hash.as_bytes()).unwrap(),
            SPIFFE_PEM
        );
    }

    #[test]
    fn xfcc_multiple_elements() {
        let ours = SPIFFE_SHA256.trim();
        let theirs = UTF8_SHA256.trim();
        let header = format!("{},{}", element(theirs, UTF8_PEM), element(ours, SPIFFE_PEM));
        assert_eq!(
            xfcc_certificate(header.as_bytes(), ours.as_bytes()).unwrap(),
            SPIFFE_PEM
        );
        assert_eq!(
            xfcc_certificate(header.as_bytes(), theirs.as_bytes()).unwrap(),
            UTF8_PEM
        );
        // A forged element filed under our hash, alone or next to the real one.
        let forged = element(ours, UTF8_PEM);
        assert_eq!(
            xfcc_certificate(forged.as_bytes(), ours.as_bytes()),
            Err(XfccReject::DigestMismatch)
        );
        let both = format!("{forged},{}", element(ours, SPIFFE_PEM));
        assert_eq!(
            xfcc_certificate(both.as_bytes(), ours.as_bytes()),
            Err(XfccReject::Ambiguous)
        );
        // A Hash in one element and a Cert in the next are not combined.
        let split = format!("Hash={ours},Cert={}", url_encode(SPIFFE_PEM));
        assert_eq!(
            xfcc_certificate(split.as_bytes(), ours.as_bytes()),
            Err(XfccReject::NoCert)
        );
    }

    #[test]
    fn xfcc_quoted_values() {
        let hash = SPIFFE_SHA256.trim();
        let header = format!(
            r#"Subject="CN=a\"b,O=c;d=e";Hash="{hash}";Cert="{}";DNS="x,y""#,
            url_encode(SPIFFE_PEM)
        );
        assert_eq!(
            xfcc_certificate(header.as_bytes(), hash.as_bytes()).unwrap(),
            SPIFFE_PEM
        );
        let elements = parse_xfcc(br#"A="x\"y,z;w" ,B=1;C="\\",D=;E="""#).unwrap();
        assert_eq!(
            elements,
            vec![
                vec![(b"A".to_vec(), br#"x"y,z;w"#.to_vec())],
                vec![(b"B".to_vec(), b"1".to_vec()), (b"C".to_vec(), b"\\".to_vec())],
                vec![(b"D".to_vec(), Vec::new()), (b"E".to_vec(), Vec::new())],
            ]
        );
        // A Hash= hidden inside another element's quoted value is not an element.
        let hidden = format!(r#"Subject="x,Hash={hash};Cert={}""#, url_encode(SPIFFE_PEM));
        assert_eq!(
            xfcc_certificate(hidden.as_bytes(), hash.as_bytes()),
            Err(XfccReject::HashMismatch)
        );
    }

    #[test]
    fn xfcc_rejects() {
        let hash = SPIFFE_SHA256.trim();
        let cert = url_encode(SPIFFE_PEM);
        let cases: Vec<(String, XfccReject)> = vec![
            (String::new(), XfccReject::HashMismatch),
            (element(UTF8_SHA256.trim(), UTF8_PEM), XfccReject::HashMismatch),
            (format!("Hash={hash}0;Cert={cert}"), XfccReject::HashMismatch),
            (format!("Hash={hash};URI={SPIFFE}"), XfccReject::NoCert),
            (
                format!("Hash={hash};Cert={cert};Cert={cert}"),
                XfccReject::Malformed,
            ),
            (
                format!("Hash={hash};hash={hash};Cert={cert}"),
                XfccReject::Malformed,
            ),
            (format!("Hash={hash};Cert=\"{cert}"), XfccReject::Malformed),
            (format!("Hash={hash};Cert=\"{cert}\"x"), XfccReject::Malformed),
            (format!("Hash={hash};Cert=a\"b"), XfccReject::Malformed),
            (format!("Hash={hash};Cert;URI=x"), XfccReject::Malformed),
            (format!("Hash={hash};=x"), XfccReject::Malformed),
            (format!("Hash={hash};Cert=\"x\\"), XfccReject::Malformed),
            (
                format!("Hash={hash};Cert={}", cert.replacen("%0A", "%0G", 1)),
                XfccReject::BadEncoding,
            ),
            (format!("Hash={hash};Cert={cert}%"), XfccReject::BadEncoding),
            (format!("Hash={hash};Cert={cert}%4"), XfccReject::BadEncoding),
            (format!("Hash={hash};Cert=not-a-cert"), XfccReject::BadEncoding),
            (
                format!("Hash={hash};Cert={}", "A".repeat(MAX_CERT_BYTES + 1)),
                XfccReject::TooLarge,
            ),
            (
                format!("Hash={hash};Cert={}", url_encode(UTF8_PEM)),
                XfccReject::DigestMismatch,
            ),
        ];
        for (header, want) in cases {
            assert_eq!(
                xfcc_certificate(header.as_bytes(), hash.as_bytes()),
                Err(want),
                "{header}"
            );
        }
        // An empty digest matches nothing, not even an empty Hash=.
        assert_eq!(
            xfcc_certificate(b"Hash=;Cert=x", b""),
            Err(XfccReject::HashMismatch)
        );
        assert_eq!(percent_decode(b"a%2Bb+c%2f").collect::<Vec<u8>>(), b"a+b+c/");
    }
}
