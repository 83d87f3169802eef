//! The filter's pure per-request work, as the host glue runs it, compiled to wasm:
//! read the serialized request header map, decide, build the trace context.
//! `bench/core-wasm/run.mjs` times `run` in Node's V8 (the engine Envoy runs the
//! filter in) for each build profile, so the size profile's speed cost is
//! measured without Envoy's host calls and without the noise of a loaded proxy.

use std::hint::black_box;
use std::sync::OnceLock;

use rollout_filter::baggage;
use rollout_filter::config::Config;
use rollout_filter::decision::{decide, RequestView};
use rollout_filter::headers::{serialize, HeaderChange, SerializedMap};
use rollout_filter::trace;

/// The full product's configuration: row (f) of `make bench`.
const CONFIG: &str = include_str!("../../configs/f-full.json");

include!("../../../filter/benches/common/typical_headers.rs");

struct Setup {
    cfg: Config,
    headers: Vec<u8>,
}

fn setup() -> Option<&'static Setup> {
    static SETUP: OnceLock<Option<Setup>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let cfg = Config::from_json(CONFIG.as_bytes()).ok()?;
            let mut pairs = TYPICAL_HEADERS.to_vec();
            pairs.extend_from_slice(&[
                ("x-user-id", b"user-4711".as_slice()),
                (
                    "traceparent",
                    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", b"congo=t61rcWkgMzE"),
            ]);
            let headers = serialize(&pairs);
            Some(Setup { cfg, headers })
        })
        .as_ref()
}

struct Request<'a>(SerializedMap<'a>);

impl RequestView for Request<'_> {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        self.0.get(name)
    }

    fn source_address(&mut self) -> Option<&[u8]> {
        Some(b"10.1.2.3:51234")
    }

    fn random_u32(&mut self) -> u32 {
        0x9e37_79b9
    }
}

/// `n` requests of the full product's pure work; returns a checksum so none is optimized away.
/// 0 means the setup failed (the runner treats it as an error).
#[no_mangle]
pub extern "C" fn run(n: u32) -> u32 {
    let Some(s) = setup() else { return 0 };
    let mut sum: u32 = 1;
    for i in 0..n {
        // A fresh copy per request, as the glue receives one from the host.
        let buf = black_box(s.headers.clone());
        let map = SerializedMap::new(&buf);
        let mut req = Request(map);
        let d = decide(&s.cfg, &mut req, None);
        let parents: Vec<&[u8]> = map.get_all("traceparent").collect();
        let states: Vec<&[u8]> = map.get_all("tracestate").collect();
        let bags: Vec<&[u8]> = map.get_all("baggage").collect();
        let member = s
            .cfg
            .trace
            .baggage_members
            .get(d.version.unwrap_or(0))
            .map_or("", String::as_str);
        let mut random = [0u8; 24];
        random[0] = i as u8;
        let p = trace::propagate(&parents, &states, &s.cfg.trace.settings, random);
        let edit = baggage::Edit::Set {
            key: &s.cfg.trace.baggage_key,
            member,
        };
        let b = baggage::apply(&bags, &[edit]);
        let bag_len = match &b.header {
            HeaderChange::Set(v) => v.len(),
            _ => 0,
        };
        sum = sum
            .wrapping_add(d.version.unwrap_or(0) as u32)
            .wrapping_add(p.traceparent.as_ref().map_or(0, String::len) as u32)
            .wrapping_add(bag_len as u32);
    }
    sum
}

/// Only the decision (header lookups, sticky key, flagd bucket).
#[no_mangle]
pub extern "C" fn run_decide(n: u32) -> u32 {
    let Some(s) = setup() else { return 0 };
    let mut sum: u32 = 1;
    for _ in 0..n {
        let mut req = Request(SerializedMap::new(black_box(&s.headers)));
        sum = sum.wrapping_add(decide(&s.cfg, &mut req, None).version.unwrap_or(0) as u32 + 1);
    }
    sum
}

/// Only the trace context (parse the incoming one, emit ours).
#[no_mangle]
pub extern "C" fn run_trace(n: u32) -> u32 {
    let Some(s) = setup() else { return 0 };
    let mut sum: u32 = 1;
    let parent: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let state: &[u8] = b"congo=t61rcWkgMzE";
    for i in 0..n {
        let mut random = [0u8; 24];
        random[0] = i as u8;
        let p = trace::propagate(
            &[black_box(parent)],
            &[black_box(state)],
            &s.cfg.trace.settings,
            random,
        );
        sum = sum.wrapping_add(p.trace_id[0] as u32 + 1);
    }
    sum
}
