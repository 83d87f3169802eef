//! Issue 27: a rollout given as an OpenFeature flagd flag, in a real Envoy, checked request by
//! request against OpenFeature's own evaluator (npm `@openfeature/flagd-core`, run with node
//! from tests/flagd; `make flagd-node` installs it).

use std::collections::BTreeMap;

use rollout_e2e::{agent, get, read_workspace_file, Envoy, Options};
use serde_json::{json, Value};

/// One request: its headers and query, and the flagd context they stand for.
struct Case {
    headers: Vec<(String, String)>,
    query: String,
    context: serde_json::Map<String, Value>,
}

fn flag_set() -> Value {
    serde_json::from_str(&read_workspace_file("tests/flagd/flags.json")).unwrap()
}

fn config(flag: &str, variants: Value, context: Value) -> String {
    json!({
        "flagd": { "flagKey": flag, "flagSet": flag_set(), "variants": variants, "context": context },
        "routeHeader": "x-rollout-version"
    })
    .to_string()
}

/// The variant flagd-core gives each case: `(variant, reason)`.
fn reference(flag: &str, cases: &[Case]) -> Vec<(Option<String>, String)> {
    let cases: Vec<(&str, Value)> = cases
        .iter()
        .map(|c| (flag, Value::Object(c.context.clone())))
        .collect();
    rollout_e2e::flagd::evaluate(&flag_set(), &cases)
}

/// Sends every case through Envoy and compares the version it reached with the version of
/// flagd-core's variant. Returns how many requests went to each version, by reason.
fn run(envoy: &Envoy, flag: &str, cases: &[Case], versions: &BTreeMap<&str, &str>) -> BTreeMap<String, u32> {
    let want = reference(flag, cases);
    let a = agent();
    let mut counts = BTreeMap::new();
    for (c, (variant, reason)) in cases.iter().zip(&want) {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = get(&a, &envoy.url(&format!("/{}", c.query)), &headers).unwrap();
        assert_eq!(r.status, 200);
        let variant = variant.as_deref().expect("flagd-core gave no variant");
        assert_eq!(
            r.version(),
            versions[variant],
            "flag {flag}: context {:?}: flagd-core says {variant} ({reason})",
            c.context
        );
        *counts.entry(format!("{}/{reason}", r.version())).or_insert(0) += 1;
    }
    counts
}

fn start(config: &str) -> Envoy {
    Envoy::start(&Options::new(config, &["stable", "canary", "preview"])).unwrap_or_else(|e| panic!("{e}"))
}

fn put(ctx: &mut serde_json::Map<String, Value>, k: &str, v: &str) {
    ctx.insert(k.to_string(), Value::String(v.to_string()));
}

/// `checkout`: an `if` on a header attribute (`tier`) choosing between two `fractional` splits,
/// the targetingKey from a header or, failing that, a cookie.
#[test]
fn checkout_flag_routes_as_flagd_core_evaluates_it() {
    let cfg = config(
        "checkout",
        json!({ "new": "canary", "old": "stable", "preview": "preview" }),
        json!({ "targetingKey": [{ "header": "x-user-id" }, { "cookie": "uid" }], "tier": { "header": "x-tier" } }),
    );
    let envoy = start(&cfg);
    let mut cases = Vec::new();
    for i in 0..700 {
        let mut c = Case {
            headers: Vec::new(),
            query: String::new(),
            context: serde_json::Map::new(),
        };
        let user = format!("user-{i}");
        match i % 10 {
            // No targetingKey at all: the default variant (flagd 0.15+).
            7 => {}
            9 => {
                c.headers.push(("cookie".into(), format!("a=1; uid={user}")));
                put(&mut c.context, "targetingKey", &user);
            }
            _ => {
                c.headers.push(("x-user-id".into(), user.clone()));
                put(&mut c.context, "targetingKey", &user);
            }
        }
        if let Some(tier) = ["gold", "platinum", "silver", ""][i % 4..]
            .first()
            .filter(|t| !t.is_empty())
        {
            c.headers.push(("x-tier".into(), tier.to_string()));
            put(&mut c.context, "tier", tier);
        }
        cases.push(c);
    }
    let versions = BTreeMap::from([("new", "canary"), ("old", "stable"), ("preview", "preview")]);
    let counts = run(&envoy, "checkout", &cases, &versions);
    println!("checkout: 700 requests, all as flagd-core: {counts:?}");
    // Requests without a targetingKey got the default variant's version, counted as such.
    assert_eq!(counts.get("stable/DEFAULT"), Some(&70), "{counts:?}");
    let metric = |v: &str, s: &str| {
        envoy.metric(&format!(
            "rollout_requests_total;rollout=checkout;version={v};source={s}"
        ))
    };
    assert_eq!(metric("stable", "flagd_default"), 70);
    let targeted: u32 = counts
        .iter()
        .filter(|(k, _)| k.ends_with("TARGETING_MATCH"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        metric("stable", "flagd") + metric("canary", "flagd") + metric("preview", "flagd"),
        u64::from(targeted)
    );
    assert!(
        counts.keys().any(|k| k.starts_with("preview/")),
        "the gold split's preview share: {counts:?}"
    );
}

/// `search`: a `fractional` with an explicit bucketing value (`cat` of `$flagd.flagKey` and the
/// `email` attribute, from a query parameter) behind `starts_with` (through `$ref`).
#[test]
fn search_flag_routes_as_flagd_core_evaluates_it() {
    let cfg = config(
        "search",
        json!({ "on": "canary", "off": "stable" }),
        json!({ "targetingKey": { "header": "x-user-id" }, "email": { "query": "email" } }),
    );
    let envoy = start(&cfg);
    let mut cases = Vec::new();
    for i in 0..500 {
        let mut c = Case {
            headers: Vec::new(),
            query: String::new(),
            context: serde_json::Map::new(),
        };
        let user = format!("user-{i}");
        c.headers.push(("x-user-id".into(), user.clone()));
        put(&mut c.context, "targetingKey", &user);
        let email = match i % 3 {
            0 => format!("beta-u{i}@example.com"),
            1 => format!("u{i}@example.com"),
            _ => String::new(),
        };
        if !email.is_empty() {
            c.query = format!("?x=1&email={email}");
            put(&mut c.context, "email", &email);
        }
        cases.push(c);
    }
    let versions = BTreeMap::from([("on", "canary"), ("off", "stable")]);
    let counts = run(&envoy, "search", &cases, &versions);
    println!("search: 500 requests, all as flagd-core: {counts:?}");
    assert!(counts.contains_key("canary/TARGETING_MATCH") && counts.contains_key("stable/TARGETING_MATCH"));
}

#[test]
fn a_sem_ver_flag_is_refused_naming_the_operator() {
    let cfg = config(
        "legacy-clients",
        json!({ "on": "canary", "off": "stable" }),
        json!({ "appVersion": { "header": "x-app-version" } }),
    );
    let err = match Envoy::start(&Options::new(cfg, &["stable", "canary"])) {
        Ok(_) => panic!("Envoy accepted a sem_ver flag"),
        Err(e) => e,
    };
    assert!(
        err.contains(
            "flagd.flagSet.flags.legacy-clients.targeting.if[0].sem_ver: operator \"sem_ver\" is not supported"
        ),
        "Envoy log did not name the operator:\n{err}"
    );
}
