//! Targeting JSON → the expression tree of `eval`, refusing at load whatever the filter
//! cannot evaluate exactly as flagd does. Errors name the operator and its path.

use serde_json::{Map, Value};

use super::cbor;
use super::document::{self, FlagDoc};
use super::eval::{BucketBy, Cond, Fractional, Node, Piece};
use super::hash::Murmur3;
use super::{Attr, Leaf, Mode, Refusal, Spec};

const GRAMMAR: &str = "the filter evaluates if, ==, ===, !=, !==, in, starts_with, ends_with, and, or, !, \
                       var, fractional (cat in its bucketing value) and $ref";

struct Compiler<'s, 'a> {
    spec: &'s Spec<'a>,
    doc: &'s FlagDoc<'a>,
}

/// `None`: no targeting (absent, `null` or `{}`): the default variant, as flagd serves it.
pub fn compile(spec: &Spec, doc: &FlagDoc, t: &Value) -> Result<Option<Node>, Refusal> {
    if t.is_null() || t.as_object().is_some_and(Map::is_empty) {
        return Ok(None);
    }
    let c = Compiler { spec, doc };
    c.node(t, &format!("{}.targeting", doc.path)).map(Some)
}

/// A comparison operand: a request value or a string known at load.
enum Operand {
    Var(Attr),
    Lit(Box<[u8]>),
}

fn single_op<'v>(m: &'v Map<String, Value>, path: &str) -> Result<(&'v str, &'v Value), Refusal> {
    match (m.len(), m.iter().next()) {
        (1, Some((k, v))) => Ok((k.as_str(), v)),
        _ => Err(Refusal::new(
            path,
            "an operation is an object with exactly one key",
        )),
    }
}

fn unsupported(op: &str, path: &str) -> Refusal {
    Refusal::new(
        format!("{path}.{op}"),
        format!("operator {op:?} is not supported ({GRAMMAR})"),
    )
}

fn two<'v>(v: &'v Value, op: &str, path: &str) -> Result<(&'v Value, &'v Value), Refusal> {
    match v.as_array().map(Vec::as_slice) {
        Some([x, y]) => Ok((x, y)),
        _ => Err(Refusal::new(path, format!("{op} takes 2 arguments"))),
    }
}

impl Compiler<'_, '_> {
    /// A result position.
    fn node(&self, v: &Value, path: &str) -> Result<Node, Refusal> {
        match v {
            Value::Null => Ok(Node::Leaf(Leaf::Default)),
            Value::String(s) => self.leaf(s, path).map(Node::Leaf),
            // flagd writes a boolean result as its JSON text, flagd-core with toString: "true".
            Value::Bool(b) => self.leaf(if *b { "true" } else { "false" }, path).map(Node::Leaf),
            Value::Object(m) => {
                let (op, a) = single_op(m, path)?;
                let at = format!("{path}.{op}");
                match op {
                    "if" => self.if_chain(a, &at),
                    "fractional" => self.fractional(a, &at),
                    "$ref" => self.with_ref(a, &at, |rule, p| self.node(rule, p)),
                    _ => Err(unsupported(op, path)),
                }
            }
            _ => Err(Refusal::new(
                path,
                "a result must be a variant key, null, if, fractional or $ref",
            )),
        }
    }

