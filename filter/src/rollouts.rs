//! Many rollouts in one filter: `rollouts[]` entries, each today's single-rollout form plus
//! `match`, chosen per request by `:authority` and `:path` (first match in order wins).
//!
//! Each entry becomes one [`Config`], built by today's parser from the entry's fields over
//! the top-level ones (an entry's field replaces the top-level field whole: nested objects
//! such as `trace` or `override` are not merged key by key). A configuration without
//! `rollouts` is today's form: one rollout that matches every request.

use std::collections::HashMap;

use crate::config::{one_line, Config, ConfigError};
use crate::inputs::RoutingInputs;

/// Most entries one configuration may hold (each costs its metrics in Envoy).
pub const MAX_ROLLOUTS: usize = 10_000;
/// Longest host name (RFC 1035: 253, plus a trailing dot), or bracketed IPv6 literal.
const MAX_HOST_LEN: usize = 254;
const MAX_PATH_PREFIX_LEN: usize = 1024;

/// The validated configuration of the whole filter.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// One per entry, in configuration order; the single-rollout form has exactly one.
    pub rollouts: Vec<Config>,
    pub matcher: Matcher,
    /// Every entry's routing inputs: a client's copy of another rollout's (or, unmatched, of
    /// any rollout's) is removed, so a client cannot pre-route itself.
    pub inputs: RoutingInputs,
    /// Whether `rollouts` was used (the single form never leaves a request unmatched).
    pub multi: bool,
}

impl FilterConfig {
    /// Parse and validate either form. Errors name the JSON path (`rollouts[2].versions[0].weight`).
    pub fn from_json(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        let top = match json::members(bytes) {
            Some(top) if get(&top, b"rollouts").is_some() => top,
            // Today's form, or not an object at all: today's parser and its messages.
            _ => return Ok(FilterConfig::single(Config::from_json(bytes)?)),
        };
        // The whole text is JSON, the defaults every entry replaces included (those are
        // never parsed otherwise): UTF-8 (skipping a value does not check it), then the syntax.
        if let Err(e) = std::str::from_utf8(bytes) {
            return Err(err("", format!("invalid UTF-8 at byte {}", e.valid_up_to())));
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            let path = crate::json_path::at(bytes, e.line(), e.column());
            return Err(err(one_line(&path), one_line(&e.to_string())));
        }
        if get(&top, b"match").is_some() {
            return Err(err(
                "match",
                "belongs in a rollouts[] entry, not at the top level",
            ));
        }
        if top.iter().filter(|(k, _)| *k == b"rollouts").count() > 1 {
            return Err(err("rollouts", "duplicate field `rollouts`"));
        }
        let list = get(&top, b"rollouts")
            .and_then(json::elements)
            .ok_or_else(|| err("rollouts", "must be an array of objects"))?;
        if list.is_empty() || list.len() > MAX_ROLLOUTS {
            return Err(err("rollouts", format!("must list 1 to {MAX_ROLLOUTS} rollouts")));
        }
        let mut rollouts = Vec::with_capacity(list.len());
        let mut matches = Vec::with_capacity(list.len());
        // The matcher's map type, so no second HashMap is compiled in.
        let mut ids: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(list.len());
        let mut merged = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            let at = format!("rollouts[{i}]");
            let entry = json::members(raw).ok_or_else(|| err(&at, "must be a JSON object"))?;
            if entry.iter().filter(|(k, _)| *k == b"match").count() > 1 {
                return Err(err(format!("{at}.match"), "duplicate field `match`"));
            }
            let m = match get(&entry, b"match") {
                None => Match::default(),
                Some(m) => parse_match(m).map_err(|e| {
                    let path = if e.path.is_empty() {
                        format!("{at}.match")
                    } else {
                        format!("{at}.match.{}", e.path)
                    };
                    err(path, e.reason)
                })?,
            };
            merged.clear();
            merge(&top, &entry, &mut merged);
            let cfg = Config::from_json(&merged).map_err(|e| locate(e, &at, &entry))?;
            if let Some(first) = ids.insert(cfg.rollout_id.as_bytes().into(), i as u32) {
                return Err(err(
                    format!("{at}.rolloutId"),
                    format!(
                        "duplicate rollout id {:?} (also rollouts[{first}].rolloutId)",
                        cfg.rollout_id
                    ),
                ));
            }
            rollouts.push(cfg);
            matches.push(m);
        }
        Ok(FilterConfig {
            inputs: RoutingInputs::new(&rollouts),
            rollouts,
            matcher: Matcher::new(matches),
            multi: true,
        })
    }

    fn single(cfg: Config) -> FilterConfig {
        FilterConfig {
            rollouts: vec![cfg],
            matcher: Matcher::new(vec![Match::default()]),
            inputs: RoutingInputs::default(),
            multi: false,
        }
    }

    /// Whether an unmatched request loses header `name` (lowercase, as Envoy stores names).
    pub fn strips_when_unmatched(&self, name: &[u8]) -> bool {
        self.inputs.strips_header(name, None)
    }

    /// Every request goes to rollout 0: no need to read `:authority` or `:path`.
    pub fn matches_everything(&self) -> bool {
        self.matcher.matches_everything()
    }

    /// The rollout for a request: index into `rollouts`, `None` when no entry matches.
    pub fn select(&self, authority: Option<&[u8]>, path: Option<&[u8]>) -> Option<usize> {
        if self.matches_everything() {
            return Some(0);
        }
        self.matcher
            .select(authority.unwrap_or_default(), path.unwrap_or_default())
    }
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The raw value of member `name` (compared as written, between the quotes).
fn get<'a>(members: &[(&[u8], &'a [u8])], name: &[u8]) -> Option<&'a [u8]> {
    members.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Where an error in the merged entry came from: the entry (`rollouts[i].<path>`), or a
