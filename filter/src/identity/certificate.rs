//! A peer certificate (PEM or DER) read into its identities and labels.

use asn1_rs::{Any, Class, FromDer, Header, Oid, Tag};
use base64::Engine as _;

use super::labels::{other_name_label, parse_uri_label, Label, LabelReject};

/// The owned OID type of the label otherName, built once from configuration
/// with [`parse_oid`].
pub type LabelOid = Oid<'static>;

/// Largest certificate input (PEM or DER) looked at.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

const MAX_OID_LEN: usize = 128;

/// Why a certificate could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertReject {
    /// Empty (or whitespace-only) input.
    Empty,
    /// More than [`MAX_CERT_BYTES`].
    TooLarge,
    /// Looks like PEM but is not exactly one well-formed `CERTIFICATE` block.
    BadPem,
    /// Not a DER X.509 certificate (or trailing bytes after it).
    BadDer,
    /// The subjectAltName extension is malformed or present twice.
    BadSan,
}

impl CertReject {
    pub const ALL: [CertReject; 5] = [
        CertReject::Empty,
        CertReject::TooLarge,
        CertReject::BadPem,
        CertReject::BadDer,
        CertReject::BadSan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CertReject::Empty => "empty",
            CertReject::TooLarge => "too_large",
            CertReject::BadPem => "bad_pem",
            CertReject::BadDer => "bad_der",
            CertReject::BadSan => "bad_san",
        }
    }
}

/// What a certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCert {
    /// The first URI SAN starting with `spiffe://`.
    pub spiffe_id: Option<String>,
    /// Every URI SAN, in certificate order (SPIFFE ID and label URIs included).
    pub uris: Vec<String>,
    /// Every DNS SAN, in certificate order.
    pub dns: Vec<String>,
    /// Valid labels for all rollouts, in certificate order.
    pub labels: Vec<Label>,
    /// Labels that were present but malformed, in certificate order.
    pub label_rejects: Vec<LabelReject>,
}

impl PeerCert {
    /// The label for `rollout_id`: `Ok(None)` if there is none, an error if
    /// there are several (whatever they say).
    pub fn label_for(&self, rollout_id: &str) -> Result<Option<&Label>, LabelReject> {
        let mut found = None;
        for label in self.labels.iter().filter(|l| l.rollout_id == rollout_id) {
            if found.is_some() {
                return Err(LabelReject::DuplicateLabel);
            }
            found = Some(label);
        }
        Ok(found)
    }

    /// Whether some valid label names a rollout other than `rollout_id`.
    pub fn has_labels_for_other_rollouts(&self, rollout_id: &str) -> bool {
        self.labels.iter().any(|l| l.rollout_id != rollout_id)
    }
}

/// Parse the dotted form of an OID (`1.3.6.1.4.1.55555.1.1`), for configuration.
/// The first arc must be 0..=2 and the second below 40.
pub fn parse_oid(dotted: &str) -> Result<LabelOid, String> {
    if dotted.len() > MAX_OID_LEN {
        return Err(format!("OID longer than {MAX_OID_LEN} characters"));
    }
    let mut arcs = Vec::new();
    for arc in dotted.split('.') {
        let canonical = !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc == "0" || !arc.starts_with('0'));
        if !canonical {
            return Err(format!("OID {dotted:?}: arc {arc:?} is not a decimal number"));
        }
        arcs.push(
            arc.parse::<u64>()
                .map_err(|_| format!("OID {dotted:?}: arc {arc} is too large"))?,
        );
    }
    match arcs.as_slice() {
        [first, second, ..] if *first <= 2 && *second < 40 => {}
        [_, _, ..] => {
            return Err(format!(
                "OID {dotted:?}: first arc must be 0..=2, second below 40"
            ))
        }
        _ => return Err(format!("OID {dotted:?}: needs at least two arcs")),
    }
    // The encoder's own error type is not printed: its Debug form costs the module for a
    // case the checks above leave unreachable.
    LabelOid::from(&arcs).map_err(|_| format!("OID {dotted:?}: cannot be encoded"))
}

