//! W3C Trace Context propagation (`traceparent` / `tracestate`, spec section
//! "Trace Context HTTP Request Headers Format").
//!
//! Pure: works on raw header bytes and host-provided randomness, never touches
//! proxy-wasm. [`propagate`] takes every value of both request headers and
//! returns the two values to send upstream, plus why the incoming context was
//! not used as-is (for metrics).
//!
//! Choices beyond the spec's MUSTs:
//! - the `traceparent` value is taken byte-exact: any whitespace (leading and
//!   trailing too), uppercase hex or non-ASCII byte makes it invalid;
//! - a malformed `tracestate` member is dropped alone, the rest is kept; of
//!   duplicate keys the first wins;
//! - the filter's own member always goes to the left and replaces any older
//!   member with the same key; it is never dropped by the limits.

use std::borrow::Cow;

/// Default `tracestate` key of the filter's own member.
pub const DEFAULT_KEY: &str = "rollout";
/// Most list-members in an emitted `tracestate`, ours included.
pub const MAX_MEMBERS: usize = 32;
/// Longest emitted `tracestate` value, commas included.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Members longer than this are dropped first when `tracestate` is too long.
pub const LONG_MEMBER_LEN: usize = 128;
/// trace-flags bit: the caller may have recorded trace data.
pub const FLAG_SAMPLED: u8 = 0x01;
/// trace-flags bit (Level 2): the trace-id was generated at random.
pub const FLAG_RANDOM_TRACE_ID: u8 = 0x02;

const TRACEPARENT_LEN: usize = 55;
const MAX_KEY_LEN: usize = 256;
const MAX_TENANT_LEN: usize = 241;
const MAX_SYSTEM_LEN: usize = 14;
const MAX_VALUE_LEN: usize = 256;
/// Incoming members kept at most: one slot is for ours.
const MAX_INCOMING: usize = MAX_MEMBERS - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// Replace the parent-id of a valid incoming `traceparent` with a fresh one.
    pub new_span: bool,
    /// Set the sampled flag on traces this filter starts.
    pub sampled: bool,
    /// Key of our `tracestate` member; must satisfy [`is_valid_key`].
    pub key: String,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            new_span: false,
            sampled: false,
            key: DEFAULT_KEY.to_string(),
        }
    }
}

/// Why the incoming trace context was not used as-is (a metric label each).
/// A missing `traceparent` is not a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceReject {
    /// Two or more `traceparent` header values.
    TraceparentDuplicate,
    /// The value does not start with two lowercase hex digits and a dash, or the version is `ff`.
    TraceparentBadVersion,
    /// Wrong length: version 00 not exactly 55 characters, a higher version shorter than 55.
    TraceparentBadLength,
    /// A field is not lowercase hex, or a dash is missing where one must be.
    TraceparentBadChar,
    /// All-zero trace-id or parent-id.
    TraceparentZeroId,
    /// A non-blank `tracestate` came without a usable `traceparent` and was dropped.
    TracestateIgnored,
    /// A malformed `tracestate` list-member was dropped (counted per member).
    TracestateMemberDropped,
    /// A `tracestate` member repeating an earlier key was dropped (counted per member).
    TracestateDuplicateKey,
    /// A valid `tracestate` member was dropped to meet the 32-member / 512-character limits (per member).
    TracestateTruncated,
}

impl TraceReject {
    pub const ALL: [TraceReject; 9] = [
        TraceReject::TraceparentDuplicate,
        TraceReject::TraceparentBadVersion,
        TraceReject::TraceparentBadLength,
        TraceReject::TraceparentBadChar,
        TraceReject::TraceparentZeroId,
        TraceReject::TracestateIgnored,
        TraceReject::TracestateMemberDropped,
        TraceReject::TracestateDuplicateKey,
        TraceReject::TracestateTruncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TraceReject::TraceparentDuplicate => "traceparent_duplicate",
            TraceReject::TraceparentBadVersion => "traceparent_bad_version",
            TraceReject::TraceparentBadLength => "traceparent_bad_length",
            TraceReject::TraceparentBadChar => "traceparent_bad_char",
            TraceReject::TraceparentZeroId => "traceparent_zero_id",
            TraceReject::TracestateIgnored => "tracestate_ignored",
            TraceReject::TracestateMemberDropped => "tracestate_member_dropped",
            TraceReject::TracestateDuplicateKey => "tracestate_duplicate_key",
            TraceReject::TracestateTruncated => "tracestate_truncated",
        }
    }

    /// Position in [`TraceReject::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How often each [`TraceReject`] happened on one request (saturating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejects([u16; TraceReject::ALL.len()]);

impl Rejects {
    pub fn get(&self, reason: TraceReject) -> u16 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|c| *c == 0)
    }

    /// The reasons that happened, with their counts, in [`TraceReject::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (TraceReject, u16)> + '_ {
        TraceReject::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }

    fn add(&mut self, reason: TraceReject) {
        if let Some(c) = self.0.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }
}

/// The trace context to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagated {
    /// Always a valid version-00 value, 55 characters.
    pub traceparent: String,
    /// Never empty: our member first, then the kept incoming members.
    pub tracestate: String,
    /// True when the incoming `traceparent` was valid and its trace-id kept.
    pub continued: bool,
    pub rejects: Rejects,
}

impl Propagated {
    /// The 32 lowercase hex digits of the trace-id (for a debug response header).
    pub fn trace_id_hex(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }
}

/// The fields of a parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl Traceparent {
    /// The version-00 header value, 55 characters.
    pub fn to_header(&self) -> String {
        // Filled in place: a per-character String::push costs ~5x more in a size-optimized build.
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let (_, rest) = buf.split_at_mut(3);
        let (trace_id, rest) = rest.split_at_mut(32);
        let (_, rest) = rest.split_at_mut(1);
        let (parent_id, rest) = rest.split_at_mut(16);
        let (_, flags) = rest.split_at_mut(1);
        write_hex(trace_id, &self.trace_id);
        write_hex(parent_id, &self.parent_id);
        write_hex(flags, &[self.flags]);
        // Only ASCII was written, so this never falls back.
        std::str::from_utf8(&buf).map(str::to_owned).unwrap_or_default()
    }
}