/// top-level default (its own path, naming the entry it broke).
fn locate(mut e: ConfigError, at: &str, entry: &[(&[u8], &[u8])]) -> ConfigError {
    // A position in the merged text would point nowhere in the user's file.
    if let Some(cut) = json::position_suffix(e.reason.as_bytes()) {
        e.reason.truncate(cut);
    }
    let first = e.path.split(['.', '[']).next().unwrap_or_default();
    if first.is_empty() {
        return err(at, e.reason);
    }
    if get(entry, first.as_bytes()).is_some() {
        return err(format!("{at}.{}", e.path), e.reason);
    }
    err(
        e.path,
        format!("{} (top-level default, as applied to {at})", e.reason),
    )
}

/// The entry's members (but `match`), then the top-level ones it does not set (but
/// `rollouts`), as one JSON object for today's parser, which checks every byte of it.
fn merge(top: &[(&[u8], &[u8])], entry: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    out.push(b'{');
    let own = entry.iter().filter(|(k, _)| *k != b"match");
    let inherited = top
        .iter()
        .filter(|(k, _)| *k != b"rollouts" && get(entry, k).is_none());
    for (n, (k, v)) in own.chain(inherited).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(v);
    }
    out.push(b'}');
}

/// Splitting JSON objects and arrays into their members' raw text, without decoding the
/// values. Hand-written rather than serde_json's `RawValue`, which costs several KB of wasm
/// against the module's size budget. Only the structure is checked here: every value is
/// parsed by serde afterwards (in the merged entry, or as a `match` field).
mod json {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// `i` at an opening quote: the index after the closing one.
    fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
        i += 1;
        loop {
            match *b.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
    }

    /// `i` at the start of a value: the index after it.
    fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
        let mut depth = 0usize;
        loop {
            match *b.get(i)? {
                b'"' => i = string_end(b, i)?,
                b'{' | b'[' => {
                    depth += 1;
                    i += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    i += 1;
                }
                b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => return Some(i),
                _ => i += 1,
            }
            if depth == 0 && matches!(b.get(i - 1), Some(b'"' | b'}' | b']')) {
                return Some(i);
            }
        }
    }

    /// Items between `open` and `close`, each split by `item` (which returns its end).
    fn items<T>(
        b: &[u8],
        open: u8,
        close: u8,
        mut item: impl FnMut(usize) -> Option<(T, usize)>,
    ) -> Option<Vec<T>> {
        let mut i = ws(b, 0);
        if b.get(i) != Some(&open) {
            return None;
        }
        let mut out = Vec::new();
        i = ws(b, i + 1);
        if b.get(i) == Some(&close) {
            return (ws(b, i + 1) == b.len()).then_some(out);
        }
        loop {
            let (t, end) = item(i)?;
            out.push(t);
            i = ws(b, end);
            match *b.get(i)? {
                b',' => i = ws(b, i + 1),
                c if c == close => return (ws(b, i + 1) == b.len()).then_some(out),
                _ => return None,
            }
        }
    }

    /// An object's members: (key as written between its quotes, raw value).
    pub fn members(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
        items(b, b'{', b'}', |i| {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = string_end(b, i)?;
            let colon = ws(b, key_end);
            if b.get(colon) != Some(&b':') {
                return None;
            }
            let start = ws(b, colon + 1);
            let end = value_end(b, start)?;
            Some(((b.get(i + 1..key_end - 1)?, b.get(start..end)?), end))
        })
    }

    /// An array's elements, raw.
    pub fn elements(b: &[u8]) -> Option<Vec<&[u8]>> {
        items(b, b'[', b']', |i| {
            let end = value_end(b, i)?;
            Some((b.get(i..end)?, end))
        })
    }

    /// Where serde_json's ` at line N column M` starts in an error message.
    pub fn position_suffix(reason: &[u8]) -> Option<usize> {
        const AT: &[u8] = b" at line ";
        let cut = reason.windows(AT.len()).rposition(|w| w == AT)?;
        let tail = reason.get(cut + AT.len()..)?;
        tail.iter()
            .all(|c| c.is_ascii_digit() || b" column".contains(c))
            .then_some(cut)
    }
}

