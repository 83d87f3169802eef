//! The `flagd` section: a rollout given as an OpenFeature flagd flag instead of
//! `versions` / `stickyKeys`. The flag is compiled here (see `crate::flagd`); its variants
//! map to versions, its context attributes to request sources.

use serde_json::value::RawValue;
use serde_json::Number;

use super::flagd_sync::{self, FlagdSync};
use super::{sticky_key, ConfigError, IssueCookie, RawConfig, RawStickyKey, RawVersion, StickyKey, Version};
use crate::flagd::sync::Recipe;
use crate::flagd::{self, Attr, Json, LiveFlag, Mode, MAX_ATTRS};

/// The section as written. Read with the flag-set document's own JSON reader rather than
/// serde derive: the flag-set is arbitrary JSON anyway, and one reader keeps the module small.
pub(super) struct RawFlagd {
    flag_key: String,
    /// Optional with `sync`: until the first snapshot, the first variant's version serves.
    flag_set: Option<Json>,
    sync: Option<FlagdSync>,
    /// In document order: the versions follow the variants' order.
    variants: Vec<(String, String)>,
    /// Attribute, its sources, whether they were given as a list.
    context: Vec<(String, Vec<RawStickyKey>, bool)>,
    fractional: Option<String>,
}

const FIELDS: &str = "`flagKey`, `flagSet`, `variants`, `context`, `fractional`, `sync`";

fn string(v: &Json, at: &str) -> Result<String, ConfigError> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| err(at, "invalid type: expected a string"))
}

fn object<'j>(v: &'j Json, at: &str) -> Result<&'j [(String, Json)], ConfigError> {
    v.as_object()
        .ok_or_else(|| err(at, "invalid type: expected a map"))
}

fn parse(raw: &RawValue) -> Result<RawFlagd, ConfigError> {
    let j = Json::parse(raw.get().as_bytes()).map_err(|r| err("flagd", r))?;
    let (mut key, mut set, mut variants, mut context, mut fractional) = (None, None, None, Vec::new(), None);
    let mut sync = None;
    let Json::Obj(members) = j else {
        return Err(err("flagd", "invalid type: expected a map"));
    };
    for (name, v) in members {
        let at = format!("flagd.{name}");
        match name.as_str() {
            "flagKey" => key = Some(string(&v, &at)?),
            "flagSet" => set = Some(v),
            "variants" => {
                let mut out = Vec::new();
                for (k, version) in object(&v, &at)? {
                    out.push((k.clone(), string(version, &format!("{at}.{k}"))?));
                }
                variants = Some(out);
            }
            "context" => {
                for (attr, sources) in object(&v, &at)? {
                    let at = format!("{at}.{attr}");
                    let (list, is_list) = match sources {
                        Json::Arr(l) => (l.as_slice(), true),
                        one => (std::slice::from_ref(one), false),
                    };
                    let mut keys = Vec::with_capacity(list.len());
                    for (i, k) in list.iter().enumerate() {
                        keys.push(raw_key(
                            k,
                            &if is_list { format!("{at}[{i}]") } else { at.clone() },
                        )?);
                    }
                    context.push((attr.clone(), keys, is_list));
                }
            }
            "fractional" => fractional = Some(string(&v, &at)?),
            "sync" => sync = Some(flagd_sync::parse(&v)?),
            _ => {
                return Err(err(
                    at,
                    format!("unknown field `{name}`, expected one of {FIELDS}"),
                ))
            }
        }
    }
    let missing = |f: &str| err("flagd", format!("missing field `{f}`"));
    if set.is_none() && sync.is_none() {
        return Err(missing("flagSet"));
    }
    Ok(RawFlagd {
        flag_key: key.ok_or_else(|| missing("flagKey"))?,
        flag_set: set,
        sync,
        variants: variants.ok_or_else(|| missing("variants"))?,
        context,
        fractional,
    })
}

