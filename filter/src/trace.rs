//! W3C Trace Context propagation (`traceparent` / `tracestate`, spec section
//! "Trace Context HTTP Request Headers Format").
//!
//! Pure: works on raw header bytes and host-provided randomness, never touches
//! proxy-wasm. [`propagate`] takes every value of both request headers and
//! says what to send upstream, plus why the incoming context was not used
//! as-is (for metrics).
//!
//! The filter writes no `tracestate` member of its own (the spec keeps
//! `tracestate` for tracing systems; the decision travels in `baggage`).
//! - `traceparent` unchanged (a valid one passed through): both headers are
//!   left exactly as they came, `tracestate` is not even read;
//! - `traceparent` changed (`newSpan`, a new trace, a higher version or
//!   unknown flags re-emitted as 00): `tracestate` is dropped when the
//!   incoming `traceparent` was missing or invalid; otherwise it is kept when
//!   every member is valid (current key grammar) and there are at most 32,
//!   and discarded whole when not, as the official test suite checks.
//!   Duplicate keys: the first is kept.
//!
//! The `traceparent` value is taken byte-exact: any whitespace (leading and
//! trailing too; Envoy's codec already trims it), uppercase hex or non-ASCII
//! byte makes it invalid.

use crate::headers::{HeaderChange, ListMembers};

/// Most list-members in a valid `tracestate`.
pub const MAX_MEMBERS: usize = 32;
/// trace-flags bit: the caller may have recorded trace data.
pub const FLAG_SAMPLED: u8 = 0x01;
/// trace-flags bit (Level 2): the trace-id was generated at random.
pub const FLAG_RANDOM_TRACE_ID: u8 = 0x02;

const TRACEPARENT_LEN: usize = 55;
const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// Replace the parent-id of a valid incoming `traceparent` with a fresh one.
    pub new_span: bool,
    /// Set the sampled flag on traces this filter starts.
    pub sampled: bool,
}

/// Why the incoming trace context was not used as-is, or the decision's
/// baggage member was not written (a metric label each). A missing
/// `traceparent` is not a rejection.
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
    /// A `tracestate` with a malformed list-member was discarded whole.
    TracestateInvalid,
    /// A `tracestate` of more than 32 list-members was discarded whole.
    TracestateTooManyMembers,
    /// A `tracestate` member repeating an earlier key was dropped (counted per member).
    TracestateDuplicateKey,
    /// The decision's `baggage` member was not added: it would break the W3C
    /// Baggage limits (64 members, 8,192 bytes).
    BaggageFull,
}