// ---- match ------------------------------------------------------------------------------

/// One entry's `match`, validated. `hosts: None` matches any host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub hosts: Option<Vec<HostPattern>>,
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A name (lowercase), matched whole.
    Exact(Vec<u8>),
    /// `*.SUFFIX`: SUFFIX (lowercase), matching any name ending in `.SUFFIX`.
    Suffix(Vec<u8>),
}

fn parse_match(raw: &[u8]) -> Result<Match, ConfigError> {
    let fields =
        json::members(raw).ok_or_else(|| err("", "must be an object with hosts and/or pathPrefix"))?;
    let mut m = Match::default();
    for (k, v) in fields {
        match k {
            b"hosts" => {
                let list = json::elements(v).ok_or_else(|| err("hosts", "must be an array of host names"))?;
                if list.is_empty() {
                    return Err(err(
                        "hosts",
                        "must list at least one host (leave it out to match any host)",
                    ));
                }
                let mut out = Vec::with_capacity(list.len());
                for (i, h) in list.iter().enumerate() {
                    let h = string(h)
                        .ok_or_else(|| NOT_STRING.to_string())
                        .and_then(|h| {
                            if h == "*" {
                                Ok(None)
                            } else {
                                host_pattern(&h).map(Some)
                            }
                        })
                        .map_err(|r| err(format!("hosts[{i}]"), r))?;
                    match h {
                        Some(h) => out.push(h),
                        None => {
                            // Any host, as in an Envoy virtual host's domains.
                            out.clear();
                            break;
                        }
                    }
                }
                m.hosts = (!out.is_empty()).then_some(out);
            }
            b"pathPrefix" => {
                let p = string(v).ok_or_else(|| err("pathPrefix", NOT_STRING))?;
                let bad = |c: &u8| c.is_ascii_control() || b" ?#".contains(c) || !c.is_ascii();
                if !p.starts_with('/') || p.len() > MAX_PATH_PREFIX_LEN || p.bytes().any(|c| bad(&c)) {
                    return Err(err(
                        "pathPrefix",
                        format!(
                            "must be a path starting with \"/\" (no query, spaces or controls), got {p:?}"
                        ),
                    ));
                }
                m.path_prefix = Some(p);
            }
            other => {
                let name = one_line(std::str::from_utf8(other).unwrap_or("?"));
                return Err(err(
                    name.clone(),
                    format!("unknown field `{name}`, expected `hosts` or `pathPrefix`"),
                ));
            }
        }
    }
    Ok(m)
}

const NOT_STRING: &str = "must be a string (of host or path characters, no JSON escapes but \\/)";

/// A JSON string's text. Host names and paths need no escapes but `\/`, which some
/// encoders write; anything else escaped could not be a valid host or path prefix anyway.
fn string(v: &[u8]) -> Option<String> {
    let inner = v.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&c) = bytes.next() {
        match c {
            b'\\' if bytes.next() == Some(&b'/') => out.push(b'/'),
            b'\\' | b'"' => return None,
            c => out.push(c),
        }
    }
    String::from_utf8(out).ok()
}

fn host_pattern(h: &str) -> Result<HostPattern, String> {
    let lower = h.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    // A DNS-style name (labels of [a-z0-9_-]), or an IPv6 literal in brackets.
    let ok = match name {
        [b'[', inner @ .., b']'] => {
            !wild && !inner.is_empty() && inner.iter().all(|c| c.is_ascii_hexdigit() || b":.".contains(c))
        }
        _ => {
            !name.is_empty()
                && name.split(|c| *c == b'.').all(|l| {
                    !l.is_empty() && l.iter().all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c))
                })
        }
    };
    if !ok || name.len() > MAX_HOST_LEN {
        return Err(format!(
            "must be a host name without port, `*.SUFFIX` or `*`, got {h:?}"
        ));
    }
    let name = name.to_vec();
    Ok(if wild {
        HostPattern::Suffix(name)
    } else {
        HostPattern::Exact(name)
    })
}

// ---- matching ---------------------------------------------------------------------------

/// Indexes entries by host so a request costs hash lookups, not a scan of every entry:
/// one lookup for its exact name and one per label for `*.SUFFIX` entries; then each list
/// found is indexed by path prefix ([`Prefixes`]).
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// An exact name, or `.SUFFIX` for `*.SUFFIX` (a name never starts with a dot) → index
    /// into `lists`.
    hosts: HashMap<Box<[u8]>, u32>,
    /// Entries naming a host.
    lists: Vec<Prefixes>,
    /// Entries with no host constraint.
    any_host: Prefixes,
}

