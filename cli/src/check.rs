//! What `rollout-check-config` checks: the filter configurations in an input, found the way a
//! user holds them. An input is a filter config (JSON, as the filter reads it), a `WasmPlugin`
//! (its `spec.pluginConfig`), an Envoy Gateway `EnvoyExtensionPolicy` (each `spec.wasm[].config`),
//! or an Envoy config or ECDS resource (every Wasm HTTP filter's
//! `configuration`, and the file an ECDS `config_discovery` reads), in YAML or JSON, with any
//! number of YAML documents. Each configuration goes through the filter's own entry point,
//! [`FilterConfig::from_json`], as `on_configure` runs it.

use rollout_filter::rollouts::FilterConfig;
use serde::Deserialize;
use serde_json::Value;

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
/// Top-level keys of an Envoy bootstrap or an xDS resource file: such a document is not a
/// filter config written in YAML, even when it carries no Wasm filter.
const ENVOY_KEYS: &[&str] = &[
    "static_resources",
    "dynamic_resources",
    "admin",
    "node",
    "resources",
    "layered_runtime",
];

/// One filter configuration of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The input's name, then `#<document>` when it has several, then `#<filter>` for a
    /// filter in an Envoy config (e.g. `istio/lanes.yaml#1`, `envoy.yaml#rollout-filter-mtls`).
    pub name: String,
    /// Where the configuration sits in its document, prefixed to the filter's field path
    /// (`spec.pluginConfig` in a WasmPlugin, `spec.wasm[0].config` in an EnvoyExtensionPolicy,
    /// empty elsewhere).
    pub at: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The configuration's JSON text, as the filter receives it.
    Json(Vec<u8>),
    /// The configuration re-encoded as JSON from YAML (a WasmPlugin's pluginConfig): the
    /// line and column in the filter's messages are not the user's, so they are left out.
    Reencoded(Vec<u8>),
    /// Delivered by ECDS from this file (a `path_config_source`; relative to Envoy's directory).
    EcdsFile(String),
    /// Not checkable here, and why (an ECDS source that is a control plane).
    Unchecked(String),
    /// The configuration cannot even be found or read, and why.
    Broken(String),
}

/// The filter's verdict on `json`: `Ok` with any warnings it would log, or the error with its
/// field path (after `at`, where the configuration sits in its document).
pub fn verdict(at: &str, json: &[u8]) -> Result<Vec<String>, String> {
    match FilterConfig::from_json(json) {
        Ok(cfg) => Ok(cfg.rollouts.into_iter().flat_map(|r| r.warnings).collect()),
        Err(mut e) if !at.is_empty() => {
            e.path = if e.path.is_empty() || e.path == "." {
                at.to_string()
            } else {
                format!("{at}.{}", e.path)
            };
            Err(e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The result for one configuration: one line of `rollout-check-config`'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted, with the warnings the filter would log.
    Ok(Vec<String>),
    Invalid(String),
    /// Not checked, and why (not an error).
    Unchecked(String),
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Invalid(_))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok(w) if w.is_empty() => write!(f, "ok"),
            Outcome::Ok(w) => write!(f, "ok (warning: {})", w.join("; warning: ")),
            Outcome::Invalid(e) => write!(f, "invalid: {e}"),
            Outcome::Unchecked(why) => write!(f, "not checked: {why}"),
        }
    }
}

/// Every configuration of the input `name` with its outcome; an ECDS file an Envoy config
/// names is read with `read` (relative paths as Envoy resolves them: from its directory).
pub fn check(
    name: &str,
    text: &[u8],
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Vec<(String, Outcome)> {
    let found = items(name, text);
    if found.is_empty() {
        return vec![(name.to_string(), Outcome::Invalid(nothing_found(text)))];
    }
    let mut out = Vec::new();
    for item in found {
        match &item.source {
            Source::EcdsFile(path) => match read(path) {
                Ok(ecds) => {
                    for sub in items(path, &ecds) {
                        let label = format!("{} -> {}", item.name, sub.name);
                        out.push((label, outcome(&sub)));
                    }
                }
                Err(e) => out.push((
                    item.name.clone(),
                    Outcome::Unchecked(format!(
                        "delivered by ECDS from {path}, which cannot be read from here ({e}); \
                         check that file itself"
                    )),
                )),
            },
            _ => out.push((item.name.clone(), outcome(&item))),
        }
    }
    out
}

/// One item's outcome; an ECDS reference inside an ECDS file is not followed.
pub fn outcome(item: &Item) -> Outcome {
    match &item.source {
        Source::Json(json) => match verdict(&item.at, json) {
            Ok(warnings) => Outcome::Ok(warnings),
            Err(e) => Outcome::Invalid(e),
        },
        Source::Reencoded(json) => match verdict(&item.at, json) {
            Ok(warnings) => Outcome::Ok(warnings),
            Err(e) => Outcome::Invalid(without_position(&e).to_string()),
        },
        Source::EcdsFile(path) => Outcome::Unchecked(format!("delivered by ECDS from {path}")),
        Source::Unchecked(why) => Outcome::Unchecked(why.clone()),
        Source::Broken(why) => Outcome::Invalid(why.clone()),
    }
}

/// `e` without serde's trailing ` at line L column C`.
fn without_position(e: &str) -> &str {
    let Some(at) = e.rfind(" at line ") else {
        return e;
    };
    let tail = &e[at + " at line ".len()..];
    let mut words = tail.split(' ');
    let shape = (words.next(), words.next(), words.next(), words.next());
    let digits = |w: Option<&str>| w.is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()));
    if digits(shape.0) && shape.1 == Some("column") && digits(shape.2) && shape.3.is_none() {
        &e[..at]
    } else {
        e
    }
}