/// One source, with the field names and checks of a `stickyKeys` entry.
fn raw_key(j: &Json, at: &str) -> Result<RawStickyKey, ConfigError> {
    let mut k = RawStickyKey {
        header: None,
        cookie: None,
        issue: None,
        max_age: None,
        source_address: None,
        peer_identity: None,
        query: None,
    };
    let boolean = |v: &Json, at: &str| match v {
        Json::Bool(b) => Ok(Some(*b)),
        _ => Err(err(at, "invalid type: expected a boolean")),
    };
    for (name, v) in object(j, at)? {
        let at = format!("{at}.{name}");
        match name.as_str() {
            "header" => k.header = Some(string(v, &at)?),
            "cookie" => k.cookie = Some(string(v, &at)?),
            "query" => k.query = Some(string(v, &at)?),
            "issue" => k.issue = boolean(v, &at)?,
            "sourceAddress" => k.source_address = boolean(v, &at)?,
            "peerIdentity" => k.peer_identity = boolean(v, &at)?,
            "maxAge" => {
                k.max_age = Some(match v {
                    // Whole seconds as an integer Number, as serde reads them for stickyKeys.
                    Json::Num(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1e15 => Number::from(*f as u64),
                    Json::Num(f) => Number::from_f64(*f).unwrap_or_else(|| Number::from(0u8)),
                    _ => return Err(err(at, "invalid type: expected a number")),
                })
            }
            _ => return Err(err(at, format!("unknown field `{name}`"))),
        }
    }
    Ok(k)
}

/// The compiled flag and where its context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagd {
    /// The flag in force: `flagSet`'s, then each good snapshot of `sync`.
    pub flag: LiveFlag,
    pub sync: Option<FlagdSync>,
    /// What a snapshot's flag set is compiled with.
    pub recipe: Recipe,
    /// Per context attribute (its [`Attr`]): the request sources, the first non-empty wins.
    pub context: Vec<Vec<StickyKey>>,
    /// The `targetingKey` attribute: the one an issued cookie stands in for.
    pub targeting_key: Option<Attr>,
}

impl Flagd {
    pub fn reads_peer_identity(&self) -> bool {
        self.context
            .iter()
            .flatten()
            .any(|k| *k == StickyKey::PeerIdentity)
    }
}

/// Out of line and cold: each error site is one call (the module's size budget).
#[cold]
fn err<P: AsRef<str>, R: AsRef<str>>(path: P, reason: R) -> ConfigError {
    ConfigError::new(path.as_ref(), reason.as_ref())
}

/// Takes `flagd` out of the raw config and fills in what it stands for: `rolloutId`
/// (the flag key by default) and `versions` (the variants' versions, in order).
pub(super) fn take(raw: &mut RawConfig) -> Result<Option<RawFlagd>, ConfigError> {
    let Some(f) = raw.flagd.take() else {
        return Ok(None);
    };
    let f = parse(&f)?;
    let beside = [
        ("versions", raw.versions.is_some()),
        ("stickyKeys", !raw.sticky_keys.is_empty()),
        ("routeWeights", raw.route_weights.is_some()),
    ];
    if let Some((field, _)) = beside.iter().find(|(_, set)| *set) {
        return Err(err(
            *field,
            "not allowed with flagd: the flag's variants and context give the versions and keys",
        ));
    }
    let mut versions: Vec<RawVersion> = Vec::new();
    for (i, (key, version)) in f.variants.iter().enumerate() {
        let at = format!("flagd.variants.{key}");
        if f.variants.iter().take(i).any(|(k, _)| k == key) {
            return Err(err(at, "duplicate variant"));
        }
        super::check_version_name(version).map_err(|r| err(&at, r))?;
        if !versions.iter().any(|v| v.name == *version) {
            versions.push(RawVersion {
                name: version.clone(),
                // Unused by the decision; kept for the split's invariants (total >= 1).
                weight: Some(Number::from(1)),
                cluster: None,
            });
        }
    }
    raw.versions = Some(versions);
    raw.rollout_id.get_or_insert_with(|| f.flag_key.clone());
    Ok(Some(f))
}

