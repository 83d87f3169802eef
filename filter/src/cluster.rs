//! Route-weights mode: which version an upstream cluster serves, so that the
//! version Envoy picked is counted (and named) from `xds.cluster_name`.
//!
//! A version's `cluster` when configured; else the SUBSET field of an Istio
//! cluster name `outbound|PORT|SUBSET|HOST`; else a cluster whose whole name is
//! the version's name. Anything else is the `unknown` label, never dropped.

use crate::config::Config;

/// The version label index for `cluster`: a `versions` index, or `versions.len()`
/// for [`crate::config::UNKNOWN_VERSION`].
///
/// A handful of byte comparisons and no allocation per call, so there is no cache:
/// a lookup in one would cost as much as the mapping.
pub fn label_of(cfg: &Config, cluster: Option<&[u8]>) -> usize {
    let unknown = cfg.versions.len();
    let Some(cluster) = cluster else {
        return unknown;
    };
    if let Some(i) = cfg
        .versions
        .iter()
        .position(|v| v.cluster.as_deref().map(str::as_bytes) == Some(cluster))
    {
        return i;
    }
    let by_name = |name: &[u8]| {
        cfg.versions
            .iter()
            .position(|v| v.cluster.is_none() && v.name.as_bytes() == name)
    };
    istio_subset(cluster)
        .and_then(by_name)
        .or_else(|| by_name(cluster))
        .unwrap_or(unknown)
}

/// The SUBSET of `DIRECTION|PORT|SUBSET|HOST` (istiod's `BuildSubsetKey`), when present.
pub fn istio_subset(cluster: &[u8]) -> Option<&[u8]> {
    let mut parts = cluster.split(|b| *b == b'|');
    let (_dir, port, subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && !subset.is_empty()
        && !host.is_empty()
        && !port.is_empty()
        && port.iter().all(u8::is_ascii_digit);
    ok.then_some(subset)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn cfg(versions: &str) -> Config {
        Config::from_json(
            format!(r#"{{"rolloutId":"r","versions":{versions},"routeWeights":{{}}}}"#).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn explicit_cluster_then_istio_subset_then_whole_name() {
        let c = cfg(r#"[{"name":"stable","cluster":"checkout-v1"},{"name":"canary"},{"name":"beta"}]"#);
        let l = |s: &str| label_of(&c, Some(s.as_bytes()));
        assert_eq!(l("checkout-v1"), 0);
        assert_eq!(l("outbound|8080|canary|checkout.prod.svc.cluster.local"), 1);
        assert_eq!(l("beta"), 2);
        assert_eq!(l("canary"), 1);
        // stable has an explicit cluster: its name alone no longer matches.
        assert_eq!(l("stable"), 3);
        assert_eq!(l("outbound|8080|stable|checkout.prod.svc.cluster.local"), 3);
        assert_eq!(l("outbound|8080||checkout.prod.svc.cluster.local"), 3);
        assert_eq!(l("something-else"), 3);
        assert_eq!(l(""), 3);
        assert_eq!(label_of(&c, None), 3);
    }

    #[test]
    fn istio_subset_needs_four_fields() {
        assert_eq!(
            istio_subset(b"outbound|80|v2|reviews.default.svc.cluster.local"),
            Some(&b"v2"[..])
        );
        assert_eq!(istio_subset(b"inbound|9080|canary|x"), Some(&b"canary"[..]));
        assert_eq!(istio_subset(b"outbound|80||reviews"), None);
        assert_eq!(istio_subset(b"outbound|http|v2|reviews"), None);
        assert_eq!(istio_subset(b"outbound|80|v2"), None);
        assert_eq!(istio_subset(b"outbound|80|v2|h|extra"), None);
        assert_eq!(istio_subset(b"canary"), None);
    }
}
