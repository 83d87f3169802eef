//! Who is calling: from a caller's mTLS certificate to its identities (SPIFFE
//! ID, URI and DNS SANs) and the rollout labels it carries, plus the
//! `x-forwarded-client-cert` (XFCC) parsing that yields that certificate, the
//! trust patterns that decide whose labels are believed, and a small
//! per-worker cache.
//!
//! Pure code: no proxy-wasm, no clock, no randomness. Every function takes
//! bytes, never panics and does work bounded by the size of its input
//! (certificates are capped at [`MAX_CERT_BYTES`]).
//!
//! By concern: [`certificate`] reads a certificate into a [`PeerCert`],
//! [`labels`] holds the label grammar, [`xfcc`] takes the certificate out of an
//! `x-forwarded-client-cert` header, [`patterns`] decides whose labels are
//! believed and [`cache`] keeps parsed results per worker.

pub mod cache;
pub mod certificate;
pub mod labels;
pub mod patterns;
pub mod xfcc;

#[cfg(test)]
mod fixtures;

pub use cache::{LabelCache, DEFAULT_CACHE_CAPACITY};
pub use certificate::{parse_certificate, parse_oid, CertReject, LabelOid, PeerCert, MAX_CERT_BYTES};
pub use labels::{Label, LabelReject};
pub use patterns::PeerPattern;
pub use xfcc::{xfcc_certificate, XfccReject};

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reject_names() {
        fn check(names: &[&str]) {
            let mut seen = std::collections::HashSet::new();
            for name in names {
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{name}"
                );
                assert!(seen.insert(*name), "{name}");
            }
        }
        check(&CertReject::ALL.map(CertReject::as_str));
        check(&LabelReject::ALL.map(LabelReject::as_str));
        check(&XfccReject::ALL.map(XfccReject::as_str));
    }
}