impl Matcher {
    pub fn new(matches: Vec<Match>) -> Matcher {
        let mut m = Matcher::default();
        for (i, e) in matches.into_iter().enumerate() {
            let i = i as u32;
            let prefix = e.path_prefix.as_deref().unwrap_or_default().as_bytes();
            match e.hosts {
                None => m.any_host.insert(prefix, i),
                Some(hosts) => {
                    for h in hosts {
                        let key = match h {
                            HostPattern::Exact(n) => n,
                            HostPattern::Suffix(s) => [&b"."[..], &s].concat(),
                        };
                        let next = m.lists.len() as u32;
                        let at = *m.hosts.entry(key.into()).or_insert(next);
                        if at == next {
                            m.lists.push(Prefixes::default());
                        }
                        if let Some(list) = m.lists.get_mut(at as usize) {
                            list.insert(prefix, i);
                        }
                    }
                }
            }
        }
        m
    }

    /// Whether entry 0 matches every request (any host, no path prefix).
    fn matches_everything(&self) -> bool {
        self.any_host.first(b"") == 0
    }

    /// The first entry, in configuration order, matching `authority` and `path`.
    pub fn select(&self, authority: &[u8], path: &[u8]) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST_LEN + 2];
        let owned;
        let host = host_of(authority);
        let host: &[u8] = if !host.iter().any(u8::is_ascii_uppercase) {
            host
        } else if let Some(b) = buf.get_mut(..host.len()) {
            b.copy_from_slice(host);
            b.make_ascii_lowercase();
            b
        } else {
            owned = host.to_ascii_lowercase();
            &owned
        };
        let mut best = self.any_host.first(path);
        if self.hosts.is_empty() {
            return found(best);
        }
        // The name itself, then `.SUFFIX` for each dot with at least one byte before it.
        // (A name starting with a dot is no name: it must not meet a `.SUFFIX` key whole.)
        let whole = (host.first() != Some(&b'.')).then_some(0);
        let keys = whole.into_iter().chain(
            host.iter()
                .enumerate()
                .filter(|&(at, c)| *c == b'.' && at > 0)
                .map(|(at, _)| at),
        );
        for at in keys {
            let list = host
                .get(at..)
                .and_then(|k| self.hosts.get(k))
                .and_then(|l| self.lists.get(*l as usize));
            if let Some(list) = list {
                best = best.min(list.first(path));
            }
        }
        found(best)
    }
}

fn found(entry: u32) -> Option<usize> {
    (entry != NONE).then_some(entry as usize)
}

/// No entry (entries are fewer than [`MAX_ROLLOUTS`]).
const NONE: u32 = u32::MAX;

/// One list's entries by path prefix: a radix trie, its edges labelled with runs of bytes so
/// it holds under two nodes per entry however long the prefixes. A lookup walks the path
/// once, so it costs the path's length, not the number of entries.
#[derive(Debug, Clone)]
struct Prefixes {
    /// The root (the empty prefix) first.
    nodes: Vec<Node>,
    /// The edge labels' bytes.
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Node {
    /// The first entry whose prefix ends exactly here, or [`NONE`].
    first: u32,
    /// The label of the edge into this node: `bytes[at..at + len]`.
    at: u32,
    len: u32,
    /// (first byte of the child's label, child), sorted by byte.
    children: Vec<(u8, u32)>,
}

impl Default for Prefixes {
    fn default() -> Prefixes {
        Prefixes {
            nodes: vec![Node::new(NONE, 0, 0)],
            bytes: Vec::new(),
        }
    }
}

impl Node {
    fn new(first: u32, at: usize, len: usize) -> Node {
        Node {
            first,
            at: at as u32,
            len: len as u32,
            children: Vec::new(),
        }
    }

    /// The child whose label starts with `b`: (its place in `children`, its node).
    fn child(&self, b: u8) -> Result<(usize, u32), usize> {
        let at = self.children.binary_search_by_key(&b, |c| c.0)?;
        self.children.get(at).map(|c| (at, c.1)).ok_or(at)
    }
}

impl Prefixes {
    fn label(&self, node: &Node) -> &[u8] {
        let at = node.at as usize;
        self.bytes.get(at..at + node.len as usize).unwrap_or_default()
    }

    /// Adds `entry` under `prefix` (the lower index stays if the prefix is there already).
    fn insert(&mut self, prefix: &[u8], entry: u32) {
        let (mut node, mut rest) = (0usize, prefix);
        while let Some(&b) = rest.first() {
            let Some(n) = self.nodes.get(node) else { return };
            let (slot, child) = match n.child(b) {
                Ok(c) => c,
                Err(slot) => return self.add_leaf(node, slot, rest, entry),
            };
            let Some(c) = self.nodes.get(child as usize) else {
                return;
            };
            let label = self.label(c);
            let common = label.iter().zip(rest).take_while(|(x, y)| x == y).count();
            node = if common < label.len() {
                self.split(node, slot, common)
            } else {
                child as usize
            };
            rest = rest.get(common..).unwrap_or_default();
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.first = n.first.min(entry);
        }
    }

