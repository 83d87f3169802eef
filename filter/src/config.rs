//! Plugin configuration: JSON in, validated runtime [`Config`] out.
//!
//! The same bytes arrive from Envoy's `configuration` StringValue and from Istio's
//! `pluginConfig`. Every error names the JSON path and the reason in one line.

use serde::Deserialize;
use std::fmt;

use crate::identity::{parse_oid, LabelOid, PeerPattern};
pub use crate::lane::{Lane, Side};

mod flagd;
mod flagd_sync;
pub use flagd::Flagd;
pub use flagd_sync::FlagdSync;

/// Most versions one rollout may split between.
pub const MAX_VERSIONS: usize = 16;
/// flagd caps the sum of weights at `i32::MAX`.
pub const MAX_TOTAL_WEIGHT: u64 = i32::MAX as u64;
const MAX_NAME_LEN: usize = 63;
const MAX_ROLLOUT_ID_LEN: usize = 128;

pub const DEFAULT_ROUTE_HEADER: &str = "x-rollout-version";

/// A rejected configuration: where in the JSON, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

// ---- wire format -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    // Both required unless `flagd` gives them (checked in `validate`).
    #[serde(default)]
    rollout_id: Option<String>,
    #[serde(default)]
    versions: Option<Vec<RawVersion>>,
    #[serde(default)]
    flagd: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    route_header: Option<String>,
    #[serde(default)]
    sticky_keys: Vec<RawStickyKey>,
    #[serde(default)]
    r#override: Option<RawOverride>,
    #[serde(default)]
    trace: Option<RawTrace>,
    #[serde(default)]
    rollout_id_header: Option<String>,
    #[serde(default)]
    response_headers: Option<RawResponseHeaders>,
    #[serde(default)]
    certificate: Option<RawCertificate>,
    #[serde(default)]
    lane: Option<RawLane>,
    #[serde(default)]
    route_weights: Option<RawRouteWeights>,
    #[serde(default)]
    guard: Option<crate::guard::RawGuard>,
    #[serde(default)]
    filter_state: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLane {
    #[serde(default)]
    baggage_key: Option<String>,
    #[serde(default)]
    set: Option<bool>,
    #[serde(default)]
    follow: Option<bool>,
    #[serde(default)]
    trusted_peers: Vec<String>,
    #[serde(default)]
    side: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRouteWeights {
    #[serde(default)]
    bucket_header: Option<String>,
    #[serde(default)]
    total_weight: Option<serde_json::Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCertificate {
    #[serde(default)]
    label_oid: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    cache_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTrace {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    new_span: Option<bool>,
    #[serde(default)]
    sampled: Option<bool>,
    #[serde(default)]
    baggage: Option<bool>,
    #[serde(default)]
    baggage_prefix: Option<String>,
    /// No longer used (the filter writes no tracestate member): accepted with a warning.
    #[serde(default)]
    tracestate_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawResponseHeaders {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    name: String,
    // A Number so that `-1` and `1.5` get our message, not serde's type error.
    // Required without `routeWeights`, refused with it: checked in `validate`.
    #[serde(default)]
    weight: Option<serde_json::Number>,
    #[serde(default)]
    cluster: Option<String>,
}

/// One entry of `stickyKeys`: exactly one of `header`, `cookie`, `sourceAddress`,
/// `peerIdentity`. A struct, not an externally tagged enum, because a cookie key may
/// carry `issue` and `maxAge` beside its name; unknown fields still name their path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStickyKey {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    issue: Option<bool>,
    // A Number so that `-1` and `1.5` get our message, not serde's type error.
    #[serde(default)]
    max_age: Option<serde_json::Number>,
    #[serde(default)]
    source_address: Option<bool>,
    #[serde(default)]
    peer_identity: Option<bool>,
    #[serde(default)]
    query: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOverride {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    trusted_peers: Vec<String>,
}

// ---- runtime form ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub name: String,
    /// 0 in route-weights mode, where the route's weights pick.
    pub weight: u32,
    /// The upstream cluster serving this version, for counting in route-weights mode.
    pub cluster: Option<String>,
}

/// Route-weights mode: the filter writes the flagd bucket into `bucket_header` and
/// Envoy's `weighted_clusters.header_name` picks the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteWeights {
    pub bucket_header: String,
    /// The route's weights sum (Envoy takes the header value modulo it).
    pub total_weight: u32,
}

pub const DEFAULT_BUCKET_HEADER: &str = "x-rollout-bucket";
pub const DEFAULT_ROUTE_TOTAL_WEIGHT: u32 = 100;
/// The version label of a request whose upstream cluster matches no version (route-weights mode).
pub const UNKNOWN_VERSION: &str = "unknown";

/// Where a sticky key may come from, tried in configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A request header value (name lowercased).
    Header(String),
    /// A cookie value from the `cookie` header.
    Cookie(String),
    /// The downstream source IP, without port.
    SourceAddress,
    /// The verified peer's SPIFFE ID, else its first DNS SAN.
    PeerIdentity,
    /// A query parameter's raw (not percent-decoded) value.
    Query(String),
}

/// A cookie the filter issues to visitors that bring no sticky key, so they stay sticky.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueCookie {
    pub name: String,
    /// `Max-Age` in seconds.
    pub max_age: u32,
    /// `NAME=`, built once.
    pub set_prefix: String,
    /// `; Path=/; Max-Age=N; HttpOnly; SameSite=Lax`, built once (`; Secure` is added per request).
    pub set_suffix: String,
}

/// `maxAge` when not given: 30 days.
pub const DEFAULT_COOKIE_MAX_AGE: u32 = 30 * 24 * 3600;
/// Browsers cap a cookie's lifetime at 400 days (RFC 6265bis); longer is a typo.
pub const MAX_COOKIE_MAX_AGE: u32 = 400 * 24 * 3600;

impl IssueCookie {
    fn new(name: String, max_age: u32) -> IssueCookie {
        IssueCookie {
            set_prefix: format!("{name}="),
            set_suffix: format!("; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"),
            name,
            max_age,
        }
    }

    /// The `Set-Cookie` value for `id`, with `Secure` when the visitor came over TLS.
    pub fn set_cookie(&self, id: &str, secure: bool) -> String {
        let mut v = String::with_capacity(self.set_prefix.len() + id.len() + self.set_suffix.len() + 8);
        v.push_str(&self.set_prefix);
        v.push_str(id);
        v.push_str(&self.set_suffix);
        if secure {
            v.push_str("; Secure");
        }
        v
    }
}