/// Every filter configuration in `text`, the input called `name`. Empty when there is none.
pub fn items(name: &str, text: &[u8]) -> Vec<Item> {
    let docs = match documents(text) {
        Ok(docs) => docs,
        Err(e) => return vec![broken(name, e)],
    };
    let several = docs.len() > 1;
    let mut out = Vec::new();
    for (i, doc) in docs {
        let doc_name = if several {
            format!("{name}#{i}")
        } else {
            name.to_string()
        };
        match doc {
            Doc::Raw => out.push(Item {
                name: doc_name,
                at: String::new(),
                source: Source::Json(text.to_vec()),
            }),
            Doc::Parsed(v) => in_document(&v, &doc_name, &mut out),
        }
    }
    out
}

/// Why an input that yielded no configuration holds none (for its one line of output).
pub fn nothing_found(text: &[u8]) -> String {
    let kinds: Vec<String> = documents(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, d)| match d {
            Doc::Parsed(v) => Some(describe(&v)),
            Doc::Raw => None,
        })
        .collect();
    if kinds.is_empty() {
        return "no filter configuration: the input is empty".into();
    }
    format!(
        "no filter configuration: not a filter config, a WasmPlugin or an Envoy config with a Wasm \
         HTTP filter ({})",
        kinds.join(", ")
    )
}

fn describe(doc: &Value) -> String {
    match doc.get("kind").and_then(Value::as_str) {
        Some(kind) => format!("a {kind}"),
        None if is_envoy(doc) => "an Envoy config without a Wasm HTTP filter".into(),
        None => "not a mapping".into(),
    }
}

fn broken(name: &str, why: String) -> Item {
    Item {
        name: name.to_string(),
        at: String::new(),
        source: Source::Broken(why),
    }
}

enum Doc {
    /// The whole input is the filter's JSON (perhaps broken): the filter reads its bytes.
    Raw,
    Parsed(Value),
}

/// The input's documents with their index in the YAML stream (empty documents left out).
/// JSON that is not an object, or does not parse, goes to the filter as it is, so its own
/// error (with line and column) is what the user sees.
fn documents(text: &[u8]) -> Result<Vec<(usize, Doc)>, String> {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        return Ok(match serde_json::from_slice::<Value>(text) {
            Ok(v) if v.is_object() && (v.get("kind").is_some() || is_envoy(&v) || has_wasm(&v)) => {
                vec![(0, Doc::Parsed(v))]
            }
            _ => vec![(0, Doc::Raw)],
        });
    }
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_slice(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| format!("not YAML or JSON: {e}"))?;
        if !v.is_null() {
            docs.push((i, Doc::Parsed(v)));
        }
    }
    Ok(docs)
}

fn is_envoy(doc: &Value) -> bool {
    ENVOY_KEYS.iter().any(|k| doc.get(k).is_some())
}

fn has_wasm(doc: &Value) -> bool {
    !filters_in(doc).is_empty()
}

