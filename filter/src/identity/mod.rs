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
//! # Label grammar
//!
//! A certificate carries a label for a rollout in one of three SAN forms:
//!
//! * URI form A: `rollout://<rolloutId>?version=<v>&weight=<n>`
//! * URI form B: `rollout=<rolloutId>;version=<v>;weight=<n>`
//! * otherName with the configured OID: a UTF8String or IA5String (inside the
//!   RFC 5280 `[0] EXPLICIT` wrapper, as openssl and rcgen write it; a bare
//!   string is accepted too) holding standard-alphabet base64, padded or not,
//!   of the JSON object `{"rolloutId":"…","version":"…","weight":30}`.
//!
//! In every form at least one of `version` / `weight` must be present, each at
//! most once; no other parameter or field is allowed. `rolloutId` is
//! `[A-Za-z0-9._-]{1,128}`, `version` is `[a-z0-9-]{1,63}`, `weight` is a
//! percentage 0..=100 (URI forms: plain decimal digits, no sign or leading
//! zeros; JSON: an integer, `null` is the same as absent). The `rollout://` /
//! `rollout=` prefix is matched ASCII-case-insensitively, the parameter names
//! exactly. URI SANs that do not start with either prefix are plain identities.

use std::collections::{HashMap, VecDeque};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The owned OID type of the label otherName, built once from configuration
/// with [`parse_oid`].
pub type LabelOid = x509_parser::der_parser::Oid<'static>;

/// Largest certificate input (PEM or DER) looked at.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// Default number of entries of a [`LabelCache`].
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

const MAX_ROLLOUT_ID: usize = 128;
const MAX_VERSION: usize = 63;
const MAX_SPIFFE_ID: usize = 2048;
const MAX_DNS_NAME: usize = 253;
const MAX_DNS_LABEL: usize = 63;
const MAX_OID_LEN: usize = 128;

/// Standard alphabet, padding optional (canonical trailing bits still required).
const LABEL_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------
// Reject kinds
// ---------------------------------------------------------------------------

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

/// Why a label was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelReject {
    /// A `rollout://` / `rollout=` URI that breaks the grammar (unknown,
    /// repeated or empty parameter, non-numeric weight, …).
    BadUriLabel,
    /// The rollout id is empty, too long or has a character outside `[A-Za-z0-9._-]`.
    BadRolloutId,
    /// An otherName with the label OID whose value is not a UTF8String/IA5String.
    BadOtherName,
    /// The otherName string is not standard base64.
    BadBase64,
    /// The decoded otherName is not a JSON object of the right shape.
    BadJson,
    /// The JSON has a field other than `rolloutId`, `version`, `weight`.
    UnknownField,
    /// Weight outside 0..=100.
    WeightOutOfRange,
    /// Version outside `[a-z0-9-]{1,63}`.
    BadVersion,
    /// Neither version nor weight given.
    NoVersionOrWeight,
    /// The certificate only has labels for other rollouts (counted by the caller,
    /// see [`PeerCert::has_labels_for_other_rollouts`]).
    OtherRollout,
    /// Two labels name the same rollout.
    DuplicateLabel,
}

impl LabelReject {
    pub const ALL: [LabelReject; 11] = [
        LabelReject::BadUriLabel,
        LabelReject::BadRolloutId,
        LabelReject::BadOtherName,
        LabelReject::BadBase64,
        LabelReject::BadJson,
        LabelReject::UnknownField,
        LabelReject::WeightOutOfRange,
        LabelReject::BadVersion,
        LabelReject::NoVersionOrWeight,
        LabelReject::OtherRollout,
        LabelReject::DuplicateLabel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LabelReject::BadUriLabel => "bad_uri_label",
            LabelReject::BadRolloutId => "bad_rollout_id",
            LabelReject::BadOtherName => "bad_other_name",
            LabelReject::BadBase64 => "bad_base64",
            LabelReject::BadJson => "bad_json",
            LabelReject::UnknownField => "unknown_field",
            LabelReject::WeightOutOfRange => "weight_out_of_range",
            LabelReject::BadVersion => "bad_version",
            LabelReject::NoVersionOrWeight => "no_version_or_weight",
            LabelReject::OtherRollout => "other_rollout",
            LabelReject::DuplicateLabel => "duplicate_label",
        }
    }
}

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

