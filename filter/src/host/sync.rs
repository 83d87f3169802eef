//! flagd sync streams (`flagd.sync`): one `SyncFlags` stream per Envoy for each target
//! (cluster, authority, selector), shared by every rollout that follows it.
//!
//! One worker holds the stream: a lease in Envoy's shared data, renewed on every tick, taken
//! over by another worker when it lapses. The holder checks each snapshot, applies it, counts
//! it, and publishes the message in shared data; the other workers read the sequence number on
//! their tick (100 ms) and apply what was published. So flagd sees one client per Envoy, the
//! counters count each snapshot once, and every worker routes by it within a tick.

use std::cell::Cell;

use super::raw;
use super::root::Shared;
use crate::config::FlagdSync;
use crate::flagd::sync::{self, Backoff, Lease, LEASE_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// No stream; the next attempt at this time (ms).
    Idle { retry_at_ms: u64 },
    /// Opened at `since_ms`; `live` once a message arrived.
    Open { token: u32, since_ms: u64, live: bool },
}

pub struct Feed {
    /// Shared-data prefix: the target, so configurations that share it share the stream.
    key: String,
    target: FlagdSync,
    /// Rollout indices that follow it.
    pub rollouts: Vec<usize>,
    /// This root context's lease id.
    me: u64,
    stream: Cell<Stream>,
    backoff: Cell<Backoff>,
    leader: Cell<bool>,
    /// The last published sequence number applied here.
    seen: Cell<u64>,
    /// Whether the stream has brought a snapshot since it last failed.
    connected: Cell<bool>,
    /// `rollout_flag_sync_connected` as this root context last set it.
    shown: Cell<Option<bool>>,
}

/// One feed per distinct target, in first-use order.
pub fn feeds(rollouts: &[crate::config::Config]) -> Vec<Feed> {
    let mut out: Vec<Feed> = Vec::new();
    for (i, cfg) in rollouts.iter().enumerate() {
        let Some(target) = cfg.flagd.as_ref().and_then(|f| f.sync.as_ref()) else {
            continue;
        };
        match out.iter_mut().find(|f| same_target(&f.target, target)) {
            Some(f) => f.rollouts.push(i),
            None => out.push(Feed::new(target.clone(), i)),
        }
    }
    out
}

fn same_target(a: &FlagdSync, b: &FlagdSync) -> bool {
    a.cluster == b.cluster && a.authority == b.authority && a.selector == b.selector
}

impl Feed {
    fn new(target: FlagdSync, rollout: usize) -> Feed {
        Feed {
            key: format!(
                "rollout-filter/flagd-sync/{}/{}/{}",
                target.cluster, target.authority, target.selector
            ),
            target,
            rollouts: vec![rollout],
            me: fastrand::u64(1..),
            stream: Cell::new(Stream::Idle { retry_at_ms: 0 }),
            backoff: Cell::new(Backoff::default()),
            leader: Cell::new(false),
            seen: Cell::new(0),
            connected: Cell::new(false),
            shown: Cell::new(None),
        }
    }

    /// The cluster and the selector, for log lines.
    fn name(&self) -> String {
        format!("{} {:?}", self.target.cluster, self.target.selector)
    }

    fn sub_key(&self, part: &str) -> String {
        format!("{}/{part}", self.key)
    }

    /// Holds the lease (taking it when free) or learns that another worker does.
    fn hold_lease(&self, now_ms: u64) -> bool {
        let lease_key = self.sub_key("lease");
        let Ok((bytes, cas)) = raw::shared_data(&lease_key) else {
            return false;
        };
        let current = bytes.as_deref().and_then(Lease::decode);
        if !Lease::free_for(current, self.me, now_ms) {
            return false;
        }
        let mine = Lease {
            owner: self.me,
            until_ms: now_ms.saturating_add(LEASE_MS),
        };
        raw::set_shared_data(&lease_key, &mine.encode(), cas).is_ok()
    }

    /// Whether the lease is still this root context's (a message may arrive after another
    /// worker took a lapsed lease over, before this one's next tick learns it).
    fn still_holds(&self) -> bool {
        matches!(raw::shared_data(&self.sub_key("lease")),
            Ok((Some(b), _)) if Lease::decode(&b).is_some_and(|l| l.owner == self.me))
    }

    /// The stream's state for every root context's gauge (`rollout_flag_sync_connected`).
    fn share_connected(&self, up: bool) {
        let _ = raw::set_shared_data(&self.sub_key("connected"), &[u8::from(up)], 0);
    }

