//! Call-chain lanes: the edge's decision travels in W3C `baggage` as
//! `KEY=VERSION`, and every later hop that has a version of that name follows it.
//!
//! Pure: judges the incoming baggage against the configuration. The glue reads
//! the peer certificate and the listener's direction only when [`judge`] asks
//! for them (a lane member came in on a listener that may have to strip it), and
//! writes the lane member through the one baggage writer ([`crate::baggage::apply`]).
//!
//! Trust model: a server-side (inbound) listener believes a lane only from a
//! caller whose verified identity is in `lane.trustedPeers`, and removes it from
//! anyone else, so the app behind it never forwards a forged lane. A client-side
//! (outbound) or gateway listener follows what the local app forwards: that app
//! received the lane through its own inbound listener.

use crate::baggage;
use crate::identity::PeerPattern;

/// Default baggage key of the lane member.
pub const DEFAULT_KEY: &str = "rollout-lane";

/// Which side of a workload the listener is on (`lane.side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// From Envoy's `xds.listener_direction` (Istio sets it on every listener);
    /// unspecified is treated as inbound, the strict side.
    Auto,
    /// Server side: lanes only from trusted callers.
    Inbound,
    /// Client side: follows what the local app forwards.
    Outbound,
    /// An edge: like outbound, named for clarity (a gateway usually sets the
    /// lane and does not follow one: `set: true, follow: false`).
    Gateway,
}

impl Side {
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "auto" => Some(Side::Auto),
            "inbound" => Some(Side::Inbound),
            "outbound" => Some(Side::Outbound),
            "gateway" => Some(Side::Gateway),
            _ => None,
        }
    }

    /// Whether untrusted lanes are stripped here. `direction`: Envoy's
    /// `xds.listener_direction` property, read only in `Auto` mode.
    pub fn is_inbound(self, direction: impl FnOnce() -> Option<i64>) -> bool {
        match self {
            Side::Inbound => true,
            Side::Outbound | Side::Gateway => false,
            // 1 inbound, 2 outbound, 0 unspecified (envoy.config.core.v3.TrafficDirection).
            Side::Auto => direction() != Some(2),
        }
    }
}

/// `xds.listener_direction` as Envoy serializes it: an int64, little-endian.
pub fn parse_direction(raw: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(raw).ok().map(i64::from_le_bytes)
}

/// The validated `lane` configuration of one rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub key: String,
    pub set: bool,
    pub follow: bool,
    pub side: Side,
    /// `trustedPeers: ["*"]`: every caller's lane is kept, certificate or not.
    pub trust_everyone: bool,
    pub trusted_peers: Vec<PeerPattern>,
    /// `KEY=<version>` per version, built once.
    pub members: Vec<String>,
}

/// What the incoming baggage said, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// No member of the lane key.
    Absent,
    /// From a caller the inbound listener does not trust: to be removed.
    Untrusted,
    /// Trusted, `follow` on, and this rollout has the version: index.
    Follow(usize),
    /// Trusted, `follow` on, but no version of that name here: decided as
    /// usual, and the lane passes on unchanged for later hops that have it.
    Unknown,
    /// Trusted but `follow` off.
    Ignored,
}

/// Judges the lane member of the incoming `baggage` values. `inbound` and
/// `trusted` are asked only when a lane member is present, in that order.
pub fn judge(
    lane: &Lane,
    values: &[&[u8]],
    version_index: impl Fn(&[u8]) -> Option<usize>,
    inbound: impl FnOnce() -> bool,
    trusted: impl FnOnce() -> bool,
) -> Incoming {
    let Some(m) = baggage::get(values, &lane.key) else {
        return Incoming::Absent;
    };
    if !lane.trust_everyone && inbound() && !trusted() {
        return Incoming::Untrusted;
    }
    if !lane.follow {
        return Incoming::Ignored;
    }
    match m.value().and_then(|v| version_index(v.as_bytes())) {
        Some(i) => Incoming::Follow(i),
        None => Incoming::Unknown,
    }
}

