//! flagd-testbed v3.9.0's `fractional.feature` run against the evaluator: every
//! `@fractional-v2` and `@operator-errors` example, over the testbed's own flag document.
//! See tests/vectors/flagd-testbed/README.md.

use std::collections::HashMap;

use serde_json::Value;

use super::{compile, Attr, Context, Mode, Spec};

const FEATURE: &str = include_str!("../../../tests/vectors/flagd-testbed/fractional.feature");
const FLAGS: &str = include_str!("../../../tests/vectors/flagd-testbed/testkit-flags.json");

#[derive(Default, Debug)]
struct Scenario {
    tags: Vec<String>,
    steps: Vec<String>,
    /// (tags, rows with the header first)
    examples: Vec<(Vec<String>, Vec<Vec<String>>)>,
}

fn parse(feature: &str) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    let mut tags = Vec::new();
    for line in feature.lines().map(str::trim) {
        if line.starts_with('@') {
            tags.extend(line.split_whitespace().map(String::from));
        } else if line.starts_with("Scenario") {
            out.push(Scenario {
                tags: std::mem::take(&mut tags),
                ..Scenario::default()
            });
        } else if line.starts_with("Examples") {
            if let Some(s) = out.last_mut() {
                s.examples.push((std::mem::take(&mut tags), Vec::new()));
            }
        } else if let Some(row) = line.strip_prefix('|') {
            let cells = row
                .trim_end_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            if let Some((_, rows)) = out.last_mut().and_then(|s| s.examples.last_mut()) {
                rows.push(cells);
            }
        } else if ["Given ", "And ", "When ", "Then "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            if let Some(s) = out.last_mut() {
                s.steps.push(line.to_string());
            }
        }
    }
    out
}

/// The quoted strings of a step, in order.
fn quoted(step: &str) -> Vec<&str> {
    step.split('"').skip(1).step_by(2).collect()
}

/// Every `var` name a rule reads.
fn vars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(n)) = m.get("var") {
                out.push(n.clone());
            }
            m.values().for_each(|x| vars(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| vars(x, out)),
        _ => {}
    }
}

struct Ctx(HashMap<Attr, Vec<u8>>);

impl Context for Ctx {
    fn value(&mut self, attr: Attr) -> Option<&[u8]> {
        self.0.get(&attr).map(Vec::as_slice)
    }
}

/// Runs one example; `None` when the flag is refused at load.
fn run(doc: &Value, steps: &[String]) -> Option<(String, bool, Option<String>, Option<String>)> {
    let mut key = "";
    let mut ctx: Vec<(String, String)> = Vec::new();
    let (mut want, mut reason) = (None, None);
    for s in steps {
        let q = quoted(s);
        if s.contains("String-flag with key") {
            key = q.first().copied().unwrap_or_default();
        } else if s.contains("nested property") {
            ctx.push((format!("{}.{}", q[0], q[1]), q[2].to_string()));
        } else if s.contains("targeting key with value") {
            ctx.push(("targetingKey".into(), q[0].to_string()));
        } else if s.contains("context containing a key") {
            ctx.push((q[0].to_string(), q[2].to_string()));
        } else if s.contains("resolved details value should be") {
            want = Some(q[0].to_string());
        } else if s.contains("reason should be") {
            reason = Some(q[0].to_string());
        }
    }
    let flag = &doc["flags"][key];
    let mut attrs = vec!["targetingKey".to_string()];
    vars(&flag["targeting"], &mut attrs);
    attrs.retain(|a| !a.starts_with("$flagd"));
    attrs.dedup();
    // Each variant's version is named after its value, which the feature expects.
    let names: Vec<String> = flag["variants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
        .collect();
    let variants: Vec<(String, usize)> = flag["variants"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .zip(0..)
        .collect();
    let set = super::Json::parse(FLAGS.as_bytes()).unwrap();
    let spec = Spec {
        flag_key: key,
        flag_set: &set,
        variants: &variants,
        attrs: &attrs,
        mode: Mode::V2,
    };
    let compiled = compile(&spec).ok()?;
    let mut c = Ctx(HashMap::new());
    for (name, value) in ctx {
        // An empty value is an absent attribute (the filter's rule for request values).
        if let (Some(i), false) = (attrs.iter().position(|a| *a == name), value.is_empty()) {
            c.0.insert(i as Attr, value.into_bytes());
        }
    }
    let out = compiled.evaluate(&mut c);
    Some((names[out.version].clone(), out.targeted, want, reason))
}

#[test]
fn fractional_v2_and_operator_errors() {
    let doc: Value = serde_json::from_str(FLAGS).unwrap();
    let mut ran = 0;
    for s in parse(FEATURE) {
        let nested = s.tags.iter().any(|t| t == "@fractional-nested");
        let wanted = |tags: &[String]| {
            tags.iter()
                .chain(&s.tags)
                .any(|t| t == "@fractional-v2" || t == "@operator-errors")
        };
        let mut runs: Vec<Vec<String>> = Vec::new();
        if s.examples.is_empty() && (wanted(&[]) || nested) {
            runs.push(s.steps.clone());
        }
        for (tags, rows) in &s.examples {
            if !(wanted(tags) || nested) {
                continue;
            }
            let (head, body) = rows.split_first().unwrap();
            for row in body {
                let steps = s.steps.iter().map(|st| {
                    head.iter()
                        .zip(row)
                        .fold(st.clone(), |acc, (h, v)| acc.replace(&format!("<{h}>"), v))
                });
                runs.push(steps.collect());
            }
        }
        for steps in runs {
            let got = run(&doc, &steps);
            if nested {
                assert!(
                    got.is_none(),
                    "computed variants/weights must be refused: {steps:?}"
                );
                continue;
            }
            let (version, targeted, want, reason) = got.unwrap_or_else(|| panic!("refused: {steps:?}"));
            assert_eq!(Some(&version), want.as_ref(), "{steps:?}");
            if let Some(r) = reason {
                assert_eq!(targeted, r != "DEFAULT", "{steps:?}");
            }
            ran += 1;
        }
    }
    // 5 + 2 + 4 + 1 + 4 + 5 examples of @fractional-v2, 3 of @operator-errors.
    assert_eq!(ran, 24);
}
