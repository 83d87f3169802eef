//! The flag-set document flagd reads (a file, HTTP, or a `FeatureFlag`'s `spec.flagSpec`):
//! `flags` as a map, `$evaluators`, `metadata` and any other field tolerated. Only the
//! rollout's flag is checked; the others are the app's business.

use super::json::Json;

use super::{Refusal, Spec};

/// The rollout's flag, as much as the compiler needs.
pub struct FlagDoc<'a> {
    /// `flags.<key>`: where its fields are.
    pub path: String,
    pub disabled: bool,
    pub variants: &'a Json,
    pub default_variant: &'a str,
    pub targeting: Option<&'a Json>,
    pub evaluators: Option<&'a Json>,
}

pub fn flag<'a>(spec: &Spec<'a>) -> Result<FlagDoc<'a>, Refusal> {
    let set = spec.flag_set;
    if set.as_object().is_none() {
        return Err(Refusal::new(
            "",
            "must be a flagd flag-set document (a JSON object)",
        ));
    }
    // flagd (Go) also takes `flags` as an array; flagd-core (JS) does not: a map only.
    let flags = set
        .get("flags")
        .filter(|f| f.as_object().is_some())
        .ok_or_else(|| Refusal::new("flags", "must be a map of flag key to flag"))?;
    let path = format!("flags.{}", spec.flag_key);
    let flag = flags
        .get(spec.flag_key)
        .ok_or_else(|| Refusal::new("flags", format!("has no flag {:?} (flagKey)", spec.flag_key)))?;
    if flag.as_object().is_none() {
        return Err(Refusal::new(&path, "must be a JSON object"));
    }
    let at = |field: &str| format!("{path}.{field}");
    // flagd-core throws on any other state (feature-flag.ts validateStructure).
    let disabled = match flag.get("state").and_then(Json::as_str) {
        Some("ENABLED") => false,
        Some("DISABLED") => true,
        _ => return Err(Refusal::new(at("state"), "must be \"ENABLED\" or \"DISABLED\"")),
    };
    let variants = flag
        .get("variants")
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
        .ok_or_else(|| Refusal::new(at("variants"), "must be a non-empty map of variant key to value"))?;
    // Without one flagd serves the caller's code default, which a proxy does not have.
    let default_variant = match flag.get("defaultVariant").and_then(Json::as_str) {
        Some(d) if !d.is_empty() => d,
        _ => {
            return Err(Refusal::new(
                at("defaultVariant"),
                "required: the filter has no code default to fall back to",
            ))
        }
    };
    if variants.get(default_variant).is_none() {
        return Err(Refusal::new(
            at("defaultVariant"),
            format!("{default_variant:?} is not one of the flag's variants"),
        ));
    }
    let evaluators = match set.get("$evaluators") {
        None => None,
        Some(e) if e.as_object().is_some() => Some(e),
        Some(_) => return Err(Refusal::new("$evaluators", "must be a map of name to rule")),
    };
    Ok(FlagDoc {
        path,
        disabled,
        variants,
        default_variant,
        targeting: flag.get("targeting"),
        evaluators,
    })
}

/// The rule a `{"$ref": name}` stands for. flagd and flagd-core replace the text
/// `{"$ref":"<name>"}` in the document once per evaluator, in map order (json.go
/// transposeEvaluators, parser.ts transform): a `$ref` inside an evaluator is resolved only in
/// some orders (Go's map order is random), so it is refused; so are names whose JSON text Go
/// and JS write differently (Go escapes `<`, `>`, `&`).
pub fn resolve<'a>(doc: &FlagDoc<'a>, name: &str, path: &str) -> Result<(&'a Json, String), Refusal> {
    if name
        .chars()
        .any(|c| matches!(c, '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}') || c.is_control())
    {
        return Err(Refusal::new(
            path,
            format!("$ref {name:?}: flagd and flagd-core match this name differently"),
        ));
    }
    let rule = doc
        .evaluators
        .and_then(|e| e.get(name))
        .ok_or_else(|| Refusal::new(path, format!("$ref {name:?} is not in $evaluators")))?;
    let at = format!("$evaluators.{name}");
    if contains_ref(rule) {
        return Err(Refusal::new(
            at,
            "a $ref inside $evaluators: flagd resolves it only in some orders",
        ));
    }
    Ok((rule, at))
}

fn contains_ref(v: &Json) -> bool {
    match v {
        Json::Obj(m) => m.iter().any(|(k, v)| k == "$ref" || contains_ref(v)),
        Json::Arr(a) => a.iter().any(contains_ref),
        _ => false,
    }
}