/// The baggage edit for the lane key after the decision, if any: the decided
/// version with `set` (unless the incoming lane is kept for later hops), else
/// the removal of an untrusted lane. `version`: `None` when the route picks
/// (route-weights mode, which refuses `set`).
pub fn edit<'a>(lane: &'a Lane, incoming: Incoming, version: Option<usize>) -> Option<baggage::Edit<'a>> {
    let key = lane.key.as_str();
    if lane.set && incoming != Incoming::Unknown {
        if let Some(member) = version.and_then(|v| lane.members.get(v)) {
            // A Set removes every incoming member of the key, an untrusted one included.
            return Some(baggage::Edit::Set { key, member });
        }
    }
    (incoming == Incoming::Untrusted).then_some(baggage::Edit::Remove { key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baggage::Edit;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn lane(set: bool, follow: bool, side: Side) -> Lane {
        Lane {
            key: DEFAULT_KEY.into(),
            set,
            follow,
            side,
            trust_everyone: false,
            trusted_peers: vec![PeerPattern::parse("spiffe://cluster.local/ns/shop/*").unwrap()],
            members: vec!["rollout-lane=stable".into(), "rollout-lane=canary".into()],
        }
    }

    fn index(v: &[u8]) -> Option<usize> {
        ["stable", "canary"].iter().position(|n| n.as_bytes() == v)
    }

    fn judged(l: &Lane, header: &str, inbound: bool, trusted: bool) -> Incoming {
        let v: [&[u8]; 1] = [header.as_bytes()];
        judge(l, &v, index, || inbound, || trusted)
    }

    #[test]
    fn follows_a_known_version_from_the_baggage() {
        let l = lane(false, true, Side::Outbound);
        let cases: &[(&str, Incoming)] = &[
            ("", Incoming::Absent),
            ("userId=alice", Incoming::Absent),
            ("rollout-lane=canary", Incoming::Follow(1)),
            ("a=1, rollout-lane = stable ;p=1 ,b=2", Incoming::Follow(0)),
            // Percent-encoding is decoded before the version is looked up.
            ("rollout-lane=c%61nary", Incoming::Follow(1)),
            // The first member of the key is the lane (as `baggage::get` reads it).
            ("rollout-lane=canary,rollout-lane=stable", Incoming::Follow(1)),
            // No such version here: decided as usual.
            ("rollout-lane=blue", Incoming::Unknown),
            ("rollout-lane=Canary", Incoming::Unknown),
            ("rollout-lane=", Incoming::Unknown),
            ("rollout-lane", Incoming::Unknown),
            ("rollout-lane=%FF", Incoming::Unknown),
            // Keys are exact and case-sensitive.
            ("Rollout-Lane=canary,rollout-lanes=canary", Incoming::Absent),
        ];
        for (header, want) in cases {
            assert_eq!(judged(&l, header, false, false), *want, "{header:?}");
        }
        // Several baggage headers read as one.
        let v: [&[u8]; 2] = [b"a=1", b"rollout-lane=canary"];
        assert_eq!(judge(&l, &v, index, || false, || false), Incoming::Follow(1));
    }

    #[test]
    fn inbound_listeners_believe_only_trusted_callers() {
        let l = lane(false, true, Side::Inbound);
        assert_eq!(
            judged(&l, "rollout-lane=canary", true, false),
            Incoming::Untrusted
        );
        assert_eq!(judged(&l, "rollout-lane=canary", true, true), Incoming::Follow(1));
        // An untrusted lane naming no version is still removed.
        assert_eq!(judged(&l, "rollout-lane=blue", true, false), Incoming::Untrusted);
        // `trustedPeers: ["*"]` asks nothing.
        let everyone = Lane {
            trust_everyone: true,
            ..l.clone()
        };
        let v: [&[u8]; 1] = [b"rollout-lane=canary"];
        let got = judge(
            &everyone,
            &v,
            index,
            || panic!("no direction read"),
            || panic!("no peer read"),
        );
        assert_eq!(got, Incoming::Follow(1));
        // Nothing is read for a request without a lane.
        let v: [&[u8]; 1] = [b"a=1"];
        let got = judge(
            &l,
            &v,
            index,
            || panic!("no direction read"),
            || panic!("no peer read"),
        );
        assert_eq!(got, Incoming::Absent);
        // The peer is not read on the outbound side.
        let v: [&[u8]; 1] = [b"rollout-lane=canary"];
        let got = judge(&l, &v, index, || false, || panic!("no peer read"));
        assert_eq!(got, Incoming::Follow(1));
        // follow off: trusted lanes are left alone, untrusted ones still removed.
        let edge = lane(true, false, Side::Inbound);
        assert_eq!(
            judged(&edge, "rollout-lane=canary", true, true),
            Incoming::Ignored
        );
        assert_eq!(
            judged(&edge, "rollout-lane=canary", true, false),
            Incoming::Untrusted
        );
    }

    #[test]
    fn sides() {
        assert!(Side::Inbound.is_inbound(|| panic!("not read")));
        assert!(!Side::Outbound.is_inbound(|| panic!("not read")));
        assert!(!Side::Gateway.is_inbound(|| panic!("not read")));
        assert!(Side::Auto.is_inbound(|| Some(1)));
        assert!(!Side::Auto.is_inbound(|| Some(2)));
        // Unspecified or unreadable: the strict side.
        assert!(Side::Auto.is_inbound(|| Some(0)));
        assert!(Side::Auto.is_inbound(|| None));
        assert_eq!(parse_direction(&1i64.to_le_bytes()), Some(1));
        assert_eq!(parse_direction(&2i64.to_le_bytes()), Some(2));
        assert_eq!(parse_direction(b"\x01"), None);
        assert_eq!(parse_direction(b""), None);
        for s in ["auto", "inbound", "outbound", "gateway"] {
            assert!(Side::parse(s).is_some(), "{s}");
        }
        assert_eq!(Side::parse("INBOUND"), None);
    }

    #[test]
    fn edits() {
        let set = lane(true, true, Side::Inbound);
        let member = "rollout-lane=canary";
        let set_canary = Some(Edit::Set {
            key: DEFAULT_KEY,
            member,
        });
        for incoming in [
            Incoming::Absent,
            Incoming::Untrusted,
            Incoming::Follow(1),
            Incoming::Ignored,
        ] {
            assert_eq!(edit(&set, incoming, Some(1)), set_canary, "{incoming:?}");
        }
        // A lane this rollout falls back from travels on unchanged.
        assert_eq!(edit(&set, Incoming::Unknown, Some(0)), None);
        let follow = lane(false, true, Side::Inbound);
        assert_eq!(
            edit(&follow, Incoming::Untrusted, Some(0)),
            Some(Edit::Remove { key: DEFAULT_KEY })
        );
        for incoming in [
            Incoming::Absent,
            Incoming::Follow(1),
            Incoming::Unknown,
            Incoming::Ignored,
        ] {
            assert_eq!(edit(&follow, incoming, Some(1)), None, "{incoming:?}");
        }
    }

    /// The lane through the one writer, beside the decision member, as the glue does it.
    #[test]
    fn one_write_with_the_decision_member() {
        let l = lane(true, false, Side::Gateway);
        let values: [&[u8]; 1] = [b"userId=alice,rollout-lane=forged;p,rollout.r=x"];
        let incoming = judge(&l, &values, index, || false, || false);
        assert_eq!(incoming, Incoming::Ignored);
        let edits = [
            Edit::Set {
                key: "rollout.r",
                member: "rollout.r=canary",
            },
            edit(&l, incoming, Some(1)).unwrap(),
        ];
        let a = baggage::apply(&values, &edits);
        assert_eq!(
            a.header,
            crate::headers::HeaderChange::Set(b"userId=alice,rollout-lane=canary,rollout.r=canary".to_vec())
        );
        assert_eq!((a.removed, a.full), (2, 0));
        // An untrusted lane on a following hop: removed, the rest byte for byte.
        let f = lane(false, true, Side::Inbound);
        let values: [&[u8]; 2] = [b"a=1 ;p", b"rollout-lane=canary, b=%20"];
        let incoming = judge(&f, &values, index, || true, || false);
        let a = baggage::apply(&values, &[edit(&f, incoming, Some(0)).unwrap()]);
        assert_eq!(
            a.header,
            crate::headers::HeaderChange::Set(b"a=1 ;p,b=%20".to_vec())
        );
        assert_eq!(a.removed, 1);
    }
}
