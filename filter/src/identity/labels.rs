//! The rollout label a certificate carries.
//!
//! A certificate carries a label for a rollout in one of three SAN forms:
//!
//! * URI form A: `rollout://<rolloutId>?version=<v>&weight=<n>&traceId=<hex>`
//! * URI form B: `rollout=<rolloutId>;version=<v>;weight=<n>;traceId=<hex>`
//! * otherName with the configured OID: a UTF8String or IA5String (inside the
//!   RFC 5280 `[0] EXPLICIT` wrapper, as openssl and rcgen write it; a bare
//!   string is accepted too) holding standard-alphabet base64, padded or not,
//!   of the JSON object `{"rolloutId":"…","version":"…","weight":30,"traceId":"…"}`.
//!
//! `canaryWeight` is another name for `weight` (the design's spelling); a label
//! giving both is ambiguous and refused. In every form at least one of
//! `version` / `weight` / `traceId` must be present, each at most once; no
//! other parameter or field is allowed. `rolloutId` is `[A-Za-z0-9._-]{1,128}`,
//! `version` is `[a-z0-9-]{1,63}`, `weight` is a percentage 0..=100 (URI forms:
//! plain decimal digits, no sign or leading zeros; JSON: an integer), `traceId`
//! is a W3C trace-id (32 lowercase hex digits, not all zero); in JSON `null` is
//! the same as absent. The `rollout://` / `rollout=` prefix is matched
//! ASCII-case-insensitively, the parameter names exactly. URI SANs that do not
//! start with either prefix are plain identities.

use asn1_rs::{FromBer, Header};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;

use crate::trace::parse_trace_id;

const MAX_ROLLOUT_ID: usize = 128;
const MAX_VERSION: usize = 63;

/// Standard alphabet, padding optional (canonical trailing bits still required).
const LABEL_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
    /// The JSON has a field other than `rolloutId`, `version`, `weight`,
    /// `canaryWeight`, `traceId`.
    UnknownField,
    /// Weight outside 0..=100.
    WeightOutOfRange,
    /// Both `weight` and `canaryWeight`: which one was meant is unknown.
    AmbiguousWeight,
    /// Version outside `[a-z0-9-]{1,63}`.
    BadVersion,
    /// `traceId` not 32 lowercase hex digits, or all zero.
    BadTraceId,
    /// None of version, weight, trace id given.
    NoVersionOrWeight,
    /// The certificate only has labels for other rollouts (counted by the caller,
    /// see [`PeerCert::has_labels_for_other_rollouts`]).
    OtherRollout,
    /// Two labels name the same rollout.
    DuplicateLabel,
}