    fn add_leaf(&mut self, parent: usize, slot: usize, label: &[u8], entry: u32) {
        let Some(&b) = label.first() else { return };
        let id = self.nodes.len() as u32;
        self.nodes.push(Node::new(entry, self.bytes.len(), label.len()));
        self.bytes.extend_from_slice(label);
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.insert(slot, (b, id));
        }
    }

    /// Cuts the edge `parent.children[slot]` after `len` bytes of its label (`0 < len <
    /// label`): a new middle node takes the first part. Returns the middle node.
    fn split(&mut self, parent: usize, slot: usize, len: usize) -> usize {
        let mid = self.nodes.len();
        let Some(&(_, child)) = self.nodes.get(parent).and_then(|p| p.children.get(slot)) else {
            return parent;
        };
        let Some(at) = self.nodes.get(child as usize).map(|c| c.at as usize) else {
            return parent;
        };
        let mut m = Node::new(NONE, at, len);
        m.children
            .push((self.bytes.get(at + len).copied().unwrap_or_default(), child));
        self.nodes.push(m);
        if let Some(c) = self.nodes.get_mut(child as usize) {
            c.at += len as u32;
            c.len -= len as u32;
        }
        if let Some(e) = self.nodes.get_mut(parent).and_then(|p| p.children.get_mut(slot)) {
            e.1 = mid as u32;
        }
        mid
    }

    /// The first entry whose prefix starts `path`, or [`NONE`].
    fn first(&self, path: &[u8]) -> u32 {
        let Some(mut node) = self.nodes.first() else {
            return NONE;
        };
        let (mut best, mut rest) = (node.first, path);
        while let Some(&b) = rest.first() {
            let Some(next) = node.child(b).ok().and_then(|(_, c)| self.nodes.get(c as usize)) else {
                break;
            };
            let Some(tail) = rest.strip_prefix(self.label(next)) else {
                break;
            };
            (node, rest, best) = (next, tail, best.min(next.first));
        }
        best
    }
}

