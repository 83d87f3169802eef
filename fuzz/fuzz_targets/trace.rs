//! `trace::propagate`, `trace::parse_traceparent` and the baggage writer
//! (`baggage::apply`, `get`, `member`) on arbitrary header values.
//!
//! Input: byte 0 = flags (bit 0 newSpan, bit 1 sampled, bit 2 also remove the
//! baggage key `lane`), bytes 1..25 = the host randomness, the rest
//! `\n`-separated lines whose first byte tags them: `p` a traceparent value,
//! `s` a tracestate value, `b` a baggage value, `k` the baggage key (default
//! `rollout.checkout-2026-11`; an invalid one falls back to it), `v` the
//! baggage member value (default `canary`). Short inputs get zero randomness
//! and no lines.
//!
//! Invariants: traceparent is left alone exactly when the single incoming
//! value is already the version-00 value the filter would send; otherwise it is
//! a 55-character version-00 value that parses back, with only the
//! sampled/random flags; the trace-id is kept exactly when the single
//! incoming traceparent is valid. tracestate is untouched with traceparent;
//! dropped without a valid incoming traceparent; otherwise kept exactly when
//! every member follows the current grammar and there are at most 32 keys
//! (first of each key, in order), and sending it on changes nothing.
//! Baggage: every member of another key is kept byte for byte, in order; ours
//! appears once with the decoded value, unless adding it would break the
//! 64-member / 8,192-byte limits; applying again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::baggage::{self, Edit};
use rollout_filter::headers::HeaderChange;
use rollout_filter::trace::{
    parse_traceparent, propagate, TraceReject, TraceSettings, FLAG_RANDOM_TRACE_ID, FLAG_SAMPLED,
    MAX_MEMBERS,
};

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let mut random = [0u8; 24];
    if let Some(r) = data.get(1..25) {
        random.copy_from_slice(r);
    }
    let rest = data.get(25..).unwrap_or_default();
    let mut traceparents: Vec<&[u8]> = Vec::new();
    let mut tracestates: Vec<&[u8]> = Vec::new();
    let mut bags: Vec<&[u8]> = Vec::new();
    let mut key = "rollout.checkout-2026-11".to_string();
    let mut value = "canary".to_string();
    if !rest.is_empty() {
        for line in rest.split(|b| *b == b'\n') {
            match line.split_first() {
                Some((b'p', v)) => traceparents.push(v),
                Some((b's', v)) => tracestates.push(v),
                Some((b'b', v)) => bags.push(v),
                Some((b'k', v)) => {
                    let k = String::from_utf8_lossy(v);
                    if baggage::is_valid_key(&k) && k != "lane" {
                        key = k.into_owned();
                    }
                }
                Some((b'v', v)) => value = String::from_utf8_lossy(v).into_owned(),
                _ => {}
            }
        }
    }
    let settings = TraceSettings {
        new_span: flags & 1 != 0,
        sampled: flags & 2 != 0,
    };
    for tp in &traceparents {
        check_parse(tp);
    }
    check_trace(&traceparents, &tracestates, &settings, random);
    check_baggage(&bags, &key, &value, flags & 4 != 0);
});

