//! flagd's sync protocol (`flagd.sync.v1.FlagSyncService/SyncFlags`, from open-feature/
//! flagd-schemas `protobuf/flagd/sync/v1/sync.proto`), the few messages the filter needs,
//! and what it does with a snapshot. Pure: the glue opens the stream and passes bytes.
//!
//! The messages are written and read here rather than with a protobuf crate: one string
//! field each way, and the module's size budget. The e2e test's server is generated from
//! flagd's own proto, so the two are checked against each other on the wire.

use super::{compile, Flag, Json, Refusal, Spec};

pub const SERVICE: &str = "flagd.sync.v1.FlagSyncService";
pub const METHOD: &str = "SyncFlags";
/// The metadata flagd reads the selector from (it wins over the request body's field).
pub const SELECTOR_HEADER: &str = "flagd-selector";
/// `SyncFlagsRequest.provider_id`: how flagd's logs and metrics name this client.
pub const PROVIDER_ID: &str = "rollout-filter";

/// Why a snapshot was not applied: the `reason` label of `rollout_flag_sync_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncReject {
    /// The gRPC message is not a `SyncFlagsResponse`.
    BadMessage,
    /// `flag_configuration` is not valid JSON.
    InvalidJson,
    /// The flag set has no flag under the rollout's `flagKey`.
    MissingFlag,
    /// The flag uses what the filter's flagd grammar refuses (or a variant without a version).
    RefusedFlag,
}