/// Parses one `traceparent` value. Versions 01..=fe are read as version 00
/// with possible extra `-`-separated fields; their flags are returned unmasked.
pub fn parse_traceparent(v: &[u8]) -> Result<Traceparent, TraceReject> {
    let version = match (v.first(), v.get(1), v.get(2)) {
        (Some(hi), Some(lo), Some(b'-')) => hex_pair(*hi, *lo).ok_or(TraceReject::TraceparentBadVersion)?,
        _ => return Err(TraceReject::TraceparentBadVersion),
    };
    if version == 0xff {
        return Err(TraceReject::TraceparentBadVersion);
    }
    if v.len() < TRACEPARENT_LEN || (version == 0 && v.len() > TRACEPARENT_LEN) {
        return Err(TraceReject::TraceparentBadLength);
    }
    // Higher versions: the flags are followed by the end or a dash.
    if v.len() > TRACEPARENT_LEN && v.get(TRACEPARENT_LEN) != Some(&b'-') {
        return Err(TraceReject::TraceparentBadChar);
    }
    if v.get(35) != Some(&b'-') || v.get(52) != Some(&b'-') {
        return Err(TraceReject::TraceparentBadChar);
    }
    let trace_id: [u8; 16] = decode_hex(v.get(3..35)).ok_or(TraceReject::TraceparentBadChar)?;
    let parent_id: [u8; 8] = decode_hex(v.get(36..52)).ok_or(TraceReject::TraceparentBadChar)?;
    let [flags]: [u8; 1] = decode_hex(v.get(53..55)).ok_or(TraceReject::TraceparentBadChar)?;
    if is_zero(&trace_id) || is_zero(&parent_id) {
        return Err(TraceReject::TraceparentZeroId);
    }
    Ok(Traceparent {
        trace_id,
        parent_id,
        flags,
    })
}

/// A `tracestate` key: `[a-z][a-z0-9_\-*/]{0,255}` or
/// `[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}`.
pub fn is_valid_key(k: &str) -> bool {
    valid_key(k.as_bytes())
}

/// A `tracestate` value: 1..=256 printable ASCII characters (0x20..=0x7e)
/// except `,` and `=`, not ending with a space.
pub fn is_valid_member_value(v: &str) -> bool {
    valid_value(v.as_bytes())
}

/// The trace context to send upstream for a request.
///
/// `traceparents`/`tracestates`: every value of each header on the request, raw
/// bytes (may be non-UTF-8). `member_value`: the value of our `tracestate`
/// member. `random`: 16 bytes for a new trace-id, then 8 for a new parent-id;
/// an all-zero id gets its last byte set to 1.
///
/// `settings.key` and `member_value` should be validated with [`is_valid_key`]
/// and [`is_valid_member_value`] beforehand. If they are not valid anyway, the
/// key falls back to [`DEFAULT_KEY`] and offending value characters become `_`
/// (the value is also cut to fit 512 characters), so the output stays valid.
pub fn propagate(
    traceparents: &[&[u8]],
    tracestates: &[&[u8]],
    member_value: &str,
    settings: &TraceSettings,
    random: [u8; 24],
) -> Propagated {
    let mut rejects = Rejects::default();
    let incoming = match traceparents {
        [] => None,
        [one] => parse_traceparent(one).map_err(|r| rejects.add(r)).ok(),
        _ => {
            rejects.add(TraceReject::TraceparentDuplicate);
            None
        }
    };
    let fresh_trace_id = non_zero(random.first_chunk::<16>().copied().unwrap_or_default());
    let fresh_parent_id = non_zero(random.last_chunk::<8>().copied().unwrap_or_default());

    let key = if is_valid_key(&settings.key) {
        settings.key.as_str()
    } else {
        DEFAULT_KEY
    };
    let value = own_value(key.len(), member_value);

    let (tp, tracestate) = match incoming {
        Some(tp) => {
            let out = Traceparent {
                trace_id: tp.trace_id,
                parent_id: if settings.new_span {
                    fresh_parent_id
                } else {
                    tp.parent_id
                },
                flags: tp.flags & (FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID),
            };
            (out, build_tracestate(tracestates, key, &value, &mut rejects))
        }
        None => {
            if tracestates.iter().any(|v| !is_blank_list(v)) {
                rejects.add(TraceReject::TracestateIgnored);
            }
            let sampled = if settings.sampled { FLAG_SAMPLED } else { 0 };
            let out = Traceparent {
                trace_id: fresh_trace_id,
                parent_id: fresh_parent_id,
                flags: FLAG_RANDOM_TRACE_ID | sampled,
            };
            (out, build_tracestate(&[], key, &value, &mut rejects))
        }
    };
    Propagated {
        traceparent: tp.to_header(),
        tracestate,
        continued: incoming.is_some(),
        rejects,
    }
}

/// Our member's value, made valid if the caller did not validate it.
fn own_value(key_len: usize, value: &str) -> Cow<'_, str> {
    let max = MAX_TRACESTATE_LEN
        .saturating_sub(key_len.saturating_add(1))
        .clamp(1, MAX_VALUE_LEN);
    if valid_value(value.as_bytes()) && value.len() <= max {
        return Cow::Borrowed(value);
    }
    let mut s: String = value
        .chars()
        .take(max)
        .map(|c| {
            if u8::try_from(c).is_ok_and(is_value_char) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.ends_with(' ') {
        s.pop();
        s.push('_');
    }
    if s.is_empty() {
        s.push('_');
    }
    Cow::Owned(s)
}

/// One kept incoming member: the trimmed `key=value` text and its key length.
#[derive(Clone, Copy)]
struct Member<'a> {
    text: &'a [u8],
    key_len: usize,
}

impl<'a> Member<'a> {
    fn key(&self) -> &'a [u8] {
        self.text.get(..self.key_len).unwrap_or_default()
    }
}