    /// Gives the stream up: at the end of the root context, or when another worker holds it.
    pub fn release(&self, now_ms: u64) {
        if let Stream::Open { token, .. } = self.stream.get() {
            let _ = raw::grpc_cancel(token);
        }
        self.stream.set(Stream::Idle { retry_at_ms: now_ms });
        self.connected.set(false);
        self.shown.set(None);
        if self.leader.replace(false) {
            self.share_connected(false);
            let lease_key = self.sub_key("lease");
            if let Ok((Some(b), cas)) = raw::shared_data(&lease_key) {
                if Lease::decode(&b).is_some_and(|l| l.owner == self.me) {
                    let gone = Lease {
                        owner: 0,
                        until_ms: 0,
                    };
                    let _ = raw::set_shared_data(&lease_key, &gone.encode(), cas);
                }
            }
        }
    }

    fn open(&self, now_ms: u64) {
        let service = sync::grpc_service(&self.target.cluster, &self.target.authority);
        let metadata: &[(&str, &[u8])] = if self.target.selector.is_empty() {
            &[]
        } else {
            &[(sync::SELECTOR_HEADER, self.target.selector.as_bytes())]
        };
        let opened = raw::open_grpc_stream(&service, sync::METHOD, metadata).and_then(|token| {
            raw::grpc_send(token, &sync::request(&self.target.selector), true)
                .map(|()| token)
                .inspect_err(|_| {
                    let _ = raw::grpc_cancel(token);
                })
        });
        match opened {
            Ok(token) => self.stream.set(Stream::Open {
                token,
                since_ms: now_ms,
                live: false,
            }),
            Err(status) => self.retry_later(now_ms, &format!("cannot open it (host status {status})")),
        }
    }

    fn retry_later(&self, now_ms: u64, why: &str) {
        let mut b = self.backoff.get();
        let delay = b.next_delay_ms(fastrand::u32(..));
        self.backoff.set(b);
        self.stream.set(Stream::Idle {
            retry_at_ms: now_ms.saturating_add(delay),
        });
        if self.connected.replace(false) {
            self.share_connected(false);
        }
        log::warn!(
            "flagd sync {}: {why}; the last good flag stays, retrying in {delay} ms",
            self.name()
        );
    }

    /// The holder's part of a tick: open, time out, or keep the stream.
    fn drive(&self, now_ms: u64) {
        match self.stream.get() {
            // A retry further off than any backoff: the clock stepped back since it was set.
            Stream::Idle { retry_at_ms }
                if now_ms >= retry_at_ms || retry_at_ms > now_ms.saturating_add(sync::MAX_MS) =>
            {
                self.open(now_ms)
            }
            Stream::Open {
                token,
                since_ms,
                live: false,
            } if now_ms.saturating_sub(since_ms) >= self.target.timeout_ms || since_ms > now_ms => {
                let _ = raw::grpc_cancel(token);
                self.retry_later(now_ms, "no snapshot within timeoutSeconds");
            }
            _ => {}
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        matches!(self.stream.get(), Stream::Open { token: t, .. } if t == token)
    }

    pub fn closed(&self, now_ms: u64, status: u32) {
        self.retry_later(now_ms, &format!("stream ended (gRPC status {status})"));
    }

    fn mark_live(&self) {
        if let Stream::Open { token, since_ms, .. } = self.stream.get() {
            self.stream.set(Stream::Open {
                token,
                since_ms,
                live: true,
            });
        }
        let mut b = self.backoff.get();
        b.reset();
        self.backoff.set(b);
        if !self.connected.replace(true) {
            self.share_connected(true);
        }
    }
}

impl Shared {
    pub fn release_feeds(&self) {
        let now_ms = raw::now_nanos().unwrap_or(0) / 1_000_000;
        for feed in &self.feeds {
            feed.release(now_ms);
        }
    }

    /// Every feed's tick: the lease, the stream, what other workers published, the gauge.
    pub fn tick_feeds(&self, now_ms: u64) {
        for feed in &self.feeds {
            let leader = feed.hold_lease(now_ms);
            let held = feed.leader.replace(leader);
            if held && !leader {
                feed.release(now_ms);
            }
            // The stream opens on the second tick in a row that held the lease: two workers
            // that both took an absent lease learn on the next which one it went to.
            if leader && held {
                feed.drive(now_ms);
            }
            if !leader {
                self.adopt_published(feed);
            }
            self.show_connected(feed);
        }
    }

    /// Applies the snapshot another worker published, if newer than the one applied here.
    pub fn adopt_published(&self, feed: &Feed) {
        let Ok((Some(seq), _)) = raw::shared_data(&feed.sub_key("seq")) else {
            return;
        };
        let Some(seq) = sync::decode_seq(&seq) else {
            return;
        };
        if seq == feed.seen.get() {
            return;
        }
        let Ok((Some(published), _)) = raw::shared_data(&feed.sub_key("snapshot")) else {
            return;
        };
        let Some((seq, msg)) = sync::decode_published(&published) else {
            return;
        };
        feed.seen.set(seq);
        if let Ok(set) = sync::parse_snapshot(msg) {
            for &i in &feed.rollouts {
                self.apply(i, &set, false);
            }
        }
    }