impl TraceReject {
    pub const ALL: [TraceReject; 10] = [
        TraceReject::TraceparentDuplicate,
        TraceReject::TraceparentBadVersion,
        TraceReject::TraceparentBadLength,
        TraceReject::TraceparentBadChar,
        TraceReject::TraceparentZeroId,
        TraceReject::TracestateIgnored,
        TraceReject::TracestateInvalid,
        TraceReject::TracestateTooManyMembers,
        TraceReject::TracestateDuplicateKey,
        TraceReject::BaggageFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TraceReject::TraceparentDuplicate => "traceparent_duplicate",
            TraceReject::TraceparentBadVersion => "traceparent_bad_version",
            TraceReject::TraceparentBadLength => "traceparent_bad_length",
            TraceReject::TraceparentBadChar => "traceparent_bad_char",
            TraceReject::TraceparentZeroId => "traceparent_zero_id",
            TraceReject::TracestateIgnored => "tracestate_ignored",
            TraceReject::TracestateInvalid => "tracestate_invalid",
            TraceReject::TracestateTooManyMembers => "tracestate_too_many_members",
            TraceReject::TracestateDuplicateKey => "tracestate_duplicate_key",
            TraceReject::BaggageFull => "baggage_full",
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
    /// The new `traceparent` (a valid version-00 value), or `None` when the
    /// single incoming value is already exactly that: leave it.
    pub traceparent: Option<String>,
    /// Always [`HeaderChange::Keep`] when `traceparent` is `None`.
    pub tracestate: HeaderChange,
    /// The trace-id going upstream.
    pub trace_id: [u8; 16],
    /// True when the incoming `traceparent` was valid and its trace-id kept.
    pub continued: bool,
    pub rejects: Rejects,
}

impl Propagated {
    /// The 32 lowercase hex digits of the trace-id (for a debug response header).
    pub fn trace_id_hex(&self) -> String {
        let mut buf = [b'0'; 32];
        write_hex(&mut buf, &self.trace_id);
        // Only ASCII was written, so this never falls back.
        std::str::from_utf8(&buf).map(str::to_owned).unwrap_or_default()
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

/// A trace-id as W3C writes it: exactly 32 lowercase hex digits, not all zero.
pub fn parse_trace_id(hex: &[u8]) -> Option<[u8; 16]> {
    decode_hex(Some(hex)).filter(|id: &[u8; 16]| !is_zero(id))
}

/// A `tracestate` key: `(lcalpha / DIGIT) 0*255(keychar)`, keychar being
/// `a-z 0-9 _ - * / @`.
pub fn is_valid_key(k: &str) -> bool {
    valid_key(k.as_bytes())
}

/// A `tracestate` value: 1..=256 printable ASCII characters (0x20..=0x7e)
/// except `,` and `=`, not ending with a space.
pub fn is_valid_member_value(v: &str) -> bool {
    valid_value(v.as_bytes())
}

/// What to send upstream for a request.
///
/// `traceparents`/`tracestates`: every value of each header on the request, raw
/// bytes (may be non-UTF-8). `random`: 16 bytes for a new trace-id, then 8 for
/// a new parent-id; an all-zero id gets its last byte set to 1.
pub fn propagate(
    traceparents: &[&[u8]],
    tracestates: &[&[u8]],
    settings: &TraceSettings,
    random: [u8; 24],
) -> Propagated {
    propagate_seeded(traceparents, tracestates, settings, random, None)
}

/// [`propagate`], with `start`: the trace-id of a new trace (a certificate
/// label's `traceId`) instead of a random one. A valid incoming `traceparent`
/// still wins; the parent-id is fresh either way. A trace started from `start`
/// does not claim the random-trace-id flag: the id is the caller's, fixed.
pub fn propagate_seeded(
    traceparents: &[&[u8]],
    tracestates: &[&[u8]],
    settings: &TraceSettings,
    random: [u8; 24],
    start: Option<[u8; 16]>,
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

    let out = match incoming {
        Some(tp) => Traceparent {
            trace_id: tp.trace_id,
            parent_id: if settings.new_span {
                fresh_parent_id
            } else {
                tp.parent_id
            },
            flags: tp.flags & (FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID),
        },
        None => Traceparent {
            trace_id: start.unwrap_or(fresh_trace_id),
            parent_id: fresh_parent_id,
            flags: if start.is_some() { 0 } else { FLAG_RANDOM_TRACE_ID }
                | if settings.sampled { FLAG_SAMPLED } else { 0 },
        },
    };
    let header = out.to_header();
    let unchanged = matches!(traceparents, [one] if *one == header.as_bytes());
    let (traceparent, tracestate) = if unchanged {
        (None, HeaderChange::Keep)
    } else if incoming.is_some() {
        (Some(header), check_tracestate(tracestates, &mut rejects))
    } else {
        if tracestates.iter().any(|v| !is_blank_list(v)) {
            rejects.add(TraceReject::TracestateIgnored);
        }
        let ts = if tracestates.is_empty() {
            HeaderChange::Keep
        } else {
            HeaderChange::Remove
        };
        (Some(header), ts)
    };
    Propagated {
        traceparent,
        tracestate,
        trace_id: out.trace_id,
        continued: incoming.is_some(),
        rejects,
    }
}

/// The incoming `tracestate` under a changed `traceparent`: kept (combined
/// into one value, whitespace and empty members dropped, later duplicate keys
/// dropped) when valid, removed when blank, invalid or over 32 members.
fn check_tracestate(values: &[&[u8]], rejects: &mut Rejects) -> HeaderChange {
    if values.is_empty() {
        return HeaderChange::Keep;
    }
    // Multiple header values are combined as if joined with ',', so every
    // value boundary is a member boundary.
    let members = || ListMembers::new(values);
    let mut keys: [&[u8]; MAX_MEMBERS] = [&[]; MAX_MEMBERS];
    let mut n = 0usize;
    let mut duplicates = 0u16;
    let mut len = 0usize;
    for member in members() {
        let Some(eq) = member.iter().position(|b| *b == b'=') else {
            rejects.add(TraceReject::TracestateInvalid);
            return HeaderChange::Remove;
        };
        let (k, v) = (
            member.get(..eq).unwrap_or_default(),
            member.get(eq.saturating_add(1)..).unwrap_or_default(),
        );
        if !valid_key(k) || !valid_value(v) {
            rejects.add(TraceReject::TracestateInvalid);
            return HeaderChange::Remove;
        }
        if keys.get(..n).unwrap_or_default().contains(&k) {
            duplicates = duplicates.saturating_add(1);
            continue;
        }
        match keys.get_mut(n) {
            Some(slot) => *slot = k,
            None => {
                rejects.add(TraceReject::TracestateTooManyMembers);
                return HeaderChange::Remove;
            }
        }
        n = n.saturating_add(1);
        len = len.saturating_add(member.len()).saturating_add(1);
    }
    for _ in 0..duplicates {
        rejects.add(TraceReject::TracestateDuplicateKey);
    }
    if n == 0 {
        return HeaderChange::Remove;
    }
    let mut out = Vec::with_capacity(len);
    let mut seen = 0usize;
    for member in members() {
        let key = member.split(|b| *b == b'=').next().unwrap_or_default();
        // The first member of each key, in order: keys[seen] is the next one to write.
        if keys.get(seen) == Some(&key) {
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
            seen = seen.saturating_add(1);
        }
    }
    match values {
        [one] if *one == out.as_slice() => HeaderChange::Keep,
        _ => HeaderChange::Set(out),
    }
}

fn valid_key(k: &[u8]) -> bool {
    match k.split_first() {
        Some((first, rest)) => {
            k.len() <= MAX_KEY_LEN
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|b| is_key_char(*b))
        }
        None => false,
    }
}

// Per byte: kept inline even in the size-optimized build.
#[inline(always)]
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
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
    use HeaderChange as H;
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