/// The configurations in one document.
fn in_document(doc: &Value, name: &str, out: &mut Vec<Item>) {
    let kind = doc.get("kind").and_then(Value::as_str);
    if let (Some("List"), Some(list)) = (kind, doc.get("items").and_then(Value::as_array)) {
        // `kubectl get wasmplugins -o yaml`: each item a document.
        for (i, item) in list.iter().enumerate() {
            in_document(item, &format!("{name}#items[{i}]"), out);
        }
        return;
    }
    if kind == Some("EnvoyExtensionPolicy") {
        extension_policy(doc, name, out);
        return;
    }
    if kind == Some("WasmPlugin") {
        let at = "spec.pluginConfig";
        out.push(match doc.pointer("/spec/pluginConfig") {
            Some(cfg) => Item {
                name: name.to_string(),
                at: at.into(),
                source: Source::Reencoded(serde_json::to_vec(cfg).unwrap_or_default()),
            },
            None => broken(name, format!("{at}: missing")),
        });
        return;
    }
    let found = filters_in(doc);
    if !found.is_empty() {
        let mut seen: Vec<String> = Vec::new();
        for (filter, source) in found {
            // A name that repeats (two listeners' plugins both called `rollout-filter`) is
            // told apart by its count.
            let filter = filter.unwrap_or_else(|| "wasm".into());
            let n = seen.iter().filter(|s| **s == filter).count();
            let label = if n == 0 {
                filter.clone()
            } else {
                format!("{filter}.{}", n + 1)
            };
            seen.push(filter);
            out.push(Item {
                name: format!("{name}#{label}"),
                at: String::new(),
                source,
            });
        }
    } else if doc.is_object() && doc.get("kind").is_none() && !is_envoy(doc) {
        // A filter config written in YAML.
        out.push(Item {
            name: name.to_string(),
            at: String::new(),
            source: Source::Reencoded(serde_json::to_vec(doc).unwrap_or_default()),
        });
    }
}

/// Envoy Gateway's `EnvoyExtensionPolicy`: each `spec.wasm[]` entry's `config`, named by the
/// entry's `name`.
fn extension_policy(doc: &Value, name: &str, out: &mut Vec<Item>) {
    let entries = doc.pointer("/spec/wasm").and_then(Value::as_array);
    for (i, w) in entries.into_iter().flatten().enumerate() {
        let label = w
            .get("name")
            .and_then(Value::as_str)
            .map_or(format!("wasm[{i}]"), str::to_string);
        let at = format!("spec.wasm[{i}].config");
        out.push(Item {
            name: format!("{name}#{label}"),
            source: match w.get("config") {
                Some(cfg) => Source::Reencoded(serde_json::to_vec(cfg).unwrap_or_default()),
                None => Source::Broken(format!("{at}: missing")),
            },
            at,
        });
    }
}

/// Every Wasm HTTP filter in `doc` (an Envoy config, a listener, an ECDS resource file) with
/// its name, and every ECDS `config_discovery` with the filter's name.
pub fn filters_in(doc: &Value) -> Vec<(Option<String>, Source)> {
    let mut found = Vec::new();
    walk(doc, None, &mut found);
    found
}

/// Every Wasm HTTP filter under `v`, with the nearest name above it (its plugin's `name`, else
/// the filter's or the ECDS resource's), and every ECDS `config_discovery`.
fn walk(v: &Value, name: Option<&str>, out: &mut Vec<(Option<String>, Source)>) {
    match v {
        Value::Object(m) => {
            let name = m.get("name").and_then(Value::as_str).or(name);
            if m.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                let plugin = m.get("config").unwrap_or(&Value::Null);
                let own = plugin.get("name").and_then(Value::as_str).or(name);
                out.push((own.map(str::to_string), wasm_configuration(plugin)));
            } else if let Some(cd) = m.get("config_discovery") {
                out.push((name.map(str::to_string), ecds_source(cd)));
            } else {
                m.values().for_each(|x| walk(x, name, out));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, name, out)),
        _ => {}
    }
}

/// A Wasm `PluginConfig`'s `configuration`: the JSON in its StringValue.
fn wasm_configuration(plugin: &Value) -> Source {
    let Some(c) = plugin.get("configuration") else {
        return Source::Broken("config.configuration: missing (the filter needs its JSON config)".into());
    };
    let ty = c.get("@type").and_then(Value::as_str).unwrap_or_default();
    match c.get("value").and_then(Value::as_str) {
        Some(json) if ty == STRING_VALUE => Source::Json(json.as_bytes().to_vec()),
        _ => Source::Broken(format!(
            "config.configuration: the filter reads its JSON from a google.protobuf.StringValue's \
             `value`, found {ty:?}"
        )),
    }
}

fn ecds_source(cd: &Value) -> Source {
    let source = cd.get("config_source").unwrap_or(&Value::Null);
    let path = source
        .pointer("/path_config_source/path")
        .or_else(|| source.get("path"))
        .and_then(Value::as_str);
    match path {
        Some(p) => Source::EcdsFile(p.to_string()),
        None => Source::Unchecked("configuration by ECDS from a control plane".into()),
    }
}
