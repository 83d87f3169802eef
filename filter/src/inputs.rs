//! Routing inputs: every header, query parameter and baggage member that some rollout reads
//! or writes to route a request. One rule for every request, matched or not: a client's copy
//! of an input never reaches the upstream unless the filter itself writes it, or a caller
//! trusted for it may send it. The rollout that decides a request handles its own inputs
//! (it rewrites its route, bucket and rollout-id headers, strips an untrusted override,
//! judges its lane); this module names the inputs that belong to other rollouts, which the
//! deciding rollout would otherwise pass through untouched, and all of them on a request no
//! rollout matches.
//!
//! Pure: built once per configuration; lookups are binary searches over sorted names.

use crate::config::Config;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingInputs {
    /// Route, bucket, rollout-id and override header names (lowercase), sorted, each once.
    headers: Vec<String>,
    /// Override query parameter names, sorted, each once.
    queries: Vec<String>,
    /// Lane baggage keys, sorted, each with the first rollout that names it: that rollout's
    /// side and `lane.trustedPeers` decide whether a foreign member of that key is kept.
    lanes: Vec<(String, usize)>,
    /// Per rollout: whether another rollout names an input it does not handle itself.
    foreign: Vec<bool>,
}

fn insert_sorted(list: &mut Vec<String>, name: &str) {
    if let Err(at) = list.binary_search_by(|h| h.as_str().cmp(name)) {
        list.insert(at, name.to_string());
    }
}

impl RoutingInputs {
    pub fn new(rollouts: &[Config]) -> RoutingInputs {
        let mut r = RoutingInputs::default();
        for (i, c) in rollouts.iter().enumerate() {
            for h in own_headers(c).into_iter().flatten() {
                insert_sorted(&mut r.headers, h);
            }
            if let Some(q) = &c.r#override.query {
                insert_sorted(&mut r.queries, q);
            }
            if let Some(l) = &c.lane {
                if let Err(at) = r.lanes.binary_search_by(|(k, _)| k.as_str().cmp(&l.key)) {
                    r.lanes.insert(at, (l.key.clone(), i));
                }
            }
        }
        r.foreign = rollouts.iter().map(|c| r.any_foreign(Some(c))).collect();
        r
    }

    /// Whether a request decided by rollout `index` (`None`: unmatched) may carry inputs
    /// this module strips: most requests of most configurations skip every check.
    pub fn has_foreign(&self, index: Option<usize>) -> bool {
        match index {
            Some(i) => self.foreign.get(i).copied().unwrap_or(false),
            None => self.any_foreign(None),
        }
    }

    /// Header `name` (lowercase, as Envoy stores it) is another rollout's routing input that
    /// `owner`, the deciding rollout (`None`: no rollout matched), does not handle itself.
    pub fn strips_header(&self, name: &[u8], owner: Option<&Config>) -> bool {
        self.headers.binary_search_by(|h| h.as_bytes().cmp(name)).is_ok()
            && !owner.is_some_and(|c| own_headers(c).into_iter().flatten().any(|h| h.as_bytes() == name))
    }

    /// Override query parameters of other rollouts, to remove from `:path`.
    pub fn foreign_queries<'a>(&'a self, owner: Option<&'a Config>) -> impl Iterator<Item = &'a str> + 'a {
        let own = owner.and_then(|c| c.r#override.query.as_deref());
        self.queries
            .iter()
            .map(String::as_str)
            .filter(move |q| Some(*q) != own)
    }

    /// The rollout whose `lane` judges a baggage member with key `key`, when that key is a
    /// lane key `owner` does not judge itself.
    pub fn foreign_lane(&self, key: &[u8], owner: Option<&Config>) -> Option<usize> {
        if owner
            .and_then(|c| c.lane.as_ref())
            .is_some_and(|l| l.key.as_bytes() == key)
        {
            return None;
        }
        let at = self.lanes.binary_search_by(|(k, _)| k.as_bytes().cmp(key)).ok()?;
        self.lanes.get(at).map(|(_, i)| *i)
    }

    /// Whether any lane key exists, so requests without lanes skip the baggage scan.
    pub fn has_lanes(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// Whether any other rollout names an input `owner` does not handle: the single-rollout
    /// form, and rollouts sharing every name, need no per-request check.
    fn any_foreign(&self, owner: Option<&Config>) -> bool {
        let Some(c) = owner else {
            return !(self.headers.is_empty() && self.queries.is_empty() && self.lanes.is_empty());
        };
        let own: Vec<&str> = own_headers(c).into_iter().flatten().collect();
        self.headers.iter().any(|h| !own.contains(&h.as_str()))
            || self.foreign_queries(Some(c)).next().is_some()
            || self
                .lanes
                .iter()
                .any(|(k, _)| self.foreign_lane(k.as_bytes(), Some(c)).is_some())
    }
}