/// Compiles the flag against the versions `take` gave.
pub(super) fn build(
    f: RawFlagd,
    versions: &[Version],
    issue_cookie: &mut Option<IssueCookie>,
) -> Result<Flagd, ConfigError> {
    let mode = match f.fractional.as_deref() {
        None | Some("v2") => Mode::V2,
        Some("v3") => Mode::V3,
        Some(other) => {
            return Err(err(
                "flagd.fractional",
                format!("must be \"v2\" or \"v3\", got {other:?}"),
            ))
        }
    };
    let flag_variants = f
        .flag_set
        .as_ref()
        .and_then(|set| set.get("flags"))
        .and_then(|fl| fl.get(&f.flag_key))
        .and_then(|fl| fl.get("variants"));
    let mut variants = Vec::with_capacity(f.variants.len());
    for (key, version) in &f.variants {
        if flag_variants.is_some_and(|v| v.get(key).is_none()) {
            return Err(err(
                format!("flagd.variants.{key}"),
                format!("not one of flag {:?}'s variants", f.flag_key),
            ));
        }
        let index = versions.iter().position(|v| v.name == *version).unwrap_or(0);
        variants.push((key.clone(), index));
    }
    let (attrs, context) = context(f.context, issue_cookie)?;
    let recipe = Recipe {
        flag_key: f.flag_key,
        variants,
        attrs,
        mode,
    };
    let flag = match &f.flag_set {
        Some(set) => recipe.compile(set).map_err(|r| {
            let path = if r.path.is_empty() {
                "flagd.flagSet".to_string()
            } else {
                format!("flagd.flagSet.{}", r.path)
            };
            err(super::one_line(&path), super::one_line(&r.reason))
        })?,
        None => flagd::Flag::fixed(
            &recipe.flag_key,
            mode,
            start_up_version(&recipe, f.sync.as_ref())?,
        ),
    };
    if f.flag_set.is_some() && f.sync.as_ref().is_some_and(|s| s.default_variant.is_some()) {
        return Err(err(
            "flagd.sync.defaultVariant",
            "only without flagd.flagSet (the flag set's defaultVariant serves until the first snapshot)",
        ));
    }
    let targeting_key = recipe
        .attrs
        .iter()
        .position(|a| a == "targetingKey")
        .map(|i| i as Attr);
    Ok(Flagd {
        flag: LiveFlag::new(flag),
        sync: f.sync,
        recipe,
        context,
        targeting_key,
    })
}

/// Without `flagSet`, the version served until the stream's first snapshot: `defaultVariant`'s,
/// else the first variant listed (an Istio `pluginConfig` is a protobuf Struct: its keys may
/// arrive in another order, so name it there).
fn start_up_version(recipe: &Recipe, sync: Option<&FlagdSync>) -> Result<usize, ConfigError> {
    match sync.and_then(|s| s.default_variant.as_deref()) {
        Some(key) => recipe
            .variants
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                err(
                    "flagd.sync.defaultVariant",
                    format!("{key:?} is not one of flagd.variants"),
                )
            }),
        None => Ok(recipe.variants.first().map_or(0, |v| v.1)),
    }
}