/// W3C trace context and the decision in W3C baggage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// `traceparent` / `tracestate` handling.
    pub enabled: bool,
    /// newSpan and sampled.
    pub settings: crate::trace::TraceSettings,
    /// Write the decision into `baggage`.
    pub baggage: bool,
    /// The baggage key: `baggagePrefix` + `rolloutId`.
    pub baggage_key: String,
    /// The baggage member per version (`<key>=<version>`), built once.
    pub baggage_members: Vec<String>,
}

/// Response headers for debugging from curl; off unless named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHeaders {
    pub version: Option<String>,
    pub trace_id: Option<String>,
}

pub const DEFAULT_ROLLOUT_ID_HEADER: &str = "x-rollout-id";
pub const DEFAULT_BAGGAGE_PREFIX: &str = "rollout.";
const MAX_BAGGAGE_PREFIX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Override {
    pub header: Option<String>,
    pub query: Option<String>,
    /// `trustedPeers: ["*"]`: anyone may override, with or without a certificate.
    pub trust_everyone: bool,
    /// Verified identities that may override.
    pub trusted_peers: Vec<PeerPattern>,
}

/// Where the peer certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// `connection.peer_certificate` (Envoy >= 1.40), else the XFCC element
    /// whose hash matches the verified peer.
    Auto,
    /// Only the matching XFCC element (for proxies without the attribute).
    Xfcc,
}

/// Reading rollout labels from the caller's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The otherName OID whose value carries base64 JSON labels.
    pub label_oid: Option<LabelOid>,
    pub source: CertSource,
    /// Parsed certificates kept per worker, by digest.
    pub cache_size: usize,
}

pub const DEFAULT_CERT_CACHE: usize = 1024;

