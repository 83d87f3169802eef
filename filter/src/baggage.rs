//! W3C Baggage (`baggage` request header, "Baggage HTTP Header Format"): read
//! a member, set or remove members by key, within the spec's limits.
//!
//! Pure: works on raw header bytes, never touches proxy-wasm. One writer for
//! every member the filter owns ([`apply`] takes all edits at once), so the
//! rollout decision and other members the filter owns end up in one header.
//!
//! Choices where the spec leaves room:
//! - members the filter does not own are kept byte for byte, in order, even
//!   malformed ones (their owner may read them); only the optional whitespace
//!   around commas and the split into several header values are not kept;
//! - a set member replaces the first member of its key in place and every
//!   later one is removed; with none, it goes to the end;
//! - a set member that would take the header past 64 members or 8,192 bytes
//!   is not added (reported in [`Applied::full`]); the rest passes unchanged,
//!   even when it came in over the limits.

use std::borrow::Cow;

use crate::headers::{trim_ows, HeaderChange, ListMembers};

/// List-members a propagator must keep (spec: Limits, condition 1).
pub const MAX_MEMBERS: usize = 64;
/// Bytes of the combined `baggage` value a propagator must keep (condition 2).
pub const MAX_BYTES: usize = 8192;

/// Kept as is in an encoded value: `baggage-octet` but `%` (RFC 3986 percent-encoding
/// of the rest, hand-written: the `percent-encoding` crate cost the module its size budget).
fn is_plain(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'"' | b',' | b';' | b'\\' | b'%')
}

/// A baggage key: an RFC 7230 token.
pub fn is_valid_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(is_tchar)
}

/// `value` percent-encoded for a baggage value (borrowed when nothing needs encoding).
pub fn encode_value(value: &str) -> Cow<'_, str> {
    if value.bytes().all(is_plain) {
        return Cow::Borrowed(value);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len().saturating_mul(3));
    for b in value.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
            out.push(char::from(
                HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0'),
            ));
        }
    }
    Cow::Owned(out)
}

/// A raw value percent-decoded; sequences that are not UTF-8 become U+FFFD.
pub fn decode_value(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'%') {
        return String::from_utf8_lossy(raw);
    }
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0usize;
    while let Some(&b) = raw.get(i) {
        let pair = (raw.get(i.saturating_add(1)), raw.get(i.saturating_add(2)));
        match (b, pair) {
            (b'%', (Some(&hi), Some(&lo))) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push((hex(hi).unwrap_or(0) << 4) | hex(lo).unwrap_or(0));
                i = i.saturating_add(3);
            }
            // A `%` not followed by two hex digits stays as it is.
            _ => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The member `key=value` with `value` encoded. `key` should satisfy [`is_valid_key`].
pub fn member(key: &str, value: &str) -> String {
    format!("{key}={}", encode_value(value))
}

/// One list-member as it came, without the whitespace around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    text: &'a [u8],
}

impl<'a> Member<'a> {
    /// The whole member: `key=value` and any `;properties`.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// The key: what precedes the first `=` (or `;`), without whitespace.
    pub fn key(&self) -> &'a [u8] {
        let end = self
            .text
            .iter()
            .position(|b| *b == b'=' || *b == b';')
            .unwrap_or(self.text.len());
        trim_ows(self.text.get(..end).unwrap_or_default())
    }

    /// The value as sent (still percent-encoded), without whitespace or properties.
    /// `None` when the member has no `=` before its properties.
    pub fn raw_value(&self) -> Option<&'a [u8]> {
        let eq = self.text.iter().position(|b| *b == b'=' || *b == b';')?;
        if self.text.get(eq) != Some(&b'=') {
            return None;
        }
        let rest = self.text.get(eq.saturating_add(1)..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == b';').unwrap_or(rest.len());
        Some(trim_ows(rest.get(..end).unwrap_or_default()))
    }

    /// The decoded value (see [`decode_value`]).
    pub fn value(&self) -> Option<Cow<'a, str>> {
        self.raw_value().map(decode_value)
    }
}

/// Every non-empty list-member of all `baggage` header values, in order
/// (several values read as one joined with commas).
pub fn members<'a>(values: &'a [&'a [u8]]) -> impl Iterator<Item = Member<'a>> + 'a {
    ListMembers::new(values).map(|text| Member { text })
}

