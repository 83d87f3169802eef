//! `headers::SerializedMap` over an arbitrary buffer (what a broken or hostile
//! host could hand the filter).
//!
//! Invariants: never more pairs than the declared count; every name and value
//! borrows from the buffer, in order and without overlap; a shorter buffer
//! reads as a prefix of the same pairs ("malformed reads as fewer headers");
//! `get`/`get_all` agree with the iteration; re-serializing the pairs (ours,
//! and `headers::serialize`) reads back identically, and a well-formed buffer
//! is exactly its re-serialization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::headers::{serialize, SerializedMap};

type Pair<'a> = (&'a [u8], &'a [u8]);

fuzz_target!(|data: &[u8]| {
    let map = SerializedMap::new(data);
    let pairs: Vec<Pair> = map.iter().collect();

    let declared = data
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    assert!(pairs.len() <= declared);
    // Names and values sit where the layout puts them: after the size table,
    // each followed by one terminator byte.
    let base = data.as_ptr() as usize;
    let mut next = 4 + 8 * declared;
    for (k, v) in &pairs {
        for part in [k, v] {
            let at = part.as_ptr() as usize - base;
            assert_eq!(at, next, "pair not where the layout puts it");
            assert!(at + part.len() <= data.len());
            next = at + part.len() + 1;
        }
    }

    // Prefixes of the buffer read as prefixes of the pairs.
    for cut in [
        data.len().saturating_sub(1),
        data.len() / 2,
        usize::from(data.last().copied().unwrap_or(0)),
    ] {
        let Some(short) = data.get(..cut) else { continue };
        let fewer: Vec<Pair> = SerializedMap::new(short).iter().collect();
        assert!(
            fewer.len() <= pairs.len() && fewer[..] == pairs[..fewer.len()],
            "truncation changed pairs"
        );
    }

    // Lookups agree with the iteration (names arrive as &str).
    for (k, _) in pairs.iter().take(8) {
        let Ok(name) = std::str::from_utf8(k) else {
            continue;
        };
        let all: Vec<&[u8]> = pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| *v).collect();
        assert_eq!(map.get(name), all.first().copied());
        assert_eq!(map.get_all(name).collect::<Vec<_>>(), all);
    }

    // Re-serialized pairs read back the same; a well-formed input is its re-serialization.
    let ours = reserialize(&pairs, |_| 0);
    let again: Vec<Pair> = SerializedMap::new(&ours).iter().collect();
    assert_eq!(again, pairs);
    if let Ok(named) = pairs
        .iter()
        .map(|(k, v)| std::str::from_utf8(k).map(|k| (k, *v)))
        .collect::<Result<Vec<_>, _>>()
    {
        assert_eq!(
            serialize(&named),
            ours,
            "headers::serialize differs from the wire format"
        );
    }
    if pairs.len() == declared && ours.len() == data.len() {
        // Same layout; the terminators are not checked by the reader, so take them from the input.
        let same = reserialize(&pairs, |at| data[at]);
        assert_eq!(same, data, "well-formed map is not its own serialization");
    }
});

/// The host's layout; `nul(offset)` gives the byte written after each name and value.
fn reserialize(pairs: &[Pair], nul: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(nul(out.len()));
        out.extend_from_slice(v);
        out.push(nul(out.len()));
    }
    out
}