/// Validated configuration. Constructed only through [`Config::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub rollout_id: String,
    pub versions: Vec<Version>,
    /// Weights in `versions` order, kept beside them for the split.
    pub weights: Vec<u32>,
    pub total_weight: u32,
    pub route_header: String,
    pub sticky_keys: Vec<StickyKey>,
    /// The last sticky key when it is `{"cookie": NAME, "issue": true}`: requests with
    /// no sticky key get a fresh id as this cookie.
    pub issue_cookie: Option<IssueCookie>,
    pub r#override: Override,
    pub trace: Trace,
    /// Set to `rolloutId` on every upstream request, replacing any client value.
    pub rollout_id_header: String,
    pub response_headers: ResponseHeaders,
    /// Set when certificate labels are read (`certificate` present).
    pub certificate: Option<Certificate>,
    /// Call-chain lanes (`lane`), off when absent.
    pub lane: Option<Lane>,
    /// Whether every request needs the peer certificate (labels, override trust or identity
    /// key). A lane's trust check reads it only when a lane arrives on an inbound listener.
    pub needs_peer: bool,
    /// Set in route-weights mode.
    pub route_weights: Option<RouteWeights>,
    /// Each decision recorded as Envoy filter state `wasm.rollout` (`filterState`), for
    /// access logs and other filters.
    pub filter_state: bool,
    /// The canary guard (`guard`), off when absent. Its fingerprint covers the whole
    /// configuration: any change starts it afresh.
    pub guard: Option<crate::guard::GuardConfig>,
    /// A flagd flag decides instead of the sticky split (`flagd`).
    pub flagd: Option<Flagd>,
    /// Accepted but worth a warning in the log (deprecated fields), one line each.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parse and validate. The error names the JSON path and the reason.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde::Deserialize::deserialize(&mut *de).map_err(|e| {
            let path = crate::json_path::at(bytes, e.line(), e.column());
            ConfigError::new(one_line(&path), one_line(&e.to_string()))
        })?;
        // Only whitespace may follow the object.
        de.end().map_err(|e| ConfigError::new("", e.to_string()))?;
        let mut cfg = Self::validate(raw)?;
        cfg.guard = cfg.guard.map(|g| g.with_generation(text_hash(bytes)));
        Ok(cfg)
    }

    /// Index of the version called `name`, if configured.
    pub fn version_index(&self, name: &[u8]) -> Option<usize> {
        self.versions.iter().position(|v| v.name.as_bytes() == name)
    }

    fn validate(mut raw: RawConfig) -> Result<Config, ConfigError> {
        let raw_flagd = flagd::take(&mut raw)?;
        let rollout_id = raw
            .rollout_id
            .take()
            .ok_or_else(|| ConfigError::new("", "missing field `rolloutId`"))?;
        check_rollout_id(&rollout_id)?;
        let raw_versions = raw
            .versions
            .take()
            .ok_or_else(|| ConfigError::new("", "missing field `versions`"))?;

        if raw_versions.is_empty() || raw_versions.len() > MAX_VERSIONS {
            return Err(ConfigError::new(
                "versions",
                format!("must list 1 to {MAX_VERSIONS} versions"),
            ));
        }
        let route_mode = raw.route_weights.is_some();
        let mut versions: Vec<Version> = Vec::with_capacity(raw_versions.len());
        let mut total: u64 = 0;
        for (i, v) in raw_versions.into_iter().enumerate() {
            check_version_name(&v.name).map_err(|r| ConfigError::new(format!("versions[{i}].name"), r))?;
            if versions.iter().any(|seen| seen.name == v.name) {
                return Err(ConfigError::new(
                    format!("versions[{i}].name"),
                    format!("duplicate version name {:?}", v.name),
                ));
            }
            if route_mode && v.name == UNKNOWN_VERSION {
                return Err(ConfigError::new(
                    format!("versions[{i}].name"),
                    "\"unknown\" is reserved with routeWeights (it counts requests to no configured version)",
                ));
            }
            let cluster = match v.cluster {
                Some(c) => {
                    check_cluster_name(&c)
                        .map_err(|r| ConfigError::new(format!("versions[{i}].cluster"), r))?;
                    if versions
                        .iter()
                        .any(|seen| seen.cluster.as_deref() == Some(c.as_str()))
                    {
                        return Err(ConfigError::new(
                            format!("versions[{i}].cluster"),
                            "already the cluster of another version",
                        ));
                    }
                    Some(c)
                }
                None => None,
            };
            let weight = match (v.weight, route_mode) {
                (Some(_), true) => {
                    return Err(ConfigError::new(
                        format!("versions[{i}].weight"),
                        "not allowed with routeWeights: the route's weights pick the version",
                    ))
                }
                (None, true) => 0,
                (None, false) => {
                    return Err(ConfigError::new(
                        format!("versions[{i}]"),
                        "missing field `weight`",
                    ))
                }
                (Some(w), false) => w.as_u64().ok_or_else(|| {
                    ConfigError::new(format!("versions[{i}].weight"), "must be an integer >= 0")
                })?,
            };
            total = total.saturating_add(weight);
            if total > MAX_TOTAL_WEIGHT {
                return Err(ConfigError::new(
                    format!("versions[{i}].weight"),
                    format!("weights must sum to at most {MAX_TOTAL_WEIGHT}"),
                ));
            }
            // total <= i32::MAX, so each weight fits in u32.
            versions.push(Version {
                name: v.name,
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
                cluster,
            });
        }
        let route_weights = match raw.route_weights {
            None => {
                if total == 0 {
                    return Err(ConfigError::new("versions", "weights must sum to at least 1"));
                }
                None
            }
            Some(rw) => {
                let total_weight = match rw.total_weight {
                    None => DEFAULT_ROUTE_TOTAL_WEIGHT,
                    Some(n) => n
                        .as_u64()
                        .filter(|t| (1..=MAX_TOTAL_WEIGHT).contains(t))
                        .and_then(|t| u32::try_from(t).ok())
                        .ok_or_else(|| {
                            ConfigError::new(
                                "routeWeights.totalWeight",
                                "must be an integer from 1 to 2147483647 (the sum of the route's weights)",
                            )
                        })?,
                };
                let bucket_header = match rw.bucket_header {
                    Some(h) => {
                        check_header_name(&h).map_err(|r| ConfigError::new("routeWeights.bucketHeader", r))?
                    }
                    None => DEFAULT_BUCKET_HEADER.to_string(),
                };
                total = u64::from(total_weight);
                Some(RouteWeights {
                    bucket_header,
                    total_weight,
                })
            }
        };

        let route_header = match raw.route_header {
            Some(h) => check_header_name(&h).map_err(|r| ConfigError::new("routeHeader", r))?,
            None => DEFAULT_ROUTE_HEADER.to_string(),
        };

        let mut sticky_keys = Vec::with_capacity(raw.sticky_keys.len());
        let mut issue_cookie = None;
        for (i, k) in raw.sticky_keys.into_iter().enumerate() {
            let at = |field: &str| {
                if field.is_empty() {
                    format!("stickyKeys[{i}]")
                } else {
                    format!("stickyKeys[{i}].{field}")
                }
            };
            if issue_cookie.is_some() {
                // An issuing key always yields a key, so nothing after it is ever read.
                return Err(ConfigError::new(
                    at(""),
                    "no sticky key may follow a cookie key with \"issue\": true (it would never be used)",
                ));
            }
            let (key, issue) = sticky_key(k).map_err(|(field, r)| ConfigError::new(at(field), r))?;
            if sticky_keys.contains(&key) {
                return Err(ConfigError::new(at(""), "duplicate sticky key"));
            }
            if let (StickyKey::Cookie(name), Some(max_age)) = (&key, issue) {
                issue_cookie = Some(IssueCookie::new(name.clone(), max_age));
            }
            sticky_keys.push(key);
        }

        let mut ov = Override::default();
        if let Some(o) = raw.r#override {
            if let Some(h) = o.header {
                let h = check_header_name(&h).map_err(|r| ConfigError::new("override.header", r))?;
                if h == route_header {
                    return Err(ConfigError::new(
                        "override.header",
                        "must differ from routeHeader (clients may never set the route header)",
                    ));
                }
                ov.header = Some(h);
            }
            if let Some(q) = o.query {
                check_query_name(&q).map_err(|r| ConfigError::new("override.query", r))?;
                ov.query = Some(q);
            }
            for (i, p) in o.trusted_peers.iter().enumerate() {
                if p == "*" {
                    ov.trust_everyone = true;
                    continue;
                }
                let pattern = PeerPattern::parse(p)
                    .map_err(|r| ConfigError::new(format!("override.trustedPeers[{i}]"), r))?;
                ov.trusted_peers.push(pattern);
            }
        }

        let raw_trace = raw.trace.unwrap_or(RawTrace {
            enabled: None,
            new_span: None,
            sampled: None,
            baggage: None,
            baggage_prefix: None,
            tracestate_key: None,
        });
        let mut warnings = Vec::new();
        if raw_trace.tracestate_key.is_some() {
            // Refusing it would fail the upgrade of every config that set it; it has no effect.
            warnings.push(
                "trace.tracestateKey: ignored (deprecated): the filter no longer writes a tracestate \
                 member; the decision travels in baggage as <trace.baggagePrefix><rolloutId>=<version>"
                    .to_string(),
            );
        }
        let prefix = raw_trace
            .baggage_prefix
            .unwrap_or_else(|| DEFAULT_BAGGAGE_PREFIX.to_string());
        if prefix.len() > MAX_BAGGAGE_PREFIX_LEN
            || !(prefix.is_empty() || crate::baggage::is_valid_key(&prefix))
        {
            return Err(ConfigError::new(
                "trace.baggagePrefix",
                format!(
                    "must be up to {MAX_BAGGAGE_PREFIX_LEN} HTTP token characters (e.g. `rollout.`), got {prefix:?}"
                ),
            ));
        }
        // rolloutId is made of token characters, so the key is a valid baggage key.
        let baggage_key = format!("{prefix}{rollout_id}");
        // Route-weights mode: one more for a request whose version is not known yet.
        let unknown = route_weights.is_some().then_some(UNKNOWN_VERSION);
        let baggage_members = versions
            .iter()
            .map(|v| v.name.as_str())
            .chain(unknown)
            .map(|name| crate::baggage::member(&baggage_key, name))
            .collect();
        let enabled = raw_trace.enabled.unwrap_or(true);
        let trace = Trace {
            enabled,
            settings: crate::trace::TraceSettings {
                new_span: raw_trace.new_span.unwrap_or(false),
                sampled: raw_trace.sampled.unwrap_or(true),
            },
            baggage: raw_trace.baggage.unwrap_or(enabled),
            baggage_key,
            baggage_members,
        };

        let rollout_id_header = match raw.rollout_id_header {
            Some(h) => check_header_name(&h).map_err(|r| ConfigError::new("rolloutIdHeader", r))?,
            None => DEFAULT_ROLLOUT_ID_HEADER.to_string(),
        };
        let mut response_headers = ResponseHeaders::default();
        if let Some(rh) = raw.response_headers {
            if let Some(h) = rh.version {
                response_headers.version =
                    Some(check_header_name(&h).map_err(|r| ConfigError::new("responseHeaders.version", r))?);
            }
            if let Some(h) = rh.trace_id {
                response_headers.trace_id =
                    Some(check_header_name(&h).map_err(|r| ConfigError::new("responseHeaders.traceId", r))?);
            }
        }
        let owned = [
            ("rolloutIdHeader", Some(&rollout_id_header)),
            ("override.header", ov.header.as_ref()),
        ];
        for (field, h) in owned {
            if h.is_some_and(|h| {
                *h == route_header || matches!(h.as_str(), "traceparent" | "tracestate" | "baggage")
            }) {
                return Err(ConfigError::new(
                    field,
                    "must differ from routeHeader, traceparent, tracestate and baggage",
                ));
            }
        }
        if let Some(rw) = &route_weights {
            // The bucket header is written on every request: it may not clobber another
            // header the filter reads or writes.
            let h = rw.bucket_header.as_str();
            let sticky_header = sticky_keys
                .iter()
                .any(|k| matches!(k, StickyKey::Header(s) if s == h));
            if h == route_header
                || h == rollout_id_header
                || ov.header.as_deref() == Some(h)
                || h == "traceparent"
                || h == "tracestate"
                || h == "baggage"
                || sticky_header
            {
                return Err(ConfigError::new(
                    "routeWeights.bucketHeader",
                    "must differ from routeHeader, rolloutIdHeader, override.header, the sticky key headers and the trace headers",
                ));
            }
        }

        let certificate = match raw.certificate {
            None => None,
            Some(c) => {
                let label_oid = match c.label_oid {
                    Some(o) => Some(parse_oid(&o).map_err(|r| ConfigError::new("certificate.labelOid", r))?),
                    None => None,
                };
                let source = match c.source.as_deref() {
                    None | Some("auto") => CertSource::Auto,
                    Some("xfcc") => CertSource::Xfcc,
                    Some(other) => {
                        return Err(ConfigError::new(
                            "certificate.source",
                            format!("must be \"auto\" or \"xfcc\", got {other:?}"),
                        ))
                    }
                };
                let cache_size = c.cache_size.unwrap_or(DEFAULT_CERT_CACHE);
                if !(1..=65_536).contains(&cache_size) {
                    return Err(ConfigError::new(
                        "certificate.cacheSize",
                        "must be between 1 and 65536",
                    ));
                }
                Some(Certificate {
                    label_oid,
                    source,
                    cache_size,
                })
            }
        };
        let flagd = match raw_flagd {
            Some(f) => Some(flagd::build(f, &versions, &mut issue_cookie)?),
            None => None,
        };
        let needs_peer = certificate.is_some()
            || !ov.trusted_peers.is_empty()
            || sticky_keys.contains(&StickyKey::PeerIdentity)
            || flagd.as_ref().is_some_and(Flagd::reads_peer_identity);

        let lane = match raw.lane {
            Some(l) => Some(lane(l, &versions, &trace.baggage_key)?),
            None => None,
        };
        if route_weights.is_some() && lane.as_ref().is_some_and(|l| l.set) {
            // The route picks after the filter ran: there is no version to write.
            return Err(ConfigError::new(
                "lane.set",
                "not available with routeWeights (the route picks the version after the filter); set the lane at a filter-weights hop",
            ));
        }

        let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
        let guard = raw.guard.map(|g| g.validate(&names)).transpose()?;
        let weights = versions.iter().map(|v| v.weight).collect();
        Ok(Config {
            rollout_id,
            versions,
            weights,
            total_weight: u32::try_from(total).unwrap_or(u32::MAX),
            route_header,
            sticky_keys,
            issue_cookie,
            r#override: ov,
            trace,
            rollout_id_header,
            response_headers,
            certificate,
            lane,
            needs_peer,
            route_weights,
            guard,
            filter_state: raw.filter_state.unwrap_or(false),
            flagd,
            warnings,
        })
    }
}