/// The attribute names and, for each, its request sources.
fn context(
    raw: Vec<(String, Vec<RawStickyKey>, bool)>,
    issue_cookie: &mut Option<IssueCookie>,
) -> Result<(Vec<String>, Vec<Vec<StickyKey>>), ConfigError> {
    if raw.len() > MAX_ATTRS {
        return Err(err("flagd.context", format!("at most {MAX_ATTRS} attributes")));
    }
    let all: Vec<&str> = raw.iter().map(|(n, _, _)| n.as_str()).collect();
    for (i, name) in all.iter().enumerate() {
        check_attr(name, &all, i).map_err(|r| err(format!("flagd.context.{name}"), r))?;
    }
    let mut names = Vec::with_capacity(raw.len());
    let mut sources = Vec::with_capacity(raw.len());
    for (name, list, is_list) in raw {
        let base = format!("flagd.context.{name}");
        if list.is_empty() {
            return Err(err(base, "must name at least one source"));
        }
        let n = list.len();
        let mut keys = Vec::with_capacity(n);
        for (i, raw_key) in list.into_iter().enumerate() {
            let at = if is_list {
                format!("{base}[{i}]")
            } else {
                base.clone()
            };
            let (key, issue) = sticky_key(raw_key).map_err(|(field, r)| {
                err(
                    if field.is_empty() {
                        at.clone()
                    } else {
                        format!("{at}.{field}")
                    },
                    r,
                )
            })?;
            if let (StickyKey::Cookie(cookie), Some(max_age)) = (&key, issue) {
                if name != "targetingKey" || i + 1 != n {
                    return Err(err(at, "only targetingKey's last source may issue a cookie"));
                }
                *issue_cookie = Some(IssueCookie::new(cookie.clone(), max_age));
            }
            keys.push(key);
        }
        names.push(name);
        sources.push(keys);
    }
    Ok((names, sources))
}