/// The first member whose key is `key`.
pub fn get<'a>(values: &'a [&'a [u8]], key: &str) -> Option<Member<'a>> {
    members(values).find(|m| m.key() == key.as_bytes())
}

/// A change to the members of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Every member of `key` is replaced by `member` (a whole `key=value`, as
    /// [`member`] builds it), which is added if there was none.
    Set { key: &'a str, member: &'a str },
    /// Every member of `key` is removed.
    Remove { key: &'a str },
}

impl Edit<'_> {
    fn key(&self) -> &[u8] {
        match self {
            Edit::Set { key, .. } | Edit::Remove { key } => key.as_bytes(),
        }
    }
}

/// The result of [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub header: HeaderChange,
    /// Incoming members of an edited key (replaced or removed).
    pub removed: usize,
    /// Bit `i` set: the `Set` edit at index `i` was not added, it would have
    /// broken the 64-member / 8,192-byte limits.
    pub full: u64,
}

impl Applied {
    /// How many `Set` edits were not added.
    pub fn not_added(&self) -> u32 {
        self.full.count_ones()
    }
}

/// Applies `edits` (at most 64; later ones are ignored) to the incoming
/// `baggage` values. The header is kept untouched unless an edit changes it.
pub fn apply(values: &[&[u8]], edits: &[Edit<'_>]) -> Applied {
    let edits = edits.get(..edits.len().min(64)).unwrap_or_default();
    let edit_of = |m: &Member<'_>| {
        let key = m.key();
        edits.iter().position(|e| e.key() == key)
    };

    // Size of what is kept, then which sets fit.
    let (mut count, mut bytes, mut removed) = (0usize, 0usize, 0usize);
    for m in members(values) {
        if edit_of(&m).is_some() {
            removed = removed.saturating_add(1);
        } else {
            count = count.saturating_add(1);
            bytes = bytes.saturating_add(m.text.len()).saturating_add(1);
        }
    }
    let mut full = 0u64;
    let mut added = 0u64;
    for (i, e) in edits.iter().enumerate() {
        if let Edit::Set { member, .. } = e {
            let grown = bytes.saturating_add(member.len()).saturating_add(1);
            // `bytes` counts one comma per member; the joined value has one fewer.
            if count < MAX_MEMBERS && grown.saturating_sub(1) <= MAX_BYTES {
                count = count.saturating_add(1);
                bytes = grown;
                added |= 1 << i;
            } else {
                full |= 1 << i;
            }
        }
    }
    if removed == 0 && added == 0 {
        return Applied {
            header: HeaderChange::Keep,
            removed,
            full,
        };
    }

    let mut out: Vec<u8> = Vec::with_capacity(bytes);
    let mut push = |text: &[u8]| {
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(text);
    };
    let mut placed = 0u64;
    for m in members(values) {
        match edit_of(&m) {
            None => push(m.text),
            Some(i) => {
                let bit = 1u64 << i;
                if let Some(Edit::Set { member, .. }) = edits.get(i) {
                    if added & bit != 0 && placed & bit == 0 {
                        push(member.as_bytes());
                        placed |= bit;
                    }
                }
            }
        }
    }
    for (i, e) in edits.iter().enumerate() {
        let bit = 1u64 << i;
        if let Edit::Set { member, .. } = e {
            if added & bit != 0 && placed & bit == 0 {
                push(member.as_bytes());
            }
        }
    }
    let header = match values {
        [one] if *one == out.as_slice() => HeaderChange::Keep,
        [] if out.is_empty() => HeaderChange::Keep,
        _ if out.is_empty() => HeaderChange::Remove,
        _ => HeaderChange::Set(out),
    };
    Applied {
        header,
        removed,
        full,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &str = "rollout.checkout";
    const OURS: &str = "rollout.checkout=canary";

    fn set(values: &[&str]) -> Applied {
        let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
        apply(
            &v,
            &[Edit::Set {
                key: KEY,
                member: OURS,
            }],
        )
    }

    fn out(a: &Applied) -> Option<String> {
        match &a.header {
            HeaderChange::Set(v) => Some(String::from_utf8(v.clone()).unwrap()),
            _ => None,
        }
    }

    /// Cases from the spec's examples and the w3c/baggage reference tests
    /// (test/test_baggage.py): parsing, OWS, properties, `=` in values, encoding.
    #[test]
    fn w3c_reading() {
        // (key, decoded value) of the first member of `text`.
        let one = |text: &str| -> (Vec<u8>, Option<String>) {
            let v: [&[u8]; 1] = [text.as_bytes()];
            let m = members(&v).next().unwrap();
            (m.key().to_vec(), m.value().map(Cow::into_owned))
        };
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("SomeKey=SomeValue", "SomeKey", Some("SomeValue")),
            ("SomeKey=SomeValue=equals", "SomeKey", Some("SomeValue=equals")),
            ("SomeKey \t = \t SomeValue \t ", "SomeKey", Some("SomeValue")),
            ("SomeKey=SomeValue;SomeProp", "SomeKey", Some("SomeValue")),
            (
                "SomeKey \t = \t SomeValue \t ; \t SomeProp",
                "SomeKey",
                Some("SomeValue"),
            ),
            (
                "SomeKey=SomeValue;SomeProp;SecondProp=PropValue",
                "SomeKey",
                Some("SomeValue"),
            ),
            (
                "SomeKey=SomeValue;SomePropKey=SomePropValue",
                "SomeKey",
                Some("SomeValue"),
            ),
            (
                "SomeKey=SomeValue;ValueProp%20%09%20%3D%20%09%20PropVal",
                "SomeKey",
                Some("SomeValue"),
            ),
            ("key1=value1;property1;property2", "key1", Some("value1")),
            ("key3=value3; propertyKey=propertyValue", "key3", Some("value3")),
            ("userId=Am%C3%A9lie", "userId", Some("Amélie")),
            ("serverNode=DF%2028", "serverNode", Some("DF 28")),
            ("k=", "k", Some("")),
            ("k;p=1", "k", None),
            ("novalue", "novalue", None),
            // Not UTF-8 once decoded: the replacement character.
            ("k=%FF%C3", "k", Some("\u{fffd}\u{fffd}")),
        ];
        for (text, key, value) in cases {
            let (k, v) = one(text);
            assert_eq!(k, key.as_bytes(), "{text}");
            assert_eq!(v.as_deref(), *value, "{text}");
        }
        // The reference test's percent-encoded value round-trips.
        let value = "\t \"';=asdf!@#$%^&*()";
        let encoded = "%09%20%22'%3B=asdf!@#$%25^&*()";
        assert_eq!(encode_value(value), encoded);
        assert_eq!(one(&format!("SomeKey={encoded}")).1.unwrap(), value);
        // Its reference encoder (Python quote) encodes more; both decode alike.
        assert_eq!(
            decode_value(b"%09%20%22%27%3B%3Dasdf%21%40%23%24%25%5E%26%2A%28%29"),
            value
        );
    }

    #[test]
    fn w3c_multiple_members_and_headers() {
        let values: [&[u8]; 2] = [b"userId =   alice", b"serverNode = DF%2028, isProduction = false"];
        let got: Vec<(Vec<u8>, String)> = members(&values)
            .map(|m| (m.key().to_vec(), m.value().unwrap().into_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"userId".to_vec(), "alice".to_string()),
                (b"serverNode".to_vec(), "DF 28".to_string()),
                (b"isProduction".to_vec(), "false".to_string()),
            ]
        );
        let v: [&[u8]; 1] = [b"SomeKey \t = \t SomeValue \t ; \t SomeProp \t , \t SomeKey2 \t = \t SomeValue2 \t ; \t ValueProp \t = \t PropVal"];
        let texts: Vec<&[u8]> = members(&v).map(|m| m.text()).collect();
        assert_eq!(
            texts,
            vec![
                &b"SomeKey \t = \t SomeValue \t ; \t SomeProp"[..],
                &b"SomeKey2 \t = \t SomeValue2 \t ; \t ValueProp \t = \t PropVal"[..]
            ]
        );
        assert_eq!(get(&v, "SomeKey2").unwrap().value().unwrap(), "SomeValue2");
        assert_eq!(get(&v, "somekey2"), None, "keys are case-sensitive");
        let dup: [&[u8]; 1] = [b"a=1,a=2"];
        assert_eq!(get(&dup, "a").unwrap().value().unwrap(), "1", "the first wins");
    }

    #[test]
    fn encoding() {
        assert!(matches!(encode_value("canary"), Cow::Borrowed("canary")));
        assert_eq!(encode_value("DF 28"), "DF%2028");
        assert_eq!(encode_value("Amélie"), "Am%C3%A9lie");
        assert_eq!(encode_value("100%"), "100%25");
        assert_eq!(encode_value("a,b;c\\d\"e\x7f"), "a%2Cb%3Bc%5Cd%22e%7F");
        assert_eq!(encode_value("\t \u{0}"), "%09%20%00");
        // Decoding: both hex cases; a stray `%` is kept, as RFC 3986 decoders do.
        assert_eq!(decode_value(b"%c3%A9%2"), "é%2");
        assert_eq!(decode_value(b"100%"), "100%");
        assert_eq!(decode_value(b"%zz%41"), "%zzA");
        for v in ["", "a", "Amélie", "%%", "\u{10ffff} ;,\\\"", "%41"] {
            assert_eq!(decode_value(encode_value(v).as_bytes()), v, "{v:?}");
        }
        // Every baggage-octet is left alone.
        let octets: String = (0x21u8..=0x7e)
            .filter(|b| !matches!(b, b'"' | b',' | b';' | b'\\' | b'%'))
            .map(char::from)
            .collect();
        assert_eq!(encode_value(&octets), octets.as_str());
        assert_eq!(member("rollout.r", "a b"), "rollout.r=a%20b");
        for k in ["rollout.checkout-2026-11", "a", "!#$%&'*+-.^_`|~", "A9"] {
            assert!(is_valid_key(k), "{k}");
        }
        for k in ["", "a b", "a=b", "a,b", "a;b", "é", "a\"", "(a)"] {
            assert!(!is_valid_key(k), "{k}");
        }
    }

    #[test]
    fn set_adds_replaces_and_keeps_the_rest() {
        // (incoming values, outgoing value or None for untouched, members removed)
        let cases: &[(&[&str], Option<&str>, usize)] = &[
            (&[], Some(OURS), 0),
            (&[""], Some(OURS), 0),
            (&["userId=alice"], Some("userId=alice,rollout.checkout=canary"), 0),
            // Members kept byte for byte, OWS around commas dropped, headers combined.
            (
                &["a = 1 ;p, b=x%20y", " c=3"],
                Some("a = 1 ;p,b=x%20y,c=3,rollout.checkout=canary"),
                0,
            ),
            // A client-sent member of our key is replaced in place; more copies go.
            (
                &["a=1,rollout.checkout=stable,b=2"],
                Some("a=1,rollout.checkout=canary,b=2"),
                1,
            ),
            (
                &["rollout.checkout = forged;p", "a=1", "rollout.checkout=x"],
                Some("rollout.checkout=canary,a=1"),
                2,
            ),
            (&["rollout.checkout"], Some(OURS), 1),
            // Already exactly ours: untouched.
            (&[OURS], None, 1),
            (&["a=1,rollout.checkout=canary"], None, 1),
            // Another rollout's member and similar keys are not ours.
            (
                &["rollout.checkout-2=v,Rollout.checkout=v,rollout.checkoutx=v"],
                Some("rollout.checkout-2=v,Rollout.checkout=v,rollout.checkoutx=v,rollout.checkout=canary"),
                0,
            ),
            // Malformed members of others pass (their owner decides).
            (&["=,;x,é=1"], Some("=,;x,é=1,rollout.checkout=canary"), 0),
        ];
        for (values, want, removed) in cases {
            let a = set(values);
            assert_eq!(out(&a).as_deref(), *want, "{values:?}");
            if want.is_none() {
                assert_eq!(a.header, HeaderChange::Keep, "{values:?}");
            }
            assert_eq!(a.removed, *removed, "{values:?}");
            assert_eq!(a.full, 0, "{values:?}");
        }
    }

    #[test]
    fn remove() {
        let v: [&[u8]; 2] = [b"lane=canary, a=1", b"lane=x;p"];
        let a = apply(&v, &[Edit::Remove { key: "lane" }]);
        assert_eq!(a.header, HeaderChange::Set(b"a=1".to_vec()));
        assert_eq!(a.removed, 2);
        let only: [&[u8]; 1] = [b"lane=canary"];
        assert_eq!(
            apply(&only, &[Edit::Remove { key: "lane" }]).header,
            HeaderChange::Remove
        );
        let other: [&[u8]; 1] = [b"a=1 ,  b=2"];
        let a = apply(&other, &[Edit::Remove { key: "lane" }]);
        assert_eq!(
            (a.header, a.removed),
            (HeaderChange::Keep, 0),
            "untouched, OWS and all"
        );
        assert_eq!(apply(&[], &[]).header, HeaderChange::Keep);
    }

    #[test]
    fn several_edits_in_one_pass() {
        let v: [&[u8]; 1] = [b"lane=forged,a=1,rollout.b=old"];
        let a = apply(
            &v,
            &[
                Edit::Set {
                    key: "rollout.a",
                    member: "rollout.a=v1",
                },
                Edit::Remove { key: "lane" },
                Edit::Set {
                    key: "rollout.b",
                    member: "rollout.b=v2",
                },
            ],
        );
        assert_eq!(
            a.header,
            HeaderChange::Set(b"a=1,rollout.b=v2,rollout.a=v1".to_vec())
        );
        assert_eq!((a.removed, a.full), (2, 0));
    }

    /// The w3c/baggage LimitsTest cases, and the limits applied to our member.
    #[test]
    fn limits() {
        // 63 others: ours is the 64th.
        let members63: Vec<String> = (0..63).map(|i| format!("key{i}=value")).collect();
        let joined = members63.join(",");
        let a = set(&[&joined]);
        assert_eq!(out(&a).unwrap(), format!("{joined},{OURS}"));
        assert_eq!(out(&a).unwrap().split(',').count(), 64);
        // 64 others: ours would be the 65th, so it is not added; the rest passes untouched.
        let members64 = format!("{joined},key63=value");
        let a = set(&[&members64]);
        assert_eq!(
            (a.header.clone(), a.full, a.not_added()),
            (HeaderChange::Keep, 1, 1)
        );
        // ... but a client-sent member of our key is still removed.
        let with_ours = format!("{members64},rollout.checkout=forged");
        let a = set(&[&with_ours]);
        assert_eq!(a.header, HeaderChange::Set(members64.clone().into_bytes()));
        assert_eq!((a.removed, a.full), (1, 1));
        // Exactly 8,192 bytes with ours fits; one more byte does not.
        let fill = |n: usize| format!("a={}", "0123456789".repeat(819).get(..n - 2).unwrap());
        let room = MAX_BYTES - OURS.len() - 1;
        let a = set(&[&fill(room)]);
        assert_eq!(out(&a).unwrap().len(), MAX_BYTES);
        let a = set(&[&fill(room + 1)]);
        assert_eq!((a.header, a.full), (HeaderChange::Keep, 1));
        // The reference "long entry": one member of exactly 8,192 bytes is kept as is.
        let long = format!("a={}", "0123456789".repeat(819));
        assert_eq!(long.len(), 8192);
        let v: [&[u8]; 1] = [long.as_bytes()];
        assert_eq!(members(&v).count(), 1);
        // Limits apply to all headers combined.
        let half = fill(4100);
        let a = set(&[&half, &half.replace("a=", "b="), "c=1"]);
        assert_eq!(a.full, 1);
    }

    fn baggage_strategy() -> impl Strategy<Value = Vec<u8>> {
        let member = prop_oneof![
            "[a-z.]{1,6} ?= ?[!-~&&[^,;]]{0,10}(;[a-z]{1,3}(=[a-z]{1,3})?)?",
            "rollout\\.checkout ?=[a-z]{0,6}",
            "lane=[a-z]{1,6}",
            "[ \t]{0,2}",
            "[ -~]{0,12}",
        ];
        prop_oneof![
            4 => proptest::collection::vec(member, 0..80).prop_map(|ms| ms.join(",").into_bytes()),
            1 => proptest::collection::vec(any::<u8>(), 0..200),
            1 => (1usize..9000).prop_map(|n| format!("big={}", "x".repeat(n)).into_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn writer_invariants(
            values in proptest::collection::vec(baggage_strategy(), 0..3),
            value in ".{0,20}",
            strip in any::<bool>(),
        ) {
            let vals: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            let ours = member(KEY, &value);
            let mut edits = vec![Edit::Set { key: KEY, member: &ours }];
            if strip {
                edits.push(Edit::Remove { key: "lane" });
            }
            let a = apply(&vals, &edits);
            let result: Vec<u8> = match &a.header {
                HeaderChange::Keep => vals.join(&b","[..]),
                HeaderChange::Remove => Vec::new(),
                HeaderChange::Set(v) => v.clone(),
            };
            let rv: [&[u8]; 1] = [&result];
            let got: Vec<Member> = members(&rv).collect();
            let others: Vec<&[u8]> = members(&vals)
                .filter(|m| m.key() != KEY.as_bytes() && !(strip && m.key() == b"lane"))
                .map(|m| m.text())
                .collect();
            let kept: Vec<&[u8]> = got.iter()
                .filter(|m| m.key() != KEY.as_bytes())
                .map(|m| m.text())
                .collect();
            prop_assert_eq!(&kept, &others, "others kept byte for byte, in order");
            let ours_out: Vec<&Member> = got.iter().filter(|m| m.key() == KEY.as_bytes()).collect();
            if a.full == 0 {
                prop_assert_eq!(ours_out.len(), 1);
                prop_assert_eq!(ours_out[0].value().unwrap(), value.as_str());
                prop_assert!(got.len() <= MAX_MEMBERS && result.len() <= MAX_BYTES);
            } else {
                prop_assert!(ours_out.is_empty());
                prop_assert!(others.len() >= MAX_MEMBERS
                    || others.iter().map(|t| t.len() + 1).sum::<usize>() + ours.len() > MAX_BYTES);
            }
            // Applying again changes nothing.
            if a.full == 0 {
                let again = apply(&rv, &edits);
                prop_assert_eq!(again.header, HeaderChange::Keep);
            }
        }
    }
}