/// The host of an `:authority`: port removed (IPv6 literals keep their brackets), one
/// trailing dot removed.
pub fn host_of(authority: &[u8]) -> &[u8] {
    let host = if authority.first() == Some(&b'[') {
        match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.iter().position(|&b| b == b':') {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// A test and benchmark fixture, not used by the filter itself: `n` rollouts (`n >= 1`),
/// `n - 1` exact hosts `svc-<i>.example.com` (rollout `svc-<i>`) and one `*.wild.example.com`
/// (rollout `wild`), sharing top-level versions (90/10) and sticky key `x-user-id`.
/// Unreachable from the filter's entry points, so it is not in the shipped module.
#[doc(hidden)]
pub fn config_with_rollouts(n: usize) -> String {
    let mut entries: Vec<String> = (0..n.saturating_sub(1))
        .map(|i| format!(r#"{{"match":{{"hosts":["svc-{i}.example.com"]}},"rolloutId":"svc-{i}"}}"#))
        .collect();
    entries.push(r#"{"match":{"hosts":["*.wild.example.com"]},"rolloutId":"wild"}"#.into());
    format!(
        r#"{{"versions":[{{"name":"stable","weight":90}},{{"name":"canary","weight":10}}],"stickyKeys":[{{"header":"x-user-id"}}],"rollouts":[{}]}}"#,
        entries.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const THREE: &str = r#"{
        "stickyKeys": [ { "header": "x-user-id" } ],
        "override": { "header": "x-rollout-pin" },
        "trace": { "enabled": false },
        "rollouts": [
          { "match": { "hosts": ["shop.example.com"], "pathPrefix": "/cart" },
            "rolloutId": "cart-7", "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
            "routeHeader": "x-cart-version" },
          { "match": { "hosts": ["*.api.example.com"] }, "rolloutId": "api-3",
            "versions": [ { "name": "v1", "weight": 1 } ], "trace": { "newSpan": true } },
          { "match": { "hosts": ["Shop.Example.com"] }, "rolloutId": "shop-1",
            "versions": [ { "name": "v1", "weight": 1 } ], "override": { "query": "pin" } }
        ] }"#;

    fn parse(json: &str) -> FilterConfig {
        FilterConfig::from_json(json.as_bytes()).unwrap()
    }

    fn error(json: &str) -> String {
        FilterConfig::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn entries_take_top_level_defaults_and_replace_them_whole() {
        let f = parse(THREE);
        assert!(f.multi);
        let ids: Vec<_> = f.rollouts.iter().map(|c| c.rollout_id.as_str()).collect();
        assert_eq!(ids, ["cart-7", "api-3", "shop-1"]);
        let [cart, api, shop] = &f.rollouts[..] else {
            panic!()
        };
        assert_eq!(cart.route_header, "x-cart-version");
        assert_eq!(api.route_header, "x-rollout-version");
        // Inherited.
        assert_eq!(cart.r#override.header.as_deref(), Some("x-rollout-pin"));
        assert!(!cart.trace.enabled);
        assert_eq!(api.sticky_keys, cart.sticky_keys);
        // Replaced whole: the entry's `trace` has no `enabled`, so the default (on) applies.
        assert!(api.trace.enabled && api.trace.settings.new_span);
        assert_eq!(shop.r#override.header, None);
        assert_eq!(shop.r#override.query.as_deref(), Some("pin"));
        for h in [
            "x-cart-version",
            "x-rollout-id",
            "x-rollout-version",
            "x-rollout-pin",
        ] {
            assert!(f.strips_when_unmatched(h.as_bytes()), "{h}");
        }
        assert!(!f.strips_when_unmatched(b"x-user-id"));
    }

    #[test]
    fn unmatched_requests_lose_every_bucket_header_too() {
        let f = parse(
            r#"{"rollouts":[
              {"rolloutId":"a","match":{"hosts":["a.example.com"]},"versions":[{"name":"v1"},{"name":"v2"}],
               "routeWeights":{"bucketHeader":"x-a-bucket"}},
              {"rolloutId":"b","versions":[{"name":"v1","weight":1}],"match":{"hosts":["b.example.com"]},
               "rolloutIdHeader":"x-b-id"}]}"#,
        );
        for h in ["x-a-bucket", "x-b-id", "x-rollout-id", "x-rollout-version"] {
            assert!(f.strips_when_unmatched(h.as_bytes()), "{h}");
        }
    }

    #[test]
    fn single_form_is_unchanged_and_matches_everything() {
        let json = r#"{"rolloutId":"r","versions":[{"name":"v1","weight":1}]}"#;
        let f = parse(json);
        assert!(!f.multi && f.matches_everything());
        assert_eq!(f.rollouts, vec![Config::from_json(json.as_bytes()).unwrap()]);
        assert_eq!(f.select(None, None), Some(0));
        assert!(!f.strips_when_unmatched(b"x-rollout-version"));
        // Today's messages, word for word.
        for bad in [
            r#"{"rolloutId":"r","versions":[{"name":"a","weight":-1}]}"#,
            r#"{"rolloutId":"r","versions":[],"match":{}}"#,
            "not json",
            "",
            "[1]",
        ] {
            assert_eq!(
                error(bad),
                Config::from_json(bad.as_bytes()).unwrap_err().to_string()
            );
        }
    }

    #[test]
    fn selects_by_host_and_path_first_match_wins() {
        let f = parse(THREE);
        let sel = |a: &str, p: &str| f.select(Some(a.as_bytes()), Some(p.as_bytes()));
        assert_eq!(sel("shop.example.com", "/cart/1"), Some(0));
        assert_eq!(sel("shop.example.com:8443", "/cart?x=1"), Some(0));
        assert_eq!(sel("SHOP.Example.COM", "/cartoon"), Some(0)); // a plain prefix, as Envoy's
        assert_eq!(sel("shop.example.com", "/"), Some(2));
        assert_eq!(sel("shop.example.com.", "/"), Some(2));
        assert_eq!(sel("a.api.example.com", "/"), Some(1));
        assert_eq!(sel("a.b.API.example.com:80", "/x"), Some(1));
        assert_eq!(sel("api.example.com", "/"), None);
        assert_eq!(sel(".api.example.com", "/"), None);
        assert_eq!(sel("xapi.example.com", "/"), None);
        assert_eq!(sel("other.example.com", "/cart"), None);
        assert_eq!(f.select(None, None), None);
    }

    #[test]
    fn order_decides_across_exact_wildcard_and_any_host() {
        let f = parse(
            r#"{"versions":[{"name":"v1","weight":1}],"rollouts":[
              {"rolloutId":"a","match":{"hosts":["*.example.com"],"pathPrefix":"/a"}},
              {"rolloutId":"b","match":{"hosts":["x.example.com"],"pathPrefix":"/b"}},
              {"rolloutId":"c","match":{"pathPrefix":"/c"}},
              {"rolloutId":"d","match":{"hosts":["*.x.example.com","x.example.com"]}},
              {"rolloutId":"e"}
            ]}"#,
        );
        let sel = |a: &str, p: &str| f.select(Some(a.as_bytes()), Some(p.as_bytes()));
        assert_eq!(sel("x.example.com", "/a"), Some(0));
        assert_eq!(sel("x.example.com", "/b"), Some(1));
        assert_eq!(sel("x.example.com", "/c"), Some(2));
        assert_eq!(sel("y.x.example.com", "/b"), Some(3));
        assert_eq!(sel("y.x.example.com", "/a"), Some(0));
        assert_eq!(sel("x.example.com", "/z"), Some(3));
        assert_eq!(sel("example.com", "/a"), Some(4));
        assert_eq!(sel("[::1]:8080", "/"), Some(4));
        assert!(!f.matches_everything());
    }

    #[test]
    fn hosts_without_port_case_and_ipv6() {
        assert_eq!(host_of(b"a.example.com:8080"), b"a.example.com");
        assert_eq!(host_of(b"a.example.com"), b"a.example.com");
        assert_eq!(host_of(b"[::1]:80"), b"[::1]");
        assert_eq!(host_of(b"[::1]"), b"[::1]");
        assert_eq!(host_of(b"a.example.com.:80"), b"a.example.com");
        let f = parse(
            r#"{"versions":[{"name":"v1","weight":1}],"rollouts":[
              {"rolloutId":"a","match":{"hosts":["[::1]","127.0.0.1"]}}]}"#,
        );
        assert_eq!(f.select(Some(b"[::1]:80"), Some(b"/")), Some(0));
        assert_eq!(f.select(Some(b"127.0.0.1:80"), Some(b"/")), Some(0));
        assert_eq!(f.select(Some(b"[::2]:80"), Some(b"/")), None);
        // Longer than any host name: lowercased on the heap, still matched.
        let long = format!("{}.Example.com", "a".repeat(300));
        let f = parse(
            r#"{"versions":[{"name":"v1","weight":1}],"rollouts":[
              {"rolloutId":"a","match":{"hosts":["*.example.com"]}}]}"#,
        );
        assert_eq!(f.select(Some(long.as_bytes()), Some(b"/")), Some(0));
    }

    #[test]
    fn a_replaced_default_must_still_be_utf8() {
        let mut bytes = br#"{"routeHeader":"x","rollouts":[{"rolloutId":"a","routeHeader":"y","versions":[{"name":"a","weight":1}]}]}"#.to_vec();
        bytes[16] = 0x83;
        let e = FilterConfig::from_json(&bytes).unwrap_err().to_string();
        assert_eq!(e, "invalid UTF-8 at byte 16");
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"rollouts":[]}"#, "rollouts: must list 1 to 10000 rollouts"),
            (r#"{"rollouts":{}}"#, "rollouts: must be an array of objects"),
            (r#"{"rollouts":[1]}"#, "rollouts[0]: must be a JSON object"),
            (r#"{"rollouts":[{"rolloutId":"a"}]}"#, "rollouts[0]: missing field `versions`"),
            (
                r#"{"rollouts":[{"rolloutId":"a","versions":[{"name":"a","weight":1}]},{"rolloutId":"b","versions":[{"name":"a","weight":-1}]}]}"#,
                "rollouts[1].versions[0].weight: must be an integer >= 0",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a"},{"rolloutId":"b"},{"rolloutId":"a"}]}"#,
                "rollouts[2].rolloutId: duplicate rollout id \"a\" (also rollouts[0].rolloutId)",
            ),
            (
                r#"{"rolloutId":"same","versions":[{"name":"a","weight":1}],"rollouts":[{},{}]}"#,
                "rollouts[1].rolloutId: duplicate rollout id \"same\" (also rollouts[0].rolloutId)",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"host":["x"]}}]}"#,
                "rollouts[0].match.host: unknown field `host`",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"hosts":["ok.com","x.com:80"]}}]}"#,
                "rollouts[0].match.hosts[1]: must be a host name without port, `*.SUFFIX` or `*`, got \"x.com:80\"",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"hosts":["a.*.com"]}}]}"#,
                "rollouts[0].match.hosts[0]: must be a host name without port, `*.SUFFIX` or `*`, got \"a.*.com\"",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"hosts":[]}}]}"#,
                "rollouts[0].match.hosts: must list at least one host",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"pathPrefix":"cart"}}]}"#,
                "rollouts[0].match.pathPrefix: must be a path starting with \"/\"",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","stickyKey":[]}]}"#,
                "rollouts[0].stickyKey: unknown field `stickyKey`",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","rolloutId":"b"}]}"#,
                "rollouts[0].rolloutId: duplicate field `rolloutId`",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","rollouts":[]}]}"#,
                "rollouts[0].rollouts: unknown field `rollouts`",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"match":{},"rollouts":[{"rolloutId":"a"}]}"#,
                "match: belongs in a rollouts[] entry",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"stickyKey":[],"rollouts":[{"rolloutId":"a"}]}"#,
                "stickyKey: unknown field `stickyKey`",
            ),
            (
                r#"{"versions":[{"name":"a","weight":1}],"override":{"header":"x-v"},"rollouts":[{"rolloutId":"a"},{"rolloutId":"b","routeHeader":"x-v"}]}"#,
                "override.header: must differ from routeHeader (clients may never set the route header) (top-level default, as applied to rollouts[1])",
            ),
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(
                got.starts_with(want),
                "config {json}\n  got:  {got}\n  want: {want}"
            );
        }
        let got =
            error(r#"{"versions":[{"name":"a","weight":1}],"stickyKey":[],"rollouts":[{"rolloutId":"a"}]}"#);
        assert!(
            got.ends_with("(top-level default, as applied to rollouts[0])") && !got.contains(" at line "),
            "{got}"
        );
    }

    #[test]
    fn match_strings_accept_only_the_slash_escape() {
        let f = parse(
            r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"hosts":["a.example.com"],"pathPrefix":"\/cart\/"}}]}"#,
        );
        assert_eq!(f.select(Some(b"a.example.com"), Some(b"/cart/1")), Some(0));
        let e = error(
            r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"hosts":["a\u002eexample.com"]}}]}"#,
        );
        assert!(
            e.starts_with("rollouts[0].match.hosts[0]: must be a string"),
            "{e}"
        );
        let e = error(
            r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"a","match":{"pathPrefix":7}}]}"#,
        );
        assert!(
            e.starts_with("rollouts[0].match.pathPrefix: must be a string"),
            "{e}"
        );
    }

    #[test]
    fn a_default_every_entry_replaces_must_still_be_json() {
        let e = error(
            "{\"routeHeader\": \u{0}\"x\", \"versions\":[{\"name\":\"a\",\"weight\":1}],\"rollouts\":[{\"rolloutId\":\"r\",\"routeHeader\":\"y\"}]}",
        );
        assert!(e.starts_with("routeHeader: "), "{e}");
        let e = error(
            r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rolloutId":"r","match":{},"match":{}}]}"#,
        );
        assert_eq!(e, "rollouts[0].match: duplicate field `match`");
    }

    #[test]
    fn escaped_keys_and_values_survive_the_merge() {
        let f = parse(
            r#"{"versions":[{"name":"a","weight":1}],"rollouts":[{"rollout\u0049d":"a\u002db","routeHeader":"x-\u0061"}]}"#,
        );
        assert_eq!(f.rollouts[0].rollout_id, "a-b");
        assert_eq!(f.rollouts[0].route_header, "x-a");
    }

    #[test]
    fn a_thousand_rollouts_load_quickly_and_match_by_hash() {
        let json = config_with_rollouts(1000);
        // Timed on the host only (wasm32-unknown-unknown has no clock); printed, never asserted.
        #[cfg(not(target_arch = "wasm32"))]
        let start = std::time::Instant::now();
        let f = parse(&json);
        #[cfg(not(target_arch = "wasm32"))]
        println!("1,000 rollouts parsed in {:?}", start.elapsed());
        assert_eq!(f.rollouts.len(), 1000);
        for i in [0usize, 1, 499, 998] {
            let host = format!("svc-{i}.example.com");
            assert_eq!(f.select(Some(host.as_bytes()), Some(b"/")), Some(i));
        }
        assert_eq!(f.select(Some(b"a.wild.example.com"), Some(b"/")), Some(999));
        assert_eq!(f.select(Some(b"svc-1000.example.com"), Some(b"/")), None);
    }

    /// The specification the index must keep: the first entry, in configuration order, whose
    /// hosts and path prefix both match.
    fn model(entries: &[Match], authority: &[u8], path: &[u8]) -> Option<usize> {
        let host = host_of(authority).to_ascii_lowercase();
        let host_matches = |h: &HostPattern| match h {
            HostPattern::Exact(n) => host == *n,
            // At least one byte before the dot.
            HostPattern::Suffix(s) => host.len() > s.len() + 1 && host.ends_with(&[&b"."[..], s].concat()),
        };
        entries.iter().position(|e| {
            e.hosts.as_ref().is_none_or(|hs| hs.iter().any(host_matches))
                && e.path_prefix
                    .as_ref()
                    .is_none_or(|p| path.starts_with(p.as_bytes()))
        })
    }

    /// Entries over a small alphabet, so hosts repeat and path prefixes collide and nest.
    fn entry_strategy() -> impl Strategy<Value = Match> {
        let name = "[ab](\\.[ab]){0,2}";
        let pattern = prop_oneof![
            name.prop_map(|n| HostPattern::Exact(n.into_bytes())),
            name.prop_map(|n| HostPattern::Suffix(n.into_bytes())),
        ];
        let hosts = prop_oneof![
            1 => Just(None),
            2 => proptest::collection::vec(pattern, 1..3).prop_map(Some),
        ];
        (hosts, proptest::option::of("/[ab/]{0,4}"))
            .prop_map(|(hosts, path_prefix)| Match { hosts, path_prefix })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn index_selects_as_a_scan_in_order(
            entries in proptest::collection::vec(entry_strategy(), 1..12),
            requests in proptest::collection::vec(
                ("\\.?([abAB]\\.){0,3}[abAB]\\.?(:80)?", "/[ab/]{0,6}"),
                16,
            ),
        ) {
            let m = Matcher::new(entries.clone());
            for (authority, path) in &requests {
                let (a, p) = (authority.as_bytes(), path.as_bytes());
                prop_assert_eq!(m.select(a, p), model(&entries, a, p), "{} {}", authority, path);
            }
            let everything = entries[0].hosts.is_none() && entries[0].path_prefix.is_none();
            prop_assert_eq!(m.matches_everything(), everything);
            // Under two nodes per entry, however the prefixes nest.
            for list in m.lists.iter().chain([&m.any_host]) {
                prop_assert!(list.nodes.len() <= 2 * entries.len() + 1);
            }
        }
    }
}