/// A stable hash of the configuration text (SipHash with fixed keys).
fn text_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hasher::write(&mut h, bytes);
    std::hash::Hasher::finish(&h)
}

fn lane(l: RawLane, versions: &[Version], decision_key: &str) -> Result<Lane, ConfigError> {
    let key = l
        .baggage_key
        .unwrap_or_else(|| crate::lane::DEFAULT_KEY.to_string());
    if key.len() > MAX_BAGGAGE_PREFIX_LEN || !crate::baggage::is_valid_key(&key) {
        return Err(ConfigError::new(
            "lane.baggageKey",
            format!("must be 1 to {MAX_BAGGAGE_PREFIX_LEN} HTTP token characters, got {key:?}"),
        ));
    }
    if key == decision_key {
        return Err(ConfigError::new(
            "lane.baggageKey",
            format!("must differ from the decision's baggage key {decision_key:?}"),
        ));
    }
    let side = match l.side.as_deref() {
        None => Side::Auto,
        Some(s) => Side::parse(s).ok_or_else(|| {
            ConfigError::new(
                "lane.side",
                format!("must be \"auto\", \"inbound\", \"outbound\" or \"gateway\", got {s:?}"),
            )
        })?,
    };
    let mut trust_everyone = false;
    let mut trusted_peers = Vec::new();
    for (i, p) in l.trusted_peers.iter().enumerate() {
        if p == "*" {
            trust_everyone = true;
            continue;
        }
        trusted_peers
            .push(PeerPattern::parse(p).map_err(|r| ConfigError::new(format!("lane.trustedPeers[{i}]"), r))?);
    }
    let members = versions
        .iter()
        .map(|v| crate::baggage::member(&key, &v.name))
        .collect();
    Ok(Lane {
        key,
        set: l.set.unwrap_or(false),
        follow: l.follow.unwrap_or(true),
        side,
        trust_everyone,
        trusted_peers,
        members,
    })
}

