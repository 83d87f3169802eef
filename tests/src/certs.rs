//! Certificates made by the tests: a CA, a server certificate for `localhost`,
//! and client certificates carrying whatever SANs a test needs.

use std::path::PathBuf;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, OtherNameValue, SanType,
};

use crate::ServerTls;

/// The otherName OID the tests configure for JSON labels.
pub const LABEL_OID: &str = "1.3.6.1.4.1.55555.1.1";
const LABEL_OID_ARCS: [u64; 9] = [1, 3, 6, 1, 4, 1, 55555, 1, 1];

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    pub pem: String,
}

/// A PEM certificate and its private key.
pub struct Identity {
    pub cert: String,
    pub key: String,
}

/// A SAN for a client certificate.
pub enum San<'a> {
    Uri(&'a str),
    Dns(&'a str),
    /// otherName with [`LABEL_OID`]: base64 of this JSON.
    JsonLabel(&'a str),
    /// otherName with [`LABEL_OID`] carrying this exact string.
    RawOtherName(&'a str),
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rollout-filter test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    pub fn issue(&self, sans: &[San]) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "test client");
        for san in sans {
            params.subject_alt_names.push(match san {
                San::Uri(u) => SanType::URI((*u).try_into().unwrap()),
                San::Dns(d) => SanType::DnsName((*d).try_into().unwrap()),
                San::JsonLabel(json) => SanType::OtherName((
                    LABEL_OID_ARCS.to_vec(),
                    OtherNameValue::Utf8String(base64::engine::general_purpose::STANDARD.encode(json)),
                )),
                San::RawOtherName(s) => {
                    SanType::OtherName((LABEL_OID_ARCS.to_vec(), OtherNameValue::Utf8String(s.to_string())))
                }
            });
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Identity {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Files for an Envoy listener that requires client certificates from this CA.
    pub fn server_files(&self, dir: &std::path::Path) -> ServerTls {
        let server = self.issue(&[San::Dns("localhost")]);
        let write = |name: &str, body: &str| -> PathBuf {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        ServerTls {
            cert: write("server.pem", &server.cert),
            key: write("server.key", &server.key),
            ca: write("ca.pem", &self.pem),
            xfcc: None,
            xfcc_set_cert: false,
        }
    }
}

impl Default for Ca {
    fn default() -> Self {
        Ca::new()
    }
}
