//! Call-chain lanes: `lane::judge` and `lane::edit` through `baggage::apply`, beside
//! the decision member, on arbitrary `baggage` values.
//!
//! Input: byte 0 = flags (bit 0 set, bit 1 follow, bit 2 inbound, bit 3 trusted,
//! bit 4 trust everyone, bit 5 also write the decision member), byte 1 = the decided
//! version (mod 3), the rest `\n`-separated `baggage` header values.
//!
//! Invariants: `judge` agrees with a model (the first member of the key; untrusted
//! only on an inbound listener without trust; followed only with `follow` and a
//! configured name, percent-decoded); the peer and the direction are asked only when
//! a lane is present. After the one write: an untrusted lane never survives; with
//! `set` the lane is exactly the decided version unless a trusted lane named no
//! version here, which then passes unchanged; without `set` a trusted lane passes
//! unchanged; every member of another key is kept byte for byte, in order; the
//! decision member is there when it fits; writing again changes nothing.
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use rollout_filter::baggage::{self, Edit};
use rollout_filter::headers::HeaderChange;
use rollout_filter::lane::{edit, judge, Incoming, Lane, Side};

const VERSIONS: [&str; 3] = ["stable", "canary", "r2026-11"];
const KEY: &str = "rollout-lane";
const DECISION_KEY: &str = "rollout.shop";

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let version = usize::from(data.get(1).copied().unwrap_or(0)) % VERSIONS.len();
    let values: Vec<&[u8]> = match data.get(2..) {
        Some(rest) if !rest.is_empty() => rest.split(|b| *b == b'\n').collect(),
        _ => Vec::new(),
    };
    let lane = Lane {
        key: KEY.into(),
        set: flags & 1 != 0,
        follow: flags & 2 != 0,
        side: Side::Auto,
        trust_everyone: flags & 16 != 0,
        trusted_peers: Vec::new(),
        members: VERSIONS.iter().map(|v| baggage::member(KEY, v)).collect(),
    };
    let (inbound, trusted) = (flags & 4 != 0, flags & 8 != 0);
    let index = |v: &[u8]| VERSIONS.iter().position(|n| n.as_bytes() == v);
    let asked = Cell::new(false);
    let incoming = judge(
        &lane,
        &values,
        index,
        || {
            asked.set(true);
            inbound
        },
        || trusted,
    );

    // The model.
    let first = baggage::members(&values).find(|m| m.key() == KEY.as_bytes());
    assert_eq!(asked.get(), first.is_some() && !lane.trust_everyone);
    let want = match first {
        None => Incoming::Absent,
        Some(_) if !lane.trust_everyone && inbound && !trusted => Incoming::Untrusted,
        Some(_) if !lane.follow => Incoming::Ignored,
        Some(m) => match m.value().and_then(|v| index(v.as_bytes())) {
            Some(i) => Incoming::Follow(i),
            None => Incoming::Unknown,
        },
    };
    assert_eq!(incoming, want);

    let decision = baggage::member(DECISION_KEY, VERSIONS[version]);
    let mut edits = Vec::new();
    if flags & 32 != 0 {
        edits.push(Edit::Set {
            key: DECISION_KEY,
            member: &decision,
        });
    }
    edits.extend(edit(&lane, incoming, Some(version)));
    let a = baggage::apply(&values, &edits);
    let result: Vec<u8> = match &a.header {
        HeaderChange::Keep => values.join(&b","[..]),
        HeaderChange::Remove => Vec::new(),
        HeaderChange::Set(v) => v.clone(),
    };
    let rv: [&[u8]; 1] = [&result];
    let lanes_in: Vec<&[u8]> = baggage::members(&values)
        .filter(|m| m.key() == KEY.as_bytes())
        .map(|m| m.text())
        .collect();
    let lanes_out: Vec<&[u8]> = baggage::members(&rv)
        .filter(|m| m.key() == KEY.as_bytes())
        .map(|m| m.text())
        .collect();
    let ours = lane.members[version].as_bytes();
    let lane_set = lane.set && incoming != Incoming::Unknown;
    if lane_set {
        // Ours, once, unless the header is at the W3C limits (then no lane at all).
        if a.full == 0 {
            assert_eq!(lanes_out, vec![ours]);
        } else {
            assert!(lanes_out.is_empty() || lanes_out == vec![ours]);
        }
    } else if incoming == Incoming::Untrusted {
        assert!(lanes_out.is_empty(), "an untrusted lane survived");
    } else {
        assert_eq!(lanes_out, lanes_in, "a trusted lane passes unchanged");
    }
    // Others byte for byte, in order.
    let others = |vals: &[&[u8]]| -> Vec<Vec<u8>> {
        baggage::members(vals)
            .filter(|m| m.key() != KEY.as_bytes() && m.key() != DECISION_KEY.as_bytes())
            .map(|m| m.text().to_vec())
            .collect()
    };
    assert_eq!(others(&rv), others(&values));
    if flags & 32 != 0 && a.full & 1 == 0 {
        let got = baggage::get(&rv, DECISION_KEY).expect("decision member");
        assert_eq!(got.text(), decision.as_bytes());
    }
    // Idempotent when everything fitted.
    if a.full == 0 {
        let again = judge(&lane, &rv, index, || inbound, || trusted);
        let mut edits2 = Vec::new();
        if flags & 32 != 0 {
            edits2.push(Edit::Set {
                key: DECISION_KEY,
                member: &decision,
            });
        }
        edits2.extend(edit(&lane, again, Some(version)));
        assert_eq!(baggage::apply(&rv, &edits2).header, HeaderChange::Keep);
    }
});
