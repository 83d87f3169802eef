//! `flagd.sync`: the flagd sync stream a flag follows (`flagd.sync.v1.FlagSyncService`).

use super::ConfigError;
use crate::flagd::Json;

/// Where the stream goes and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagdSync {
    /// The Envoy cluster (HTTP/2) of flagd's sync port or flagd-proxy.
    pub cluster: String,
    /// The stream's `:authority`; empty: Envoy's default (the cluster name).
    pub authority: String,
    /// Sent as the `flagd-selector` metadata, e.g. `flagSetId=shop`.
    pub selector: String,
    /// How long an attempt may take to bring its first snapshot before it is retried.
    pub timeout_ms: u64,
    /// Without `flagSet`: the variant served until the first snapshot.
    pub default_variant: Option<String>,
}

const FIELDS: &str = "`cluster`, `authority`, `selector`, `timeoutSeconds`, `defaultVariant`";
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const MAX_TARGET: usize = 120;

#[cold]
fn err(path: &str, reason: impl AsRef<str>) -> ConfigError {
    ConfigError::new(path, reason.as_ref())
}

fn text(v: &Json, at: &str) -> Result<String, ConfigError> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| err(at, "invalid type: expected a string"))
}

pub(super) fn parse(v: &Json) -> Result<FlagdSync, ConfigError> {
    let members = v
        .as_object()
        .ok_or_else(|| err("flagd.sync", "invalid type: expected a map"))?;
    let mut s = FlagdSync {
        cluster: String::new(),
        authority: String::new(),
        selector: String::new(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        default_variant: None,
    };
    let mut cluster = None;
    for (name, v) in members {
        let at = format!("flagd.sync.{name}");
        match name.as_str() {
            "cluster" => cluster = Some(text(v, &at)?),
            "authority" => s.authority = text(v, &at)?,
            "selector" => s.selector = text(v, &at)?,
            "timeoutSeconds" => s.timeout_ms = timeout(v, &at)?,
            "defaultVariant" => s.default_variant = Some(text(v, &at)?),
            _ => {
                return Err(err(
                    &at,
                    format!("unknown field `{name}`, expected one of {FIELDS}"),
                ))
            }
        }
    }
    s.cluster = cluster.ok_or_else(|| err("flagd.sync", "missing field `cluster`"))?;
    if s.cluster.is_empty() {
        return Err(err("flagd.sync.cluster", "must name an Envoy cluster"));
    }
    // Envoy reads the target as a `GrpcService` message, handed over as text: one-byte
    // lengths keep it so.
    if s.cluster.len() + s.authority.len() > MAX_TARGET {
        return Err(err(
            "flagd.sync",
            format!("`cluster` and `authority` together take at most {MAX_TARGET} bytes"),
        ));
    }
    // Both go into gRPC metadata and the request as they are.
    for (field, value) in [("authority", &s.authority), ("selector", &s.selector)] {
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(err(
                &format!("flagd.sync.{field}"),
                "must not contain control characters",
            ));
        }
    }
    Ok(s)
}

fn timeout(v: &Json, at: &str) -> Result<u64, ConfigError> {
    match v {
        Json::Num(n) if *n >= 1.0 && *n <= 3600.0 => Ok((n * 1000.0).ceil() as u64),
        Json::Num(_) => Err(err(at, "must be from 1 to 3600")),
        _ => Err(err(at, "invalid type: expected a number")),
    }
}