impl LabelReject {
    pub const ALL: [LabelReject; 13] = [
        LabelReject::BadUriLabel,
        LabelReject::BadRolloutId,
        LabelReject::BadOtherName,
        LabelReject::BadBase64,
        LabelReject::BadJson,
        LabelReject::UnknownField,
        LabelReject::WeightOutOfRange,
        LabelReject::AmbiguousWeight,
        LabelReject::BadVersion,
        LabelReject::BadTraceId,
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
            LabelReject::AmbiguousWeight => "ambiguous_weight",
            LabelReject::BadVersion => "bad_version",
            LabelReject::BadTraceId => "bad_trace_id",
            LabelReject::NoVersionOrWeight => "no_version_or_weight",
            LabelReject::OtherRollout => "other_rollout",
            LabelReject::DuplicateLabel => "duplicate_label",
        }
    }
}
/// A rollout label found in a certificate. At least one of `version`,
/// `weight` and `trace_id` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub rollout_id: String,
    pub version: Option<String>,
    /// Percent, 0..=100 (`weight` or `canaryWeight`).
    pub weight: Option<u8>,
    /// `traceId`: starts the trace of a request that brings no valid `traceparent`.
    pub trace_id: Option<[u8; 16]>,
}
/// `None` if `uri` is not a label URI at all (a plain identity).
pub(super) fn parse_uri_label(uri: &str) -> Option<Result<Label, LabelReject>> {
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
    // Grammar first (each parameter known and given once), then the values.
    let [mut version, mut weight, mut canary_weight, mut trace_id] = [None; 4];
    for param in params.into_iter().flatten() {
        let (key, value) = param.split_once('=').ok_or(LabelReject::BadUriLabel)?;
        let slot = match key {
            "version" => &mut version,
            "weight" => &mut weight,
            "canaryWeight" => &mut canary_weight,
            "traceId" => &mut trace_id,
            _ => return Err(LabelReject::BadUriLabel),
        };
        if slot.replace(value).is_some() {
            return Err(LabelReject::BadUriLabel);
        }
    }
    if weight.is_some() && canary_weight.is_some() {
        return Err(LabelReject::AmbiguousWeight);
    }
    let version = version.map(str::to_owned);
    let weight = weight.or(canary_weight).map(parse_uri_weight).transpose()?;
    make_label(id, version, weight, trace_id)
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

/// The checks both forms share, after the rollout id and the weight's own.
fn make_label(
    id: &str,
    version: Option<String>,
    weight: Option<u8>,
    trace_id: Option<&str>,
) -> Result<Label, LabelReject> {
    if version.as_deref().is_some_and(|v| !valid_version(v)) {
        return Err(LabelReject::BadVersion);
    }
    let trace_id = match trace_id {
        Some(hex) => Some(parse_trace_id(hex.as_bytes()).ok_or(LabelReject::BadTraceId)?),
        None => None,
    };
    if version.is_none() && weight.is_none() && trace_id.is_none() {
        return Err(LabelReject::NoVersionOrWeight);
    }
    Ok(Label {
        rollout_id: id.to_owned(),
        version,
        weight,
        trace_id,
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
    canary_weight: Option<i64>,
    /// Not a string: `BadJson`, as a mistyped field always is (a
    /// `serde_json::Value` to tell it apart would cost 9 KB of module).
    trace_id: Option<String>,
}

/// A label from the value of a label otherName (`[0] EXPLICIT` string).
pub(super) fn other_name_label(value: &[u8]) -> Result<Label, LabelReject> {
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
    if parsed.weight.is_some() && parsed.canary_weight.is_some() {
        return Err(LabelReject::AmbiguousWeight);
    }
    let weight = match parsed.weight.or(parsed.canary_weight) {
        None => None,
        Some(w) => Some(
            u8::try_from(w)
                .ok()
                .filter(|w| *w <= 100)
                .ok_or(LabelReject::WeightOutOfRange)?,
        ),
    };
    make_label(
        &parsed.rollout_id,
        parsed.version,
        weight,
        parsed.trace_id.as_deref(),
    )
}

/// The string of an otherName value: `[0] EXPLICIT` around a UTF8String or
/// IA5String (RFC 5280, openssl, rcgen), or the bare string.
fn other_name_string(value: &[u8]) -> Option<&str> {
    const EXPLICIT_0: u8 = 0xa0;
    const UTF8_STRING: u8 = 0x0c;
    const IA5_STRING: u8 = 0x16;
    let (tag, content, rest) = tlv(value)?;
    if !rest.is_empty() {
        return None;
    }
    let (tag, content) = if tag == EXPLICIT_0 {
        let (tag, content, rest) = tlv(content)?;
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

/// One tag-length-value: (tag byte, content, rest), the header read by asn1-rs as BER (so a
/// long-form length of a short value is accepted). Single-byte tags and definite lengths only.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (rest, header) = Header::from_ber(input).ok()?;
    let &[tag] = header.raw_tag()? else {
        return None;
    };
    let len = header.length().definite().ok()?;
    if len > rest.len() {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fixtures::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

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

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const TRACE_ID: [u8; 16] = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
    ];

    fn traced(version: Option<&str>, weight: Option<u8>) -> Label {
        Label {
            trace_id: Some(TRACE_ID),
            ..label(version, weight)
        }
    }

    #[test]
    fn canary_weight_and_trace_id_in_uri_labels() {
        let ok = |l: Label| Some(Ok(l));
        let err = |r| Some(Err(r));
        let cases: Vec<(String, Option<Result<Label, LabelReject>>)> = vec![
            (
                "rollout://checkout-2026-11?canaryWeight=30".into(),
                ok(label(None, Some(30))),
            ),
            (
                "rollout=checkout-2026-11;canaryWeight=0;version=canary".into(),
                ok(label(Some("canary"), Some(0))),
            ),
            (
                format!("rollout://checkout-2026-11?traceId={TRACE}"),
                ok(traced(None, None)),
            ),
            (
                format!("rollout=checkout-2026-11;version=canary;canaryWeight=100;traceId={TRACE}"),
                ok(traced(Some("canary"), Some(100))),
            ),
            (
                "rollout://checkout-2026-11?weight=30&canaryWeight=30".into(),
                err(LabelReject::AmbiguousWeight),
            ),
            (
                "rollout=checkout-2026-11;canaryWeight=101;weight=x".into(),
                err(LabelReject::AmbiguousWeight),
            ),
            (
                "rollout://checkout-2026-11?canaryWeight=1&canaryWeight=2".into(),
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?canaryweight=1".into(),
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?canaryWeight=07".into(),
                err(LabelReject::BadUriLabel),
            ),
            (
                "rollout://checkout-2026-11?canaryWeight=101".into(),
                err(LabelReject::WeightOutOfRange),
            ),
            (
                format!("rollout://checkout-2026-11?traceId={TRACE}&traceId={TRACE}"),
                err(LabelReject::BadUriLabel),
            ),
            (
                format!("rollout://checkout-2026-11?traceid={TRACE}"),
                err(LabelReject::BadUriLabel),
            ),
            (
                format!(
                    "rollout://checkout-2026-11?version=canary&traceId={}",
                    TRACE.to_uppercase()
                ),
                err(LabelReject::BadTraceId),
            ),
            (
                format!("rollout://checkout-2026-11?traceId={}", "0".repeat(32)),
                err(LabelReject::BadTraceId),
            ),
            (
                format!("rollout://checkout-2026-11?traceId={}", &TRACE[1..]),
                err(LabelReject::BadTraceId),
            ),
            (
                format!("rollout=checkout-2026-11;traceId={TRACE}0"),
                err(LabelReject::BadTraceId),
            ),
            (
                "rollout=checkout-2026-11;weight=5;traceId=".into(),
                err(LabelReject::BadTraceId),
            ),
            (
                format!("rollout://checkout-2026-11?traceId=00-{TRACE}-00f067aa0ba902b7-01"),
                err(LabelReject::BadTraceId),
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(parse_uri_label(&uri), want, "{uri}");
        }
    }

    #[test]
    fn canary_weight_and_trace_id_in_json_labels() {
        let cases: Vec<(String, Result<Label, LabelReject>)> = vec![
            (
                // The design's own label.
                format!(r#"{{"rolloutId":"checkout-2026-11","canaryWeight":30,"traceId":"{TRACE}"}}"#),
                Ok(traced(None, Some(30))),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","version":"stable","canaryWeight":0}"#.into(),
                Ok(label(Some("stable"), Some(0))),
            ),
            (
                format!(r#"{{"rolloutId":"checkout-2026-11","traceId":"{TRACE}"}}"#),
                Ok(traced(None, None)),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":null,"canaryWeight":5,"traceId":null}"#.into(),
                Ok(label(None, Some(5))),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","traceId":null}"#.into(),
                Err(LabelReject::NoVersionOrWeight),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","weight":30,"canaryWeight":30}"#.into(),
                Err(LabelReject::AmbiguousWeight),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","canaryWeight":101}"#.into(),
                Err(LabelReject::WeightOutOfRange),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","canaryWeight":-5}"#.into(),
                Err(LabelReject::WeightOutOfRange),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","canaryWeight":"30"}"#.into(),
                Err(LabelReject::BadJson),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","canaryweight":30}"#.into(),
                Err(LabelReject::UnknownField),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","canaryWeight":1,"canaryWeight":2}"#.into(),
                Err(LabelReject::BadJson),
            ),
            (
                format!(
                    r#"{{"rolloutId":"checkout-2026-11","traceId":"{}"}}"#,
                    TRACE.to_uppercase()
                ),
                Err(LabelReject::BadTraceId),
            ),
            (
                format!(
                    r#"{{"rolloutId":"checkout-2026-11","version":"canary","traceId":"{}"}}"#,
                    "0".repeat(32)
                ),
                Err(LabelReject::BadTraceId),
            ),
            (
                r#"{"rolloutId":"checkout-2026-11","version":"canary","traceId":""}"#.into(),
                Err(LabelReject::BadTraceId),
            ),
            (
                // Mistyped, like any field.
                r#"{"rolloutId":"checkout-2026-11","version":"canary","traceId":12345}"#.into(),
                Err(LabelReject::BadJson),
            ),
            (
                format!(r#"{{"rolloutId":"checkout-2026-11","version":"canary","traceId":["{TRACE}"]}}"#),
                Err(LabelReject::BadJson),
            ),
            (
                format!(r#"{{"rolloutId":"checkout-2026-11","traceId":"{TRACE} "}}"#),
                Err(LabelReject::BadTraceId),
            ),
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
}