impl SyncReject {
    pub const ALL: [SyncReject; 4] = [
        SyncReject::BadMessage,
        SyncReject::InvalidJson,
        SyncReject::MissingFlag,
        SyncReject::RefusedFlag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncReject::BadMessage => "bad_message",
            SyncReject::InvalidJson => "invalid_json",
            SyncReject::MissingFlag => "missing_flag",
            SyncReject::RefusedFlag => "refused_flag",
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn put_bytes(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    out.push(field << 3 | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// `SyncFlagsRequest { provider_id = 1; selector = 2 }`. The selector also goes in the
/// `flagd-selector` metadata; the (deprecated) field serves servers that read only it.
pub fn request(selector: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROVIDER_ID.len() + selector.len() + 4);
    put_bytes(&mut out, 1, PROVIDER_ID.as_bytes());
    if !selector.is_empty() {
        put_bytes(&mut out, 2, selector.as_bytes());
    }
    out
}

/// Envoy's `GrpcService { envoy_grpc = 1 { cluster_name = 1; authority = 2 } }`: the host
/// reads the target this way, with the `:authority` the stream carries.
pub fn grpc_service(cluster: &str, authority: &str) -> Vec<u8> {
    let mut inner = Vec::with_capacity(cluster.len() + authority.len() + 4);
    put_bytes(&mut inner, 1, cluster.as_bytes());
    if !authority.is_empty() {
        put_bytes(&mut inner, 2, authority.as_bytes());
    }
    let mut out = Vec::with_capacity(inner.len() + 4);
    put_bytes(&mut out, 1, &inner);
    out
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// `SyncFlagsResponse.flag_configuration` (field 1); other fields (`sync_context`) skipped.
/// The last occurrence wins, as protobuf merges a repeated scalar field.
pub fn flag_configuration(msg: &[u8]) -> Result<&[u8], SyncReject> {
    let mut i = 0;
    let mut found: &[u8] = b"";
    while i < msg.len() {
        let key = varint(msg, &mut i).ok_or(SyncReject::BadMessage)?;
        let (field, wire) = (key >> 3, key & 7);
        let len = match wire {
            0 => {
                varint(msg, &mut i).ok_or(SyncReject::BadMessage)?;
                continue;
            }
            1 => 8,
            5 => 4,
            2 => varint(msg, &mut i).ok_or(SyncReject::BadMessage)?,
            _ => return Err(SyncReject::BadMessage),
        };
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| i.checked_add(l))
            .filter(|e| *e <= msg.len())
            .ok_or(SyncReject::BadMessage)?;
        if field == 1 && wire == 2 {
            found = msg.get(i..end).ok_or(SyncReject::BadMessage)?;
        }
        i = end;
    }
    Ok(found)
}

/// A snapshot's flag set, read once for every rollout that follows the stream.
pub fn parse_snapshot(msg: &[u8]) -> Result<Json, SyncReject> {
    let text = flag_configuration(msg)?;
    // serde_json first: the flag-set reader is lenient where the config parser had checked.
    serde_json::from_slice::<serde::de::IgnoredAny>(text).map_err(|_| SyncReject::InvalidJson)?;
    Json::parse(text).map_err(|_| SyncReject::InvalidJson)
}

/// What compiling a rollout's flag needs besides the document: kept from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub flag_key: String,
    pub variants: Vec<(String, usize)>,
    pub attrs: Vec<String>,
    pub mode: super::Mode,
}

impl Recipe {
    pub fn compile(&self, flag_set: &Json) -> Result<Flag, Refusal> {
        compile(&Spec {
            flag_key: &self.flag_key,
            flag_set,
            variants: &self.variants,
            attrs: &self.attrs,
            mode: self.mode,
        })
    }

    /// The rollout's flag from a snapshot's flag set, or why the snapshot does not apply.
    pub fn from_snapshot(&self, flag_set: &Json) -> Result<Flag, (SyncReject, String)> {
        let present = flag_set
            .get("flags")
            .and_then(|f| f.get(&self.flag_key))
            .is_some();
        if !present {
            return Err((SyncReject::MissingFlag, format!("no flag {:?}", self.flag_key)));
        }
        self.compile(flag_set).map_err(|r| {
            let at = if r.path.is_empty() {
                "flag set".into()
            } else {
                r.path
            };
            (SyncReject::RefusedFlag, format!("{at}: {}", r.reason))
        })
    }
}

/// Reconnection delays: doubling from `FIRST_MS` to `MAX_MS`, each drawn in its upper half
/// so a fleet that lost flagd together does not come back in step.
pub const FIRST_MS: u64 = 500;
pub const MAX_MS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt; `random` in 0..=u32::MAX.
    pub fn next_delay_ms(&mut self, random: u32) -> u64 {
        let ceiling = FIRST_MS.saturating_mul(1u64 << self.failures.min(16)).min(MAX_MS);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        half + (u64::from(random) * (ceiling - half)) / u64::from(u32::MAX)
    }

    /// A snapshot arrived: the stream works, the next failure starts over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The shared-data lease that makes one worker per Envoy hold the stream: the holder's id and
/// until when it holds (ms), renewed on every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub until_ms: u64,
}

/// A holder that stopped ticking for this long loses the stream to another worker (long
/// enough that a main thread busy with a large xDS push keeps it).
pub const LEASE_MS: u64 = 3_000;

impl Lease {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.owner.to_le_bytes());
        out[8..].copy_from_slice(&self.until_ms.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Lease> {
        let owner = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let until_ms = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        Some(Lease { owner, until_ms })
    }

    /// Whether `me` may hold the stream now (it holds it, or nobody holds it any more). A
    /// lease further ahead than any renewal sets was written before the clock stepped back:
    /// free too, or the stream would wait out the step.
    pub fn free_for(this: Option<Lease>, me: u64, now_ms: u64) -> bool {
        this.is_none_or(|l| {
            l.owner == me || l.until_ms <= now_ms || l.until_ms > now_ms.saturating_add(LEASE_MS)
        })
    }
}

/// A published snapshot in shared data: its sequence number, then the message as received.
pub fn encode_published(seq: u64, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + msg.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(msg);
    out
}

pub fn decode_published(b: &[u8]) -> Option<(u64, &[u8])> {
    let seq = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    Some((seq, b.get(8..)?))
}

pub fn decode_seq(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_request_and_the_service_are_protobuf() {
        // protoc --encode=flagd.sync.v1.SyncFlagsRequest: provider_id "rollout-filter",
        // selector "flagSetId=shop".
        let mut want = vec![0x0a, 14];
        want.extend_from_slice(b"rollout-filter");
        want.extend_from_slice(&[0x12, 14]);
        want.extend_from_slice(b"flagSetId=shop");
        assert_eq!(request("flagSetId=shop"), want);
        assert_eq!(request(""), want[..16].to_vec());
        let s = grpc_service("flagd-sync", "flagd");
        let mut inner = vec![0x0a, 10];
        inner.extend_from_slice(b"flagd-sync");
        inner.extend_from_slice(&[0x12, 5]);
        inner.extend_from_slice(b"flagd");
        let mut want = vec![0x0a, inner.len() as u8];
        want.extend_from_slice(&inner);
        assert_eq!(s, want);
        // A long value takes a two-byte length.
        let long = "s".repeat(200);
        assert_eq!(&request(&long)[16..19], &[0x12, 0xc8, 0x01]);
    }

    #[test]
    fn the_response_gives_its_flag_configuration() {
        let mut msg = vec![0x0a, 2, b'{', b'}'];
        // sync_context (field 2, a Struct message) is skipped.
        msg.extend_from_slice(&[0x12, 3, 1, 2, 3]);
        assert_eq!(flag_configuration(&msg), Ok(&b"{}"[..]));
        // Varint and fixed fields of a newer schema are skipped too.
        let newer = [0x18, 0x96, 0x01, 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 1, b'x'];
        assert_eq!(flag_configuration(&newer), Ok(&b"x"[..]));
        assert_eq!(flag_configuration(b""), Ok(&b""[..]));
        for bad in [&[0x0a, 5, b'{'][..], &[0x0a][..], &[0x0b][..], &[0x80][..]] {
            assert_eq!(flag_configuration(bad), Err(SyncReject::BadMessage), "{bad:?}");
        }
    }

    fn message(json: &str) -> Vec<u8> {
        let mut msg = Vec::new();
        put_bytes(&mut msg, 1, json.as_bytes());
        msg
    }

    fn recipe() -> Recipe {
        Recipe {
            flag_key: "f".into(),
            variants: vec![("on".into(), 0), ("off".into(), 1)],
            attrs: vec!["targetingKey".into()],
            mode: super::super::Mode::V2,
        }
    }

    #[test]
    fn a_snapshot_applies_or_says_why_not() {
        let good = r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"fractional": [["on", 50], ["off", 50]]}}}}"#;
        let set = parse_snapshot(&message(good)).unwrap();
        assert_eq!(recipe().from_snapshot(&set).unwrap().default, 1);
        assert_eq!(
            parse_snapshot(&message("{\"flags\": ")),
            Err(SyncReject::InvalidJson)
        );
        assert_eq!(parse_snapshot(&message("{} x")), Err(SyncReject::InvalidJson));
        assert_eq!(parse_snapshot(&[0x0a, 9]), Err(SyncReject::BadMessage));
        let other = parse_snapshot(&message(&good.replace("\"f\"", "\"g\""))).unwrap();
        assert_eq!(
            recipe().from_snapshot(&other).unwrap_err().0,
            SyncReject::MissingFlag
        );
        let refused = good.replace(
            r#"{"fractional": [["on", 50], ["off", 50]]}"#,
            r#"{"sem_ver": [1]}"#,
        );
        let (why, detail) = recipe()
            .from_snapshot(&parse_snapshot(&message(&refused)).unwrap())
            .unwrap_err();
        assert_eq!(why, SyncReject::RefusedFlag);
        assert!(detail.contains("sem_ver"), "{detail}");
        let unmapped = good.replace(r#""defaultVariant": "off""#, r#""defaultVariant": "maybe""#);
        let set = parse_snapshot(&message(&unmapped)).unwrap();
        assert_eq!(
            recipe().from_snapshot(&set).unwrap_err().0,
            SyncReject::RefusedFlag
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_starts_over() {
        let mut b = Backoff::default();
        let highs: Vec<u64> = (0..8).map(|_| b.next_delay_ms(u32::MAX)).collect();
        assert_eq!(highs, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay_ms(0), 250);
        assert_eq!(b.next_delay_ms(0), 500);
    }

    #[test]
    fn the_lease_and_the_published_snapshot_read_back() {
        let l = Lease {
            owner: 7,
            until_ms: 1_000,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(Lease::decode(&[0; 15]), None);
        assert!(Lease::free_for(None, 1, 0));
        assert!(Lease::free_for(Some(l), 7, 10));
        assert!(!Lease::free_for(Some(l), 8, 999));
        assert!(Lease::free_for(Some(l), 8, 1_000));
        // Renewed at 1,000 for 3 s: the clock then stepped back a minute.
        let ahead = Lease {
            owner: 7,
            until_ms: 61_000 + LEASE_MS,
        };
        assert!(!Lease::free_for(Some(ahead), 8, 61_000));
        assert!(Lease::free_for(Some(ahead), 8, 1_000));
        let p = encode_published(3, b"msg");
        assert_eq!(decode_published(&p), Some((3, &b"msg"[..])));
        assert_eq!(decode_seq(&p), Some(3));
        assert_eq!(decode_published(&[1, 2]), None);
    }
}