/// The header inputs a rollout handles itself: written (route, bucket, rollout id) or
/// judged (override).
fn own_headers(c: &Config) -> [Option<&str>; 4] {
    [
        Some(c.route_header.as_str()),
        Some(c.rollout_id_header.as_str()),
        c.route_weights.as_ref().map(|rw| rw.bucket_header.as_str()),
        c.r#override.header.as_deref(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollouts::FilterConfig;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TWO: &str = r#"{
      "versions": [ { "name": "stable", "weight": 50 }, { "name": "canary", "weight": 50 } ],
      "stickyKeys": [ { "header": "x-user-id" } ],
      "rollouts": [
        { "match": { "hosts": ["shop.example.com"] }, "rolloutId": "shop",
          "routeHeader": "x-shop-version", "override": { "header": "x-shop-pin", "query": "shop-v" },
          "lane": { "baggageKey": "shop-lane" } },
        { "match": { "hosts": ["search.example.com"] }, "rolloutId": "search",
          "routeHeader": "x-search-version",
          "lane": { "baggageKey": "rollout-lane", "trustedPeers": ["spiffe://cluster.local/ns/edge/sa/gw"] } }
      ]
    }"#;

    fn two() -> FilterConfig {
        FilterConfig::from_json(TWO.as_bytes()).unwrap()
    }

    #[test]
    fn matched_requests_lose_other_rollouts_inputs_only() {
        let f = two();
        let r = RoutingInputs::new(&f.rollouts);
        let shop = f.rollouts.first();
        let search = f.rollouts.get(1);
        assert!(r.strips_header(b"x-search-version", shop));
        assert!(!r.strips_header(b"x-shop-version", shop));
        assert!(!r.strips_header(b"x-shop-pin", shop));
        assert!(r.strips_header(b"x-shop-pin", search));
        // Both write the default rollout-id header: neither strips the other's.
        assert!(!r.strips_header(b"x-rollout-id", search));
        assert!(!r.strips_header(b"x-user-id", search));
        assert_eq!(r.foreign_queries(search).collect::<Vec<_>>(), ["shop-v"]);
        assert_eq!(r.foreign_queries(shop).count(), 0);
        assert_eq!(r.foreign_lane(b"shop-lane", search), Some(0));
        assert_eq!(r.foreign_lane(b"rollout-lane", shop), Some(1));
        assert_eq!(r.foreign_lane(b"rollout-lane", search), None);
        assert_eq!(r.foreign_lane(b"other", None), None);
        assert!(r.has_foreign(Some(0)) && r.has_foreign(Some(1)) && r.has_foreign(None));
    }

    #[test]
    fn unmatched_requests_lose_every_input() {
        let f = two();
        let r = RoutingInputs::new(&f.rollouts);
        for h in ["x-shop-version", "x-search-version", "x-shop-pin", "x-rollout-id"] {
            assert!(r.strips_header(h.as_bytes(), None), "{h}");
        }
        assert!(!r.strips_header(b"x-user-id", None));
        assert_eq!(r.foreign_queries(None).collect::<Vec<_>>(), ["shop-v"]);
        assert_eq!(r.foreign_lane(b"shop-lane", None), Some(0));
        assert_eq!(r.foreign_lane(b"rollout-lane", None), Some(1));
    }

    #[test]
    fn one_rollout_has_nothing_foreign() {
        let f = FilterConfig::from_json(
            br#"{"rolloutId":"r","versions":[{"name":"stable","weight":1}],"override":{"header":"x-pin","query":"v"},"lane":{}}"#,
        )
        .unwrap();
        let r = RoutingInputs::new(&f.rollouts);
        assert!(!r.has_foreign(Some(0)));
    }
}