/// One `stickyKeys` entry: the key, and `Some(maxAge)` when it issues its cookie.
/// Errors name the offending field (empty: the entry itself).
fn sticky_key(k: RawStickyKey) -> Result<(StickyKey, Option<u32>), (&'static str, String)> {
    let named = [
        k.header.is_some(),
        k.cookie.is_some(),
        k.source_address.is_some(),
        k.peer_identity.is_some(),
        k.query.is_some(),
    ];
    if named.iter().filter(|n| **n).count() != 1 {
        return Err((
            "",
            "must name exactly one of header, cookie, sourceAddress, peerIdentity, query".into(),
        ));
    }
    let Some(name) = k.cookie else {
        if k.issue.is_some() {
            return Err(("issue", "only a cookie key can issue".into()));
        }
        if k.max_age.is_some() {
            return Err((
                "maxAge",
                "only a cookie key with \"issue\": true has a maxAge".into(),
            ));
        }
        let must_be_true = "must be true (leave the entry out to disable it)".to_string();
        if let Some(q) = k.query {
            check_query_name(&q).map_err(|r| ("query", r))?;
            return Ok((StickyKey::Query(q), None));
        }
        return match (k.header, k.source_address, k.peer_identity) {
            (Some(h), _, _) => Ok((
                StickyKey::Header(check_header_name(&h).map_err(|r| ("header", r))?),
                None,
            )),
            (_, Some(true), _) => Ok((StickyKey::SourceAddress, None)),
            (_, Some(false), _) => Err(("sourceAddress", must_be_true)),
            (_, _, Some(true)) => Ok((StickyKey::PeerIdentity, None)),
            _ => Err(("peerIdentity", must_be_true)),
        };
    };
    check_token(&name).map_err(|r| ("cookie", r))?;
    // RFC 6265 cookie-name is a token; `=` or `;` could never round-trip, and a token has neither.
    if !k.issue.unwrap_or(false) {
        if k.max_age.is_some() {
            return Err((
                "maxAge",
                "only a cookie key with \"issue\": true has a maxAge".into(),
            ));
        }
        return Ok((StickyKey::Cookie(name), None));
    }
    let max_age = match k.max_age {
        None => DEFAULT_COOKIE_MAX_AGE,
        Some(n) => n
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| (1..=MAX_COOKIE_MAX_AGE).contains(s))
            .ok_or((
                "maxAge",
                // Integers only: formatting a float would link the float printer (~14 KB of wasm).
                format!(
                    "must be whole seconds from 1 to {MAX_COOKIE_MAX_AGE} (400 days), got {}",
                    n.as_i64()
                        .map_or_else(|| "a fraction or a huge number".to_string(), |i| i.to_string())
                ),
            ))?,
    };
    Ok((StickyKey::Cookie(name), Some(max_age)))
}

/// Echoed field names may hold control characters; the log line stays one line.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn check_rollout_id(id: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > MAX_ROLLOUT_ID_LEN || !id.chars().all(ok_char) {
        return Err(ConfigError::new(
            "rolloutId",
            format!("must be 1 to {MAX_ROLLOUT_ID_LEN} characters of [A-Za-z0-9._-]"),
        ));
    }
    Ok(())
}

fn check_version_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(format!(
            "must be 1 to {MAX_NAME_LEN} characters of [a-z0-9-], got {name:?}"
        ));
    }
    Ok(())
}

/// Envoy cluster names: printable ASCII (Istio's `outbound|PORT|SUBSET|HOST` included).
fn check_cluster_name(c: &str) -> Result<(), String> {
    if c.is_empty() || c.len() > 255 || !c.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 255 printable ASCII characters".into());
    }
    Ok(())
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn check_token(s: &str) -> Result<(), String> {
    if s.is_empty() || !s.chars().all(is_tchar) {
        return Err(format!("must be a non-empty HTTP token, got {s:?}"));
    }
    Ok(())
}

/// Header names are matched lowercase, as Envoy stores them.
fn check_header_name(h: &str) -> Result<String, String> {
    check_token(h)?;
    let lower = h.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "host" | "cookie" | "content-length" | "transfer-encoding" | "connection"
    ) {
        return Err(format!("{h:?} is reserved"));
    }
    Ok(lower)
}

