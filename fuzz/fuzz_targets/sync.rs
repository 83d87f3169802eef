//! flagd's sync stream: a `SyncFlagsResponse` read (`flagd::sync::flag_configuration`,
//! `parse_snapshot`) and a snapshot compiled for a rollout (`Recipe::from_snapshot`).
//!
//! Input: byte 0 even: the rest is a gRPC message as received; odd: the rest is the flag
//! configuration text, sent in a well-formed message. Invariants, beyond "no panic":
//! - the flag configuration read is a slice of the message, and exactly the text sent;
//! - a snapshot is parsed only when serde_json accepts its text as JSON;
//! - a snapshot without the flag is refused as `missing_flag`, and only such a one;
//! - a compiled flag serves only the rollout's versions, for any context;
//! - a flag set the configuration parser accepts as `flagSet` compiles from a snapshot to the
//!   same flag (the stream and the plugin config agree).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollout_filter::config::Config;
use rollout_filter::flagd::sync::{flag_configuration, parse_snapshot, Recipe, SyncReject};
use rollout_filter::flagd::{Attr, Context, Mode};

struct Values<'a>(&'a [&'a [u8]]);

impl Context for Values<'_> {
    fn value(&mut self, attr: Attr) -> Option<&[u8]> {
        self.0.get(usize::from(attr)).copied()
    }
}

fn message(text: &[u8]) -> Vec<u8> {
    let mut m = vec![0x0a];
    let mut n = text.len();
    while n >= 0x80 {
        m.push((n as u8) | 0x80);
        n >>= 7;
    }
    m.push(n as u8);
    m.extend_from_slice(text);
    m
}

fn recipe() -> Recipe {
    Recipe {
        flag_key: "f".into(),
        variants: vec![("on".into(), 0), ("off".into(), 1)],
        attrs: vec!["targetingKey".into(), "tier".into()],
        mode: Mode::V2,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let msg = if mode % 2 == 1 { message(rest) } else { rest.to_vec() };
    let text = match flag_configuration(&msg) {
        Ok(t) => {
            let (p, m) = (t.as_ptr() as usize, msg.as_ptr() as usize);
            assert!(t.is_empty() || (p >= m && p + t.len() <= m + msg.len()));
            if mode % 2 == 1 {
                assert_eq!(t, rest);
            }
            t
        }
        Err(e) => {
            assert!(mode % 2 == 0, "a well-formed message refused: {e:?}");
            return;
        }
    };
    let set = match parse_snapshot(&msg) {
        Ok(set) => {
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok());
            set
        }
        Err(e) => {
            assert_eq!(e, SyncReject::InvalidJson);
            return;
        }
    };
    let has_flag = set.get("flags").and_then(|f| f.get("f")).is_some();
    match recipe().from_snapshot(&set) {
        Ok(flag) => {
            assert!(has_flag);
            for ctx in [&[][..], &[&b"user-1"[..]], &[&b""[..], &b"gold"[..]], &[&b"u"[..], &b"x"[..]]] {
                assert!(flag.evaluate(&mut Values(ctx)).version < 2);
            }
            agrees_with_config(text, &flag);
        }
        Err((why, detail)) => {
            assert_eq!(why == SyncReject::MissingFlag, !has_flag, "{why:?}: {detail}");
            assert!(!detail.is_empty());
        }
    }
});

fn agrees_with_config(text: &[u8], flag: &rollout_filter::flagd::Flag) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let cfg = format!(
        r#"{{"flagd": {{"flagKey": "f", "flagSet": {text}, "variants": {{"on": "canary", "off": "stable"}},
            "context": {{"targetingKey": {{"header": "x-user-id"}}, "tier": {{"header": "x-tier"}}}}}}}}"#
    );
    if let Ok(c) = Config::from_json(cfg.as_bytes()) {
        let live = c.flagd.expect("a flagd rollout").flag.get();
        assert_eq!(*live, *flag);
    }
}