/// Read a certificate given as PEM (exactly one `CERTIFICATE` block, only
/// whitespace around it) or raw DER, and collect its identities and labels.
/// Labels in otherName SANs are only looked for when `label_oid` is set.
pub fn parse_certificate(input: &[u8], label_oid: Option<&LabelOid>) -> Result<PeerCert, CertReject> {
    if input.len() > MAX_CERT_BYTES {
        return Err(CertReject::TooLarge);
    }
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(CertReject::Empty);
    }
    let pem_der;
    let der = if trimmed.starts_with(b"-----BEGIN") {
        pem_der = pem_to_der(trimmed).ok_or(CertReject::BadPem)?;
        pem_der.as_slice()
    } else {
        input
    };
    let extensions = certificate_extensions(der).ok_or(CertReject::BadDer)?;
    let mut peer = PeerCert::default();
    let Some(san) = subject_alt_name(extensions)? else {
        return Ok(peer);
    };
    let mut names = san;
    while !names.is_empty() {
        let (name, rest) = der_any(names).ok_or(CertReject::BadSan)?;
        names = rest;
        if name.class() != Class::ContextSpecific {
            return Err(CertReject::BadSan);
        }
        match name.tag().0 {
            // otherName: SEQUENCE { type-id OID, [0] EXPLICIT value }, the value left as DER.
            0 => {
                let (value, oid) = Oid::from_der(name.data).map_err(|_| CertReject::BadSan)?;
                if label_oid.is_some_and(|want| want.as_bytes() == oid.as_bytes()) {
                    match other_name_label(value) {
                        Ok(label) => peer.labels.push(label),
                        Err(reject) => peer.label_rejects.push(reject),
                    }
                }
            }
            // rfc822Name and dNSName, then uniformResourceIdentifier: IA5Strings, read as
            // UTF-8 (as x509-parser did, since many certificates carry non-ASCII there).
            1 => {
                ia5(name.data)?;
            }
            2 => peer.dns.push(ia5(name.data)?.to_owned()),
            6 => {
                let uri = ia5(name.data)?;
                if peer.spiffe_id.is_none() && uri.starts_with("spiffe://") {
                    peer.spiffe_id = Some(uri.to_owned());
                }
                match parse_uri_label(uri) {
                    Some(Ok(label)) => peer.labels.push(label),
                    Some(Err(reject)) => peer.label_rejects.push(reject),
                    None => {}
                }
                peer.uris.push(uri.to_owned());
            }
            // directoryName: exactly one Name (a SEQUENCE).
            4 => match der_any(name.data) {
                Some((dn, b"")) if dn.tag() == Tag::Sequence => {}
                _ => return Err(CertReject::BadSan),
            },
            // x400Address, ediPartyName, iPAddress, registeredID: not read.
            3 | 5 | 7 | 8 => {}
            _ => return Err(CertReject::BadSan),
        }
    }
    Ok(peer)
}

/// The subjectAltName extension's OID, 2.5.29.17, as DER content.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element and the bytes after it.
fn der_any(input: &[u8]) -> Option<(Any<'_>, &[u8])> {
    Any::from_der(input).ok().map(|(rest, any)| (any, rest))
}

/// The next element if its tag number is `tag`. As x509-parser (der-parser) did, the class is
/// not checked.
fn take<'a>(input: &mut &'a [u8], tag: Tag) -> Option<Any<'a>> {
    let (any, rest) = der_any(input).filter(|(any, _)| any.tag() == tag)?;
    *input = rest;
    Some(any)
}

/// The next element if it is the context-specific `[tag]`.
fn take_tagged<'a>(input: &mut &'a [u8], tag: u32) -> Option<Any<'a>> {
    let (any, rest) = der_any(input)?;
    if any.class() != Class::ContextSpecific || any.tag().0 != tag {
        return None;
    }
    *input = rest;
    Some(any)
}