    /// A traceparent with the test trace-id and parent-id.
    fn tp(version: &str, flags: &str) -> String {
        format!("{version}-{TID}-{PID}-{flags}")
    }

    /// The output for a continued trace (parent-id kept).
    fn kept(flags: &str) -> Option<String> {
        Some(tp("00", flags))
    }

    /// The output for a continued trace with a new span.
    fn new_span(flags: &str) -> Option<String> {
        Some(format!("00-{TID}-{NEW_PID}-{flags}"))
    }

    /// The output for a new trace.
    fn new_trace(flags: &str) -> Option<String> {
        Some(format!("00-{NEW_TID}-{NEW_PID}-{flags}"))
    }

    fn set(v: &str) -> HeaderChange {
        H::Set(v.as_bytes().to_vec())
    }

    struct Case {
        name: String,
        tp: Vec<String>,
        ts: Vec<String>,
        new_span: bool,
        sampled: bool,
        want_tp: Option<String>,
        want_ts: HeaderChange,
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
    }

    fn case<S: AsRef<str>, T: AsRef<str>>(
        name: &str,
        tp: &[S],
        ts: &[T],
        want_tp: Option<String>,
        want_ts: HeaderChange,
        rejects: &[(TraceReject, u16)],
    ) -> Case {
        Case {
            name: name.to_string(),
            tp: tp.iter().map(|s| s.as_ref().to_string()).collect(),
            ts: ts.iter().map(|s| s.as_ref().to_string()).collect(),
            new_span: false,
            sampled: false,
            want_tp,
            want_ts,
            rejects: rejects.to_vec(),
        }
    }

    const NONE: [&str; 0] = [];

    /// An invalid traceparent: a new trace, the incoming tracestate dropped.
    fn invalid(name: &str, value: &str, reject: TraceReject) -> Case {
        case(
            name,
            &[value],
            &["foo=1"],
            new_trace("02"),
            H::Remove,
            &[(reject, 1), (R::TracestateIgnored, 1)],
        )
    }

    /// A valid traceparent given a new span, with tracestate `ts`.
    fn with_ts(name: &str, ts: &[&str], want: HeaderChange, rejects: &[(TraceReject, u16)]) -> Case {
        case(name, &[tp("00", "00")], ts, new_span("00"), want, rejects).new_span()
    }

    /// As [`with_ts`] for a tracestate discarded whole because of `reason`.
    fn discarded(name: &str, ts: &[&str], reason: TraceReject) -> Case {
        with_ts(name, ts, H::Remove, &[(reason, 1)])
    }

    /// Mostly the official suite's cases (w3c/trace-context test/test.py), at
    /// its strict level, as the filter sees them with `newSpan` on.
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
        let big32: Vec<String> = (0..32).map(|i| format!("k{i:02}={}", "v".repeat(252))).collect();