fn check_trace(
    traceparents: &[&[u8]],
    tracestates: &[&[u8]],
    settings: &TraceSettings,
    random: [u8; 24],
) {
    let out = propagate(traceparents, tracestates, settings, random);
    let incoming = match traceparents {
        [one] => parse_traceparent(one).ok(),
        _ => None,
    };
    assert_eq!(out.continued, incoming.is_some());
    assert_eq!(
        out.rejects.get(TraceReject::TraceparentDuplicate) > 0,
        traceparents.len() > 1
    );
    let sent: Vec<u8> = match &out.traceparent {
        Some(tp) => {
            assert_eq!(tp.len(), 55, "{tp:?}");
            assert!(tp.starts_with("00-"));
            assert_ne!(traceparents, &[tp.as_bytes()][..], "an unchanged value is left alone");
            tp.clone().into_bytes()
        }
        None => {
            assert_eq!(out.tracestate, HeaderChange::Keep);
            let [one] = traceparents else {
                panic!("left alone without a single traceparent")
            };
            assert!(one.starts_with(b"00-") && one.len() == 55);
            one.to_vec()
        }
    };
    let parsed = parse_traceparent(&sent)
        .unwrap_or_else(|r| panic!("sent {sent:?} does not parse: {r:?}"));
    assert_eq!(parsed.to_header().as_bytes(), sent.as_slice());
    assert_eq!(parsed.flags & !(FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID), 0);
    assert_eq!(parsed.trace_id, out.trace_id);
    let fresh_trace = non_zero(&random[..16]);
    let fresh_parent = non_zero(&random[16..]);
    match incoming {
        Some(tp) => {
            assert_eq!(parsed.trace_id, tp.trace_id);
            let want_parent = if settings.new_span {
                fresh_parent
            } else {
                tp.parent_id.to_vec()
            };
            assert_eq!(parsed.parent_id.to_vec(), want_parent);
            assert_eq!(parsed.flags, tp.flags & 3);
        }
        None => {
            assert_eq!(parsed.trace_id.to_vec(), fresh_trace);
            assert_eq!(parsed.parent_id.to_vec(), fresh_parent);
            let sampled = if settings.sampled { FLAG_SAMPLED } else { 0 };
            assert_eq!(parsed.flags, FLAG_RANDOM_TRACE_ID | sampled);
        }
    }

    if out.traceparent.is_none() {
        return;
    }
    let members: Vec<&[u8]> = tracestates
        .iter()
        .flat_map(|v| v.split(|b| *b == b','))
        .map(trim_ows)
        .filter(|m| !m.is_empty())
        .collect();
    if incoming.is_none() {
        let want = if tracestates.is_empty() {
            HeaderChange::Keep
        } else {
            HeaderChange::Remove
        };
        assert_eq!(out.tracestate, want);
        assert_eq!(
            out.rejects.get(TraceReject::TracestateIgnored) > 0,
            !members.is_empty()
        );
        return;
    }
    // The model: every member valid, first of each key, at most 32 keys.
    let all_valid = members.iter().all(|m| model_member(m));
    let mut firsts: Vec<&[u8]> = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    for m in &members {
        let k = m.split(|b| *b == b'=').next().unwrap_or_default();
        if !keys.contains(&k) {
            keys.push(k);
            firsts.push(m);
        }
    }
    let kept = all_valid && !firsts.is_empty() && firsts.len() <= MAX_MEMBERS;
    let joined = firsts.join(&b","[..]);
    match &out.tracestate {
        HeaderChange::Keep => {
            assert!(tracestates.is_empty() || (kept && tracestates == [joined.as_slice()]));
        }
        HeaderChange::Set(v) => {
            assert!(kept, "kept an invalid tracestate {v:?}");
            assert_eq!(v, &joined);
            // The next hop with a new span sends it on unchanged.
            let tp = out.traceparent.as_deref().unwrap_or_default();
            let next = TraceSettings {
                new_span: true,
                sampled: false,
            };
            let again = propagate(&[tp.as_bytes()], &[v], &next, [0x5a; 24]);
            assert_eq!(again.tracestate, HeaderChange::Keep);
            assert!(again.rejects.is_empty(), "{:?}", again.rejects);
        }
        HeaderChange::Remove => {
            assert!(!kept);
            let invalid = out.rejects.get(TraceReject::TracestateInvalid) > 0;
            let too_many = out.rejects.get(TraceReject::TracestateTooManyMembers) > 0;
            // Reading stops at the first problem: a bad member, or a 33rd key.
            assert!(!invalid || !all_valid);
            assert!(all_valid || invalid || too_many);
            assert!(invalid || too_many || firsts.is_empty());
        }
    }
}

