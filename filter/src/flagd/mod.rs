//! An OpenFeature flagd flag as a rollout: the flag-set document read at load, its
//! targeting compiled into an expression tree ([`compile`]), evaluated per request
//! ([`Flag::evaluate`]) exactly as flagd evaluates it, for the grammar the filter accepts:
//! a variant key or `null`; `if` / else-if chains of `==`, `===`, `!=`, `!==`, `in`,
//! `starts_with`, `ends_with`, `and`, `or`, `!` over `var`s the context maps; `fractional`
//! (shorthand or with a bucketing expression); `$ref` to `$evaluators`. Everything else is
//! refused at load with the operator and its JSON path.
//!
//! Pure: request values come through [`Context`]; no JSON is read per request.
//!
//! Reference read: open-feature/flagd `core/pkg/evaluator/{json.go,fractional.go,
//! string_comparison.go}` (commit bbb05d4, flagd 0.16.1) and open-feature/js-sdk-contrib
//! `libs/shared/flagd-core/src/lib/{feature-flag.ts,parser.ts,targeting/*.ts}`
//! (@openfeature/flagd-core 4.0.x). Where the two disagree the filter follows flagd (Go) or
//! refuses the construct; each case is named where it is decided.

mod cbor;
mod document;
mod eval;
pub mod hash;
mod json;
pub mod sync;
mod targeting;
#[cfg(test)]
mod testbed;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

pub use cbor::encode_bucket_value;
pub use json::Json;

/// A context attribute: its index in the `context` mapping.
pub type Attr = u8;

/// Most context attributes one flag may map.
pub const MAX_ATTRS: usize = 32;

/// The `fractional` bucketing in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// flagd 0.15.x/0.16.x: murmur3 of the string (`flagKey ++ targetingKey` for the shorthand).
    V2,
    /// flagd's accepted design record: murmur3 of the value's deterministic CBOR
    /// (`[flagKey, targetingKey]` for the shorthand).
    V3,
}

/// A load-time refusal: where in the flag-set document, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Relative to the flag-set document (`flags.K.targeting.if[0].sem_ver`).
    pub path: String,
    pub reason: String,
}

impl Refusal {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Refusal {
        Refusal {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// What the load needs besides the document.
pub struct Spec<'a> {
    pub flag_key: &'a str,
    pub flag_set: &'a Json,
    /// Variant key → version index, for every variant the filter may serve.
    pub variants: &'a [(String, usize)],
    /// The context attribute names (a dotted name is a nested attribute: `user.name`).
    pub attrs: &'a [String],
    pub mode: Mode,
}

/// A targeting result: the default variant (flagd's `null`), or a variant's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    Default,
    Version(usize),
}

/// The compiled flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub flag_key: String,
    pub mode: Mode,
    /// The default variant's version.
    pub default: usize,
    /// `None`: no targeting, `{}`, or `DISABLED`: always the default variant.
    root: Option<eval::Node>,
}

/// The flag in force: the configuration's, until a sync snapshot replaces it. Every clone of
/// the configuration shares it, so a swap reaches each request that starts after it.
/// (`Arc` and a lock, so a configuration stays `Send + Sync` for the host-side tools; in the
/// single-threaded VM the lock is never contended.)
#[derive(Clone)]
pub struct LiveFlag(Arc<RwLock<Arc<Flag>>>);

impl LiveFlag {
    pub fn new(flag: Flag) -> LiveFlag {
        LiveFlag(Arc::new(RwLock::new(Arc::new(flag))))
    }

    pub fn get(&self) -> Arc<Flag> {
        match self.0.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, flag: Flag) {
        match self.0.write() {
            Ok(mut f) => *f = Arc::new(flag),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(flag),
        }
    }
}

impl PartialEq for LiveFlag {
    fn eq(&self, other: &LiveFlag) -> bool {
        *self.get() == *other.get()
    }
}

impl Eq for LiveFlag {}

impl std::fmt::Debug for LiveFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The request's variant, as a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub version: usize,
    /// A targeting rule chose it (flagd's `TARGETING_MATCH`), not the default variant.
    pub targeted: bool,
}

/// Request values of the context attributes. A value may be empty; not UTF-8 is fine
/// (compared and hashed as bytes, as flagd hashes a header's bytes).
pub trait Context {
    fn value(&mut self, attr: Attr) -> Option<&[u8]>;
}

/// Compile `spec.flag_key`'s flag from the flag-set document.
pub fn compile(spec: &Spec) -> Result<Flag, Refusal> {
    let doc = document::flag(spec)?;
    let default = spec
        .variants
        .iter()
        .find(|(k, _)| *k == doc.default_variant)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            Refusal::new(
                format!("{}.defaultVariant", doc.path),
                format!("variant {:?} has no version in `variants`", doc.default_variant),
            )
        })?;
    let root = match doc.targeting {
        Some(t) if !doc.disabled => targeting::compile(spec, &doc, t)?,
        _ => None,
    };
    Ok(Flag {
        flag_key: spec.flag_key.to_string(),
        mode: spec.mode,
        default,
        root,
    })
}

impl Flag {
    /// Always the variant whose version is `default` (before a sync stream's first snapshot).
    pub fn fixed(flag_key: &str, mode: Mode, default: usize) -> Flag {
        Flag {
            flag_key: flag_key.to_string(),
            mode,
            default,
            root: None,
        }
    }

    /// The request's variant, as its version.
    pub fn evaluate(&self, ctx: &mut impl Context) -> Outcome {
        let leaf = match &self.root {
            Some(node) => eval::node(self, node, ctx),
            None => Leaf::Default,
        };
        match leaf {
            Leaf::Version(version) => Outcome {
                version,
                targeted: true,
            },
            Leaf::Default => Outcome {
                version: self.default,
                targeted: false,
            },
        }
    }
}