fn check_query_name(q: &str) -> Result<(), String> {
    let bad = |c: char| {
        matches!(c, '&' | '=' | '#' | '?' | '%' | '+') || c.is_ascii_whitespace() || c.is_ascii_control()
    };
    if q.is_empty() || q.chars().any(bad) || !q.is_ascii() {
        return Err(format!(
            "must be a non-empty plain query parameter name, got {q:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const GOOD: &str = r#"{
        "rolloutId": "checkout-2026-11",
        "versions": [ { "name": "stable", "weight": 90 }, { "name": "canary", "weight": 10 } ],
        "routeHeader": "x-rollout-version",
        "stickyKeys": [ { "header": "X-User-Id" }, { "cookie": "uid" }, { "sourceAddress": true } ],
        "override": { "header": "x-rollout-pin", "query": "rollout-version" }
    }"#;

    fn err(json: &str) -> String {
        Config::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let c = Config::from_json(GOOD.as_bytes()).unwrap();
        assert_eq!(c.rollout_id, "checkout-2026-11");
        assert_eq!(c.weights, vec![90, 10]);
        assert_eq!(c.total_weight, 100);
        assert_eq!(
            c.sticky_keys,
            vec![
                StickyKey::Header("x-user-id".into()),
                StickyKey::Cookie("uid".into()),
                StickyKey::SourceAddress
            ]
        );
        assert_eq!(c.r#override.header.as_deref(), Some("x-rollout-pin"));
        assert_eq!(c.r#override.query.as_deref(), Some("rollout-version"));
        assert_eq!(c.version_index(b"canary"), Some(1));
        assert_eq!(c.version_index(b"nope"), None);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_json(br#"{"rolloutId":"r","versions":[{"name":"v1","weight":1}]}"#).unwrap();
        assert_eq!(c.route_header, DEFAULT_ROUTE_HEADER);
        assert!(c.sticky_keys.is_empty());
        assert_eq!(c.r#override, Override::default());
        assert!(c.trace.enabled && c.trace.settings.sampled && !c.trace.settings.new_span);
        assert!(c.trace.baggage);
        assert_eq!(c.trace.baggage_key, "rollout.r");
        assert_eq!(c.trace.baggage_members, vec!["rollout.r=v1"]);
        assert!(c.warnings.is_empty());
        assert_eq!(c.rollout_id_header, "x-rollout-id");
        assert_eq!(c.response_headers, ResponseHeaders::default());
    }

    #[test]
    fn certificate_and_trust_fields() {
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"v1","weight":1}],
                "stickyKeys":[{"peerIdentity":true}],
                "override":{"header":"x-pin","trustedPeers":["spiffe://cluster.local/ns/qa/*","*.qa.example.com"]},
                "certificate":{"labelOid":"1.3.6.1.4.1.55555.1.1","source":"xfcc","cacheSize":10}}"#,
        )
        .unwrap();
        assert!(c.needs_peer && !c.r#override.trust_everyone);
        assert_eq!(c.r#override.trusted_peers.len(), 2);
        let cert = c.certificate.unwrap();
        assert_eq!((cert.source, cert.cache_size), (CertSource::Xfcc, 10));
        assert!(cert.label_oid.is_some());
        let c = Config::from_json(br#"{"rolloutId":"r","versions":[{"name":"v1","weight":1}],"override":{"header":"x-pin","trustedPeers":["*"]}}"#).unwrap();
        assert!(c.r#override.trust_everyone && !c.needs_peer);
        let c = Config::from_json(br#"{"rolloutId":"r","versions":[{"name":"v1","weight":1}]}"#).unwrap();
        assert!(!c.needs_peer && c.certificate.is_none());
    }

    #[test]
    fn trace_and_header_fields() {
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"v1","weight":1}],
                "trace":{"enabled":false,"newSpan":true,"sampled":false,"baggagePrefix":"acme-"},
                "rolloutIdHeader":"X-Rid","responseHeaders":{"version":"x-v","traceId":"x-t"}}"#,
        )
        .unwrap();
        assert!(!c.trace.enabled && c.trace.settings.new_span && !c.trace.settings.sampled);
        // Baggage follows `enabled` unless set.
        assert!(!c.trace.baggage);
        assert_eq!(c.trace.baggage_members, vec!["acme-r=v1"]);
        assert_eq!(c.rollout_id_header, "x-rid");
        assert_eq!(c.response_headers.version.as_deref(), Some("x-v"));
        assert_eq!(c.response_headers.trace_id.as_deref(), Some("x-t"));
    }

    #[test]
    fn baggage_fields_and_the_old_tracestate_key() {
        let c = Config::from_json(
            br#"{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":1},{"name":"canary","weight":1}],
                "trace":{"baggagePrefix":"","tracestateKey":"acme@rollout"}}"#,
        )
        .unwrap();
        assert!(c.trace.enabled && c.trace.baggage);
        assert_eq!(c.trace.baggage_key, "checkout-2026-11");
        assert_eq!(
            c.trace.baggage_members,
            vec!["checkout-2026-11=stable", "checkout-2026-11=canary"]
        );
        // The old field is accepted, has no effect, and says so once.
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].starts_with("trace.tracestateKey: ignored (deprecated)"));
        assert!(c.warnings[0].contains("trace.baggagePrefix"));
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"enabled":false,"baggage":true}}"#,
        )
        .unwrap();
        assert!(!c.trace.enabled && c.trace.baggage);
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"baggage":false}}"#,
        )
        .unwrap();
        assert!(c.trace.enabled && !c.trace.baggage);
        let long = format!(
            r#"{{"rolloutId":"r","versions":[{{"name":"a","weight":1}}],"trace":{{"baggagePrefix":"{}"}}}}"#,
            "p".repeat(129)
        );
        assert!(err(&long).starts_with("trace.baggagePrefix: "));
    }

    #[test]
    fn errors_name_the_path_and_reason() {
        let base = |versions: &str| format!(r#"{{"rolloutId":"r","versions":{versions}}}"#);
        let cases: &[(String, &str)] = &[
            (base(r#"[{"name":"a","weight":1},{"name":"b","weight":-1}]"#), "versions[1].weight: must be an integer >= 0"),
            (base(r#"[{"name":"a","weight":1.5}]"#), "versions[0].weight: must be an integer >= 0"),
            (base(r#"[{"name":"a","weight":"1"}]"#), "versions[0].weight: "),
            (base(r#"[{"name":"a","weight":2147483647},{"name":"b","weight":1}]"#), "versions[1].weight: weights must sum to at most 2147483647"),
            (base(r#"[{"name":"a","weight":0}]"#), "versions: weights must sum to at least 1"),
            (base("[]"), "versions: must list 1 to 16 versions"),
            (base(r#"[{"name":"Canary","weight":1}]"#), "versions[0].name: must be 1 to 63 characters of [a-z0-9-]"),
            (base(r#"[{"name":"","weight":1}]"#), "versions[0].name: must be 1 to 63"),
            (base(r#"[{"name":"a","weight":1},{"name":"a","weight":1}]"#), "versions[1].name: duplicate version name"),
            (base(r#"[{"name":"a","weight":1,"extra":true}]"#), "versions[0].extra: unknown field `extra`"),
            (base(r#"[{"name":"a"}]"#), "versions[0]: missing field `weight`"),
            (r#"{"versions":[{"name":"a","weight":1}]}"#.into(), "missing field `rolloutId`"),
            (r#"{"rolloutId":"has space","versions":[{"name":"a","weight":1}]}"#.into(), "rolloutId: must be 1 to 128"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKey":[]}"#.into(), "stickyKey: unknown field `stickyKey`"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKeys":[{"qeury":"u"}]}"#.into(), "stickyKeys[0].qeury: unknown field `qeury`"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKeys":[{"header":"bad header"}]}"#.into(), "stickyKeys[0].header: must be a non-empty HTTP token"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKeys":[{"sourceAddress":false}]}"#.into(), "stickyKeys[0].sourceAddress: must be true"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKeys":[{"cookie":"u"},{"cookie":"u"}]}"#.into(), "stickyKeys[1]: duplicate sticky key"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"routeHeader":""}"#.into(), "routeHeader: must be a non-empty HTTP token"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"routeHeader":"host"}"#.into(), "routeHeader: \"host\" is reserved"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"override":{"header":"X-Rollout-Version"}}"#.into(), "override.header: must differ from routeHeader"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"override":{"query":"a=b"}}"#.into(), "override.query: must be a non-empty plain query parameter name"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"override":{"cookie":"x"}}"#.into(), "override.cookie: unknown field `cookie`"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"baggagePrefix":"a b"}}"#.into(), "trace.baggagePrefix: must be up to 128 HTTP token characters"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"baggagePrefix":"a=b"}}"#.into(), "trace.baggagePrefix: must be up to 128"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"tracestateKey":1}}"#.into(), "trace.tracestateKey: invalid type"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"baggage":"yes"}}"#.into(), "trace.baggage: invalid type"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"rolloutIdHeader":"Baggage"}"#.into(), "rolloutIdHeader: must differ from routeHeader, traceparent, tracestate and baggage"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"sampeld":true}}"#.into(), "trace.sampeld: unknown field"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"rolloutIdHeader":"x-rollout-version"}"#.into(), "rolloutIdHeader: must differ from routeHeader"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"override":{"header":"traceparent"}}"#.into(), "override.header: must differ from routeHeader, traceparent"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"responseHeaders":{"traceId":"a b"}}"#.into(), "responseHeaders.traceId: must be a non-empty HTTP token"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"override":{"header":"x-pin","trustedPeers":["spiffe://a/b*"]}}"#.into(), "override.trustedPeers[0]: "),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"certificate":{"labelOid":"1.2.x"}}"#.into(), "certificate.labelOid: "),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"certificate":{"source":"header"}}"#.into(), "certificate.source: must be \"auto\" or \"xfcc\""),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"certificate":{"cacheSize":0}}"#.into(), "certificate.cacheSize: must be between 1 and 65536"),
            (r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKeys":[{"peerIdentity":false}]}"#.into(), "stickyKeys[0].peerIdentity: must be true"),
            ("not json".into(), "expected ident"),
            ("".into(), "EOF while parsing"),
        ];
        for (json, want) in cases {
            let got = err(json);
            assert!(
                got.starts_with(want) || got.contains(want),
                "config {json}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn route_weights_contract() {
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"stable"},{"name":"canary","cluster":"outbound|80|canary|h"}],"routeWeights":{}}"#,
        )
        .unwrap();
        let rw = c.route_weights.as_ref().unwrap();
        assert_eq!(
            (rw.bucket_header.as_str(), rw.total_weight),
            ("x-rollout-bucket", 100)
        );
        assert_eq!(c.total_weight, 100);
        assert_eq!(c.versions[1].cluster.as_deref(), Some("outbound|80|canary|h"));
        assert_eq!(
            c.trace.baggage_members,
            vec!["rollout.r=stable", "rollout.r=canary", "rollout.r=unknown"]
        );
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"a"}],"routeWeights":{"bucketHeader":"X-Bucket","totalWeight":1000}}"#,
        )
        .unwrap();
        let rw = c.route_weights.unwrap();
        assert_eq!((rw.bucket_header.as_str(), rw.total_weight), ("x-bucket", 1000));
        // Filter-weights mode accepts `cluster` too (documentation only there).
        let c =
            Config::from_json(br#"{"rolloutId":"r","versions":[{"name":"a","weight":1,"cluster":"a-v1"}]}"#)
                .unwrap();
        assert!(c.route_weights.is_none());
    }

    #[test]
    fn route_weights_errors() {
        let rw = |versions: &str, extra: &str| {
            format!(r#"{{"rolloutId":"r","versions":{versions},"routeWeights":{{{extra}}}}}"#)
        };
        let cases: &[(String, &str)] = &[
            (rw(r#"[{"name":"stable","weight":90}]"#, ""), "versions[0].weight: not allowed with routeWeights"),
            (rw(r#"[{"name":"stable"},{"name":"canary","weight":0}]"#, ""), "versions[1].weight: not allowed with routeWeights"),
            (rw(r#"[{"name":"unknown"}]"#, ""), "versions[0].name: \"unknown\" is reserved with routeWeights"),
            (rw(r#"[{"name":"a","cluster":""}]"#, ""), "versions[0].cluster: must be 1 to 255 printable ASCII"),
            (rw(r#"[{"name":"a","cluster":"c"},{"name":"b","cluster":"c"}]"#, ""), "versions[1].cluster: already the cluster of another version"),
            (rw(r#"[{"name":"a"}]"#, r#""totalWeight":0"#), "routeWeights.totalWeight: must be an integer from 1 to 2147483647"),
            (rw(r#"[{"name":"a"}]"#, r#""totalWeight":2147483648"#), "routeWeights.totalWeight: must be an integer"),
            (rw(r#"[{"name":"a"}]"#, r#""totalWeight":1.5"#), "routeWeights.totalWeight: must be an integer"),
            (rw(r#"[{"name":"a"}]"#, r#""bucketHeader":"a b""#), "routeWeights.bucketHeader: must be a non-empty HTTP token"),
            (rw(r#"[{"name":"a"}]"#, r#""bucketHeader":"x-rollout-version""#), "routeWeights.bucketHeader: must differ from routeHeader"),
            (rw(r#"[{"name":"a"}]"#, r#""bucketHeader":"Tracestate""#), "routeWeights.bucketHeader: must differ"),
            (rw(r#"[{"name":"a"}]"#, r#""bucketHeader":"x-rollout-id""#), "routeWeights.bucketHeader: must differ"),
            (rw(r#"[{"name":"a"}]"#, r#""bucketHeadr":"x""#), "routeWeights.bucketHeadr: unknown field"),
            (r#"{"rolloutId":"r","versions":[{"name":"a"}],"stickyKeys":[{"header":"x-b"}],"routeWeights":{"bucketHeader":"x-b"}}"#.into(), "routeWeights.bucketHeader: must differ"),
            (r#"{"rolloutId":"r","versions":[{"name":"a"}],"routeWeights":true}"#.into(), "routeWeights: invalid type"),
            // Without routeWeights a weight is still required.
            (r#"{"rolloutId":"r","versions":[{"name":"a"}]}"#.into(), "versions[0]: missing field `weight`"),
        ];
        for (json, want) in cases {
            let got = err(json);
            assert!(
                got.starts_with(want),
                "config {json}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn issuing_cookie_key() {
        let base = |keys: &str| {
            format!(r#"{{"rolloutId":"r","versions":[{{"name":"a","weight":1}}],"stickyKeys":{keys}}}"#)
        };
        // The plain form is unchanged and issues nothing.
        let c = Config::from_json(base(r#"[{"cookie":"uid"}]"#).as_bytes()).unwrap();
        assert_eq!(
            (c.sticky_keys, c.issue_cookie),
            (vec![StickyKey::Cookie("uid".into())], None)
        );
        let c = Config::from_json(base(r#"[{"cookie":"uid","issue":false}]"#).as_bytes()).unwrap();
        assert_eq!(c.issue_cookie, None);

        let c =
            Config::from_json(base(r#"[{"header":"x-user-id"},{"cookie":"sid","issue":true}]"#).as_bytes())
                .unwrap();
        assert_eq!(c.sticky_keys[1], StickyKey::Cookie("sid".into()));
        let ic = c.issue_cookie.unwrap();
        assert_eq!((ic.name.as_str(), ic.max_age), ("sid", 2_592_000));
        assert_eq!(
            ic.set_cookie("AbC-_9", false),
            "sid=AbC-_9; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            ic.set_cookie("x", true),
            "sid=x; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax; Secure"
        );
        let c = Config::from_json(base(r#"[{"cookie":"sid","issue":true,"maxAge":34560000}]"#).as_bytes())
            .unwrap();
        assert_eq!(c.issue_cookie.unwrap().max_age, 34_560_000);

        let cases: &[(&str, &str)] = &[
            (
                r#"[{"cookie":"sid","issue":true,"maxAge":0}]"#,
                "stickyKeys[0].maxAge: must be whole seconds from 1 to 34560000",
            ),
            (
                r#"[{"cookie":"sid","issue":true,"maxAge":-1}]"#,
                "stickyKeys[0].maxAge: must be whole seconds",
            ),
            (
                r#"[{"cookie":"sid","issue":true,"maxAge":1.5}]"#,
                "stickyKeys[0].maxAge: must be whole seconds",
            ),
            (
                r#"[{"cookie":"sid","issue":true,"maxAge":34560001}]"#,
                "stickyKeys[0].maxAge: must be whole seconds",
            ),
            (
                r#"[{"cookie":"sid","issue":true,"maxAge":"60"}]"#,
                "stickyKeys[0].maxAge: ",
            ),
            (
                r#"[{"cookie":"sid","maxAge":60}]"#,
                "stickyKeys[0].maxAge: only a cookie key with \"issue\": true",
            ),
            (
                r#"[{"header":"x-u","issue":true}]"#,
                "stickyKeys[0].issue: only a cookie key can issue",
            ),
            (
                r#"[{"sourceAddress":true,"maxAge":5}]"#,
                "stickyKeys[0].maxAge: only a cookie key",
            ),
            (
                r#"[{"cookie":"sid","issue":"yes"}]"#,
                "stickyKeys[0].issue: invalid type",
            ),
            (
                r#"[{"cookie":"sid","issue":true,"maxage":5}]"#,
                "stickyKeys[0].maxage: unknown field `maxage`",
            ),
            (
                r#"[{"cookie":"s;d","issue":true}]"#,
                "stickyKeys[0].cookie: must be a non-empty HTTP token",
            ),
            (
                r#"[{"cookie":"sid","header":"x-u"}]"#,
                "stickyKeys[0]: must name exactly one of header, cookie",
            ),
            (r#"[{}]"#, "stickyKeys[0]: must name exactly one of"),
            (r#"[{"issue":true}]"#, "stickyKeys[0]: must name exactly one of"),
            (
                r#"[{"cookie":"sid","issue":true},{"header":"x-u"}]"#,
                "stickyKeys[1]: no sticky key may follow a cookie key with \"issue\": true",
            ),
            (
                r#"[{"cookie":"a","issue":true},{"cookie":"b","issue":true}]"#,
                "stickyKeys[1]: no sticky key may follow",
            ),
            (
                r#"[{"cookie":"sid"},{"cookie":"sid","issue":true}]"#,
                "stickyKeys[1]: duplicate sticky key",
            ),
        ];
        for (keys, want) in cases {
            let got = err(&base(keys));
            assert!(
                got.starts_with(want),
                "keys {keys}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn only_whitespace_may_follow_the_object() {
        let ok = r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}]}"#;
        assert!(Config::from_json(format!(" {ok} \n\t").as_bytes()).is_ok());
        for bad in [format!("{ok} x"), format!("{ok}{ok}"), format!("{ok},")] {
            assert!(
                err(&bad).starts_with("trailing characters"),
                "{bad}: {}",
                err(&bad)
            );
        }
    }

    #[test]
    fn errors_stay_on_one_line() {
        for json in [
            r#"{"\n":1}"#,
            r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"trace":{"x\r\n[critical] y":1}}"#,
            r#"{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKeys":[{"a\nb":"x"}]}"#,
        ] {
            let msg = err(json);
            assert!(!msg.contains(['\n', '\r']), "{json}: {msg:?}");
        }
        assert!(err(r#"{"\n":1}"#).starts_with("\\n: unknown field `\\n`"));
    }

    #[test]
    fn max_total_weight_is_accepted() {
        let c = Config::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"a","weight":2147483646},{"name":"b","weight":1}]}"#,
        )
        .unwrap();
        assert_eq!(c.total_weight, i32::MAX as u32);
    }

    #[test]
    fn seventeen_versions_rejected() {
        let vs: Vec<String> = (0..17)
            .map(|i| format!(r#"{{"name":"v{i}","weight":1}}"#))
            .collect();
        let json = format!(r#"{{"rolloutId":"r","versions":[{}]}}"#, vs.join(","));
        assert_eq!(err(&json), "versions: must list 1 to 16 versions");
    }

    #[test]
    fn lane_fields() {
        let base = |lane: &str| {
            format!(
                r#"{{"rolloutId":"r","versions":[{{"name":"stable","weight":1}},{{"name":"canary","weight":1}}],"lane":{lane}}}"#
            )
        };
        let c = Config::from_json(br#"{"rolloutId":"r","versions":[{"name":"a","weight":1}]}"#).unwrap();
        assert_eq!(c.lane, None, "off by default");
        let l = Config::from_json(base("{}").as_bytes()).unwrap().lane.unwrap();
        assert_eq!(l.key, "rollout-lane");
        assert!(!l.set && l.follow && !l.trust_everyone && l.trusted_peers.is_empty());
        assert_eq!(l.side, Side::Auto);
        assert_eq!(l.members, vec!["rollout-lane=stable", "rollout-lane=canary"]);
        let l = Config::from_json(
            base(
                r#"{"baggageKey":"release","set":true,"follow":false,"side":"gateway",
                     "trustedPeers":["spiffe://cluster.local/ns/shop/*","*"]}"#,
            )
            .as_bytes(),
        )
        .unwrap()
        .lane
        .unwrap();
        assert!(l.set && !l.follow && l.trust_everyone);
        assert_eq!(
            (l.key.as_str(), l.side, l.trusted_peers.len()),
            ("release", Side::Gateway, 1)
        );
        assert_eq!(l.members[1], "release=canary");
        let cases: &[(&str, &str)] = &[
            (
                r#"{"baggageKey":""}"#,
                "lane.baggageKey: must be 1 to 128 HTTP token characters",
            ),
            (r#"{"baggageKey":"a b"}"#, "lane.baggageKey: must be 1 to 128"),
            (
                r#"{"baggageKey":"rollout.r"}"#,
                "lane.baggageKey: must differ from the decision's baggage key",
            ),
            (
                r#"{"side":"server"}"#,
                "lane.side: must be \"auto\", \"inbound\", \"outbound\" or \"gateway\"",
            ),
            (r#"{"trustedPeers":["spiffe://a/b*"]}"#, "lane.trustedPeers[0]: "),
            (r#"{"trustedPeers":["*","https://x"]}"#, "lane.trustedPeers[1]: "),
            (r#"{"set":"yes"}"#, "lane.set: invalid type"),
            (r#"{"folow":true}"#, "lane.folow: unknown field"),
        ];
        for (lane, want) in cases {
            let got = err(&base(lane));
            assert!(
                got.starts_with(want),
                "lane {lane}\n  got:  {got}\n  want: {want}"
            );
        }
        // Route-weights mode: lanes are followed (a known version, like a pin) but not set.
        let rw = |lane: &str| {
            format!(
                r#"{{"rolloutId":"r","versions":[{{"name":"stable"}},{{"name":"canary"}}],"routeWeights":{{}},"lane":{lane}}}"#
            )
        };
        assert!(err(&rw(r#"{"set":true}"#)).starts_with("lane.set: not available with routeWeights"));
        assert!(Config::from_json(rw(r#"{"follow":true}"#).as_bytes())
            .unwrap()
            .lane
            .is_some());
    }
}