fn check_baggage(values: &[&[u8]], key: &str, value: &str, strip_lane: bool) {
    let ours = baggage::member(key, value);
    let mut edits = vec![Edit::Set { key, member: &ours }];
    if strip_lane {
        edits.push(Edit::Remove { key: "lane" });
    }
    let is_edited = |k: &[u8]| k == key.as_bytes() || (strip_lane && k == b"lane");
    let a = baggage::apply(values, &edits);
    let result: Vec<u8> = match &a.header {
        HeaderChange::Keep => values.join(&b","[..]),
        HeaderChange::Remove => Vec::new(),
        HeaderChange::Set(v) => v.clone(),
    };
    let rv: [&[u8]; 1] = [&result];
    let others: Vec<&[u8]> = baggage::members(values)
        .filter(|m| !is_edited(m.key()))
        .map(|m| m.text())
        .collect();
    let got: Vec<baggage::Member> = baggage::members(&rv).collect();
    let kept: Vec<&[u8]> = got
        .iter()
        .filter(|m| m.key() != key.as_bytes())
        .map(|m| m.text())
        .collect();
    assert_eq!(kept, others, "others kept byte for byte, in order");
    let removed = baggage::members(values)
        .filter(|m| is_edited(m.key()))
        .count();
    assert_eq!(a.removed, removed);
    let ours_out: Vec<&baggage::Member> =
        got.iter().filter(|m| m.key() == key.as_bytes()).collect();
    let others_len: usize = others.iter().map(|t| t.len() + 1).sum();
    let fits = others.len() < baggage::MAX_MEMBERS && others_len + ours.len() <= baggage::MAX_BYTES;
    assert_eq!(a.full == 0, fits);
    if fits {
        assert_eq!(ours_out.len(), 1);
        assert_eq!(ours_out[0].text(), ours.as_bytes());
        assert_eq!(ours_out[0].value().as_deref(), Some(value));
        let found = baggage::get(&rv, key).expect("ours is found");
        assert_eq!(found.value().as_deref(), Some(value));
        assert!(got.len() <= baggage::MAX_MEMBERS && result.len() <= baggage::MAX_BYTES);
        let again = baggage::apply(&rv, &edits);
        assert_eq!(again.header, HeaderChange::Keep);
    } else {
        assert!(ours_out.is_empty());
    }
}

/// The tracestate member grammar, written out independently.
fn model_member(m: &[u8]) -> bool {
    let Some(eq) = m.iter().position(|b| *b == b'=') else {
        return false;
    };
    let (k, v) = (&m[..eq], &m[eq + 1..]);
    let key_ok = (1..=256).contains(&k.len())
        && (k[0].is_ascii_lowercase() || k[0].is_ascii_digit())
        && k.iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(b));
    let value_ok = (1..=256).contains(&v.len())
        && v.iter().all(|b| (0x20..=0x7e).contains(b) && *b != b',' && *b != b'=')
        && v.last() != Some(&b' ');
    key_ok && value_ok
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// A valid traceparent is the version-00 header of its first 55 characters.
fn check_parse(v: &[u8]) {
    let Ok(tp) = parse_traceparent(v) else { return };
    assert!(v.len() >= 55);
    let mut want = b"00".to_vec();
    want.extend_from_slice(&v[2..55]);
    assert_eq!(tp.to_header().as_bytes(), want.as_slice());
    assert!(v.len() == 55 || (&v[..2] != b"00" && v[55] == b'-'));
    assert!(tp.trace_id.iter().any(|b| *b != 0) && tp.parent_id.iter().any(|b| *b != 0));
}

fn non_zero(id: &[u8]) -> Vec<u8> {
    let mut id = id.to_vec();
    if id.iter().all(|b| *b == 0) {
        *id.last_mut().unwrap() = 1;
    }
    id
}