// ---------------------------------------------------------------------------
// Certificates and labels
// ---------------------------------------------------------------------------

/// A rollout label found in a certificate. At least one of `version` and
/// `weight` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub rollout_id: String,
    pub version: Option<String>,
    /// Percent, 0..=100.
    pub weight: Option<u8>,
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

    /// Whether any pattern matches this certificate: a lone `*` matches any
    /// certificate, SPIFFE patterns are checked against [`PeerCert::spiffe_id`],
    /// DNS patterns against every DNS SAN.
    pub fn is_trusted(&self, patterns: &[PeerPattern]) -> bool {
        patterns.iter().any(|p| match &p.kind {
            PatternKind::Any => true,
            PatternKind::Spiffe { .. } => self.spiffe_id.as_deref().is_some_and(|id| p.matches(id)),
            PatternKind::Dns(_) => self.dns.iter().any(|d| p.matches(d)),
        })
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
fn pem_to_der(input: &[u8]) -> Option<Vec<u8>> {
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

/// `None` if `uri` is not a label URI at all (a plain identity).
fn parse_uri_label(uri: &str) -> Option<Result<Label, LabelReject>> {
    if let Some(rest) = strip_prefix_ignore_case(uri, "rollout://") {
        let (id, query) = match rest.split_once('?') {
            Some((id, query)) => (id, Some(query)),
            None => (rest, None),
        };
        return Some(uri_label(id, query.map(|q| q.split('&'))));
    }
    if let Some(rest) = strip_prefix_ignore_case(uri, "rollout=") {
        let mut parts = rest.split(';');
        let id = parts.next().unwrap_or_default();
        return Some(uri_label(id, Some(parts)));
    }
    None
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// A URI label from its rollout id and its `key=value` parameters.
fn uri_label<'a>(id: &str, params: Option<impl Iterator<Item = &'a str>>) -> Result<Label, LabelReject> {
    if !valid_rollout_id(id) {
        return Err(LabelReject::BadRolloutId);
    }
    let mut version = None;
    let mut weight = None;
    for param in params.into_iter().flatten() {
        let (key, value) = param.split_once('=').ok_or(LabelReject::BadUriLabel)?;
        match key {
            "version" if version.is_none() => {
                if !valid_version(value) {
                    return Err(LabelReject::BadVersion);
                }
                version = Some(value.to_owned());
            }
            "weight" if weight.is_none() => weight = Some(parse_uri_weight(value)?),
            _ => return Err(LabelReject::BadUriLabel),
        }
    }
    make_label(id, version, weight)
}

/// Decimal digits without sign or leading zeros; all-digit strings above 100
/// are out of range, anything else is a grammar error.
fn parse_uri_weight(value: &str) -> Result<u8, LabelReject> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LabelReject::BadUriLabel);
    }
    if value.len() > 1 && value.starts_with('0') {
        return Err(LabelReject::BadUriLabel);
    }
    match value.parse::<u8>() {
        Ok(w) if w <= 100 => Ok(w),
        _ => Err(LabelReject::WeightOutOfRange),
    }
}

fn make_label(id: &str, version: Option<String>, weight: Option<u8>) -> Result<Label, LabelReject> {
    if version.is_none() && weight.is_none() {
        return Err(LabelReject::NoVersionOrWeight);
    }
    Ok(Label {
        rollout_id: id.to_owned(),
        version,
        weight,
    })
}