        vec![
            // --- traceparent passed through: both headers untouched ---
            case("valid, sampled", &[tp("00", "01")], &NONE, None, H::Keep, &[]),
            case("valid, not sampled", &[tp("00", "00")], &NONE, None, H::Keep, &[]),
            case("valid, random-trace-id flag", &[tp("00", "02")], &NONE, None, H::Keep, &[]),
            case("valid, both known flags", &[tp("00", "03")], &NONE, None, H::Keep, &[]),
            case("spec example", &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"], &NONE,
                None, H::Keep, &[]),
            case("pass-through: tracestate not even read", &[tp("00", "01")], &["foo@=1, FOO=2,,", "bar=3"],
                None, H::Keep, &[]),
            case("pass-through: 40 members untouched", &[tp("00", "01")], &[&bars(1, 40)], None, H::Keep, &[]),
            case("sampled setting: incoming decision kept", &[tp("00", "00")], &NONE, None, H::Keep, &[])
                .sampled(),
            // --- traceparent re-emitted: tracestate checked ---
            case("flags ff: unknown bits zeroed", &[tp("00", "ff")], &["foo=1"], kept("03"), H::Keep, &[]),
            case("flags 09: unknown bit zeroed", &[tp("00", "09")], &NONE, kept("01"), H::Keep, &[]),
            case("flags 04: unknown bit zeroed", &[tp("00", "04")], &["FOO=1"], kept("00"), H::Remove,
                &[(R::TracestateInvalid, 1)]),
            case("both missing", &NONE, &NONE, new_trace("02"), H::Keep, &[]),
            case("new span: fresh parent-id, same trace", &[tp("00", "01")], &NONE, new_span("01"), H::Keep, &[])
                .new_span(),
            case("new span: random flag propagated", &[tp("00", "02")], &NONE, new_span("02"), H::Keep, &[])
                .new_span(),
            case("new span on invalid input: new trace", &[tp("ff", "01")], &NONE, new_trace("02"), H::Keep,
                &[(R::TraceparentBadVersion, 1)]).new_span(),
            case("sampled setting: new trace sampled", &NONE, &NONE, new_trace("03"), H::Keep, &[]).sampled(),
            // --- duplicated headers ---
            case("duplicated traceparent",
                &[format!("00-{}1-{PID}-01", &TID[..31]), format!("00-{TID}-{PID}-01")], &["foo=1"],
                new_trace("02"), H::Remove, &[(R::TraceparentDuplicate, 1), (R::TracestateIgnored, 1)]),
            case("duplicated identical traceparent", &[tp("00", "01"), tp("00", "01")], &NONE,
                new_trace("02"), H::Keep, &[(R::TraceparentDuplicate, 1)]),
            // --- versions ---
            invalid("00 with trailing '.'", &format!("{}.", tp("00", "01")), R::TraceparentBadLength),
            invalid("00 with extra fields", &format!("{}-what-the-future-will-be-like", tp("00", "01")),
                R::TraceparentBadLength),
            case("cc, 55 chars: downgraded to 00", &[tp("cc", "01")], &["foo=1"], kept("01"), H::Keep, &[]),
            case("cc with extra fields", &[format!("{}-what-the-future-will-be-like", tp("cc", "01"))], &NONE,
                kept("01"), H::Keep, &[]),
            case("cc with extra fields and flags ff", &[format!("{}-x", tp("cc", "ff"))], &NONE,
                kept("03"), H::Keep, &[]),
            case("cc with a trailing dash", &[format!("{}-", tp("cc", "01"))], &NONE, kept("01"), H::Keep, &[]),
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
            // --- whitespace (the value is taken byte-exact; Envoy trims OWS before us) ---
            invalid("leading space", &format!(" {}", tp("00", "01")), R::TraceparentBadVersion),
            invalid("leading tab", &format!("\t{}", tp("00", "01")), R::TraceparentBadVersion),
            invalid("trailing space", &format!("{} ", tp("00", "01")), R::TraceparentBadLength),
            invalid("trailing tab", &format!("{}\t", tp("00", "01")), R::TraceparentBadLength),
            invalid("inner space", &format!("00-{} {}-{PID}-01", &TID[..15], &TID[16..]), R::TraceparentBadChar),
            invalid("space instead of dash", &format!("00 {TID}-{PID}-01"), R::TraceparentBadVersion),
            // --- tracestate with and without a usable traceparent ---
            case("tracestate without traceparent", &NONE, &["foo=1,bar=2"], new_trace("02"), H::Remove,
                &[(R::TracestateIgnored, 1)]),
            case("blank tracestate without traceparent", &NONE, &[" , ,"], new_trace("02"), H::Remove, &[]),
            with_ts("tracestate inherited", &["foo=1,bar=2"], H::Keep, &[]),
            with_ts("no tracestate", &NONE, H::Keep, &[]),
            with_ts("empty tracestate header", &[""], H::Remove, &[]),
            with_ts("empty header after", &["foo=1", ""], set("foo=1"), &[]),
            with_ts("empty header before", &["", "foo=1"], set("foo=1"), &[]),
            with_ts("multiple headers combined in order", &["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
                set("foo=1,bar=2,rojo=1,congo=2,baz=3"), &[]),
            with_ts("duplicate keys: first kept", &["foo=1,foo=2"], set("foo=1"), &[(R::TracestateDuplicateKey, 1)]),
            with_ts("duplicate identical members", &["foo=1,foo=1"], set("foo=1"), &[(R::TracestateDuplicateKey, 1)]),
            with_ts("duplicate keys across headers", &["foo=1", "foo=2"], set("foo=1"),
                &[(R::TracestateDuplicateKey, 1)]),
            with_ts("duplicates between others", &["a=1,b=2,a=3,c=4,b=5"], set("a=1,b=2,c=4"),
                &[(R::TracestateDuplicateKey, 2)]),
            with_ts("all allowed characters, simple key", &[&format!("{simple_all}={value_all}")], H::Keep, &[]),
            with_ts("all allowed characters, key with @", &[&format!("{vendor_all}={value_all}")], H::Keep, &[]),
            with_ts("header name casing does not matter here", &["foo=1"], H::Keep, &[]),
            // --- OWS and empty members ---
            with_ts("OWS around members", &["foo=1 \t , \t bar=2, \t baz=3"], set("foo=1,bar=2,baz=3"), &[]),
            with_ts("tabs and spaces around commas", &["foo=1\t \t,\t \tbar=2,\t \tbaz=3"],
                set("foo=1,bar=2,baz=3"), &[]),
            with_ts("tracestate leading space", &[" foo=1"], set("foo=1"), &[]),
            with_ts("tracestate leading tab", &["\tfoo=1"], set("foo=1"), &[]),
            with_ts("tracestate trailing space", &["foo=1 "], set("foo=1"), &[]),
            with_ts("tracestate trailing tab", &["foo=1\t"], set("foo=1"), &[]),
            with_ts("leading and trailing OWS", &["\t foo=1 \t"], set("foo=1"), &[]),
            with_ts("empty and whitespace-only members", &[",,foo=1, ,\t,bar=2,"], set("foo=1,bar=2"), &[]),
            with_ts("value keeps leading space", &["foo= 1"], H::Keep, &[]),
            // --- key grammar: any invalid member discards the whole header ---
            discarded("key with space", &["foo =1"], R::TracestateInvalid),
            discarded("uppercase key", &["FOO=1"], R::TracestateInvalid),
            discarded("key with dot", &["foo.bar=1"], R::TracestateInvalid),
            discarded("one bad member among good ones", &["a=1,foo.bar=1,b=2"], R::TracestateInvalid),
            discarded("bad member in a later header", &["a=1", "b=2,Bad=3"], R::TracestateInvalid),
            with_ts("key ending in @", &["foo@=1,bar=2"], H::Keep, &[]),
            discarded("key starting with @", &["@foo=1,bar=2"], R::TracestateInvalid),
            with_ts("key with @@", &["foo@@bar=1,bar=2"], H::Keep, &[]),
            with_ts("key with two @", &["foo@bar@baz=1,bar=2"], H::Keep, &[]),
            with_ts("key starting with a digit", &["1foo=1,bar=2"], H::Keep, &[]),
            with_ts("digit after @", &["foo@1bar=1"], H::Keep, &[]),
            discarded("key starting with _", &["_foo=1"], R::TracestateInvalid),
            with_ts("key of 256", &["foo=1", &format!("{key256}=1")], set(&format!("foo=1,{key256}=1")), &[]),
            discarded("key of 257", &["foo=1", &format!("{key257}=1")], R::TracestateInvalid),
            with_ts("241 @ 14", &["foo=1", &format!("{tenant241}=1")], set(&format!("foo=1,{tenant241}=1")), &[]),
            with_ts("242 @ 1", &["foo=1", &format!("{tenant242}=1")], set(&format!("foo=1,{tenant242}=1")), &[]),
            with_ts("1 @ 15", &["foo=1", &format!("{system15}=1")], set(&format!("foo=1,{system15}=1")), &[]),
            // --- value grammar ---
            discarded("value with '='", &["foo=bar=baz"], R::TracestateInvalid),
            discarded("empty member value", &["foo=,bar=3"], R::TracestateInvalid),
            discarded("no '='", &["foo,bar=3"], R::TracestateInvalid),
            discarded("value with tab", &["foo=a\tb,bar=3"], R::TracestateInvalid),
            discarded("value not ASCII", &["foo=é,bar=3"], R::TracestateInvalid),
            discarded("value with a Latin-1 letter", &["a=\u{ff}"], R::TracestateInvalid),
            with_ts("value of 256", &[&format!("foo={value256}")], H::Keep, &[]),
            discarded("value of 257", &[&format!("foo={value257}"), "bar=1"], R::TracestateInvalid),
            // --- member count: 32 kept, 33 discarded; long values are not cut ---
            with_ts("32 members in 4 headers",
                &[&bars(1, 10), &bars(11, 20), &bars(21, 30), &bars(31, 32)], set(&bars(1, 32)), &[]),
            discarded("33 members", &[&bars(1, 10), &bars(11, 20), &bars(21, 30), &bars(31, 33)],
                R::TracestateTooManyMembers),
            with_ts("32 members and a duplicate", &[&bars(1, 32), "bar01=x"], set(&bars(1, 32)),
                &[(R::TracestateDuplicateKey, 1)]),
            with_ts("32 members of 256 characters", &[&big32.join(",")], H::Keep, &[]),
        ]
    }