fn build_tracestate(values: &[&[u8]], key: &str, value: &str, rejects: &mut Rejects) -> String {
    let empty = Member {
        text: &[],
        key_len: 0,
    };
    let mut kept = [empty; MAX_INCOMING];
    let mut n = 0usize;
    // Multiple header values are combined as if joined with ',', so every
    // value boundary is a member boundary.
    for member in values.iter().flat_map(|v| v.split(|b| *b == b',')) {
        let text = trim_ows(member);
        if text.is_empty() {
            continue;
        }
        let Some(eq) = text.iter().position(|b| *b == b'=') else {
            rejects.add(TraceReject::TracestateMemberDropped);
            continue;
        };
        let (k, v) = (
            text.get(..eq).unwrap_or_default(),
            text.get(eq.saturating_add(1)..).unwrap_or_default(),
        );
        if !valid_key(k) || !valid_value(v) {
            rejects.add(TraceReject::TracestateMemberDropped);
            continue;
        }
        if k == key.as_bytes() {
            continue; // replaced by our member
        }
        let kept_so_far = kept.get(..n).unwrap_or_default();
        if kept_so_far.iter().any(|m| m.key() == k) {
            rejects.add(TraceReject::TracestateDuplicateKey);
            continue;
        }
        match kept.get_mut(n) {
            Some(slot) => {
                *slot = Member { text, key_len: eq };
                n = n.saturating_add(1);
            }
            None => rejects.add(TraceReject::TracestateTruncated),
        }
    }
    let kept = kept.get_mut(..n).unwrap_or_default();

    // Length limit: drop long members from the right, then any from the right.
    let own_len = key.len().saturating_add(1).saturating_add(value.len());
    let mut total = kept
        .iter()
        .fold(own_len, |t, m| t.saturating_add(1).saturating_add(m.text.len()));
    for long_only in [true, false] {
        for m in kept.iter_mut().rev() {
            if total <= MAX_TRACESTATE_LEN {
                break;
            }
            if m.text.is_empty() || (long_only && m.text.len() <= LONG_MEMBER_LEN) {
                continue;
            }
            total = total.saturating_sub(m.text.len().saturating_add(1));
            *m = empty;
            rejects.add(TraceReject::TracestateTruncated);
        }
    }

    let mut out = String::with_capacity(total);
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    for m in kept.iter().filter(|m| !m.text.is_empty()) {
        // Validated printable ASCII, so always UTF-8.
        if let Ok(s) = std::str::from_utf8(m.text) {
            out.push(',');
            out.push_str(s);
        }
    }
    out
}

fn valid_key(k: &[u8]) -> bool {
    match k.iter().position(|b| *b == b'@') {
        None => key_part(k, MAX_KEY_LEN, |b| b.is_ascii_lowercase()),
        Some(at) => {
            let tenant = k.get(..at).unwrap_or_default();
            let system = k.get(at.saturating_add(1)..).unwrap_or_default();
            key_part(tenant, MAX_TENANT_LEN, |b| {
                b.is_ascii_lowercase() || b.is_ascii_digit()
            }) && key_part(system, MAX_SYSTEM_LEN, |b| b.is_ascii_lowercase())
        }
    }
}

fn key_part(part: &[u8], max_len: usize, first_ok: fn(u8) -> bool) -> bool {
    match part.split_first() {
        Some((first, rest)) => {
            part.len() <= max_len && first_ok(*first) && rest.iter().all(|b| is_key_char(*b))
        }
        None => false,
    }
}

// Per byte: kept inline even in the size-optimized build.
#[inline(always)]
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

fn valid_value(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE_LEN
        && v.iter().all(|b| is_value_char(*b))
        && v.last() != Some(&b' ')
}

// Per byte: kept inline even in the size-optimized build.
#[inline(always)]
fn is_value_char(b: u8) -> bool {
    matches!(b, 0x20..=0x7e) && b != b',' && b != b'='
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i.saturating_add(1));
    s.get(start..end).unwrap_or_default()
}

/// Only commas and optional whitespace: nothing that was lost by ignoring it.
fn is_blank_list(v: &[u8]) -> bool {
    v.iter().all(|b| matches!(b, b' ' | b'\t' | b','))
}

// Per byte: kept inline even in the size-optimized build.
#[inline(always)]
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(c.wrapping_sub(b'a').wrapping_add(10)),
        _ => None,
    }
}

// Per byte: kept inline even in the size-optimized build.
#[inline(always)]
fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    Some((hex_digit(hi)? << 4) | hex_digit(lo)?)
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn decode_hex<const N: usize>(hex: Option<&[u8]>) -> Option<[u8; N]> {
    let hex = hex?;
    if hex.len() != N.checked_mul(2)? {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = match pair {
            [hi, lo] => hex_pair(*hi, *lo)?,
            _ => return None,
        };
    }
    Some(out)
}

/// Lowercase hex of `bytes` into `out` (two digits per byte, as far as `out` reaches).
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *lo = DIGITS.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
        }
    }
}

fn is_zero(id: &[u8]) -> bool {
    id.iter().all(|b| *b == 0)
}