    /// A message on the holder's stream: applied, counted and published.
    pub fn on_sync_message(&self, feed: &Feed, msg: &[u8]) {
        if !feed.still_holds() {
            feed.release(raw::now_nanos().unwrap_or(0) / 1_000_000);
            return;
        }
        feed.mark_live();
        let set = match sync::parse_snapshot(msg) {
            Ok(set) => set,
            Err(why) => {
                log::warn!(
                    "flagd sync {}: snapshot not applied: {}",
                    feed.target.cluster,
                    why.as_str()
                );
                for &i in &feed.rollouts {
                    self.count_sync(i, |l| l.sync_error_slot(why));
                }
                return;
            }
        };
        for &i in &feed.rollouts {
            if self.apply(i, &set, true) {
                self.keep_good(feed, i, msg);
            }
        }
        self.publish(feed, msg);
    }

    fn publish(&self, feed: &Feed, msg: &[u8]) {
        let seq_key = feed.sub_key("seq");
        let last = raw::shared_data(&seq_key)
            .ok()
            .and_then(|(b, _)| b.as_deref().and_then(sync::decode_seq))
            .unwrap_or(0);
        let seq = last.wrapping_add(1).max(1);
        let written = raw::set_shared_data(&feed.sub_key("snapshot"), &sync::encode_published(seq, msg), 0)
            .and_then(|()| raw::set_shared_data(&seq_key, &seq.to_le_bytes(), 0));
        match written {
            Ok(()) => feed.seen.set(seq),
            Err(s) => log::warn!("flagd sync: snapshot not shared with other workers (host status {s})"),
        }
    }

    fn flag_key(&self, i: usize) -> Option<&str> {
        let f = self.filter.rollouts.get(i)?.flagd.as_ref()?;
        Some(f.recipe.flag_key.as_str())
    }

    /// The last message good for rollout `i`'s flag, where a new configuration finds it even
    /// when bad snapshots came after it.
    fn keep_good(&self, feed: &Feed, i: usize, msg: &[u8]) {
        if let Some(key) = self.flag_key(i) {
            let _ = raw::set_shared_data(&feed.sub_key(&format!("good/{key}")), msg, 0);
        }
    }

    /// A new configuration starts from what this Envoy already has: each rollout's last good
    /// snapshot, then the latest one (applied where it is good too).
    pub fn adopt_current(&self, feed: &Feed) {
        for &i in &feed.rollouts {
            let Some(key) = self.flag_key(i) else {
                continue;
            };
            if let Ok((Some(msg), _)) = raw::shared_data(&feed.sub_key(&format!("good/{key}"))) {
                if let Ok(set) = sync::parse_snapshot(&msg) {
                    self.apply(i, &set, false);
                }
            }
        }
        self.adopt_published(feed);
    }

    /// Rollout `i`'s flag from a snapshot; the holder counts and logs what happened. `true`
    /// when applied.
    fn apply(&self, i: usize, set: &crate::flagd::Json, holder: bool) -> bool {
        let Some(f) = self.filter.rollouts.get(i).and_then(|c| c.flagd.as_ref()) else {
            return false;
        };
        let id = self.filter.rollouts.get(i).map_or("", |c| c.rollout_id.as_str());
        match f.recipe.from_snapshot(set) {
            Ok(flag) => {
                let changed = *f.flag.get() != flag;
                f.flag.set(flag);
                if holder {
                    self.count_sync(i, |l| l.sync_updates_slot());
                    if changed {
                        log::info!(
                            "rollout {id}: flag {:?} updated from flagd sync",
                            f.recipe.flag_key
                        );
                    }
                }
                true
            }
            Err((why, detail)) if holder => {
                log::warn!(
                    "rollout {id}: flagd sync snapshot not applied ({}): {detail}",
                    why.as_str()
                );
                self.count_sync(i, |l| l.sync_error_slot(why));
                false
            }
            Err(_) => false,
        }
    }

    fn count_sync(&self, i: usize, slot: impl Fn(&crate::metrics::Layout) -> Option<usize>) {
        if let Some(m) = self.metrics(i) {
            if let Some(s) = slot(&m.layout) {
                self.count(m, s);
            }
        }
    }

    /// Every root context shows the holder's state, so a rollout of a configuration that does
    /// not hold the stream has the gauge too.
    fn show_connected(&self, feed: &Feed) {
        let up = match raw::shared_data(&feed.sub_key("connected")) {
            Ok((Some(b), _)) => b.first() == Some(&1),
            _ => false,
        };
        if feed.shown.replace(Some(up)) == Some(up) {
            return;
        }
        for &i in &feed.rollouts {
            if let Some(m) = self.metrics(i) {
                if let Some(s) = m.layout.sync_connected_slot() {
                    m.record(s, u64::from(up));
                }
            }
        }
    }
}