/// The content of the `Extensions` SEQUENCE of a DER X.509 certificate (empty if it has
/// none), or `None` if `der` is not exactly one certificate.
///
/// x509-parser read every field here; this filter only needs the subjectAltName, and parsing
/// names, times and keys cost about 98 KB of the module's 400 KB budget. The certificate
/// comes from the TLS stack that verified it (or from the proxy that did), so the outline of
/// RFC 5280 section 4.1 is checked (each field's tag, in order, DER lengths) and the other
/// fields' contents are not. As x509-parser did, bytes after the signature inside the
/// Certificate SEQUENCE are ignored, and nothing may follow the extensions.
fn certificate_extensions(der: &[u8]) -> Option<&[u8]> {
    let mut input = der;
    let certificate = take(&mut input, Tag::Sequence)?;
    if !input.is_empty() {
        return None;
    }
    let mut fields = certificate.data;
    let tbs = take(&mut fields, Tag::Sequence)?;
    take(&mut fields, Tag::Sequence)?; // signatureAlgorithm
    take(&mut fields, Tag::BitString)?; // signatureValue

    let mut tbs = tbs.data;
    // version [0] EXPLICIT INTEGER DEFAULT v1
    if let Some(version) = take_tagged(&mut tbs, 0) {
        u32::from_der(version.data).ok()?;
    }
    take(&mut tbs, Tag::Integer)?; // serialNumber
                                   // signature, issuer, validity, subject, subjectPublicKeyInfo
    for _ in 0..5 {
        take(&mut tbs, Tag::Sequence)?;
    }
    take_tagged(&mut tbs, 1); // issuerUniqueID
    take_tagged(&mut tbs, 2); // subjectUniqueID
    if tbs.is_empty() {
        return Some(&[]);
    }
    // extensions [3] EXPLICIT SEQUENCE, the last field. As x509-parser did, only the tag
    // number of the [3] header is checked, and the SEQUENCE must end the TBSCertificate.
    let (mut rest, explicit) = Header::from_der(tbs).ok()?;
    if explicit.tag() != Tag(3) {
        return None;
    }
    let extensions = take(&mut rest, Tag::Sequence)?;
    rest.is_empty().then_some(extensions.data)
}

/// The GeneralNames content of the subjectAltName extension, `None` if there is none, and
/// `BadDer` if an extension is malformed.
fn subject_alt_name(mut extensions: &[u8]) -> Result<Option<&[u8]>, CertReject> {
    let mut san = None;
    while !extensions.is_empty() {
        // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
        // (each field read as x509-parser did, `critical` as a BER BOOLEAN)
        let extension = take(&mut extensions, Tag::Sequence).ok_or(CertReject::BadDer)?;
        let (fields, oid) = Oid::from_der(extension.data).map_err(|_| CertReject::BadDer)?;
        let fields = match der_any(fields) {
            Some((critical, rest)) if critical.tag() == Tag::Boolean && critical.data.len() == 1 => rest,
            _ => fields,
        };
        let (_, value) = <&[u8]>::from_der(fields).map_err(|_| CertReject::BadDer)?;
        if oid.as_bytes() == SAN_OID {
            if san.is_some() {
                return Err(CertReject::BadSan);
            }
            san = Some(value);
        }
    }
    // SubjectAltName ::= SEQUENCE OF GeneralName (bytes after it are ignored, as x509-parser did)
    san.map(|mut value| {
        take(&mut value, Tag::Sequence)
            .map(|names| names.data)
            .ok_or(CertReject::BadSan)
    })
    .transpose()
}

/// An IA5String SAN's text, which must be UTF-8.
fn ia5(content: &[u8]) -> Result<&str, CertReject> {
    std::str::from_utf8(content).map_err(|_| CertReject::BadSan)
}

/// The DER inside exactly one `CERTIFICATE` PEM block (`input` already trimmed).
pub(super) fn pem_to_der(input: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let body = input.strip_prefix(BEGIN)?.strip_suffix(END)?;
    // A second block would leave `-----` in the body, which is not base64.
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(compact).ok()?;
    (!der.is_empty()).then_some(der)
}