fn valid_rollout_id(id: &str) -> bool {
    (1..=MAX_ROLLOUT_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_version(v: &str) -> bool {
    (1..=MAX_VERSION).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JsonLabel {
    rollout_id: String,
    version: Option<String>,
    weight: Option<i64>,
}

/// A label from the value of a label otherName (`[0] EXPLICIT` string).
fn other_name_label(value: &[u8]) -> Result<Label, LabelReject> {
    let text = other_name_string(value).ok_or(LabelReject::BadOtherName)?;
    let json = LABEL_BASE64.decode(text).map_err(|_| LabelReject::BadBase64)?;
    json_label(&json)
}

fn json_label(json: &[u8]) -> Result<Label, LabelReject> {
    let parsed: JsonLabel = serde_json::from_slice(json).map_err(|e| {
        // serde's wording for deny_unknown_fields, stable since serde 1.0.
        if e.is_data() && e.to_string().starts_with("unknown field") {
            LabelReject::UnknownField
        } else {
            LabelReject::BadJson
        }
    })?;
    if !valid_rollout_id(&parsed.rollout_id) {
        return Err(LabelReject::BadRolloutId);
    }
    if parsed.version.as_deref().is_some_and(|v| !valid_version(v)) {
        return Err(LabelReject::BadVersion);
    }
    let weight = match parsed.weight {
        None => None,
        Some(w) => Some(
            u8::try_from(w)
                .ok()
                .filter(|w| *w <= 100)
                .ok_or(LabelReject::WeightOutOfRange)?,
        ),
    };
    make_label(&parsed.rollout_id, parsed.version, weight)
}

/// The string of an otherName value: `[0] EXPLICIT` around a UTF8String or
/// IA5String (RFC 5280, openssl, rcgen), or the bare string.
fn other_name_string(value: &[u8]) -> Option<&str> {
    const EXPLICIT_0: u8 = 0xa0;
    const UTF8_STRING: u8 = 0x0c;
    const IA5_STRING: u8 = 0x16;
    let (tag, content, rest) = der_tlv(value)?;
    if !rest.is_empty() {
        return None;
    }
    let (tag, content) = if tag == EXPLICIT_0 {
        let (tag, content, rest) = der_tlv(content)?;
        if !rest.is_empty() {
            return None;
        }
        (tag, content)
    } else {
        (tag, content)
    };
    match tag {
        UTF8_STRING => std::str::from_utf8(content).ok(),
        IA5_STRING if content.is_ascii() => std::str::from_utf8(content).ok(),
        _ => None,
    }
}

/// One DER tag-length-value: (tag byte, content, rest). Single-byte tags and
/// definite lengths only.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..n {
            let (&b, r) = rest.split_first()?;
            len = len.checked_mul(256)?.checked_add(usize::from(b))?;
            rest = r;
        }
        len
    };
    if len > rest.len() {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

// ---------------------------------------------------------------------------
// XFCC
// ---------------------------------------------------------------------------

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
    let pem = percent_decode(encoded).ok_or(XfccReject::BadEncoding)?;
    if pem.len() > MAX_CERT_BYTES {
        return Err(XfccReject::TooLarge);
    }
    let der = pem_to_der(pem.trim_ascii()).ok_or(XfccReject::BadEncoding)?;
    if !hex_eq(&sha256(&der), digest_hex) {
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

/// `%XX` decoding; a `%` not followed by two hex digits is an error. `+` is kept.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = hex_value(*bytes.next()?)?;
            let lo = hex_value(*bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
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

/// SHA-256 (FIPS 180-4), for checking an XFCC certificate against its digest.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = Vec::with_capacity(data.len() + 72);
    msg.extend_from_slice(data);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        // Rolling message schedule: w[0] is W_t, w[i] is W_{t+i}.
        let mut w = [0u32; 16];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = <[u8; 4]>::try_from(bytes).map(u32::from_be_bytes).unwrap_or(0);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for k in K {
            let wt = w[0];
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(k)
                .wrapping_add(wt);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);

            let (w1, w14) = (w[1], w[14]);
            let sigma0 = w1.rotate_right(7) ^ w1.rotate_right(18) ^ (w1 >> 3);
            let sigma1 = w14.rotate_right(17) ^ w14.rotate_right(19) ^ (w14 >> 10);
            let next = sigma1.wrapping_add(w[9]).wrapping_add(sigma0).wrapping_add(wt);
            w.rotate_left(1);
            w[15] = next;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

// ---------------------------------------------------------------------------
// Trust patterns
// ---------------------------------------------------------------------------

/// Whose certificate labels are believed: a SPIFFE ID pattern
/// (`spiffe://cluster.local/ns/qa/*`), a DNS name pattern (`*.qa.example.com`)
/// or a lone `*` (any verified certificate).
///
/// A `*` segment matches exactly one non-empty segment (`/`-separated for
/// SPIFFE, `.`-separated for DNS), except that a trailing `/*` in a SPIFFE
/// path matches one or more remaining segments. `*` inside a segment is an
/// error. SPIFFE matching is case-sensitive, DNS matching ASCII
/// case-insensitive. Identities are only matched if well-formed (SPIFFE:
/// trust domain `[a-z0-9._-]`, path segments `[A-Za-z0-9._-]` other than `.`
/// and `..`; DNS: labels `[A-Za-z0-9_-]`), so a wildcard never matches an odd
/// segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPattern {
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Any,
    /// Trust domain then path segments; `tail`: the last `*` takes 1+ segments.
    Spiffe {
        segments: Vec<Segment>,
        tail: bool,
    },
    Dns(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Wild,
    Literal(String),
}

impl PeerPattern {
    pub fn parse(s: &str) -> Result<PeerPattern, String> {
        if s == "*" {
            return Ok(PeerPattern {
                kind: PatternKind::Any,
            });
        }
        if let Some(rest) = s.strip_prefix("spiffe://") {
            if s.len() > MAX_SPIFFE_ID {
                return Err(format!("peer pattern longer than {MAX_SPIFFE_ID} bytes"));
            }
            let mut segments = Vec::new();
            for (i, seg) in rest.split('/').enumerate() {
                segments.push(pattern_segment(s, seg, |seg| spiffe_segment_ok(i, seg))?);
            }
            let tail = segments.len() > 1 && segments.last() == Some(&Segment::Wild);
            return Ok(PeerPattern {
                kind: PatternKind::Spiffe { segments, tail },
            });
        }
        if s.contains("://") {
            return Err(format!("peer pattern {s:?}: only spiffe:// URIs are supported"));
        }
        if s.len() > MAX_DNS_NAME {
            return Err(format!("peer pattern {s:?}: DNS name longer than {MAX_DNS_NAME}"));
        }
        let labels = s
            .split('.')
            .map(|label| pattern_segment(s, label, dns_label_ok))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerPattern {
            kind: PatternKind::Dns(labels),
        })
    }

    /// Whether `identity` (a SPIFFE ID or DNS name) matches.
    pub fn matches(&self, identity: &str) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Spiffe { segments, tail } => {
                let Some(rest) = identity.strip_prefix("spiffe://") else {
                    return false;
                };
                if identity.len() > MAX_SPIFFE_ID {
                    return false;
                }
                let ids: Vec<&str> = rest.split('/').collect();
                if !ids.iter().enumerate().all(|(i, seg)| spiffe_segment_ok(i, seg)) {
                    return false;
                }
                let length_ok = if *tail {
                    ids.len() >= segments.len()
                } else {
                    ids.len() == segments.len()
                };
                length_ok
                    && segments.iter().zip(&ids).all(|(pat, id)| match pat {
                        Segment::Wild => true,
                        Segment::Literal(lit) => lit == id,
                    })
            }
            PatternKind::Dns(labels) => {
                if identity.len() > MAX_DNS_NAME {
                    return false;
                }
                let ids: Vec<&str> = identity.split('.').collect();
                ids.len() == labels.len()
                    && ids.iter().all(|l| dns_label_ok(l))
                    && labels.iter().zip(&ids).all(|(pat, id)| match pat {
                        Segment::Wild => true,
                        Segment::Literal(lit) => lit.eq_ignore_ascii_case(id),
                    })
            }
        }
    }
}

fn pattern_segment(pattern: &str, seg: &str, ok: impl Fn(&str) -> bool) -> Result<Segment, String> {
    if seg == "*" {
        Ok(Segment::Wild)
    } else if seg.contains('*') {
        Err(format!("peer pattern {pattern:?}: `*` must be a whole segment"))
    } else if ok(seg) {
        Ok(Segment::Literal(seg.to_owned()))
    } else {
        Err(format!("peer pattern {pattern:?}: bad segment {seg:?}"))
    }
}

/// SPIFFE ID segment `index` (0 is the trust domain).
fn spiffe_segment_ok(index: usize, seg: &str) -> bool {
    let chars_ok = if index == 0 {
        seg.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    } else {
        seg.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && seg != "."
            && seg != ".."
    };
    !seg.is_empty() && chars_ok
}

fn dns_label_ok(label: &str) -> bool {
    (1..=MAX_DNS_LABEL).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

/// A bounded map from certificate digest to a parsed result, one per worker.
/// When full, inserting a new key evicts the oldest inserted one (FIFO);
/// re-inserting a present key replaces its value and keeps its age.
#[derive(Debug, Clone)]
pub struct LabelCache<V> {
    capacity: usize,
    map: HashMap<Box<[u8]>, V>,
    order: VecDeque<Box<[u8]>>,
}

impl<V> Default for LabelCache<V> {
    fn default() -> Self {
        LabelCache::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl<V> LabelCache<V> {
    /// A cache of at most `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        LabelCache {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&V> {
        self.map.get(key.as_ref())
    }

    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: V) {
        let key = key.as_ref();
        if let Some(slot) = self.map.get_mut(key) {
            *slot = value;
            return;
        }
        if self.capacity == 0 {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
        let key: Box<[u8]> = key.into();
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ROLLOUT: &str = "checkout-2026-11";
    const SPIFFE: &str = "spiffe://cluster.local/ns/qa/sa/tester";

    const SPIFFE_PEM: &[u8] = include_bytes!("../testdata/spiffe.pem");
    const SPIFFE_DER: &[u8] = include_bytes!("../testdata/spiffe.der");
    const SPIFFE_SHA256: &str = include_str!("../testdata/spiffe.sha256");
    const URI_A_PEM: &[u8] = include_bytes!("../testdata/uri-label-a.pem");
    const URI_B_PEM: &[u8] = include_bytes!("../testdata/uri-label-b.pem");
    const UTF8_PEM: &[u8] = include_bytes!("../testdata/othername-utf8.pem");
    const UTF8_SHA256: &str = include_str!("../testdata/othername-utf8.sha256");
    const IA5_PEM: &[u8] = include_bytes!("../testdata/othername-ia5.pem");
    const DNS_PEM: &[u8] = include_bytes!("../testdata/dns.pem");
    const OTHER_ROLLOUT_PEM: &[u8] = include_bytes!("../testdata/other-rollout.pem");
    const DUPLICATE_PEM: &[u8] = include_bytes!("../testdata/duplicate.pem");
    const BAD_BASE64_PEM: &[u8] = include_bytes!("../testdata/bad-base64.pem");
    const BAD_JSON_PEM: &[u8] = include_bytes!("../testdata/bad-json.pem");
    const UNKNOWN_FIELD_PEM: &[u8] = include_bytes!("../testdata/unknown-field.pem");
    const WEIGHT_101_PEM: &[u8] = include_bytes!("../testdata/weight-101.pem");
    const BAD_URI_PEM: &[u8] = include_bytes!("../testdata/bad-uri-label.pem");
    const CA_PEM: &[u8] = include_bytes!("../testdata/ca.pem");

    fn oid() -> LabelOid {
        parse_oid("1.3.6.1.4.1.55555.1.1").unwrap()
    }

    fn parse(pem: &[u8]) -> PeerCert {
        parse_certificate(pem, Some(&oid())).unwrap()
    }

    fn label(version: Option<&str>, weight: Option<u8>) -> Label {
        Label {
            rollout_id: ROLLOUT.to_owned(),
            version: version.map(str::to_owned),
            weight,
        }
    }

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
    fn uri_label_grammar() {
        let ok = |v: Option<&str>, w: Option<u8>| Some(Ok(label(v, w)));
        let err = |r| Some(Err(r));
        let cases: Vec<(&str, Option<Result<Label, LabelReject>>)> = vec![
            ("spiffe://cluster.local/ns/qa/sa/x", None),
            ("https://example.com/rollout://x", None),
            ("rollouts://x?version=a", None),
            ("rollout:x", None),
            (
                "rollout://checkout-2026-11?version=canary",
                ok(Some("canary"), None),
            ),
            ("rollout://checkout-2026-11?weight=0", ok(None, Some(0))),
            (
                "rollout://checkout-2026-11?weight=100&version=v-2",
                ok(Some("v-2"), Some(100)),
            ),
            (
                "ROLLOUT://checkout-2026-11?version=canary",
                ok(Some("canary"), None),
            ),
            ("rollout=checkout-2026-11;weight=30", ok(None, Some(30))),
            (
                "rollout=checkout-2026-11;weight=30;version=canary",
                ok(Some("canary"), Some(30)),
            ),
            (
                "Rollout=checkout-2026-11;version=canary",
                ok(Some("canary"), None),
            ),
            ("rollout://checkout-2026-11", err(LabelReject::NoVersionOrWeight)),
            ("rollout=checkout-2026-11", err(LabelReject::NoVersionOrWeight)),
            ("rollout://checkout-2026-11?", err(LabelReject::BadUriLabel)),
            ("rollout=checkout-2026-11;", err(LabelReject::BadUriLabel)),
            (
                "rollout://checkout-2026-11?version=a&version=b",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?weight=1&weight=2",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?version=a&color=b",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?version=a&",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?version",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?Version=a",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?version=a;weight=3",
                err(LabelReject::BadVersion),
            ),
            (
                "rollout=checkout-2026-11;version=a&weight=3",
                err(LabelReject::BadVersion),
            ),
            (
                "rollout://checkout-2026-11?weight=abc",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?weight=-1",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?weight=+1",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?weight=05",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?weight=",
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?weight=101",
                err(LabelReject::WeightOutOfRange),
            ),
            (
                "rollout://checkout-2026-11?weight=99999999999999999999",
                err(LabelReject::WeightOutOfRange),
            ),
            (
                "rollout://checkout-2026-11?version=Canary",
                err(LabelReject::BadVersion),
            ),
            (
                "rollout://checkout-2026-11?version=",
                err(LabelReject::BadVersion),
            ),
            (
                "rollout://checkout-2026-11?version=a_b",
                err(LabelReject::BadVersion),
            ),
            (
                "rollout://checkout-2026-11?version=a%20b",
                err(LabelReject::BadVersion),
            ),
            ("rollout://?version=a", err(LabelReject::BadRolloutId)),
            ("rollout://a/b?version=a", err(LabelReject::BadRolloutId)),
            ("rollout=;version=a", err(LabelReject::BadRolloutId)),
            ("rollout=a b;version=a", err(LabelReject::BadRolloutId)),
        ];
        for (uri, want) in cases {
            assert_eq!(parse_uri_label(uri), want, "{uri}");
        }
        let long_version = format!("rollout://x?version={}", "a".repeat(63));
        assert!(matches!(parse_uri_label(&long_version), Some(Ok(_))));
        let too_long = format!("rollout://x?version={}", "a".repeat(64));
        assert_eq!(parse_uri_label(&too_long), Some(Err(LabelReject::BadVersion)));
        let long_id = format!("rollout://{}?version=a", "A._-9".repeat(25));
        assert!(matches!(parse_uri_label(&long_id), Some(Ok(_))));
        let too_long = format!("rollout://{}?version=a", "x".repeat(129));
        assert_eq!(parse_uri_label(&too_long), Some(Err(LabelReject::BadRolloutId)));
        // Multi-byte characters right at the prefix boundary are not a label.
        assert_eq!(parse_uri_label("rollout:/é"), None);
    }

    #[test]
    fn json_label_grammar() {
        let cases: Vec<(&str, Result<Label, LabelReject>)> = vec![
            (
                r#"{"rolloutId":"checkout-2026-11","version":"canary","weight":30}"#,
                Ok(label(Some("canary"), Some(30))),
            ),
            (
                r#"{"weight":0,"rolloutId":"checkout-2026-11"}"#,
                Ok(label(None, Some(0))),
            ),
            (
                r#" {"rolloutId":"checkout-2026-11","version":"v1","weight":null} "#,
                Ok(label(Some("v1"), None)),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11"}"#,
                Err(LabelReject::NoVersionOrWeight),
            ),
            (r#"{"version":"canary"}"#, Err(LabelReject::BadJson)),
            (
                r#"{"rolloutId":"checkout-2026-11","version":"canary","extra":1}"#,
                Err(LabelReject::UnknownField),
            ),
            (
                r#"{"rolloutid":"checkout-2026-11","version":"canary"}"#,
                Err(LabelReject::UnknownField),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","version":"canary","version":"x"}"#,
                Err(LabelReject::BadJson),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":101}"#,
                Err(LabelReject::WeightOutOfRange),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":-1}"#,
                Err(LabelReject::WeightOutOfRange),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":1000000}"#,
                Err(LabelReject::WeightOutOfRange),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":30.5}"#,
                Err(LabelReject::BadJson),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":"30"}"#,
                Err(LabelReject::BadJson),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","version":"Canary"}"#,
                Err(LabelReject::BadVersion),
            ),
            (
                r#"{"rolloutId":"check out","version":"canary"}"#,
                Err(LabelReject::BadRolloutId),
            ),
            (r#"["checkout-2026-11","canary"]"#, Err(LabelReject::BadJson)),
            (
                r#"{"rolloutId":"checkout-2026-11","version":"canary"} x"#,
                Err(LabelReject::BadJson),
            ),
            ("", Err(LabelReject::BadJson)),
        ];
        for (json, want) in cases {
            assert_eq!(json_label(json.as_bytes()), want, "{json}");
        }
    }

    #[test]
    fn other_name_values() {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        let json = r#"{"rolloutId":"checkout-2026-11","version":"canary","weight":30}"#;
        let wrap = |tag: u8, s: &[u8]| {
            let inner = [&[tag, s.len() as u8], s].concat();
            [&[0xa0, inner.len() as u8], inner.as_slice()].concat()
        };
        let padded = STANDARD.encode(json);
        let want = Ok(label(Some("canary"), Some(30)));
        assert_eq!(other_name_label(&wrap(0x0c, padded.as_bytes())), want);
        assert_eq!(other_name_label(&wrap(0x16, padded.as_bytes())), want);
        // Bare string without the [0] wrapper.
        assert_eq!(
            other_name_label(&[&[0x0c, padded.len() as u8], padded.as_bytes()].concat()),
            want
        );
        // Unpadded (this JSON needs one `=`).
        let odd = r#"{"rolloutId":"checkout-2026-11","weight":5}"#;
        assert_ne!(odd.len() % 3, 0);
        assert_eq!(
            other_name_label(&wrap(0x0c, STANDARD_NO_PAD.encode(odd).as_bytes())),
            Ok(label(None, Some(5)))
        );
        assert_eq!(
            other_name_label(&wrap(0x0c, STANDARD.encode(odd).as_bytes())),
            Ok(label(None, Some(5)))
        );
        // Long-form length.
        let long = [
            &[0xa0, 0x81, padded.len() as u8 + 2, 0x0c, padded.len() as u8],
            padded.as_bytes(),
        ]
        .concat();
        assert_eq!(other_name_label(&long), want);
        // URL-safe alphabet, whitespace, bad padding: not standard base64.
        let url = URL_SAFE.encode([0xfb, 0xff]);
        assert_eq!(
            other_name_label(&wrap(0x0c, url.as_bytes())),
            Err(LabelReject::BadBase64)
        );
        let spaced = format!(" {padded}");
        assert_eq!(
            other_name_label(&wrap(0x0c, spaced.as_bytes())),
            Err(LabelReject::BadBase64)
        );
        assert_eq!(
            other_name_label(&wrap(0x0c, b"eyJ9=")),
            Err(LabelReject::BadBase64)
        );
        // Not a string / not ASCII in an IA5String / structure errors.
        for bad in [
            wrap(0x04, padded.as_bytes()),
            wrap(0x16, "é".as_bytes()),
            wrap(0x0c, &[0xff, 0xfe]),
            [wrap(0x0c, padded.as_bytes()).as_slice(), &[0]].concat(),
            vec![0xa0, 0x05, 0x0c, 0x10],
            vec![0xa0, 0x80, 0x0c, 0x00, 0x00, 0x00],
            vec![0xa0, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![0xbf, 0x01, 0x00],
            vec![0xa0],
            Vec::new(),
        ] {
            assert_eq!(other_name_label(&bad), Err(LabelReject::BadOtherName), "{bad:x?}");
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
        assert_eq!(percent_decode(b"a%2Bb+c%2f"), Some(b"a+b+c/".to_vec()));
    }

    #[test]
    fn trust_patterns() {
        let cases = [
            ("*", "spiffe://cluster.local/ns/qa/sa/tester", true),
            ("*", "anything", true),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/tester",
                true,
            ),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/Tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/tester/x",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/sa/tester",
                "spiffe://cluster.local/ns/qa/sa",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa/tester",
                true,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa",
                true,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa//x",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/prod/sa/tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://Cluster.local/ns/qa/sa/tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "SPIFFE://cluster.local/ns/qa/sa/tester",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa/../x",
                false,
            ),
            (
                "spiffe://cluster.local/ns/qa/*",
                "spiffe://cluster.local/ns/qa/sa?x=1",
                false,
            ),
            (
                "spiffe://cluster.local/ns/*/sa/tester",
                "spiffe://cluster.local/ns/qa/sa/tester",
                true,
            ),
            (
                "spiffe://cluster.local/ns/*/sa/tester",
                "spiffe://cluster.local/ns/qa/x/sa/tester",
                false,
            ),
            (
                "spiffe://*/ns/qa/sa/tester",
                "spiffe://other.domain/ns/qa/sa/tester",
                true,
            ),
            ("spiffe://cluster.local/ns/qa/*", "api.qa.example.com", false),
            ("*.qa.example.com", "api.qa.example.com", true),
            ("*.qa.example.com", "API.QA.Example.COM", true),
            ("*.qa.example.com", "a.b.qa.example.com", false),
            ("*.qa.example.com", "qa.example.com", false),
            ("*.qa.example.com", ".qa.example.com", false),
            ("*.qa.example.com", "*.qa.example.com", false),
            ("*.qa.example.com", "api.qa.example.com.", false),
            ("*.qa.example.com", "spiffe://api.qa.example.com", false),
            ("api.*.example.com", "api.qa.example.com", true),
            ("api.qa.example.com", "api.qa.example.com", true),
            ("api.qa.example.com", "web.qa.example.com", false),
        ];
        for (pattern, identity, want) in cases {
            let p = PeerPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(identity), want, "{pattern} vs {identity}");
        }
        for bad in [
            "",
            "a*b.example.com",
            "*api.example.com",
            "spiffe://cluster.local/ns/qa/sa-*",
            "spiffe://cluster.local/ns/qa/**",
            "spiffe://cluster.local/ns/qa/",
            "spiffe://cluster.local//qa",
            "spiffe://",
            "spiffe://Cluster.local/ns/qa",
            "spiffe://cluster.local/ns/../x",
            "https://example.com/*",
            "SPIFFE://cluster.local/ns/qa/*",
            "example..com",
            "example.com.",
            "exa mple.com",
            "**",
        ] {
            assert!(PeerPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trusted_certificates() {
        let qa = [PeerPattern::parse("spiffe://cluster.local/ns/qa/*").unwrap()];
        let web = [PeerPattern::parse("web.qa.example.com").unwrap()];
        let any = [PeerPattern::parse("*").unwrap()];
        assert!(parse(SPIFFE_PEM).is_trusted(&qa));
        assert!(!parse(SPIFFE_PEM).is_trusted(&web));
        assert!(!parse(DNS_PEM).is_trusted(&qa));
        assert!(parse(DNS_PEM).is_trusted(&web));
        assert!(parse(CA_PEM).is_trusted(&any));
        assert!(!parse(CA_PEM).is_trusted(&qa));
        assert!(!parse(SPIFFE_PEM).is_trusted(&[]));
        let both = [web[0].clone(), qa[0].clone()];
        assert!(parse(SPIFFE_PEM).is_trusted(&both) && parse(DNS_PEM).is_trusted(&both));
        // Only the first SPIFFE URI is the SPIFFE ID.
        let cert = PeerCert {
            spiffe_id: Some("spiffe://cluster.local/ns/prod/sa/x".into()),
            uris: vec!["spiffe://cluster.local/ns/prod/sa/x".into(), SPIFFE.into()],
            ..PeerCert::default()
        };
        assert!(!cert.is_trusted(&qa));
    }

    #[test]
    fn cache_evicts_oldest_first() {
        let mut cache = LabelCache::new(3);
        assert!(cache.is_empty());
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            cache.insert(k, v);
        }
        assert_eq!(cache.len(), 3);
        // Reading does not refresh, re-inserting replaces in place.
        assert_eq!(cache.get("a"), Some(&1));
        cache.insert("a", 10);
        assert_eq!(cache.len(), 3);
        cache.insert("d", 4);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get(b"b".as_slice()), Some(&2));
        cache.insert("e", 5);
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("c"), Some(&3));
        assert_eq!(cache.get("d"), Some(&4));
        assert_eq!(cache.get("e"), Some(&5));
        assert_eq!(cache.len(), 3);

        let mut none = LabelCache::new(0);
        none.insert("a", 1);
        assert_eq!((none.len(), none.get("a")), (0, None));

        let mut big: LabelCache<std::rc::Rc<Result<PeerCert, CertReject>>> = LabelCache::default();
        assert_eq!(big.capacity(), DEFAULT_CACHE_CAPACITY);
        for i in 0..DEFAULT_CACHE_CAPACITY + 10 {
            big.insert(i.to_string(), std::rc::Rc::new(Err(CertReject::BadDer)));
        }
        assert_eq!(big.len(), DEFAULT_CACHE_CAPACITY);
        assert!(big.get("9").is_none() && big.get("10").is_some());
    }

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