/// A context attribute name: a dotted name is nested (`user.name` is `{"user": {"name": …}}`
/// in flagd's context), so no name may be a parent of another.
fn check_attr(name: &str, all: &[&str], index: usize) -> Result<(), String> {
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err("must be a non-empty attribute name (dots separate nested names)".into());
    }
    if name.starts_with("$flagd") {
        return Err("$flagd properties are flagd's own".into());
    }
    if all.iter().take(index).any(|other| *other == name) {
        return Err("duplicate attribute".into());
    }
    let child = |other: &&str| {
        other.len() > name.len() && other.starts_with(name) && other.as_bytes().get(name.len()) == Some(&b'.')
    };
    if all.iter().any(child) {
        return Err("is the parent of another attribute; a var reads one value".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, StickyKey};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The issue's example.
    pub const EXAMPLE: &str = r#"{"flagd": {
        "flagKey": "checkout-v2",
        "flagSet": { "flags": { "checkout-v2": { "state": "ENABLED", "variants": { "on": true, "off": false },
                     "defaultVariant": "off", "targeting": { "fractional": [["on", 10], ["off", 90]] } } } },
        "variants": { "on": "canary", "off": "stable" },
        "context": { "targetingKey": { "header": "x-user-id" }, "tier": { "header": "x-tier" } },
        "fractional": "v2"
    }}"#;

    fn with(flagd_fields: &str, top: &str) -> String {
        let base = EXAMPLE.trim_end_matches("}}").trim_end();
        let base = base
            .trim_end_matches(r#""fractional": "v2""#)
            .trim_end()
            .trim_end_matches(',');
        let sep = if flagd_fields.is_empty() { "" } else { "," };
        let top = if top.is_empty() {
            String::new()
        } else {
            format!(",{top}")
        };
        format!("{base}{sep}{flagd_fields}}}{top}}}")
    }

    #[test]
    fn the_issue_example_loads() {
        let c = Config::from_json(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(c.rollout_id, "checkout-v2");
        let names: Vec<&str> = c.versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["canary", "stable"]);
        let f = c.flagd.unwrap();
        assert_eq!(f.flag.get().default, 1);
        assert_eq!(
            f.context,
            vec![
                vec![StickyKey::Header("x-user-id".into())],
                vec![StickyKey::Header("x-tier".into())]
            ]
        );
        assert_eq!(f.targeting_key, Some(0));
        assert!(c.sticky_keys.is_empty() && c.issue_cookie.is_none() && !c.needs_peer);
    }

    #[test]
    fn fields_and_refusals() {
        let ok = Config::from_json(with(r#""fractional": "v3""#, r#""rolloutId": "checkout""#).as_bytes())
            .unwrap();
        assert_eq!(
            (ok.rollout_id.as_str(), ok.flagd.unwrap().flag.get().mode),
            ("checkout", crate::flagd::Mode::V3)
        );
        let issuing = with("", "").replace(
            r#""targetingKey": { "header": "x-user-id" }"#,
            r#""targetingKey": [{ "header": "x-user-id" }, {"cookie": "sid", "issue": true}]"#,
        );
        let c = Config::from_json(issuing.as_bytes()).unwrap();
        assert_eq!(c.issue_cookie.unwrap().name, "sid");
        let cases: &[(String, &str)] = &[
            (with("", r#""versions": [{"name": "a", "weight": 1}]"#), "versions: not allowed with flagd"),
            (with("", r#""stickyKeys": [{"header": "x"}]"#), "stickyKeys: not allowed with flagd"),
            (with("", r#""routeWeights": {}"#), "routeWeights: not allowed with flagd"),
            (with(r#""fractional": "v1""#, ""), "flagd.fractional: must be \"v2\" or \"v3\""),
            (with(r#""flagSetX": 1"#, ""), "flagd.flagSetX: unknown field"),
            (EXAMPLE.replace(r#""on": "canary""#, r#""on": "Canary""#), "flagd.variants.on: must be 1 to 63"),
            (EXAMPLE.replace(r#""off": "stable" }"#, r#""off": "stable", "maybe": "stable" }"#), "flagd.variants.maybe: not one of flag"),
            (EXAMPLE.replace(r#", "off": "stable" }"#, " }"), "flagd.flagSet.flags.checkout-v2.defaultVariant: variant \"off\" has no version"),
            (EXAMPLE.replace(r#""checkout-v2": {"#, r#""other": {"#), "flagd.flagSet.flags: has no flag"),
            (EXAMPLE.replace(r#"{ "fractional": [["on", 10], ["off", 90]] }"#, r#"{"if": [{"sem_ver": [{"var": "tier"}, ">=", "1.2.0"]}, "on", "off"]}"#),
             "flagd.flagSet.flags.checkout-v2.targeting.if[0].sem_ver: operator \"sem_ver\" is not supported"),
            (EXAMPLE.replace(r#""tier": { "header": "x-tier" }"#, r#""tier": { "header": "x-tier", "cookie": "t" }"#), "flagd.context.tier: must name exactly one of"),
            (EXAMPLE.replace(r#""tier": { "header": "x-tier" }"#, r#""tier": [{ "hedaer": "x-tier" }]"#), "flagd.context.tier[0].hedaer: unknown field"),
            (EXAMPLE.replace(r#""tier": { "header": "x-tier" }"#, r#""tier": { "cookie": "t", "issue": true }"#), "flagd.context.tier: only targetingKey's last source"),
            (EXAMPLE.replace(r#""tier": { "header": "x-tier" }"#, r#""tier": []"#), "flagd.context.tier: must name at least one"),
            (EXAMPLE.replace(r#""tier": { "header": "x-tier" }"#, r#""user": {"query": "u"}, "user.name": {"query": "n"}"#), "flagd.context.user: is the parent"),
            (EXAMPLE.replace(r#""tier": { "header": "x-tier" }"#, r#""$flagd.flagKey": {"query": "u"}"#), "flagd.context.$flagd.flagKey: $flagd properties"),
        ];
        for (json, want) in cases {
            let got = Config::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(got.starts_with(want), "{json}\n  got:  {got}\n  want: {want}");
        }
        // Without flagd, both fields stay required, with serde's wording.
        let e = Config::from_json(br#"{"versions": [{"name": "a", "weight": 1}]}"#).unwrap_err();
        assert_eq!(e.to_string(), "missing field `rolloutId`");
        let e = Config::from_json(br#"{"rolloutId": "r"}"#).unwrap_err();
        assert_eq!(e.to_string(), "missing field `versions`");
    }

    #[test]
    fn sync_makes_the_flag_set_optional() {
        let sync = r#""sync": {"cluster": "flagd-sync", "authority": "flagd.flagd-system",
            "selector": "flagSetId=shop", "timeoutSeconds": 5}"#;
        let c = Config::from_json(with(sync, "").as_bytes()).unwrap();
        let f = c.flagd.unwrap();
        let s = f.sync.unwrap();
        assert_eq!(
            (
                s.cluster.as_str(),
                s.authority.as_str(),
                s.selector.as_str(),
                s.timeout_ms
            ),
            ("flagd-sync", "flagd.flagd-system", "flagSetId=shop", 5000)
        );
        // flagSet still starts the flag: its default variant, off, is stable.
        assert_eq!(f.flag.get().default, 1);
        assert_eq!(
            f.recipe.variants,
            vec![("on".to_string(), 0), ("off".to_string(), 1)]
        );
        // Without a flagSet: the first variant listed serves until the first snapshot.
        let bare = r#"{"flagd": {"flagKey": "k", "variants": {"off": "stable", "on": "canary"},
            "context": {"targetingKey": {"header": "x-user-id"}}, "sync": {"cluster": "c"}}}"#;
        let c = Config::from_json(bare.as_bytes()).unwrap();
        let f = c.flagd.unwrap();
        assert_eq!((f.flag.get().default, f.sync.unwrap().timeout_ms), (0, 5000));
        let cases: &[(&str, &str)] = &[
            (
                r#""sync": {"cluster": ""}"#,
                "flagd.sync.cluster: must name an Envoy cluster",
            ),
            (r#""sync": {}"#, "flagd.sync: missing field `cluster`"),
            (
                r#""sync": {"cluster": "c", "timeoutSeconds": 0.5}"#,
                "flagd.sync.timeoutSeconds: must be from 1 to 3600",
            ),
            (
                r#""sync": {"cluster": "c", "timeoutSeconds": "5"}"#,
                "flagd.sync.timeoutSeconds: invalid type",
            ),
            (
                r#""sync": {"cluster": "c", "selectr": "x"}"#,
                "flagd.sync.selectr: unknown field",
            ),
            (
                r#""sync": {"cluster": "c", "selector": "a\nb"}"#,
                "flagd.sync.selector: must not contain control",
            ),
            (r#""sync": ["c"]"#, "flagd.sync: invalid type: expected a map"),
            (
                &format!(r#""sync": {{"cluster": "{}"}}"#, "c".repeat(121)),
                "flagd.sync: `cluster` and `authority` together",
            ),
        ];
        for (field, want) in cases {
            let got = Config::from_json(with(field, "").as_bytes())
                .unwrap_err()
                .to_string();
            assert!(got.starts_with(want), "{field}\n  got:  {got}\n  want: {want}");
        }
        let named = bare.replace(r#""cluster": "c""#, r#""cluster": "c", "defaultVariant": "on""#);
        assert_eq!(
            Config::from_json(named.as_bytes())
                .unwrap()
                .flagd
                .unwrap()
                .flag
                .get()
                .default,
            1
        );
        let unknown = bare.replace(
            r#""cluster": "c""#,
            r#""cluster": "c", "defaultVariant": "maybe""#,
        );
        let got = Config::from_json(unknown.as_bytes()).unwrap_err().to_string();
        assert_eq!(
            got,
            "flagd.sync.defaultVariant: \"maybe\" is not one of flagd.variants"
        );
        let both = with(r#""sync": {"cluster": "c", "defaultVariant": "on"}"#, "");
        let got = Config::from_json(both.as_bytes()).unwrap_err().to_string();
        assert!(
            got.starts_with("flagd.sync.defaultVariant: only without flagd.flagSet"),
            "{got}"
        );
        let no_set = bare.replace(r#", "sync": {"cluster": "c"}"#, "");
        let got = Config::from_json(no_set.as_bytes()).unwrap_err().to_string();
        assert_eq!(got, "flagd: missing field `flagSet`");
    }
}
