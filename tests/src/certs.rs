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

/// Standard base64 of `text`, one line, by `openssl base64 -A` (as docs/configuration.md mints labels).
pub fn openssl_base64(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the openssl CLI");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

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

    /// A client certificate minted by the `openssl` CLI exactly as docs/configuration.md shows:
    /// `openssl req -new … -addext "subjectAltName=<san>"`, then `openssl x509 -req
    /// -CA … -copy_extensions copyall`, signed with this CA's key. `san` is openssl's
    /// syntax, e.g. `URI:…,otherName:<OID>;UTF8:<base64>`.
    pub fn issue_with_openssl(&self, san: &str) -> Identity {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        std::fs::write(path("ca.pem"), &self.pem).unwrap();
        std::fs::write(path("ca.key"), self.key.serialize_pem()).unwrap();
        let addext = format!("subjectAltName={san}");
        let (key, csr, cert) = (path("client.key"), path("client.csr"), path("client.pem"));
        let (ca_pem, ca_key) = (path("ca.pem"), path("ca.key"));
        let steps: [&[&str]; 2] = [
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-subj",
                "/CN=test client",
                "-addext",
                &addext,
                "-out",
                &csr,
            ],
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-days",
                "30",
                "-copy_extensions",
                "copyall",
                "-out",
                &cert,
            ],
        ];
        for args in steps {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("the openssl CLI");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Identity {
            cert: std::fs::read_to_string(&cert).unwrap(),
            key: std::fs::read_to_string(&key).unwrap(),
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
