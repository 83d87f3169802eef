//! `trace::propagate` and `trace::parse_traceparent` on arbitrary header values.
//!
//! Input: byte 0 = flags (bit 0 newSpan, bit 1 sampled), bytes 1..25 = the
//! host randomness, the rest `\n`-separated lines whose first byte tags them:
//! `p` a traceparent value, `s` a tracestate value, `k` our tracestate key,
//! `v` our member value (default `rollout` / `checkout-2026-11:canary`).
//! Short inputs get zero randomness and no lines.
//!
//! Invariants: the emitted traceparent is a 55-character version-00 value that
//! parses back, with only the sampled/random flags; the trace-id is kept
//! exactly when the single incoming traceparent is valid; the tracestate is
//! at most 512 characters / 32 members, starts with our (valid) member, has
//! unique valid members otherwise taken in order from the incoming ones;
//! propagating the output again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::trace::{
    is_valid_key, is_valid_member_value, parse_traceparent, propagate, TraceReject, TraceSettings,
    DEFAULT_KEY, FLAG_RANDOM_TRACE_ID, FLAG_SAMPLED, MAX_MEMBERS, MAX_TRACESTATE_LEN,
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
    let mut key = DEFAULT_KEY.to_string();
    let mut member = "checkout-2026-11:canary".to_string();
    if !rest.is_empty() {
        for line in rest.split(|b| *b == b'\n') {
            match line.split_first() {
                Some((b'p', v)) => traceparents.push(v),
                Some((b's', v)) => tracestates.push(v),
                Some((b'k', v)) => key = String::from_utf8_lossy(v).into_owned(),
                Some((b'v', v)) => member = String::from_utf8_lossy(v).into_owned(),
                _ => {}
            }
        }
    }
    let settings = TraceSettings {
        new_span: flags & 1 != 0,
        sampled: flags & 2 != 0,
        key,
    };

    for tp in &traceparents {
        check_parse(tp);
    }

    let out = propagate(&traceparents, &tracestates, &member, &settings, random);

    // traceparent
    assert_eq!(out.traceparent.len(), 55, "{:?}", out.traceparent);
    assert!(out.traceparent.starts_with("00-"));
    let parsed = parse_traceparent(out.traceparent.as_bytes())
        .unwrap_or_else(|r| panic!("emitted {:?} does not parse: {r:?}", out.traceparent));
    assert_eq!(parsed.to_header(), out.traceparent);
    assert_eq!(parsed.flags & !(FLAG_SAMPLED | FLAG_RANDOM_TRACE_ID), 0);
    assert_eq!(out.trace_id_hex(), &out.traceparent[3..35]);
    let incoming = match traceparents.as_slice() {
        [one] => parse_traceparent(one).ok(),
        _ => None,
    };
    assert_eq!(out.continued, incoming.is_some());
    assert_eq!(
        out.rejects.get(TraceReject::TraceparentDuplicate) > 0,
        traceparents.len() > 1
    );
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

    // tracestate
    let ts = &out.tracestate;
    assert!(
        !ts.is_empty() && ts.len() <= MAX_TRACESTATE_LEN,
        "{} chars",
        ts.len()
    );
    let members: Vec<&str> = ts.split(',').collect();
    assert!(members.len() <= MAX_MEMBERS);
    let own_key = if is_valid_key(&settings.key) {
        settings.key.as_str()
    } else {
        DEFAULT_KEY
    };
    let (first_key, first_value) = members[0].split_once('=').expect("our member has '='");
    assert_eq!(first_key, own_key);
    assert!(is_valid_member_value(first_value), "{first_value:?}");
    let max_own = MAX_TRACESTATE_LEN.saturating_sub(own_key.len() + 1).clamp(1, 256);
    if is_valid_member_value(&member) && member.len() <= max_own {
        assert_eq!(first_value, member);
    }
    let mut keys: Vec<&str> = Vec::new();
    for m in &members {
        let (k, v) = m
            .split_once('=')
            .unwrap_or_else(|| panic!("member without '=': {m:?}"));
        assert!(is_valid_key(k) && is_valid_member_value(v), "bad member {m:?}");
        assert!(!keys.contains(&k), "duplicate key {k:?} in {ts:?}");
        keys.push(k);
    }
    if out.continued {
        // The others are incoming members (trimmed), in their incoming order.
        let incoming_members: Vec<&[u8]> = tracestates
            .iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .map(|m| m.trim_ascii())
            .collect();
        let mut pos = 0;
        for m in &members[1..] {
            let found = incoming_members[pos..]
                .iter()
                .position(|i| i == &m.as_bytes())
                .unwrap_or_else(|| panic!("{m:?} is not an incoming member (in order)"));
            pos += found + 1;
        }
    } else {
        assert_eq!(
            members.len(),
            1,
            "tracestate kept without a valid traceparent: {ts:?}"
        );
        let blank = tracestates
            .iter()
            .all(|v| v.iter().all(|b| matches!(b, b' ' | b'\t' | b',')));
        assert_eq!(out.rejects.get(TraceReject::TracestateIgnored) > 0, !blank);
    }

    // Idempotent: our output, propagated again, is forwarded unchanged.
    let settings2 = TraceSettings {
        new_span: false,
        ..settings.clone()
    };
    let again = propagate(
        &[out.traceparent.as_bytes()],
        &[ts.as_bytes()],
        &member,
        &settings2,
        [0x5a; 24],
    );
    assert!(again.continued);
    assert_eq!(again.traceparent, out.traceparent);
    assert_eq!(&again.tracestate, ts);
    assert!(again.rejects.is_empty(), "{:?}", again.rejects);
});

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