    /// A variant key the rule returns: one of the flag's variants, mapped to a version.
    fn leaf(&self, key: &str, path: &str) -> Result<Leaf, Refusal> {
        if !self.doc.variants.contains_key(key) {
            // flagd answers an error there; the filter has no version for it.
            return Err(Refusal::new(
                path,
                format!("{key:?} is not one of the flag's variants"),
            ));
        }
        self.spec
            .variants
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| Leaf::Version(*v))
            .ok_or_else(|| Refusal::new(path, format!("variant {key:?} has no version in `variants`")))
    }

    fn with_ref<T>(
        &self,
        name: &Value,
        path: &str,
        f: impl FnOnce(&Value, &str) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let name = name
            .as_str()
            .ok_or_else(|| Refusal::new(path, "$ref takes an evaluator name"))?;
        let (rule, at) = document::resolve(self.doc, name, path)?;
        f(rule, &at)
    }

    fn if_chain(&self, a: &Value, path: &str) -> Result<Node, Refusal> {
        let a = match a.as_array() {
            Some(a) if a.len() >= 2 => a,
            _ => return Err(Refusal::new(path, "if takes a condition and a result, at least")),
        };
        let mut branches = Vec::with_capacity(a.len() / 2);
        let mut pairs = a.chunks_exact(2);
        for (i, pair) in pairs.by_ref().enumerate() {
            if let [c, then] = pair {
                let cond = self.cond(c, &format!("{path}[{}]", 2 * i))?;
                branches.push((cond, self.node(then, &format!("{path}[{}]", 2 * i + 1))?));
            }
        }
        // Without an else, a chain where nothing holds answers null: the default variant.
        let otherwise = match pairs.remainder() {
            [e] => self.node(e, &format!("{path}[{}]", a.len() - 1))?,
            _ => Node::Leaf(Leaf::Default),
        };
        Ok(Node::If(branches.into(), Box::new(otherwise)))
    }

    fn cond(&self, v: &Value, path: &str) -> Result<Cond, Refusal> {
        let m =
            match v {
                Value::Bool(b) => return Ok(Cond::Const(*b)),
                Value::Object(m) => m,
                _ => return Err(Refusal::new(
                    path,
                    "a condition must be a comparison, in, starts_with, ends_with, and, or, ! or a boolean",
                )),
            };
        let (op, a) = single_op(m, path)?;
        let at = format!("{path}.{op}");
        match op {
            "==" | "===" | "!=" | "!==" => self.compare(a, op, &at),
            "in" => self.in_(a, &at),
            "starts_with" | "ends_with" => self.affix(a, op, &at),
            "and" | "or" => {
                let list = a
                    .as_array()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| Refusal::new(&at, format!("{op} takes a non-empty list of conditions")))?;
                let cs = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.cond(c, &format!("{at}[{i}]")))
                    .collect::<Result<Box<[Cond]>, _>>()?;
                Ok(if op == "and" { Cond::And(cs) } else { Cond::Or(cs) })
            }
            "!" => {
                let (inner, p) = match a.as_array().map(Vec::as_slice) {
                    Some([one]) => (one, format!("{at}[0]")),
                    Some(_) => return Err(Refusal::new(&at, "! takes one condition")),
                    None => (a, at.clone()),
                };
                Ok(Cond::Not(Box::new(self.cond(inner, &p)?)))
            }
            "$ref" => self.with_ref(a, &at, |rule, p| self.cond(rule, p)),
            _ => Err(unsupported(op, path)),
        }
    }

    /// `==`, `===` (the same on strings and a missing value), `!=`, `!==`.
    fn compare(&self, a: &Value, op: &str, at: &str) -> Result<Cond, Refusal> {
        let negate = op.starts_with('!');
        match self.pair(a, op, at)? {
            (Operand::Var(attr), Operand::Lit(lit)) | (Operand::Lit(lit), Operand::Var(attr)) => {
                Ok(Cond::Eq { attr, lit, negate })
            }
            (Operand::Lit(x), Operand::Lit(y)) => Ok(Cond::Const((x == y) != negate)),
            _ => Err(two_vars(op, at)),
        }
    }

    /// `starts_with` / `ends_with`, the var on either side.
    fn affix(&self, a: &Value, op: &str, at: &str) -> Result<Cond, Refusal> {
        let ends = op == "ends_with";
        let (attr, lit, var_is_subject) = match self.pair(a, op, at)? {
            (Operand::Var(attr), Operand::Lit(lit)) => (attr, lit, true),
            (Operand::Lit(lit), Operand::Var(attr)) => (attr, lit, false),
            (Operand::Lit(s), Operand::Lit(x)) => {
                return Ok(Cond::Const(if ends {
                    s.ends_with(&x)
                } else {
                    s.starts_with(&x)
                }))
            }
            _ => return Err(two_vars(op, at)),
        };
        Ok(Cond::Affix {
            attr,
            lit,
            ends,
            var_is_subject,
        })
    }

    fn in_(&self, a: &Value, at: &str) -> Result<Cond, Refusal> {
        let (needle, hay) = two(a, "in", at)?;
        let needle = self.operand(needle, &format!("{at}[0]"))?;
        if let Some(list) = hay.as_array() {
            let list = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str()
                        .map(|s| Box::<[u8]>::from(s.as_bytes()))
                        .ok_or_else(|| Refusal::new(format!("{at}[1][{i}]"), "in takes a list of strings"))
                })
                .collect::<Result<Box<[_]>, _>>()?;
            return Ok(match needle {
                Operand::Var(attr) => Cond::InList { attr, list },
                Operand::Lit(l) => Cond::Const(list.contains(&l)),
            });
        }
        match (needle, self.operand(hay, &format!("{at}[1]"))?) {
            (Operand::Lit(needle), Operand::Var(attr)) => Ok(Cond::Contains { attr, needle }),
            (Operand::Lit(n), Operand::Lit(h)) => {
                Ok(Cond::Const(n.is_empty() || h.windows(n.len()).any(|w| *w == *n)))
            }
            // flagd (Go) fails on a missing needle in a string (lists.go _in asserts a string).
            (Operand::Var(_), Operand::Lit(_)) => Err(Refusal::new(
                at,
                "in with a var first takes a list of strings, not a string",
            )),
            _ => Err(two_vars("in", at)),
        }
    }

    fn pair(&self, a: &Value, op: &str, at: &str) -> Result<(Operand, Operand), Refusal> {
        let (x, y) = two(a, op, at)?;
        Ok((
            self.operand(x, &format!("{at}[0]"))?,
            self.operand(y, &format!("{at}[1]"))?,
        ))
    }

    /// A `var` or a string. Request values are strings, so other literals are refused:
    /// loose equality with numbers differs between flagd and flagd-core (`" 5" == 5`).
    fn operand(&self, v: &Value, path: &str) -> Result<Operand, Refusal> {
        match v {
            Value::String(s) => Ok(Operand::Lit(s.as_bytes().into())),
            Value::Object(m) => {
                let (op, a) = single_op(m, path)?;
                let at = format!("{path}.{op}");
                match op {
                    "var" => self.var(a, &at),
                    "$ref" => self.with_ref(a, &at, |rule, p| self.operand(rule, p)),
                    _ => Err(unsupported(op, path)),
                }
            }
            _ => Err(Refusal::new(
                path,
                "compare with a string or a var (request values are strings)",
            )),
        }
    }

    fn var(&self, a: &Value, at: &str) -> Result<Operand, Refusal> {
        let name = match a {
            Value::String(s) => s.as_str(),
            Value::Array(l) if l.len() == 1 => l.first().and_then(Value::as_str).unwrap_or_default(),
            Value::Array(l) if l.len() > 1 => {
                return Err(Refusal::new(at, "a var default is not supported"));
            }
            _ => "",
        };
        match name {
            "" => Err(Refusal::new(at, "var takes an attribute name")),
            "$flagd.flagKey" => Ok(Operand::Lit(self.spec.flag_key.as_bytes().into())),
            "$flagd.timestamp" => Err(Refusal::new(
                at,
                "var \"$flagd.timestamp\" is not supported (it changes every second)",
            )),
            _ => match self.spec.attrs.iter().position(|n| n == name) {
                Some(i) => Ok(Operand::Var(i as Attr)),
                None => Err(Refusal::new(
                    at,
                    format!("var {name:?}: the context does not map it"),
                )),
            },
        }
    }

    fn targeting_key(&self) -> Option<Attr> {
        self.spec
            .attrs
            .iter()
            .position(|n| n == "targetingKey")
            .map(|i| i as Attr)
    }

    fn fractional(&self, a: &Value, path: &str) -> Result<Node, Refusal> {
        let a = a
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Refusal::new(path, "fractional takes a list of [variant, weight]"))?;
        let (by, dists, first) = match a.first() {
            Some(Value::Array(_)) => {
                let tk = self.targeting_key().ok_or_else(|| {
                    Refusal::new(
                        path,
                        "fractional without a bucketing value buckets by targetingKey: map targetingKey in `context`",
                    )
                })?;
                (BucketBy::Shorthand(tk), a.as_slice(), 0)
            }
            Some(v) => (
                self.bucket_by(v, &format!("{path}[0]"))?,
                a.get(1..).unwrap_or_default(),
                1,
            ),
            None => return Err(Refusal::new(path, "fractional takes at least one bucket")),
        };
        if dists.is_empty() {
            return Err(Refusal::new(path, "fractional takes at least one bucket"));
        }
        let mut weights = Vec::with_capacity(dists.len());
        let mut leaves = Vec::with_capacity(dists.len());
        let mut total: u64 = 0;
        for (i, d) in dists.iter().enumerate() {
            let at = format!("{path}[{}]", i + first);
            let (leaf, weight) = self.bucket(d, &at)?;
            total += u64::from(weight);
            if total > crate::config::MAX_TOTAL_WEIGHT {
                return Err(Refusal::new(at, "weights must sum to at most 2147483647"));
            }
            weights.push(weight);
            leaves.push(leaf);
        }
        if total == 0 {
            // flagd 0.15.5+ and flagd-core 3.0.1+: all-zero weights serve the default variant.
            return Ok(Node::Leaf(Leaf::Default));
        }
        Ok(Node::Fractional(Box::new(Fractional {
            by,
            weights: weights.into(),
            total: total as u32,
            leaves: leaves.into(),
        })))
    }

    /// One `[variant, weight]`: a literal variant, an integer weight (1 when absent,
    /// negative clamped to 0, as fractional.go:146-176 and fractional.ts:106-114 do).
    fn bucket(&self, d: &Value, at: &str) -> Result<(Leaf, u32), Refusal> {
        let (variant, weight) = match d.as_array().map(Vec::as_slice) {
            Some([v]) => (v, None),
            Some([v, w]) => (v, Some(w)),
            _ => return Err(Refusal::new(at, "a bucket is [variant] or [variant, weight]")),
        };
        let leaf = match variant {
            Value::Null => Leaf::Default,
            Value::String(s) => self.leaf(s, &format!("{at}[0]"))?,
            Value::Bool(b) => self.leaf(if *b { "true" } else { "false" }, &format!("{at}[0]"))?,
            _ => {
                return Err(Refusal::new(
                    format!("{at}[0]"),
                    "a bucket's variant must be a variant key (computed variants are not supported)",
                ))
            }
        };
        let weight = match weight {
            None => 1,
            Some(w) => {
                let f = w.as_f64().filter(|f| f.fract() == 0.0).ok_or_else(|| {
                    Refusal::new(
                        format!("{at}[1]"),
                        "a weight must be an integer (computed weights are not supported)",
                    )
                })?;
                if f > crate::config::MAX_TOTAL_WEIGHT as f64 {
                    return Err(Refusal::new(
                        format!("{at}[1]"),
                        "a weight must be at most 2147483647",
                    ));
                }
                f.max(0.0) as u32
            }
        };
        Ok((leaf, weight))
    }

    fn bucket_by(&self, v: &Value, path: &str) -> Result<BucketBy, Refusal> {
        match v {
            Value::String(_) => self.constant(v, path),
            Value::Bool(_) | Value::Number(_) if self.spec.mode == Mode::V3 => self.constant(v, path),
            Value::Object(m) => {
                let (op, a) = single_op(m, path)?;
                let at = format!("{path}.{op}");
                match op {
                    "var" => match self.var(a, &at)? {
                        Operand::Var(attr) => Ok(BucketBy::Var {
                            attr,
                            fallback: self.targeting_key().filter(|_| self.spec.mode == Mode::V2),
                        }),
                        Operand::Lit(l) => self.constant(&Value::String(lossless(&l)), path),
                    },
                    "cat" => self.cat(a, &at),
                    "$ref" => self.with_ref(a, &at, |rule, p| self.bucket_by(rule, p)),
                    _ => Err(unsupported(op, path)),
                }
            }
            _ => Err(Refusal::new(
                path,
                match self.spec.mode {
                    // flagd serves the default variant for any other value.
                    Mode::V2 => "a bucketing value must be a string, a var or cat (fractional v2)",
                    Mode::V3 => "null is refused as a bucketing value (fractional v3)",
                },
            )),
        }
    }

    /// A literal bucketing value, hashed now.
    fn constant(&self, v: &Value, path: &str) -> Result<BucketBy, Refusal> {
        let mut h = Murmur3::default();
        match (self.spec.mode, v) {
            (Mode::V2, Value::String(s)) => h.write(s.as_bytes()),
            (Mode::V3, v) => h.write(&cbor::encode_bucket_value(v).map_err(|r| Refusal::new(path, r))?),
            _ => {
                return Err(Refusal::new(
                    path,
                    "a bucketing value must be a string (fractional v2)",
                ))
            }
        }
        Ok(BucketBy::Const(h.finish()))
    }

    fn cat(&self, a: &Value, at: &str) -> Result<BucketBy, Refusal> {
        let list = match a {
            Value::Array(l) => l.as_slice(),
            one => std::slice::from_ref(one),
        };
        let mut pieces = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let path = format!("{at}[{i}]");
            pieces.push(match self.operand(p, &path) {
                Ok(Operand::Var(a)) => Piece::Var(a),
                Ok(Operand::Lit(l)) => Piece::Lit(l),
                Err(_) => return Err(Refusal::new(path, "cat takes strings and vars")),
            });
        }
        // flagd (Go) trims the joined string of two or more pieces (strings.go concat);
        // flagd-core does not. Request values carry no outer whitespace; literals must not.
        let trims = |p: Option<&Piece>, first: bool| {
            matches!(p, Some(Piece::Lit(l)) if if first { l.first() } else { l.last() }
                .is_some_and(|b| b.is_ascii_whitespace()))
        };
        if pieces.len() >= 2 && (trims(pieces.first(), true) || trims(pieces.last(), false)) {
            return Err(Refusal::new(
                at,
                "cat with outer whitespace: flagd trims it, flagd-core does not",
            ));
        }
        Ok(BucketBy::Cat(pieces.into()))
    }
}

fn two_vars(op: &str, at: &str) -> Refusal {
    Refusal::new(at, format!("{op} compares a var with a string, not two vars"))
}

/// A literal that came from a JSON string, back as one.
fn lossless(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