/// A test and fuzz fixture, not used by the filter: one DER tag-length-value (definite
/// length, in the fewest bytes). Unreachable from the filter's entry points, so it is not in
/// the shipped module.
#[doc(hidden)]
pub fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let bytes: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::der_tlv as tlv;
    use super::*;
    use crate::identity::fixtures::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn spiffe_only() {
        let cert = parse(SPIFFE_PEM);
        assert_eq!(cert.spiffe_id.as_deref(), Some(SPIFFE));
        assert_eq!(cert.uris, vec![SPIFFE.to_owned()]);
        assert!(cert.dns.is_empty());
        assert!(cert.labels.is_empty());
        assert!(cert.label_rejects.is_empty());
        assert_eq!(cert.label_for(ROLLOUT), Ok(None));
        assert!(!cert.has_labels_for_other_rollouts(ROLLOUT));
    }

    #[test]
    fn der_is_the_same_certificate() {
        assert_eq!(parse(SPIFFE_DER), parse(SPIFFE_PEM));
        let no_ws: Vec<u8> = SPIFFE_PEM.iter().copied().filter(|b| *b != b'\n').collect();
        assert_eq!(parse(&no_ws), parse(SPIFFE_PEM));
        let crlf = String::from_utf8(SPIFFE_PEM.to_vec())
            .unwrap()
            .replace('\n', "\r\n");
        assert_eq!(parse(crlf.as_bytes()), parse(SPIFFE_PEM));
        let padded = [b"\n  ".as_slice(), SPIFFE_PEM, b"\n\n"].concat();
        assert_eq!(parse(&padded), parse(SPIFFE_PEM));
    }

    #[test]
    fn uri_label_form_a() {
        let cert = parse(URI_A_PEM);
        assert_eq!(cert.spiffe_id.as_deref(), Some(SPIFFE));
        assert_eq!(cert.uris.len(), 2);
        assert_eq!(cert.labels, vec![label(Some("canary"), None)]);
        assert_eq!(cert.label_for(ROLLOUT), Ok(Some(&label(Some("canary"), None))));
        assert!(!cert.has_labels_for_other_rollouts(ROLLOUT));
    }

    #[test]
    fn uri_label_form_b() {
        let cert = parse(URI_B_PEM);
        assert_eq!(cert.labels, vec![label(None, Some(30))]);
        assert!(cert.label_rejects.is_empty());
    }

    #[test]
    fn other_name_utf8() {
        let cert = parse(UTF8_PEM);
        assert_eq!(cert.labels, vec![label(Some("canary"), Some(30))]);
        assert!(cert.label_rejects.is_empty());
        assert_eq!(cert.uris, vec![SPIFFE.to_owned()]);
        // Without (or with another) label OID the otherName is ignored.
        let plain = parse_certificate(UTF8_PEM, None).unwrap();
        assert!(plain.labels.is_empty() && plain.label_rejects.is_empty());
        let other = parse_oid("1.3.6.1.4.1.55555.1.2").unwrap();
        let plain = parse_certificate(UTF8_PEM, Some(&other)).unwrap();
        assert!(plain.labels.is_empty() && plain.label_rejects.is_empty());
    }

    #[test]
    fn other_name_ia5_unpadded() {
        let cert = parse(IA5_PEM);
        assert_eq!(cert.labels, vec![label(Some("stable"), Some(100))]);
        assert!(cert.label_rejects.is_empty());
    }

    #[test]
    fn fixtures_encode_other_name_as_openssl_does() {
        // [0] EXPLICIT { UTF8String (0x0c) } and { IA5String (0x16) }.
        let der = pem_to_der(UTF8_PEM.trim_ascii()).unwrap();
        assert!(der.windows(3).any(|w| w == [0xa0, 0x56, 0x0c]));
        let der = pem_to_der(IA5_PEM.trim_ascii()).unwrap();
        assert!(der.windows(3).any(|w| w[0] == 0xa0 && w[2] == 0x16));
    }

    #[test]
    fn two_dns_sans() {
        let cert = parse(DNS_PEM);
        assert_eq!(cert.spiffe_id, None);
        assert!(cert.uris.is_empty());
        assert_eq!(cert.dns, vec!["api.qa.example.com", "web.qa.example.com"]);
    }

    #[test]
    fn label_for_another_rollout() {
        let cert = parse(OTHER_ROLLOUT_PEM);
        assert_eq!(cert.label_for(ROLLOUT), Ok(None));
        assert!(cert.has_labels_for_other_rollouts(ROLLOUT));
        assert_eq!(
            cert.label_for("search-2026-12")
                .unwrap()
                .unwrap()
                .version
                .as_deref(),
            Some("canary")
        );
        assert!(!cert.has_labels_for_other_rollouts("search-2026-12"));
    }

    #[test]
    fn duplicate_labels() {
        let cert = parse(DUPLICATE_PEM);
        assert_eq!(cert.labels.len(), 2);
        assert_eq!(cert.label_for(ROLLOUT), Err(LabelReject::DuplicateLabel));
        assert_eq!(cert.label_for("other"), Ok(None));
    }

    #[test]
    fn bad_labels_in_fixtures() {
        for (pem, reject) in [
            (BAD_BASE64_PEM, LabelReject::BadBase64),
            (BAD_JSON_PEM, LabelReject::BadJson),
            (UNKNOWN_FIELD_PEM, LabelReject::UnknownField),
            (WEIGHT_101_PEM, LabelReject::WeightOutOfRange),
            (BAD_URI_PEM, LabelReject::BadUriLabel),
        ] {
            let cert = parse(pem);
            assert_eq!(cert.label_rejects, vec![reject]);
            assert!(cert.labels.is_empty());
            assert_eq!(cert.spiffe_id.as_deref(), Some(SPIFFE));
            assert_eq!(cert.label_for(ROLLOUT), Ok(None));
        }
        // The bad URI is still listed as a URI SAN.
        assert_eq!(parse(BAD_URI_PEM).uris.len(), 2);
    }

    #[test]
    fn ca_has_no_san() {
        assert_eq!(parse(CA_PEM), PeerCert::default());
    }

    #[test]
    fn malformed_input() {
        let pem = std::str::from_utf8(SPIFFE_PEM).unwrap();
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n");
        let cases: Vec<(Vec<u8>, CertReject)> = vec![
            (Vec::new(), CertReject::Empty),
            (b" \n\t ".to_vec(), CertReject::Empty),
            (
                pem.replace("-----END CERTIFICATE-----", "").into_bytes(),
                CertReject::BadPem,
            ),
            (
                pem.replace("CERTIFICATE", "PRIVATE KEY").into_bytes(),
                CertReject::BadPem,
            ),
            (pem.replacen("MII", "MI*", 1).into_bytes(), CertReject::BadPem),
            (format!("{pem}{pem}").into_bytes(), CertReject::BadPem),
            (format!("{pem}trailing").into_bytes(), CertReject::BadPem),
            (format!("leading\n{pem}").into_bytes(), CertReject::BadDer),
            (
                b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----".to_vec(),
                CertReject::BadPem,
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----".to_vec(),
                CertReject::BadDer,
            ),
            (body.into_bytes(), CertReject::BadDer),
            (b"garbage".to_vec(), CertReject::BadDer),
            (vec![0x30, 0x82, 0xff, 0xff, 0x01], CertReject::BadDer),
            ([SPIFFE_DER, &[0]].concat(), CertReject::BadDer),
            (
                SPIFFE_DER.get(..SPIFFE_DER.len() - 1).unwrap().to_vec(),
                CertReject::BadDer,
            ),
            (vec![0u8; MAX_CERT_BYTES + 1], CertReject::TooLarge),
            (vec![0u8; MAX_CERT_BYTES], CertReject::BadDer),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_certificate(&input, Some(&oid())),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    #[test]
    fn der_tlv_uses_the_shortest_definite_length() {
        // The tag and length octets, without the content.
        let head = |n: usize| {
            let out = tlv(0x04, &vec![0; n]);
            out[..out.len() - n].to_vec()
        };
        assert_eq!(tlv(0x04, &[]), [0x04, 0x00]);
        assert_eq!(head(0x7f), [0x04, 0x7f]);
        assert_eq!(head(0x80), [0x04, 0x81, 0x80]);
        assert_eq!(head(0xff), [0x04, 0x81, 0xff]);
        assert_eq!(head(0x100), [0x04, 0x82, 0x01, 0x00]);
        assert_eq!(head(0x1_0000), [0x04, 0x83, 0x01, 0x00, 0x00]);
    }

    /// The label otherName OID 1.3.6.1.4.1.55555.1.1, DER.
    const LABEL_OID_DER: &[u8] = &[
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb2, 0x03, 0x01, 0x01,
    ];

    /// A v3 certificate whose extensions SEQUENCE holds `extensions` (none: no [3] at all),
    /// with well-formed other fields so that x509-parser reads it too.
    fn cert_with(extensions: Option<&[Vec<u8>]>, tbs_tail: &[u8], cert_tail: &[u8]) -> Vec<u8> {
        let ecdsa_sha256 = seq(&[&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]]);
        let name = seq(&[&tlv(
            0x31,
            &seq(&[&[0x06, 0x03, 0x55, 0x04, 0x03], &tlv(0x0c, b"t")]),
        )]);
        let validity = seq(&[&tlv(0x17, b"250101000000Z"), &tlv(0x17, b"350101000000Z")]);
        let ec_key = seq(&[&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]]);
        let spki = seq(&[&ec_key, &tlv(0x03, &[0, 4, 1, 2])]);
        let mut tbs = [
            tlv(0xa0, &[0x02, 0x01, 0x02]),
            vec![0x02, 0x01, 0x07],
            ecdsa_sha256.clone(),
            name.clone(),
            validity,
            name,
            spki,
        ]
        .concat();
        if let Some(extensions) = extensions {
            tbs.extend(tlv(
                0xa3,
                &seq(&extensions.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            ));
        }
        tbs.extend_from_slice(tbs_tail);
        let body = [
            seq(&[&tbs]),
            ecdsa_sha256,
            tlv(0x03, &[0, 1, 2]),
            cert_tail.to_vec(),
        ]
        .concat();
        tlv(0x30, &body)
    }

    /// A subjectAltName extension around `value` (the OCTET STRING's content).
    fn san_ext(value: &[u8]) -> Vec<u8> {
        seq(&[&[0x06, 0x03, 0x55, 0x1d, 0x11], &tlv(0x04, value)])
    }

    fn san(names: &[Vec<u8>]) -> Vec<u8> {
        san_ext(&seq(&names.iter().map(Vec::as_slice).collect::<Vec<_>>()))
    }

    fn other_name(oid: &[u8], value: &[u8]) -> Vec<u8> {
        tlv(0xa0, &[oid, &tlv(0xa0, &tlv(0x0c, value))].concat())
    }

    #[test]
    fn hand_made_certificates() {
        let label_b64 = "eyJyb2xsb3V0SWQiOiJjaGVja291dC0yMDI2LTExIiwid2VpZ2h0IjozMH0=";
        let basic_constraints = seq(&[
            &[0x06, 0x03, 0x55, 0x1d, 0x13],
            &[0x01, 0x01, 0xff],
            &tlv(0x04, &seq(&[])),
        ]);
        let all_kinds = cert_with(
            Some(&[
                basic_constraints.clone(),
                san(&[
                    tlv(0x81, b"a@example.com"),
                    tlv(0x82, b"a.example.com"),
                    tlv(0xa4, &seq(&[])),
                    tlv(0x86, SPIFFE.as_bytes()),
                    tlv(0x87, &[127, 0, 0, 1]),
                    tlv(0x88, &[0x2b, 0x06]),
                    other_name(LABEL_OID_DER, label_b64.as_bytes()),
                    tlv(0x86, b"rollout://checkout-2026-11?version=canary"),
                    tlv(0x82, "b.exämple.com".as_bytes()),
                ]),
            ]),
            b"",
            b"",
        );
        let cert = parse_certificate(&all_kinds, Some(&oid())).unwrap();
        assert_eq!(cert.dns, vec!["a.example.com", "b.exämple.com"]);
        assert_eq!(cert.spiffe_id.as_deref(), Some(SPIFFE));
        assert_eq!(cert.uris.len(), 2);
        assert_eq!(
            cert.labels,
            vec![label(None, Some(30)), label(Some("canary"), None)]
        );

        let empty_san = cert_with(Some(&[san(&[])]), b"", b"");
        let no_extensions = cert_with(None, b"", b"");
        let other_extensions_only = cert_with(Some(std::slice::from_ref(&basic_constraints)), b"", b"");
        for der in [&empty_san, &no_extensions, &other_extensions_only] {
            assert_eq!(parse_certificate(der, Some(&oid())), Ok(PeerCert::default()));
        }
        // Trailing bytes inside the Certificate SEQUENCE (after the signature) and after the
        // SAN SEQUENCE in its OCTET STRING are ignored.
        let dns = || san(&[tlv(0x82, b"a.example.com")]);
        let dns_seq = seq(&[&tlv(0x82, b"a.example.com")]);
        for der in [
            cert_with(Some(&[dns()]), b"", &[0x05, 0x00]),
            cert_with(
                Some(&[san_ext(&[dns_seq.as_slice(), &[0x05, 0x00]].concat())]),
                b"",
                b"",
            ),
        ] {
            assert!(parse_certificate(&der, None).is_ok(), "{der:02x?}");
        }

        let bad_san = [
            cert_with(Some(&[dns(), dns()]), b"", b""),
            cert_with(Some(&[san(&[tlv(0x82, &[0xff, 0xfe])])]), b"", b""),
            cert_with(Some(&[san(&[tlv(0x86, &[0xc3])])]), b"", b""),
            cert_with(Some(&[san(&[tlv(0x89, b"x")])]), b"", b""),
            cert_with(Some(&[san(&[tlv(0x16, b"x")])]), b"", b""),
            cert_with(Some(&[san(&[tlv(0xa0, &[])])]), b"", b""),
            cert_with(Some(&[san(&[tlv(0xa0, &seq(&[]))])]), b"", b""),
            cert_with(Some(&[san(&[tlv(0xa4, &tlv(0x31, &[]))])]), b"", b""),
            cert_with(
                Some(&[san(&[tlv(0xa4, &[seq(&[]), seq(&[])].concat())])]),
                b"",
                b"",
            ),
            cert_with(Some(&[san_ext(&tlv(0x31, &tlv(0x82, b"a")))]), b"", b""),
            cert_with(Some(&[san_ext(&[0x30, 0x05, 0x82, 0x01])]), b"", b""),
        ];
        for der in &bad_san {
            assert_eq!(
                parse_certificate(der, None),
                Err(CertReject::BadSan),
                "{der:02x?}"
            );
        }

        let bad_der = [
            cert_with(None, &[0x05, 0x00], b""),
            cert_with(Some(&[dns()]), &[0x05, 0x00], b""),
            cert_with(Some(&[seq(&[&[0x06, 0x03, 0x55, 0x1d, 0x11]])]), b"", b""),
            cert_with(Some(&[seq(&[&[0x04, 0x00]])]), b"", b""),
            cert_with(Some(&[vec![0x05, 0x00]]), b"", b""),
            seq(&[&seq(&[])]),
            [no_extensions.clone(), vec![0]].concat(),
        ];
        for der in &bad_der {
            assert_eq!(
                parse_certificate(der, None),
                Err(CertReject::BadDer),
                "{der:02x?}"
            );
        }

        #[cfg(not(target_arch = "wasm32"))]
        for der in [&all_kinds, &empty_san, &no_extensions, &other_extensions_only]
            .into_iter()
            .chain(&bad_san)
            .chain(&bad_der)
        {
            reference::same_as_x509_parser(der);
        }
        #[cfg(not(target_arch = "wasm32"))]
        reference::same_as_x509_parser_when_mutated(&all_kinds);
    }

    /// Differential check against x509-parser, which read the whole certificate before.
    #[cfg(not(target_arch = "wasm32"))]
    mod reference {
        use super::*;
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

        /// The reader as it was with x509-parser (PEM handling aside).
        fn x509_parser_reader(der: &[u8], label_oid: &LabelOid) -> Result<PeerCert, CertReject> {
            let (rest, cert) = X509Certificate::from_der(der).map_err(|_| CertReject::BadDer)?;
            if !rest.is_empty() {
                return Err(CertReject::BadDer);
            }
            let mut peer = PeerCert::default();
            let san = cert.subject_alternative_name().map_err(|_| CertReject::BadSan)?;
            let names = san
                .map(|ext| ext.value.general_names.as_slice())
                .unwrap_or_default();
            for name in names {
                match name {
                    GeneralName::URI(uri) => {
                        if peer.spiffe_id.is_none() && uri.starts_with("spiffe://") {
                            peer.spiffe_id = Some((*uri).to_owned());
                        }
                        match parse_uri_label(uri) {
                            Some(Ok(label)) => peer.labels.push(label),
                            Some(Err(reject)) => peer.label_rejects.push(reject),
                            None => {}
                        }
                        peer.uris.push((*uri).to_owned());
                    }
                    GeneralName::DNSName(dns) => peer.dns.push((*dns).to_owned()),
                    GeneralName::OtherName(oid, value) if label_oid.as_bytes() == oid.as_bytes() => {
                        match other_name_label(value) {
                            Ok(label) => peer.labels.push(label),
                            Err(reject) => peer.label_rejects.push(reject),
                        }
                    }
                    _ => {}
                }
            }
            Ok(peer)
        }

        /// Where x509-parser read a certificate, the result is the same; where it rejected the
        /// SAN, so does this reader. Only x509-parser's checks of fields this reader does not
        /// read (names, times, keys, …) may make it reject what this reader accepts.
        pub(super) fn same_as_x509_parser(der: &[u8]) {
            let oid = oid();
            let ours = parse_certificate(der, Some(&oid));
            match x509_parser_reader(der, &oid) {
                Ok(theirs) => assert_eq!(ours, Ok(theirs), "{der:02x?}"),
                Err(CertReject::BadSan) => assert_eq!(ours, Err(CertReject::BadSan), "{der:02x?}"),
                Err(_) => {}
            }
        }

        /// [`same_as_x509_parser`] for `der`, every prefix of it and every single-byte change
        /// of a few kinds; the number of inputs checked.
        pub(super) fn same_as_x509_parser_when_mutated(der: &[u8]) -> usize {
            same_as_x509_parser(der);
            for len in 0..der.len() {
                same_as_x509_parser(&der[..len]);
            }
            let mut mutated = der.to_vec();
            for i in 0..der.len() {
                for flip in [0x01, 0x80, 0xff] {
                    mutated[i] ^= flip;
                    same_as_x509_parser(&mutated);
                    mutated[i] ^= flip;
                }
            }
            der.len() * 4 + 1
        }

        #[test]
        fn fixtures_and_their_mutations() {
            let fixtures = [
                SPIFFE_PEM,
                URI_A_PEM,
                URI_B_PEM,
                UTF8_PEM,
                IA5_PEM,
                DNS_PEM,
                OTHER_ROLLOUT_PEM,
                DUPLICATE_PEM,
                BAD_BASE64_PEM,
                BAD_JSON_PEM,
                UNKNOWN_FIELD_PEM,
                WEIGHT_101_PEM,
                BAD_URI_PEM,
                CA_PEM,
            ];
            let mut checked = 0;
            for pem in fixtures {
                let der = pem_to_der(pem.trim_ascii()).unwrap();
                assert_eq!(parse_certificate(&der, Some(&oid())), Ok(parse(pem)));
                checked += same_as_x509_parser_when_mutated(&der);
            }
            assert!(checked > 10_000);
        }
    }

    #[test]
    fn oid_parsing() {
        assert_eq!(oid().to_id_string(), "1.3.6.1.4.1.55555.1.1");
        assert_eq!(parse_oid("2.5.29.17").unwrap().to_id_string(), "2.5.29.17");
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1..2",
            "1.2.x",
            "1.+2",
            "1.02",
            "3.1",
            "1.40",
            "1.2.99999999999999999999",
        ] {
            assert!(parse_oid(bad).is_err(), "{bad}");
        }
        assert!(parse_oid(&"1.".repeat(100)).is_err());
    }
}