    fn run(c: &Case) -> Propagated {
        let tp: Vec<&[u8]> = c.tp.iter().map(|s| s.as_bytes()).collect();
        let ts: Vec<&[u8]> = c.ts.iter().map(|s| s.as_bytes()).collect();
        let settings = TraceSettings {
            new_span: c.new_span,
            sampled: c.sampled,
        };
        propagate(&tp, &ts, &settings, RANDOM)
    }

    #[test]
    fn w3c_table() {
        let cases = cases();
        assert!(cases.len() >= 100, "{} cases", cases.len());
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
            let sent = got.traceparent.clone().unwrap_or_else(|| c.tp[0].clone());
            assert_eq!(got.trace_id_hex(), &sent[3..35], "{name}: trace id");
            check_output(&got);
        }
    }

    /// What every output must satisfy, checked with the module's own parsers.
    fn check_output(p: &Propagated) {
        match &p.traceparent {
            Some(tp) => {
                assert_eq!(tp.len(), 55, "{tp}");
                assert!(tp.starts_with("00-"), "{tp}");
                let parsed = parse_traceparent(tp.as_bytes()).unwrap();
                assert_eq!(parsed.flags & !(FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID), 0);
                assert_eq!(parsed.to_header(), *tp);
                assert_eq!(parsed.trace_id, p.trace_id);
            }
            None => assert_eq!(p.tracestate, H::Keep),
        }
        if let H::Set(ts) = &p.tracestate {
            assert!(p.continued);
            let ts = std::str::from_utf8(ts).unwrap();
            let members: Vec<&str> = ts.split(',').collect();
            assert!(members.len() <= MAX_MEMBERS, "{} members", members.len());
            let mut keys = Vec::new();
            for member in &members {
                let (k, v) = member.split_once('=').unwrap();
                assert!(is_valid_key(k), "key {k:?}");
                assert!(is_valid_member_value(v), "value {v:?}");
                keys.push(k);
            }
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), members.len(), "unique keys in {ts}");
        }
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
        for k in [
            "rollout",
            "a",
            "a0_-*/",
            "0a",
            "0a@b",
            "a@b",
            "tenant@system-1/*",
            "a@",
            "a@0b",
            "a@b@c",
            "a@@b",
        ] {
            assert!(is_valid_key(k), "{k}");
        }
        for k in ["", "Rollout", "_a", "a b", "@a", "a=b", "a,b", "é", "a.b", "-a"] {
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
    fn trace_ids() {
        let want: [u8; 16] = core::array::from_fn(|i| if i < 2 { 0x12 } else { 0x34 });
        assert_eq!(
            parse_trace_id(format!("1212{}", "34".repeat(14)).as_bytes()),
            Some(want)
        );
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(
            parse_trace_id(format!("{}1", "0".repeat(31)).as_bytes()),
            Some(one)
        );
        for bad in [
            "0".repeat(32),
            TID.to_uppercase().replace('1', "A"),
            TID[..31].to_string(),
            format!("{TID}0"),
            format!(" {}", &TID[1..]),
            TID.replace('9', "g"),
            String::new(),
        ] {
            assert_eq!(parse_trace_id(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_start_trace_id_begins_only_new_traces() {
        const START: [u8; 16] = [0x42; 16];
        let start_tid = "42".repeat(16);
        let seeded = |tps: &[&[u8]], ts: &[&[u8]], s: &TraceSettings| {
            propagate_seeded(tps, ts, s, RANDOM, Some(START))
        };
        // No traceparent, or an invalid one: the start id, a fresh parent-id,
        // and no random-trace-id flag.
        let s = TraceSettings {
            sampled: true,
            ..TraceSettings::default()
        };
        let p = seeded(&[], &[], &s);
        assert_eq!(p.traceparent, Some(format!("00-{start_tid}-{NEW_PID}-01")));
        assert_eq!((p.trace_id, p.continued), (START, false));
        assert_eq!(p.trace_id_hex(), start_tid);
        let p = seeded(&[b"00-bad"], &[b"a=1"], &TraceSettings::default());
        assert_eq!(p.traceparent, Some(format!("00-{start_tid}-{NEW_PID}-00")));
        assert_eq!(p.tracestate, H::Remove);
        assert_eq!(p.rejects.get(R::TraceparentBadLength), 1);
        // Two traceparents are none.
        let one = tp("00", "01");
        let p = seeded(&[one.as_bytes(), one.as_bytes()], &[], &s);
        assert_eq!(p.trace_id, START);
        // A valid traceparent wins, passed through or with a new span.
        let p = seeded(&[one.as_bytes()], &[b"a=1"], &s);
        assert_eq!((p.traceparent, p.tracestate, p.continued), (None, H::Keep, true));
        let s = TraceSettings { new_span: true, ..s };
        assert_eq!(seeded(&[one.as_bytes()], &[], &s).traceparent, new_span("01"));
        // Without a start id it is `propagate`.
        assert_eq!(
            propagate_seeded(&[], &[], &s, RANDOM, None),
            propagate(&[], &[], &s, RANDOM)
        );
    }

    #[test]
    fn zero_random_is_fixed() {
        let s = TraceSettings::default();
        let p = propagate(&[], &[], &s, [0; 24]);
        assert_eq!(
            p.traceparent.unwrap(),
            format!("00-{}01-{}01-02", "0".repeat(30), "0".repeat(14))
        );
        let s = TraceSettings {
            new_span: true,
            ..TraceSettings::default()
        };
        let p = propagate(&[tp("00", "01").as_bytes()], &[], &s, [0; 24]);
        assert_eq!(
            p.traceparent.unwrap(),
            format!("00-{TID}-{}01-01", "0".repeat(14))
        );
    }

    #[test]
    fn non_utf8_input() {
        let s = TraceSettings {
            new_span: true,
            ..TraceSettings::default()
        };
        let p = propagate(&[b"\xff\xfe-\x80"], &[b"foo=1"], &s, RANDOM);
        assert_eq!(p.traceparent, new_trace("02"));
        assert_eq!(p.rejects.get(R::TraceparentBadVersion), 1);
        let mut bad = tp("00", "01").into_bytes();
        bad[10] = 0xc3;
        let p = propagate(&[&bad], &[], &s, RANDOM);
        assert_eq!(p.rejects.get(R::TraceparentBadChar), 1);
        let v00 = tp("00", "01");
        let p = propagate(&[v00.as_bytes()], &[b"c=1,a=\xff\xfe"], &s, RANDOM);
        assert_eq!(p.tracestate, H::Remove);
        assert_eq!(p.rejects.get(R::TracestateInvalid), 1);
    }

    #[test]
    fn large_inputs() {
        let s = TraceSettings {
            new_span: true,
            ..TraceSettings::default()
        };
        let v00 = tp("00", "01");
        // 8 KiB traceparent values.
        let long00 = format!("{v00}{}", "-x".repeat(4096));
        let p = propagate(&[long00.as_bytes()], &[], &s, RANDOM);
        assert_eq!(p.rejects.get(R::TraceparentBadLength), 1);
        let long_cc = format!("{}{}", tp("cc", "01"), "-x".repeat(4096));
        let p = propagate(&[long_cc.as_bytes()], &[], &s, RANDOM);
        assert_eq!(p.traceparent, new_span("01"));
        // 100 members, 8 KiB of commas, a 8 KiB member.
        let hundred: Vec<String> = (0..100).map(|i| format!("k{i}=v{i}")).collect();
        let p = propagate(&[v00.as_bytes()], &[hundred.join(",").as_bytes()], &s, RANDOM);
        assert_eq!(p.tracestate, H::Remove);
        assert_eq!(p.rejects.get(R::TracestateTooManyMembers), 1);
        let commas = ",".repeat(8192);
        let p = propagate(&[v00.as_bytes()], &[commas.as_bytes()], &s, RANDOM);
        assert_eq!(p.tracestate, H::Remove);
        assert!(p.rejects.is_empty());
        let huge = format!("foo={}", "v".repeat(8192));
        let p = propagate(&[v00.as_bytes()], &[huge.as_bytes()], &s, RANDOM);
        assert_eq!(p.tracestate, H::Remove);
        assert_eq!(p.rejects.get(R::TracestateInvalid), 1);
        // The same 32 members repeated in 100 headers: duplicates, not too many.
        let ones: Vec<String> = (0..32).map(|i| format!("k{i}=1")).collect();
        let ones = ones.join(" , ");
        let many: Vec<&[u8]> = vec![ones.as_bytes(); 100];
        let p = propagate(&[v00.as_bytes()], &many, &s, RANDOM);
        assert_eq!(p.rejects.get(R::TracestateDuplicateKey), 99 * 32);
        assert_eq!(p.tracestate, set(&ones.replace(" , ", ",")));
        // Many traceparent values.
        let many: Vec<&[u8]> = vec![v00.as_bytes(); 100];
        let p = propagate(&many, &[], &s, RANDOM);
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
            6 => "[a-z0-9][a-z0-9_*/@-]{0,8}=[ -~&&[^,=]]{0,11}[!-~&&[^,=]]",
            1 => "[a-z]{1,2}=[a-z]{100,140}",
            1 => "[ \t]{0,2}",
            1 => "[ -~]{0,10}",
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
            new_span in any::<bool>(),
            sampled in any::<bool>(),
            random in any::<[u8; 24]>(),
        ) {
            let tps: Vec<&[u8]> = traceparents.iter().map(|v| v.as_slice()).collect();
            let tss: Vec<&[u8]> = tracestates.iter().map(|v| v.as_slice()).collect();
            let settings = TraceSettings { new_span, sampled };
            let p = propagate(&tps, &tss, &settings, random);
            check_output(&p);

            let input = match tps.as_slice() {
                [one] => parse_traceparent(one).ok(),
                _ => None,
            };
            prop_assert_eq!(p.continued, input.is_some());
            let sent = match &p.traceparent {
                Some(tp) => tp.clone().into_bytes(),
                None => tps[0].to_vec(),
            };
            let out = parse_traceparent(&sent).unwrap();
            let fresh_parent = non_zero(random.last_chunk::<8>().copied().unwrap());
            match input {
                Some(input) => {
                    prop_assert_eq!(out.trace_id, input.trace_id);
                    prop_assert_eq!(out.flags & 3, input.flags & 3);
                    prop_assert_eq!(out.parent_id, if new_span { fresh_parent } else { input.parent_id });
                }
                None => {
                    prop_assert_eq!(out.trace_id, non_zero(random.first_chunk::<16>().copied().unwrap()));
                    prop_assert_eq!(out.parent_id, fresh_parent);
                    prop_assert_eq!(out.flags, if sampled { 3 } else { 2 });
                    prop_assert!(!matches!(p.tracestate, H::Set(_)));
                }
            }
            // Propagating the output again (as the next hop would) keeps it.
            if let (Some(tp), H::Set(ts)) = (&p.traceparent, &p.tracestate) {
                let again = propagate(&[tp.as_bytes()], &[ts], &TraceSettings { new_span: true, ..settings }, random);
                prop_assert_eq!(again.tracestate, H::Keep);
                prop_assert!(again.rejects.is_empty());
            }
        }
    }
}