fn non_zero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if is_zero(&id) {
        if let Some(last) = id.last_mut() {
            *last = 1;
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use TraceReject as R;

    const TID: &str = "12345678901234567890123456789012";
    const PID: &str = "1234567890123456";
    /// 16 bytes 0xab for a new trace-id, 8 bytes 0xcd for a new parent-id.
    const RANDOM: [u8; 24] = {
        let mut r = [0xab; 24];
        let mut i = 16;
        while i < 24 {
            r[i] = 0xcd;
            i += 1;
        }
        r
    };
    const NEW_TID: &str = "abababababababababababababababab";
    const NEW_PID: &str = "cdcdcdcdcdcdcdcd";
    const VALUE: &str = "checkout-2026-11:canary";
    const OURS: &str = "rollout=checkout-2026-11:canary";

    /// A traceparent with the test trace-id and parent-id.
    fn tp(version: &str, flags: &str) -> String {
        format!("{version}-{TID}-{PID}-{flags}")
    }

    /// The output for a continued trace (parent-id kept).
    fn kept(flags: &str) -> String {
        tp("00", flags)
    }

    /// The output for a new trace.
    fn new_trace(flags: &str) -> String {
        format!("00-{NEW_TID}-{NEW_PID}-{flags}")
    }

    /// `ours,rest` (or just ours).
    fn ours(rest: &str) -> String {
        if rest.is_empty() {
            OURS.to_string()
        } else {
            format!("{OURS},{rest}")
        }
    }

    /// A member `key=vvv…` of exactly `len` characters.
    fn m(key: &str, len: usize) -> String {
        format!("{key}={}", "v".repeat(len - key.len() - 1))
    }

    struct Case {
        name: String,
        value: String,
        tp: Vec<String>,
        ts: Vec<String>,
        new_span: bool,
        sampled: bool,
        want_tp: String,
        want_ts: String,
        rejects: Vec<(TraceReject, u16)>,
    }

    impl Case {
        fn new_span(mut self) -> Self {
            self.new_span = true;
            self
        }
        fn sampled(mut self) -> Self {
            self.sampled = true;
            self
        }
        fn value(mut self, v: &str) -> Self {
            self.value = v.to_string();
            self
        }
    }

    fn case<S: AsRef<str>, T: AsRef<str>>(
        name: &str,
        tp: &[S],
        ts: &[T],
        want_tp: &str,
        want_ts: &str,
        rejects: &[(TraceReject, u16)],
    ) -> Case {
        Case {
            name: name.to_string(),
            value: VALUE.to_string(),
            tp: tp.iter().map(|s| s.as_ref().to_string()).collect(),
            ts: ts.iter().map(|s| s.as_ref().to_string()).collect(),
            new_span: false,
            sampled: false,
            want_tp: want_tp.to_string(),
            want_ts: want_ts.to_string(),
            rejects: rejects.to_vec(),
        }
    }

    const NONE: [&str; 0] = [];

    /// An invalid traceparent: a new trace, our member only.
    fn invalid(name: &str, value: &str, reject: TraceReject) -> Case {
        case(
            name,
            &[value],
            &["foo=1"],
            &new_trace("02"),
            OURS,
            &[(reject, 1), (R::TracestateIgnored, 1)],
        )
    }

    /// A valid traceparent with tracestate `ts`.
    fn with_ts(name: &str, ts: &[&str], want_rest: &str, rejects: &[(TraceReject, u16)]) -> Case {
        case(
            name,
            &[tp("00", "00")],
            ts,
            &kept("00"),
            &ours(want_rest),
            rejects,
        )
    }

    #[rustfmt::skip]
    fn cases() -> Vec<Case> {
        let bars = |from: usize, to: usize| {
            (from..=to).map(|i| format!("bar{i:02}={i:02}")).collect::<Vec<_>>().join(",")
        };
        let key256 = "z".repeat(256);
        let key257 = "z".repeat(257);
        let tenant241 = format!("{}@{}", "t".repeat(241), "v".repeat(14));
        let tenant242 = format!("{}@v", "t".repeat(242));
        let system15 = format!("t@{}", "v".repeat(15));
        let simple_all = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
        let vendor_all = format!("{simple_all}@a-z0-9_-*/");
        let value_all: String = (0x20u8..=0x7e).filter(|b| *b != b',' && *b != b'=').map(char::from).collect();
        let value256 = "x".repeat(256);
        let value257 = "x".repeat(257);
        let (a100, b200, c150, d50) = (m("a", 100), m("b", 200), m("c", 150), m("d", 50));
        let fit = [m("a", 120), m("b", 120), m("c", 120), m("d", 117)];
        let over = [m("a", 120), m("b", 120), m("c", 120), m("d", 118)];
        let short5: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|k| m(k, 100)).collect();
        let w200 = "w".repeat(200);
        let xyz150 = [m("x", 150), m("y", 150), m("z", 150)];

        vec![
            // --- traceparent: missing / valid, flags, settings ---
            case("both missing", &NONE, &NONE, &new_trace("02"), OURS, &[]),
            case("valid, sampled", &[tp("00", "01")], &NONE, &kept("01"), OURS, &[]),
            case("valid, not sampled", &[tp("00", "00")], &NONE, &kept("00"), OURS, &[]),
            case("valid, random-trace-id flag", &[tp("00", "02")], &NONE, &kept("02"), OURS, &[]),
            case("valid, both known flags", &[tp("00", "03")], &NONE, &kept("03"), OURS, &[]),
            case("flags ff: unknown bits zeroed", &[tp("00", "ff")], &NONE, &kept("03"), OURS, &[]),
            case("flags 09: unknown bit zeroed", &[tp("00", "09")], &NONE, &kept("01"), OURS, &[]),
            case("flags 04: unknown bit zeroed", &[tp("00", "04")], &NONE, &kept("00"), OURS, &[]),
            case("spec example", &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"], &NONE,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", OURS, &[]),
            case("new_span: fresh parent-id, same trace", &[tp("00", "01")], &NONE,
                &format!("00-{TID}-{NEW_PID}-01"), OURS, &[]).new_span(),
            case("new_span on invalid input: new trace", &[tp("ff", "01")], &NONE, &new_trace("02"), OURS,
                &[(R::TraceparentBadVersion, 1)]).new_span(),
            case("sampled setting: new trace sampled", &NONE, &NONE, &new_trace("03"), OURS, &[]).sampled(),
            case("sampled setting: incoming decision kept", &[tp("00", "00")], &NONE, &kept("00"), OURS, &[])
                .sampled(),
            // --- duplicated headers ---
            case("duplicated traceparent",
                &[format!("00-{}1-{PID}-01", &TID[..31]), format!("00-{TID}-{PID}-01")], &["foo=1"],
                &new_trace("02"), OURS, &[(R::TraceparentDuplicate, 1), (R::TracestateIgnored, 1)]),
            case("duplicated identical traceparent", &[tp("00", "01"), tp("00", "01")], &NONE,
                &new_trace("02"), OURS, &[(R::TraceparentDuplicate, 1)]),
            // --- versions ---
            invalid("00 with trailing '.'", &format!("{}.", tp("00", "01")), R::TraceparentBadLength),
            invalid("00 with extra fields", &format!("{}-what-the-future-will-be-like", tp("00", "01")),
                R::TraceparentBadLength),
            case("cc, 55 chars: downgraded to 00", &[tp("cc", "01")], &["foo=1"], &kept("01"), &ours("foo=1"), &[]),
            case("cc with extra fields", &[format!("{}-what-the-future-will-be-like", tp("cc", "01"))], &NONE,
                &kept("01"), OURS, &[]),
            case("cc with extra fields and flags ff", &[format!("{}-x", tp("cc", "ff"))], &NONE,
                &kept("03"), OURS, &[]),
            case("cc with a trailing dash", &[format!("{}-", tp("cc", "01"))], &NONE, &kept("01"), OURS, &[]),
            invalid("cc followed by '.'", &format!("{}.what-the-future-will-be-like", tp("cc", "01")),
                R::TraceparentBadChar),
            invalid("cc too short", &format!("cc-{}-{PID}-01", &TID[..31]), R::TraceparentBadLength),
            invalid("version ff", &tp("ff", "01"), R::TraceparentBadVersion),
            invalid("version illegal char '.0'", &tp(".0", "01"), R::TraceparentBadVersion),
            invalid("version illegal char '0.'", &tp("0.", "01"), R::TraceparentBadVersion),
            invalid("version too long 000", &tp("000", "01"), R::TraceparentBadVersion),
            invalid("version too long 0000", &tp("0000", "01"), R::TraceparentBadVersion),
            invalid("version too short", &tp("0", "01"), R::TraceparentBadVersion),
            invalid("version uppercase", &tp("0A", "01"), R::TraceparentBadVersion),
            invalid("empty traceparent", "", R::TraceparentBadVersion),
            // --- trace-id ---
            invalid("trace-id all zero", &format!("00-{}-{PID}-01", "0".repeat(32)), R::TraceparentZeroId),
            invalid("trace-id illegal first char", &format!("00-.{}-{PID}-01", &TID[1..]), R::TraceparentBadChar),
            invalid("trace-id illegal last char", &format!("00-{}.-{PID}-01", &TID[..31]), R::TraceparentBadChar),
            invalid("trace-id too long", &format!("00-{TID}3-{PID}-01"), R::TraceparentBadLength),
            invalid("trace-id too short", &format!("00-{}-{PID}-01", &TID[..31]), R::TraceparentBadLength),
            invalid("trace-id uppercase", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                R::TraceparentBadChar),
            invalid("trace-id one longer, parent-id one shorter", &format!("00-{TID}3-{}-01", &PID[..15]),
                R::TraceparentBadChar),
            // --- parent-id ---
            invalid("parent-id all zero", &format!("00-{TID}-{}-01", "0".repeat(16)), R::TraceparentZeroId),
            invalid("parent-id illegal first char", &format!("00-{TID}-.{}-01", &PID[1..]), R::TraceparentBadChar),
            invalid("parent-id illegal last char", &format!("00-{TID}-{}.-01", &PID[..15]), R::TraceparentBadChar),
            invalid("parent-id too long", &format!("00-{TID}-{PID}7-01"), R::TraceparentBadLength),
            invalid("parent-id too short", &format!("00-{TID}-{}-01", &PID[..15]), R::TraceparentBadLength),
            invalid("parent-id uppercase", "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                R::TraceparentBadChar),
            // --- trace-flags ---
            invalid("flags illegal '.0'", &tp("00", ".0"), R::TraceparentBadChar),
            invalid("flags illegal '0.'", &tp("00", "0."), R::TraceparentBadChar),
            invalid("flags uppercase", &tp("00", "0A"), R::TraceparentBadChar),
            invalid("flags too long", &tp("00", "001"), R::TraceparentBadLength),
            invalid("flags too short", &tp("00", "1"), R::TraceparentBadLength),
            // --- whitespace (the value is taken byte-exact) ---
            invalid("leading space", &format!(" {}", tp("00", "01")), R::TraceparentBadVersion),
            invalid("leading tab", &format!("\t{}", tp("00", "01")), R::TraceparentBadVersion),
            invalid("trailing space", &format!("{} ", tp("00", "01")), R::TraceparentBadLength),
            invalid("trailing tab", &format!("{}\t", tp("00", "01")), R::TraceparentBadLength),
            invalid("inner space", &format!("00-{} {}-{PID}-01", &TID[..15], &TID[16..]), R::TraceparentBadChar),
            invalid("space instead of dash", &format!("00 {TID}-{PID}-01"), R::TraceparentBadVersion),
            // --- tracestate with and without a usable traceparent ---
            case("tracestate without traceparent", &NONE, &["foo=1,bar=2"], &new_trace("02"), OURS,
                &[(R::TracestateIgnored, 1)]),
            case("blank tracestate without traceparent", &NONE, &[" , ,"], &new_trace("02"), OURS, &[]),
            with_ts("tracestate inherited", &["foo=1,bar=2"], "foo=1,bar=2", &[]),
            with_ts("empty tracestate header", &[""], "", &[]),
            with_ts("empty header after", &["foo=1", ""], "foo=1", &[]),
            with_ts("empty header before", &["", "foo=1"], "foo=1", &[]),
            with_ts("multiple headers combined in order", &["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
                "foo=1,bar=2,rojo=1,congo=2,baz=3", &[]),
            with_ts("duplicate keys: first kept", &["foo=1,foo=2"], "foo=1", &[(R::TracestateDuplicateKey, 1)]),
            with_ts("duplicate keys across headers", &["foo=1", "foo=2"], "foo=1",
                &[(R::TracestateDuplicateKey, 1)]),
            with_ts("all allowed characters, simple key", &[&format!("{simple_all}={value_all}")],
                &format!("{simple_all}={value_all}"), &[]),
            with_ts("all allowed characters, multi-tenant key", &[&format!("{vendor_all}={value_all}")],
                &format!("{vendor_all}={value_all}"), &[]),
            // --- OWS and empty members ---
            with_ts("OWS around members", &["foo=1 \t , \t bar=2, \t baz=3"], "foo=1,bar=2,baz=3", &[]),
            with_ts("tabs and spaces around commas", &["foo=1\t \t,\t \tbar=2,\t \tbaz=3"],
                "foo=1,bar=2,baz=3", &[]),
            with_ts("leading and trailing OWS", &["\t foo=1 \t"], "foo=1", &[]),
            with_ts("empty and whitespace-only members", &[",,foo=1, ,\t,bar=2,"], "foo=1,bar=2", &[]),
            with_ts("value keeps leading space", &["foo= 1"], "foo= 1", &[]),
            // --- key grammar ---
            with_ts("key with space", &["foo =1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("uppercase key", &["FOO=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("key with dot", &["foo.bar=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("simple key starting with digit", &["1foo=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("tenant starting with digit", &["1foo@bar=1"], "1foo@bar=1", &[]),
            with_ts("vendor: empty system", &["foo@=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("vendor: empty tenant", &["@foo=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("vendor: double @", &["foo@@bar=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("vendor: two @", &["foo@bar@baz=1,bar=2"], "bar=2", &[(R::TracestateMemberDropped, 1)]),
            with_ts("vendor: system starting with digit", &["foo@1bar=1"], "", &[(R::TracestateMemberDropped, 1)]),
            with_ts("key of 256", &["foo=1", &format!("{key256}=1")], &format!("foo=1,{key256}=1"), &[]),
            with_ts("key of 257", &["foo=1", &format!("{key257}=1")], "foo=1", &[(R::TracestateMemberDropped, 1)]),
            with_ts("tenant 241, system 14", &["foo=1", &format!("{tenant241}=1")],
                &format!("foo=1,{tenant241}=1"), &[]),
            with_ts("tenant 242", &["foo=1", &format!("{tenant242}=1")], "foo=1", &[(R::TracestateMemberDropped, 1)]),
            with_ts("system 15", &["foo=1", &format!("{system15}=1")], "foo=1", &[(R::TracestateMemberDropped, 1)]),
            // --- value grammar ---
            with_ts("value with '='", &["foo=bar=baz,x=1"], "x=1", &[(R::TracestateMemberDropped, 1)]),
            with_ts("empty member value", &["foo=,bar=3"], "bar=3", &[(R::TracestateMemberDropped, 1)]),
            with_ts("no '='", &["foo,bar=3"], "bar=3", &[(R::TracestateMemberDropped, 1)]),
            with_ts("value with tab", &["foo=a\tb,bar=3"], "bar=3", &[(R::TracestateMemberDropped, 1)]),
            with_ts("value not ASCII", &["foo=é,bar=3"], "bar=3", &[(R::TracestateMemberDropped, 1)]),
            with_ts("value of 256", &[&format!("foo={value256}")], &format!("foo={value256}"), &[]),
            with_ts("value of 257", &[&format!("foo={value257}"), "bar=1"], "bar=1",
                &[(R::TracestateMemberDropped, 1)]),
            // --- our member ---
            with_ts("our member replaced and moved left", &["foo=1,rollout=old-rollout:stable,bar=2"],
                "foo=1,bar=2", &[]),
            with_ts("our member already first", &["rollout=old,foo=1"], "foo=1", &[]),
            with_ts("our key twice", &["rollout=a,rollout=b,foo=1"], "foo=1", &[]),
            with_ts("malformed old member of ours", &["rollout=,foo=1"], "foo=1", &[(R::TracestateMemberDropped, 1)]),
            with_ts("our key as tenant is another key", &["rollout@x=1"], "rollout@x=1", &[]),
            // --- limits ---
            with_ts("32 members: rightmost dropped for ours",
                &[&bars(1, 10), &bars(11, 20), &bars(21, 30), &bars(31, 32)], &bars(1, 31),
                &[(R::TracestateTruncated, 1)]),
            with_ts("33 members", &[&bars(1, 10), &bars(11, 20), &bars(21, 30), &bars(31, 33)], &bars(1, 31),
                &[(R::TracestateTruncated, 2)]),
            with_ts("31 members and our old one", &[&bars(1, 15), "rollout=old", &bars(16, 31)], &bars(1, 31), &[]),
            with_ts("duplicate does not take a slot", &[&bars(1, 31), "bar01=x"], &bars(1, 31),
                &[(R::TracestateDuplicateKey, 1)]),
            with_ts("exactly 512 characters", &[&fit.join(",")], &fit.join(","), &[]),
            with_ts("513: rightmost dropped", &[&over.join(",")], &over[..3].join(","),
                &[(R::TracestateTruncated, 1)]),
            with_ts("members over 128 dropped first, from the right", &[&[&*a100, &b200, &c150, &d50].join(",")],
                &[&*a100, &b200, &d50].join(","), &[(R::TracestateTruncated, 1)]),
            with_ts("long dropped, then from the right", &[&format!("{},{}", m("l", 130), short5.join(","))],
                &short5[..4].join(","), &[(R::TracestateTruncated, 2)]),
            case("our long member is never dropped", &[kept("00")], &[xyz150.join(",")], &kept("00"),
                &format!("rollout={w200},{},{}", xyz150[0], xyz150[1]), &[(R::TracestateTruncated, 1)])
                .value(&w200),
        ]
    }

    fn run(c: &Case) -> Propagated {
        let tp: Vec<&[u8]> = c.tp.iter().map(|s| s.as_bytes()).collect();
        let ts: Vec<&[u8]> = c.ts.iter().map(|s| s.as_bytes()).collect();
        let settings = TraceSettings {
            new_span: c.new_span,
            sampled: c.sampled,
            key: DEFAULT_KEY.to_string(),
        };
        propagate(&tp, &ts, &c.value, &settings, RANDOM)
    }

    #[test]
    fn w3c_table() {
        let cases = cases();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        for pair in names.windows(2) {
            assert_ne!(pair[0], pair[1], "case names are unique");
        }
        for c in &cases {
            let got = run(c);
            let name = &c.name;
            assert_eq!(got.traceparent, c.want_tp, "{name}: traceparent");
            assert_eq!(got.tracestate, c.want_ts, "{name}: tracestate");
            let got_rejects: Vec<(TraceReject, u16)> = got.rejects.iter().collect();
            assert_eq!(got_rejects, c.rejects, "{name}: rejects");
            let tp_rejected = got_rejects
                .iter()
                .any(|(r, _)| r.as_str().starts_with("traceparent_"));
            assert_eq!(
                got.continued,
                c.tp.len() == 1 && !tp_rejected,
                "{name}: continued"
            );
            assert_eq!(got.trace_id_hex(), &c.want_tp[3..35], "{name}: trace id");
            check_output(&got, DEFAULT_KEY);
        }
    }

    /// What every output must satisfy, checked with the module's own parsers.
    fn check_output(p: &Propagated, key: &str) {
        assert_eq!(p.traceparent.len(), 55, "{}", p.traceparent);
        assert!(p.traceparent.starts_with("00-"), "{}", p.traceparent);
        let parsed = parse_traceparent(p.traceparent.as_bytes()).unwrap();
        assert_eq!(parsed.flags & !(FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID), 0);
        assert_eq!(parsed.to_header(), p.traceparent);
        assert_eq!(p.trace_id_hex().len(), 32);

        assert!(
            p.tracestate.len() <= MAX_TRACESTATE_LEN,
            "{} chars",
            p.tracestate.len()
        );
        let members: Vec<&str> = p.tracestate.split(',').collect();
        assert!(members.len() <= MAX_MEMBERS, "{} members", members.len());
        let mut keys = Vec::new();
        for member in &members {
            let (k, v) = member.split_once('=').unwrap();
            assert!(is_valid_key(k), "key {k:?}");
            assert!(is_valid_member_value(v), "value {v:?}");
            keys.push(k);
        }
        assert_eq!(keys[0], key);
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), members.len(), "unique keys in {}", p.tracestate);
    }

    #[test]
    fn reject_kinds() {
        for (i, r) in TraceReject::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let s = r.as_str();
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
        }
        let mut names: Vec<_> = TraceReject::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TraceReject::ALL.len());
        assert!(Rejects::default().is_empty());
    }

    #[test]
    fn keys_and_values() {
        for k in ["rollout", "a", "a0_-*/", "0a@b", "a@b", "tenant@system-1/*"] {
            assert!(is_valid_key(k), "{k}");
        }
        for k in [
            "", "Rollout", "0a", "_a", "a b", "a@", "@a", "a@0b", "a@b@c", "a=b", "a,b", "é",
        ] {
            assert!(!is_valid_key(k), "{k}");
        }
        assert!(is_valid_key(&"a".repeat(256)));
        assert!(!is_valid_key(&"a".repeat(257)));
        for v in [
            "checkout-2026-11:canary",
            " x",
            "a b",
            "~",
            "!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~",
        ] {
            assert!(is_valid_member_value(v), "{v}");
        }
        for v in ["", "a ", " ", "a,b", "a=b", "a\tb", "a\nb", "é", "\u{7f}"] {
            assert!(!is_valid_member_value(v), "{v:?}");
        }
        assert!(is_valid_member_value(&"v".repeat(256)));
        assert!(!is_valid_member_value(&"v".repeat(257)));
    }

    #[test]
    fn parses_fields() {
        let p = parse_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(p.trace_id[0], 0x0a);
        assert_eq!(p.trace_id[15], 0x9c);
        assert_eq!(p.parent_id, [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]);
        assert_eq!(p.flags, 1);
        // A higher version keeps all its flags; masking is propagate's job.
        assert_eq!(parse_traceparent(tp("fe", "ff").as_bytes()).unwrap().flags, 0xff);
    }

    #[test]
    fn zero_random_is_fixed() {
        let s = TraceSettings::default();
        let p = propagate(&[], &[], VALUE, &s, [0; 24]);
        assert_eq!(
            p.traceparent,
            format!("00-{}01-{}01-02", "0".repeat(30), "0".repeat(14))
        );
        let s = TraceSettings {
            new_span: true,
            ..TraceSettings::default()
        };
        let p = propagate(&[tp("00", "01").as_bytes()], &[], VALUE, &s, [0; 24]);
        assert_eq!(p.traceparent, format!("00-{TID}-{}01-01", "0".repeat(14)));
    }

    #[test]
    fn custom_key() {
        let s = TraceSettings {
            key: "acme@rollout".to_string(),
            ..TraceSettings::default()
        };
        let p = propagate(
            &[tp("00", "01").as_bytes()],
            &[b"rollout=1,acme@rollout=old,x=2"],
            "v1",
            &s,
            RANDOM,
        );
        assert_eq!(p.tracestate, "acme@rollout=v1,rollout=1,x=2");
        check_output(&p, "acme@rollout");
    }

    #[test]
    fn invalid_settings_still_give_valid_output() {
        let s = TraceSettings {
            key: "Bad Key".to_string(),
            ..TraceSettings::default()
        };
        let p = propagate(&[], &[], "a,b=c ", &s, RANDOM);
        assert_eq!(p.tracestate, "rollout=a_b_c_");
        let p = propagate(&[], &[], "", &s, RANDOM);
        assert_eq!(p.tracestate, "rollout=_");
        let p = propagate(&[], &[], "é ", &s, RANDOM);
        assert_eq!(p.tracestate, "rollout=__");
        let p = propagate(&[], &[], &"v".repeat(300), &s, RANDOM);
        assert_eq!(p.tracestate, format!("rollout={}", "v".repeat(256)));
        let long_key = "k".repeat(256);
        let s = TraceSettings {
            key: long_key.clone(),
            ..TraceSettings::default()
        };
        let p = propagate(&[], &[], &"v".repeat(256), &s, RANDOM);
        assert_eq!(p.tracestate, format!("{long_key}={}", "v".repeat(255)));
        check_output(&p, &long_key);
    }

    #[test]
    fn non_utf8_input() {
        let s = TraceSettings::default();
        let p = propagate(&[b"\xff\xfe-\x80"], &[b"foo=1"], VALUE, &s, RANDOM);
        assert_eq!(p.traceparent, new_trace("02"));
        assert_eq!(p.rejects.get(R::TraceparentBadVersion), 1);
        let mut bad = tp("00", "01").into_bytes();
        bad[10] = 0xc3;
        let p = propagate(&[&bad], &[], VALUE, &s, RANDOM);
        assert_eq!(p.rejects.get(R::TraceparentBadChar), 1);
        let v00 = tp("00", "01");
        let p = propagate(
            &[v00.as_bytes()],
            &[b"a=\xff\xfe,b=\xc3\xa9,c=1"],
            VALUE,
            &s,
            RANDOM,
        );
        assert_eq!(p.tracestate, ours("c=1"));
        assert_eq!(p.rejects.get(R::TracestateMemberDropped), 2);
    }

    #[test]
    fn large_inputs() {
        let s = TraceSettings::default();
        let v00 = tp("00", "01");
        // 8 KiB traceparent values.
        let long00 = format!("{v00}{}", "-x".repeat(4096));
        let p = propagate(&[long00.as_bytes()], &[], VALUE, &s, RANDOM);
        assert_eq!(p.rejects.get(R::TraceparentBadLength), 1);
        let long_cc = format!("{}{}", tp("cc", "01"), "-x".repeat(4096));
        let p = propagate(&[long_cc.as_bytes()], &[], VALUE, &s, RANDOM);
        assert_eq!(p.traceparent, kept("01"));
        // 100 members, 8 KiB of tracestate, 8 KiB of commas, a 8 KiB member.
        let hundred: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}")).collect();
        let p = propagate(
            &[v00.as_bytes()],
            &[hundred.join(",").as_bytes()],
            VALUE,
            &s,
            RANDOM,
        );
        assert_eq!(p.tracestate, ours(&hundred[..31].join(",")));
        assert_eq!(p.rejects.get(R::TracestateTruncated), 69);
        check_output(&p, DEFAULT_KEY);
        let big: Vec<String> = (0..100).map(|i| m(&format!("k{i}"), 80)).collect();
        let big = big.join(" , ");
        assert!(big.len() > 8192);
        let p = propagate(
            &[v00.as_bytes()],
            &[big.as_bytes(), big.as_bytes()],
            VALUE,
            &s,
            RANDOM,
        );
        check_output(&p, DEFAULT_KEY);
        // Keys past the 32-member cap are not remembered: those count as truncated.
        assert_eq!(p.rejects.get(R::TracestateDuplicateKey), 31);
        assert_eq!(p.rejects.get(R::TracestateTruncated), 69 + 69 + 26);
        let first5: Vec<String> = (0..5).map(|i| m(&format!("k{i}"), 80)).collect();
        assert_eq!(p.tracestate, ours(&first5.join(",")));
        let commas = ",".repeat(8192);
        let p = propagate(&[v00.as_bytes()], &[commas.as_bytes()], VALUE, &s, RANDOM);
        assert_eq!(p.tracestate, OURS);
        assert!(p.rejects.is_empty());
        let huge = format!("foo={}", "v".repeat(8192));
        let p = propagate(&[v00.as_bytes()], &[huge.as_bytes()], VALUE, &s, RANDOM);
        assert_eq!(p.tracestate, OURS);
        assert_eq!(p.rejects.get(R::TracestateMemberDropped), 1);
        // Many traceparent values.
        let many: Vec<&[u8]> = vec![v00.as_bytes(); 100];
        let p = propagate(&many, &[], VALUE, &s, RANDOM);
        assert_eq!(p.rejects.get(R::TraceparentDuplicate), 1);
    }

    /// A valid traceparent of any version but ff, maybe with extra fields, or a
    /// variation of one with a byte changed, cut or added.
    fn traceparent_strategy() -> impl Strategy<Value = Vec<u8>> {
        let valid = "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[ -~]{0,8})?"
            .prop_map(|s: String| s.into_bytes());
        prop_oneof![
            3 => valid.clone(),
            2 => (valid, any::<usize>(), any::<u8>(), 0u8..3).prop_map(|(mut v, at, b, op)| {
                let at = at % v.len();
                match op {
                    0 => v[at] = b,
                    1 => v.truncate(at),
                    _ => v.insert(at, b),
                }
                v
            }),
            1 => proptest::collection::vec(any::<u8>(), 0..80),
        ]
    }

    /// Plausible tracestate values (valid and invalid members, OWS, empties) or any bytes.
    fn tracestate_strategy() -> impl Strategy<Value = Vec<u8>> {
        let member = prop_oneof![
            "[a-z][a-z0-9_*/-]{0,8}=[ -~]{0,12}",
            "[a-z0-9]{1,4}@[a-z]{1,4}=[!-~]{1,12}",
            "rollout=[a-z]{1,4}",
            "[a-z]{1,2}=[a-z]{100,140}",
            "[ \t]{0,2}",
            "[ -~]{0,10}",
        ];
        prop_oneof![
            4 => proptest::collection::vec(member, 0..40).prop_map(|ms| ms.join(",").into_bytes()),
            1 => proptest::collection::vec(any::<u8>(), 0..200),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn output_is_always_valid(
            traceparents in prop_oneof![
                1 => proptest::collection::vec(traceparent_strategy(), 0..1),
                4 => proptest::collection::vec(traceparent_strategy(), 1..2),
                1 => proptest::collection::vec(traceparent_strategy(), 2..4),
            ],
            tracestates in proptest::collection::vec(tracestate_strategy(), 0..4),
            value in prop_oneof!["[!-~]([ -~]{0,40}[!-~])?", ".{0,300}"],
            new_span in any::<bool>(),
            sampled in any::<bool>(),
            random in any::<[u8; 24]>(),
        ) {
            let tps: Vec<&[u8]> = traceparents.iter().map(|v| v.as_slice()).collect();
            let tss: Vec<&[u8]> = tracestates.iter().map(|v| v.as_slice()).collect();
            let settings = TraceSettings { new_span, sampled, key: DEFAULT_KEY.to_string() };
            let p = propagate(&tps, &tss, &value, &settings, random);
            check_output(&p, DEFAULT_KEY);

            let out = parse_traceparent(p.traceparent.as_bytes()).unwrap();
            let input = match tps.as_slice() {
                [one] => parse_traceparent(one).ok(),
                _ => None,
            };
            prop_assert_eq!(p.continued, input.is_some());
            let fresh_parent = non_zero(random.last_chunk::<8>().copied().unwrap());
            match input {
                Some(input) => {
                    prop_assert_eq!(out.trace_id, input.trace_id);
                    prop_assert_eq!(out.flags, input.flags & 3);
                    prop_assert_eq!(out.parent_id, if new_span { fresh_parent } else { input.parent_id });
                }
                None => {
                    prop_assert_eq!(out.trace_id, non_zero(random.first_chunk::<16>().copied().unwrap()));
                    prop_assert_eq!(out.parent_id, fresh_parent);
                    prop_assert_eq!(out.flags, if sampled { 3 } else { 2 });
                    prop_assert!(!p.tracestate.contains(','), "tracestate dropped: {}", p.tracestate);
                }
            }
            if is_valid_member_value(&value) {
                let want = format!("rollout={value}");
                prop_assert_eq!(p.tracestate.split(',').next(), Some(want.as_str()));
            }
        }
    }
}
