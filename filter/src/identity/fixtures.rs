//! Certificates and helpers shared by the identity tests (made by the
//! generator `filter/testdata/gen.sh`).

use super::{parse_certificate, parse_oid, Label, LabelOid, PeerCert};

pub(crate) const ROLLOUT: &str = "checkout-2026-11";
pub(crate) const SPIFFE: &str = "spiffe://cluster.local/ns/qa/sa/tester";

pub(crate) const SPIFFE_PEM: &[u8] = include_bytes!("../../testdata/spiffe.pem");
pub(crate) const SPIFFE_DER: &[u8] = include_bytes!("../../testdata/spiffe.der");
pub(crate) const SPIFFE_SHA256: &str = include_str!("../../testdata/spiffe.sha256");
pub(crate) const URI_A_PEM: &[u8] = include_bytes!("../../testdata/uri-label-a.pem");
pub(crate) const URI_B_PEM: &[u8] = include_bytes!("../../testdata/uri-label-b.pem");
pub(crate) const UTF8_PEM: &[u8] = include_bytes!("../../testdata/othername-utf8.pem");
pub(crate) const UTF8_SHA256: &str = include_str!("../../testdata/othername-utf8.sha256");
pub(crate) const IA5_PEM: &[u8] = include_bytes!("../../testdata/othername-ia5.pem");
pub(crate) const DNS_PEM: &[u8] = include_bytes!("../../testdata/dns.pem");
pub(crate) const OTHER_ROLLOUT_PEM: &[u8] = include_bytes!("../../testdata/other-rollout.pem");
pub(crate) const DUPLICATE_PEM: &[u8] = include_bytes!("../../testdata/duplicate.pem");
pub(crate) const BAD_BASE64_PEM: &[u8] = include_bytes!("../../testdata/bad-base64.pem");
pub(crate) const BAD_JSON_PEM: &[u8] = include_bytes!("../../testdata/bad-json.pem");
pub(crate) const UNKNOWN_FIELD_PEM: &[u8] = include_bytes!("../../testdata/unknown-field.pem");
pub(crate) const WEIGHT_101_PEM: &[u8] = include_bytes!("../../testdata/weight-101.pem");
pub(crate) const BAD_URI_PEM: &[u8] = include_bytes!("../../testdata/bad-uri-label.pem");
pub(crate) const CA_PEM: &[u8] = include_bytes!("../../testdata/ca.pem");

pub(crate) fn oid() -> LabelOid {
    parse_oid("1.3.6.1.4.1.55555.1.1").unwrap()
}

pub(crate) fn parse(pem: &[u8]) -> PeerCert {
    parse_certificate(pem, Some(&oid())).unwrap()
}

pub(crate) fn label(version: Option<&str>, weight: Option<u8>) -> Label {
    Label {
        rollout_id: ROLLOUT.to_owned(),
        version: version.map(str::to_owned),
        weight,
        trace_id: None,
    }
}
