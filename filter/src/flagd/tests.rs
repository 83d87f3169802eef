//! Table tests: what is refused at load (and where), and what each accepted rule answers.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// (targeting, request values, (version, targeted))
type Case = (Value, &'static [(&'static str, &'static str)], (usize, bool));

const ATTRS: [&str; 4] = ["targetingKey", "email", "tier", "user.name"];

struct Ctx(HashMap<Attr, &'static [u8]>);

impl Context for Ctx {
    fn value(&mut self, attr: Attr) -> Option<&[u8]> {
        self.0.get(&attr).copied()
    }
}

fn ctx(pairs: &[(&str, &'static str)]) -> Ctx {
    Ctx(pairs
        .iter()
        .map(|(k, v)| (ATTRS.iter().position(|a| a == k).unwrap() as Attr, v.as_bytes()))
        .collect())
}

/// A flag `f` with variants on/off/beta (versions 1/0/2), default off.
fn doc(targeting: Value) -> Value {
    json!({
        "flags": { "f": { "state": "ENABLED", "variants": {"on": true, "off": false, "beta": "b", "true": 1},
                           "defaultVariant": "off", "targeting": targeting } },
        "$evaluators": { "staff": {"ends_with": [{"var": "email"}, "@example.com"]},
                          "loop": {"$ref": "staff"} },
        "metadata": {"owner": "x"}, "someFlagdField": 1
    })
}

fn build(d: &Value, mode: Mode) -> Result<Flag, Refusal> {
    let d = &Json::parse(d.to_string().as_bytes()).unwrap();
    let variants: Vec<(String, usize)> = vec![
        ("off".into(), 0),
        ("on".into(), 1),
        ("beta".into(), 2),
        ("true".into(), 1),
    ];
    let attrs: Vec<String> = ATTRS.iter().map(|s| s.to_string()).collect();
    compile(&Spec {
        flag_key: "f",
        flag_set: d,
        variants: &variants,
        attrs: &attrs,
        mode,
    })
}

fn eval(t: Value, c: &[(&str, &'static str)]) -> (usize, bool) {
    let f = build(&doc(t), Mode::V2).unwrap_or_else(|e| panic!("{e:?}"));
    let o = f.evaluate(&mut ctx(c));
    (o.version, o.targeted)
}

#[test]
fn refusals_name_the_operator_and_its_path() {
    let cases: &[(Value, &str, &str)] = &[
        (
            json!({"if": [{"sem_ver": [{"var": "tier"}, ">=", "1.0.0"]}, "on", "off"]}),
            "flags.f.targeting.if[0].sem_ver",
            "operator \"sem_ver\" is not supported",
        ),
        (
            json!({"if": [{"==": [{"var": "$flagd.timestamp"}, "1"]}, "on", null]}),
            "flags.f.targeting.if[0].==[0].var",
            "$flagd.timestamp",
        ),
        (
            json!({"fractional": [["on", {"+": [1, 2]}], ["off", 1]]}),
            "flags.f.targeting.fractional[0][1]",
            "computed weights",
        ),
        (
            json!({"fractional": [[{"fractional": [["on", 1]]}, 1]]}),
            "flags.f.targeting.fractional[0][0]",
            "computed variants",
        ),
        (
            json!({"if": [{"fractional": [["on", 1]]}, "on", "off"]}),
            "flags.f.targeting.if[0].fractional",
            "not supported",
        ),
        (
            json!({"if": [{"==": [{"var": "country"}, "de"]}, "on", null]}),
            "flags.f.targeting.if[0].==[0].var",
            "var \"country\": the context does not map it",
        ),
        (
            json!({"if": [{"==": [{"var": "tier"}, {"var": "email"}]}, "on", null]}),
            "flags.f.targeting.if[0].==",
            "not two vars",
        ),
        (
            json!({"if": [{"==": [{"var": "tier"}, 5]}, "on", null]}),
            "flags.f.targeting.if[0].==[1]",
            "request values are strings",
        ),
        (
            json!({"if": [{"in": [{"var": "tier"}, "gold,silver"]}, "on", null]}),
            "flags.f.targeting.if[0].in",
            "takes a list of strings",
        ),
        (
            json!({"if": [{"var": "tier"}, "on", null]}),
            "flags.f.targeting.if[0].var",
            "not supported",
        ),
        (
            json!({"if": [{"$ref": "loop"}, "on", null]}),
            "$evaluators.loop",
            "a $ref inside $evaluators",
        ),
        (
            json!({"if": [{"$ref": "nope"}, "on", null]}),
            "flags.f.targeting.if[0].$ref",
            "not in $evaluators",
        ),
        (
            json!("gamma"),
            "flags.f.targeting",
            "\"gamma\" is not one of the flag's variants",
        ),
        (
            json!({"fractional": [["false", 1]]}),
            "flags.f.targeting.fractional[0][0]",
            "not one of the flag's variants",
        ),
        (
            json!({"fractional": [{"cat": [" x", {"var": "email"}]}, ["on", 1]]}),
            "flags.f.targeting.fractional[0].cat",
            "outer whitespace",
        ),
        (
            json!({"fractional": [7, ["on", 1]]}),
            "flags.f.targeting.fractional[0]",
            "fractional v2",
        ),
        (
            json!({"fractional": [["on", 2147483647], ["off", 1]]}),
            "flags.f.targeting.fractional[1]",
            "at most 2147483647",
        ),
        (
            json!({"fractional": [["on", null]]}),
            "flags.f.targeting.fractional[0][1]",
            "must be an integer",
        ),
        (
            json!({"fractional": [["on", 1.5]]}),
            "flags.f.targeting.fractional[0][1]",
            "must be an integer",
        ),
        (
            json!({"fractional": [["on", 1, 2]]}),
            "flags.f.targeting.fractional[0]",
            "[variant, weight]",
        ),
        (
            json!({"if": [{"and": []}, "on", null]}),
            "flags.f.targeting.if[0].and",
            "non-empty",
        ),
        (json!({"if": [true]}), "flags.f.targeting.if", "at least"),
        (
            json!({"==": [1, 1], "if": []}),
            "flags.f.targeting",
            "exactly one key",
        ),
        (json!([1]), "flags.f.targeting", "a result must be"),
        (
            json!({"if": [{"==": [{"var": ["tier", "gold"]}, "gold"]}, "on", null]}),
            "flags.f.targeting.if[0].==[0].var",
            "default is not supported",
        ),
    ];
    for (t, path, reason) in cases {
        let e = build(&doc(t.clone()), Mode::V2).expect_err(&t.to_string());
        assert_eq!(e.path, *path, "{t}: {}", e.reason);
        assert!(e.reason.contains(reason), "{t}: {}", e.reason);
    }
    // v3 refuses null literally, as the design record says.
    let e = build(&doc(json!({"fractional": [null, ["on", 1]]})), Mode::V3).unwrap_err();
    assert!(e.reason.contains("null is refused"), "{}", e.reason);
}

#[test]
fn document_refusals() {
    let variants = vec![("off".to_string(), 0)];
    let attrs = vec![];
    let try_doc = |d: Value, key: &str| {
        let d = Json::parse(d.to_string().as_bytes()).unwrap();
        compile(&Spec {
            flag_key: key,
            flag_set: &d,
            variants: &variants,
            attrs: &attrs,
            mode: Mode::V2,
        })
        .unwrap_err()
    };
    let f = |flag: Value| json!({"flags": {"f": flag}});
    let cases = [
        (json!([]), "f", "", "flag-set document"),
        (json!({"flags": []}), "f", "flags", "map of flag key"),
        (json!({"flags": {}}), "f", "flags", "has no flag \"f\""),
        (
            f(json!({"state": "ON", "variants": {"off": 1}, "defaultVariant": "off"})),
            "f",
            "flags.f.state",
            "ENABLED",
        ),
        (
            f(json!({"state": "ENABLED", "variants": {}, "defaultVariant": "off"})),
            "f",
            "flags.f.variants",
            "non-empty",
        ),
        (
            f(json!({"state": "ENABLED", "variants": {"off": 1}})),
            "f",
            "flags.f.defaultVariant",
            "required",
        ),
        (
            f(json!({"state": "ENABLED", "variants": {"off": 1}, "defaultVariant": "on"})),
            "f",
            "flags.f.defaultVariant",
            "not one of",
        ),
        (
            f(json!({"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"})),
            "f",
            "flags.f.defaultVariant",
            "no version",
        ),
    ];
    for (d, key, path, reason) in cases {
        let e = try_doc(d.clone(), key);
        assert_eq!(e.path, path, "{d}");
        assert!(e.reason.contains(reason), "{d}: {}", e.reason);
    }
}

#[test]
fn conditions_as_flagd_answers_them() {
    let on = (1, true);
    let off = (0, true);
    let default = (0, false);
    let cases: &[Case] = &[
        (
            json!({"if": [{"==": [{"var": "tier"}, "gold"]}, "on", "off"]}),
            &[("tier", "gold")],
            on,
        ),
        (
            json!({"if": [{"===": ["gold", {"var": "tier"}]}, "on", "off"]}),
            &[("tier", "gold")],
            on,
        ),
        (
            json!({"if": [{"==": [{"var": "tier"}, "gold"]}, "on", "off"]}),
            &[],
            off,
        ),
        // A missing value differs from every string.
        (
            json!({"if": [{"!=": [{"var": "tier"}, "gold"]}, "on", "off"]}),
            &[],
            on,
        ),
        (
            json!({"if": [{"!==": [{"var": "tier"}, "gold"]}, "on", "off"]}),
            &[("tier", "gold")],
            off,
        ),
        (
            json!({"if": [{"in": [{"var": "tier"}, ["gold", "silver"]]}, "on", "off"]}),
            &[("tier", "silver")],
            on,
        ),
        (
            json!({"if": [{"in": [{"var": "tier"}, ["gold", "silver"]]}, "on", "off"]}),
            &[("tier", "gol")],
            off,
        ),
        (
            json!({"if": [{"in": ["@example", {"var": "email"}]}, "on", "off"]}),
            &[("email", "a@example.com")],
            on,
        ),
        (
            json!({"if": [{"in": ["@example", {"var": "email"}]}, "on", "off"]}),
            &[],
            off,
        ),
        (
            json!({"if": [{"starts_with": [{"var": "email"}, "admin"]}, "on", "off"]}),
            &[("email", "admin@x")],
            on,
        ),
        (
            json!({"if": [{"starts_with": ["admin@x.org", {"var": "email"}]}, "on", "off"]}),
            &[("email", "admin")],
            on,
        ),
        (
            json!({"if": [{"$ref": "staff"}, "on", "off"]}),
            &[("email", "jo@example.com")],
            on,
        ),
        (json!({"if": [{"!": {"$ref": "staff"}}, "on", "off"]}), &[], on),
        (
            json!({"if": [{"!": [{"starts_with": [{"var": "email"}, "a"]}]}, "on", "off"]}),
            &[],
            on,
        ),
        (
            json!({"if": [{"and": [{"$ref": "staff"}, {"==": [{"var": "tier"}, "gold"]}]}, "on", "off"]}),
            &[("email", "jo@example.com"), ("tier", "gold")],
            on,
        ),
        (
            json!({"if": [{"or": [{"$ref": "staff"}, {"==": [{"var": "user.name"}, "jo"]}]}, "on", "off"]}),
            &[("user.name", "jo")],
            on,
        ),
        // else-if chains; without an else nothing holding is the default variant.
        (
            json!({"if": [{"==": [{"var": "tier"}, "a"]}, "on", {"==": [{"var": "tier"}, "b"]}, "beta", "off"]}),
            &[("tier", "b")],
            (2, true),
        ),
        (
            json!({"if": [{"==": [{"var": "tier"}, "a"]}, "on"]}),
            &[("tier", "b")],
            default,
        ),
        (
            json!({"if": [{"==": [{"var": "tier"}, "a"]}, "on", null]}),
            &[("tier", "b")],
            default,
        ),
        (
            json!({"if": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, true, "off"]}),
            &[],
            (1, true),
        ),
        (json!({"if": [false, "on", "beta"]}), &[], (2, true)),
        (json!("on"), &[], on),
        (json!(null), &[], default),
        (json!({}), &[], default),
    ];
    for (t, c, want) in cases {
        assert_eq!(eval(t.clone(), c), *want, "{t} {c:?}");
    }
}

#[test]
fn disabled_and_static_flags_serve_the_default() {
    let mut d = doc(json!("on"));
    d["flags"]["f"]["state"] = json!("DISABLED");
    let f = build(&d, Mode::V2).unwrap();
    assert_eq!(
        f.evaluate(&mut ctx(&[])),
        Outcome {
            version: 0,
            targeted: false
        }
    );
    // A disabled flag's targeting is not evaluated, so not even checked.
    d["flags"]["f"]["targeting"] = json!({"sem_ver": []});
    assert!(build(&d, Mode::V2).is_ok());
    d["flags"]["f"].as_object_mut().unwrap().remove("targeting");
    d["flags"]["f"]["state"] = json!("ENABLED");
    assert!(!build(&d, Mode::V2).unwrap().evaluate(&mut ctx(&[])).targeted);
}

/// The fractional inputs, hashed by hand: v2 strings, v3 CBOR.
#[test]
fn fractional_inputs() {
    let hash = |b: &[u8]| crate::split::hash(b"", b);
    let halves = |by: Value| json!({"fractional": [by, ["on", 1], ["off", 1]]});
    let short = json!({"fractional": [["on", 1], ["off", 1]]});
    let pick = |h: u32| {
        if crate::split::pick(h, &[1u32, 1], 2) == 0 {
            1
        } else {
            0
        }
    };
    let run = |t: &Value, mode, c: &[(&str, &'static str)]| {
        build(&doc(t.clone()), mode).unwrap().evaluate(&mut ctx(c))
    };
    for user in ["alice", "bob", "carol", "dave", "ü"] {
        let tk = [("targetingKey", user)];
        // v2 shorthand: flagKey ++ targetingKey.
        assert_eq!(
            run(&short, Mode::V2, &tk).version,
            pick(hash(format!("f{user}").as_bytes()))
        );
        // v3 shorthand: CBOR [flagKey, targetingKey].
        let mut cbor = vec![0x82, 0x61, b'f', 0x60 + user.len() as u8];
        cbor.extend_from_slice(user.as_bytes());
        assert_eq!(run(&short, Mode::V3, &tk).version, pick(hash(&cbor)));
        // cat: the joined string; v3 as one CBOR text.
        let cat = halves(json!({"cat": [{"var": "$flagd.flagKey"}, "-", {"var": "email"}]}));
        let em = [("email", user)];
        assert_eq!(
            run(&cat, Mode::V2, &em).version,
            pick(hash(format!("f-{user}").as_bytes()))
        );
        let mut text = vec![0x60 + 2 + user.len() as u8, b'f', b'-'];
        text.extend_from_slice(user.as_bytes());
        assert_eq!(run(&cat, Mode::V3, &em).version, pick(hash(&text)));
    }
    // A missing bucketing var: v2 buckets by the targetingKey as flagd does; v3 serves the default.
    let by_email = halves(json!({"var": "email"}));
    let tk = [("targetingKey", "alice")];
    assert_eq!(run(&by_email, Mode::V2, &tk), run(&short, Mode::V2, &tk));
    assert_eq!(
        run(&by_email, Mode::V3, &tk),
        Outcome {
            version: 0,
            targeted: false
        }
    );
    // No targetingKey: the default variant (flagd 0.15+).
    assert_eq!(
        run(&short, Mode::V2, &[]),
        Outcome {
            version: 0,
            targeted: false
        }
    );
    // Literal bucketing values are hashed at load; v3 takes numbers and booleans.
    let n = halves(json!(12.0));
    assert_eq!(run(&n, Mode::V3, &[]).version, pick(hash(&[0x0c])));
    assert_eq!(
        run(&halves(json!(true)), Mode::V3, &[]).version,
        pick(hash(&[0xf5]))
    );
    // All-zero weights, negative ones clamped.
    let zero = json!({"fractional": [["on", 0], ["beta", -5]]});
    assert_eq!(
        run(&zero, Mode::V2, &tk),
        Outcome {
            version: 0,
            targeted: false
        }
    );
    let neg = json!({"fractional": [["on", -50], ["beta", 100]]});
    assert_eq!(
        run(&neg, Mode::V2, &tk),
        Outcome {
            version: 2,
            targeted: true
        }
    );
    // A null variant is the default; a single entry always wins.
    assert!(!run(&json!({"fractional": [[null]]}), Mode::V2, &tk).targeted);
    assert_eq!(run(&json!({"fractional": [["beta"]]}), Mode::V2, &tk).version, 2);
}

/// tests/vectors/flagd-v3.json: computed by Python's cbor2 (canonical) and mmh3, not by this code.
#[test]
fn v3_fixtures_from_an_independent_cbor() {
    use super::eval::{bucket_hash, BucketBy};
    let v: Value = serde_json::from_str(include_str!("../../../tests/vectors/flagd-v3.json")).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for case in v["values"].as_array().unwrap() {
        let text = case["json"].as_str().unwrap();
        let mut out = Vec::new();
        cbor::encode(&cbor::tests::exact(text), &mut out);
        assert_eq!(hex(&out), case["cbor"].as_str().unwrap(), "{text}");
        assert_eq!(
            u64::from(crate::split::hash(b"", &out)),
            case["hash"].as_u64().unwrap(),
            "{text}"
        );
    }
    let key = v["flagKey"].as_str().unwrap();
    let doc = |targeting: Value| {
        let d = json!({"flags": {key: {"state": "ENABLED", "variants": {"on": 1, "off": 0},
                                        "defaultVariant": "off", "targeting": targeting}}});
        Json::parse(d.to_string().as_bytes()).unwrap()
    };
    let build = |d: &Json| {
        let attrs = vec!["targetingKey".to_string(), "email".to_string()];
        let variants = vec![("on".to_string(), 1), ("off".to_string(), 0)];
        compile(&Spec {
            flag_key: key,
            flag_set: d,
            variants: &variants,
            attrs: &attrs,
            mode: Mode::V3,
        })
        .unwrap()
    };
    let short = build(&doc(json!({"fractional": v["split"]})));
    for case in v["shorthand"].as_array().unwrap() {
        let tk = case["targetingKey"].as_str().unwrap().as_bytes();
        let mut ctx = |a: Attr| (a == 0).then_some(tk);
        let mut c = FnCtx(&mut ctx);
        assert_eq!(
            bucket_hash(&short, &BucketBy::Shorthand(0), &mut c).map(u64::from),
            case["hash"].as_u64()
        );
        let want = usize::from(case["variant"] == "on");
        assert_eq!(short.evaluate(&mut c).version, want, "{tk:?}");
    }
    let cat = build(&doc(
        json!({"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["on", 10], ["off", 90]]}),
    ));
    for case in v["cat"].as_array().unwrap() {
        let email = case["email"].as_str().unwrap().as_bytes();
        let mut ctx = |a: Attr| (a == 1).then_some(email);
        let want = usize::from(case["variant"] == "on");
        assert_eq!(cat.evaluate(&mut FnCtx(&mut ctx)).version, want);
    }
}

/// A closure as a context.
struct FnCtx<'f, 'v>(&'f mut dyn FnMut(Attr) -> Option<&'v [u8]>);

impl Context for FnCtx<'_, '_> {
    fn value(&mut self, attr: Attr) -> Option<&[u8]> {
        (self.0)(attr)
    }
}
