//! A peer certificate (PEM or DER) read into its identities and labels.

use base64::Engine as _;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::labels::{other_name_label, parse_uri_label, Label, LabelReject};

/// The owned OID type of the label otherName, built once from configuration
/// with [`parse_oid`].
pub type LabelOid = x509_parser::der_parser::Oid<'static>;

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
    LabelOid::from(&arcs).map_err(|e| format!("OID {dotted:?}: {e:?}"))
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
            GeneralName::OtherName(oid, value)
                if label_oid.is_some_and(|want| want.as_bytes() == oid.as_bytes()) =>
            {
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

#[cfg(test)]
mod tests {
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
