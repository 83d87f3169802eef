//! Targeting JSON → the expression tree of `eval`, refusing at load whatever the filter
//! cannot evaluate exactly as flagd does. Errors name the operator and its path; the path is
//! a chain on the stack, written out only for an error (the module stays small).

use super::cbor;
use super::document::{self, FlagDoc};
use super::eval::{BucketBy, Cond, Fractional, Node, Piece, Test};
use super::hash::Murmur3;
use super::json::Json;
use super::{Attr, Leaf, Mode, Refusal, Spec};

const GRAMMAR: &str = "the filter evaluates if, ==, ===, !=, !==, in, starts_with, ends_with, and, or, !, \
                       var, fractional (cat in its bucketing value) and $ref";

/// Where in the document: a root (`flags.K.targeting`, `$evaluators.N`) and the keys and
/// indexes below it.
#[derive(Clone, Copy)]
pub struct At<'p> {
    parent: Option<&'p At<'p>>,
    seg: Seg<'p>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Root(&'p str),
    Key(&'p str),
    Idx(usize),
}

impl<'p> At<'p> {
    pub fn root(s: &'p str) -> At<'p> {
        At {
            parent: None,
            seg: Seg::Root(s),
        }
    }

    fn key(&'p self, k: &'p str) -> At<'p> {
        At {
            parent: Some(self),
            seg: Seg::Key(k),
        }
    }

    fn idx(&'p self, i: usize) -> At<'p> {
        At {
            parent: Some(self),
            seg: Seg::Idx(i),
        }
    }

    fn render(&self) -> String {
        let mut out = self.parent.map(At::render).unwrap_or_default();
        match self.seg {
            Seg::Root(s) => out.push_str(s),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Idx(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
        out
    }

    /// Out of line and cold: each refusal site is one call (the module's size budget).
    #[cold]
    #[inline(never)]
    fn refuse<R: AsRef<str>>(&self, reason: R) -> Refusal {
        Refusal::new(self.render(), reason.as_ref())
    }
}

struct Compiler<'s, 'a> {
    spec: &'s Spec<'a>,
    doc: &'s FlagDoc<'a>,
}

/// `None`: no targeting (absent, `null` or `{}`): the default variant, as flagd serves it.
pub fn compile(spec: &Spec, doc: &FlagDoc, t: &Json) -> Result<Option<Node>, Refusal> {
    if matches!(t, Json::Null) || t.as_object().is_some_and(<[_]>::is_empty) {
        return Ok(None);
    }
    let c = Compiler { spec, doc };
    let root = At::root(&doc.path);
    c.node(t, &root.key("targeting")).map(Some)
}

/// A comparison operand: a request value or a string known at load.
enum Operand {
    Var(Attr),
    Lit(Vec<u8>),
}

/// An operation object: its one key and its arguments.
fn single_op<'v>(v: &'v Json, at: &At) -> Result<Option<(&'v str, &'v Json)>, Refusal> {
    match v.as_object() {
        None => Ok(None),
        Some([(k, a)]) => Ok(Some((k, a))),
        Some(_) => Err(at.refuse("an operation is an object with exactly one key")),
    }
}

fn unsupported(op: &str, at: &At) -> Refusal {
    at.key(op)
        .refuse(format!("operator {op:?} is not supported ({GRAMMAR})"))
}

fn two<'v>(v: &'v Json, at: &At) -> Result<(&'v Json, &'v Json), Refusal> {
    match v.as_array() {
        Some([x, y]) => Ok((x, y)),
        _ => Err(at.refuse("takes 2 arguments")),
    }
}

fn bool_key(b: bool) -> &'static str {
    // flagd writes a boolean result as its JSON text, flagd-core with toString: "true".
    if b {
        "true"
    } else {
        "false"
    }
}

impl Compiler<'_, '_> {
    /// A result position.
    fn node(&self, v: &Json, at: &At) -> Result<Node, Refusal> {
        if let Some((op, a)) = single_op(v, at)? {
            let inner = at.key(op);
            return match op {
                "if" => self.if_chain(a, &inner),
                "fractional" => self.fractional(a, &inner),
                "$ref" => self.with_ref(a, &inner, |rule, p| self.node(rule, p)),
                _ => Err(unsupported(op, at)),
            };
        }
        match v {
            Json::Null => Ok(Node::Leaf(Leaf::Default)),
            Json::Str(s) => self.leaf(s, at).map(Node::Leaf),
            Json::Bool(b) => self.leaf(bool_key(*b), at).map(Node::Leaf),
            _ => Err(at.refuse("a result must be a variant key, null, if, fractional or $ref")),
        }
    }

    /// A variant key the rule returns: one of the flag's variants, mapped to a version.
    fn leaf(&self, key: &str, at: &At) -> Result<Leaf, Refusal> {
        if self.doc.variants.get(key).is_none() {
            // flagd answers an error there; the filter has no version for it.
            return Err(at.refuse(format!("{key:?} is not one of the flag's variants")));
        }
        self.spec
            .variants
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| Leaf::Version(*v))
            .ok_or_else(|| at.refuse(format!("variant {key:?} has no version in `variants`")))
    }

    fn with_ref<T>(
        &self,
        name: &Json,
        at: &At,
        f: impl FnOnce(&Json, &At) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let name = name
            .as_str()
            .ok_or_else(|| at.refuse("$ref takes an evaluator name"))?;
        let (rule, path) = document::resolve(self.doc, name, &at.render())?;
        f(rule, &At::root(&path))
    }

    fn if_chain(&self, a: &Json, at: &At) -> Result<Node, Refusal> {
        let a = match a.as_array() {
            Some(a) if a.len() >= 2 => a,
            _ => return Err(at.refuse("if takes a condition and a result, at least")),
        };
        let mut branches = Vec::with_capacity(a.len() / 2);
        let mut pairs = a.chunks_exact(2);
        for (i, pair) in pairs.by_ref().enumerate() {
            if let [c, then] = pair {
                let cond = self.cond(c, &at.idx(2 * i))?;
                branches.push((cond, self.node(then, &at.idx(2 * i + 1))?));
            }
        }
        // Without an else, a chain where nothing holds answers null: the default variant.
        let otherwise = match pairs.remainder() {
            [e] => self.node(e, &at.idx(a.len() - 1))?,
            _ => Node::Leaf(Leaf::Default),
        };
        Ok(Node::If(branches, Box::new(otherwise)))
    }

    fn cond(&self, v: &Json, at: &At) -> Result<Cond, Refusal> {
        let Some((op, a)) = single_op(v, at)? else {
            return match v {
                Json::Bool(b) => Ok(Cond::Const(*b)),
                _ => Err(at.refuse(
                    "a condition must be a comparison, in, starts_with, ends_with, and, or, ! or a boolean",
                )),
            };
        };
        let outer = at;
        let inner = outer.key(op);
        let at = &inner;
        match op {
            "==" | "===" | "!=" | "!==" => self.test(a, Test::Eq, op.starts_with('!'), at),
            "in" => self.in_(a, at),
            "starts_with" => self.test(a, Test::StartsWith, false, at),
            "ends_with" => self.test(a, Test::EndsWith, false, at),
            "and" | "or" => {
                let list = a
                    .as_array()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| at.refuse("takes a non-empty list of conditions"))?;
                let mut cs = Vec::with_capacity(list.len());
                for (i, c) in list.iter().enumerate() {
                    cs.push(self.cond(c, &at.idx(i))?);
                }
                Ok(if op == "and" { Cond::And(cs) } else { Cond::Or(cs) })
            }
            "!" => match a.as_array() {
                Some([one]) => Ok(Cond::Not(Box::new(self.cond(one, &at.idx(0))?))),
                Some(_) => Err(at.refuse("! takes one condition")),
                None => Ok(Cond::Not(Box::new(self.cond(a, at)?))),
            },
            "$ref" => self.with_ref(a, at, |rule, p| self.cond(rule, p)),
            _ => Err(unsupported(op, outer)),
        }
    }

    /// A var against a string, or two strings (decided now). `==` and `===` are the same on
    /// strings and a missing value; `!=`, `!==` negate them.
    fn test(&self, a: &Json, op: Test, negate: bool, at: &At) -> Result<Cond, Refusal> {
        let (attr, lit, var_first) = match self.pair(a, at)? {
            (Operand::Var(attr), Operand::Lit(lit)) => (attr, lit, true),
            (Operand::Lit(lit), Operand::Var(attr)) => (attr, lit, false),
            (Operand::Lit(x), Operand::Lit(y)) => return Ok(Cond::Const(op.apply(&x, &y) != negate)),
            _ => return Err(at.refuse("compares a var with a string, not two vars")),
        };
        if op == Test::In && var_first {
            // flagd (Go) fails on a missing needle in a string (lists.go _in asserts a string).
            return Err(at.refuse("in with a var first takes a list of strings, not a string"));
        }
        Ok(Cond::Test {
            attr,
            op,
            lit,
            var_first,
            negate,
        })
    }

    fn in_(&self, a: &Json, at: &At) -> Result<Cond, Refusal> {
        let (needle, hay) = two(a, at)?;
        let Some(items) = hay.as_array() else {
            return self.test(a, Test::In, false, at);
        };
        let mut list = Vec::with_capacity(items.len());
        for (i, s) in items.iter().enumerate() {
            let s = s
                .as_str()
                .ok_or_else(|| at.idx(1).idx(i).refuse("in takes a list of strings"))?;
            list.push(s.as_bytes().to_vec());
        }
        Ok(match self.operand(needle, &at.idx(0))? {
            Operand::Var(attr) => Cond::InList { attr, list },
            Operand::Lit(l) => Cond::Const(list.contains(&l)),
        })
    }

    fn pair(&self, a: &Json, at: &At) -> Result<(Operand, Operand), Refusal> {
        let (x, y) = two(a, at)?;
        Ok((self.operand(x, &at.idx(0))?, self.operand(y, &at.idx(1))?))
    }

    /// A `var` or a string. Request values are strings, so other literals are refused:
    /// loose equality with numbers differs between flagd and flagd-core (`" 5" == 5`).
    fn operand(&self, v: &Json, at: &At) -> Result<Operand, Refusal> {
        if let Some((op, a)) = single_op(v, at)? {
            let inner = at.key(op);
            return match op {
                "var" => self.var(a, &inner),
                "$ref" => self.with_ref(a, &inner, |rule, p| self.operand(rule, p)),
                _ => Err(unsupported(op, at)),
            };
        }
        match v {
            Json::Str(s) => Ok(Operand::Lit(s.as_bytes().to_vec())),
            _ => Err(at.refuse("compare with a string or a var (request values are strings)")),
        }
    }

    fn var(&self, a: &Json, at: &At) -> Result<Operand, Refusal> {
        let name = match a {
            Json::Str(s) => s.as_str(),
            Json::Arr(l) if l.len() == 1 => l.first().and_then(Json::as_str).unwrap_or_default(),
            Json::Arr(l) if l.len() > 1 => return Err(at.refuse("a var default is not supported")),
            _ => "",
        };
        match name {
            "" => Err(at.refuse("var takes an attribute name")),
            "$flagd.flagKey" => Ok(Operand::Lit(self.spec.flag_key.as_bytes().to_vec())),
            "$flagd.timestamp" => {
                Err(at.refuse("var \"$flagd.timestamp\" is not supported (it changes every second)"))
            }
            _ => match self.spec.attrs.iter().position(|n| n == name) {
                Some(i) => Ok(Operand::Var(i as Attr)),
                None => Err(at.refuse(format!("var {name:?}: the context does not map it"))),
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

    fn fractional(&self, a: &Json, at: &At) -> Result<Node, Refusal> {
        let (by, dists, first) = match a.as_array() {
            Some(a @ [Json::Arr(_), ..]) => {
                let tk = self.targeting_key().ok_or_else(|| {
                    at.refuse("fractional without a bucketing value buckets by targetingKey: map targetingKey in `context`")
                })?;
                (BucketBy::Shorthand(tk), a, 0)
            }
            Some([by, rest @ ..]) if !rest.is_empty() => (self.bucket_by(by, &at.idx(0))?, rest, 1),
            _ => return Err(at.refuse("fractional takes at least one [variant, weight] bucket")),
        };
        let mut weights = Vec::with_capacity(dists.len());
        let mut leaves = Vec::with_capacity(dists.len());
        let mut total: u64 = 0;
        for (i, d) in dists.iter().enumerate() {
            let at = at.idx(i + first);
            let (leaf, weight) = self.bucket(d, &at)?;
            total += u64::from(weight);
            if total > crate::config::MAX_TOTAL_WEIGHT {
                return Err(at.refuse("weights must sum to at most 2147483647"));
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
            weights,
            total: total as u32,
            leaves,
        })))
    }

    /// One `[variant, weight]`: a literal variant, an integer weight (1 when absent,
    /// negative clamped to 0, as fractional.go:146-176 and fractional.ts:106-114 do).
    fn bucket(&self, d: &Json, at: &At) -> Result<(Leaf, u32), Refusal> {
        let (variant, weight) = match d.as_array() {
            Some([v]) => (v, None),
            Some([v, w]) => (v, Some(w)),
            _ => return Err(at.refuse("a bucket is [variant] or [variant, weight]")),
        };
        let v_at = at.idx(0);
        let leaf = match variant {
            Json::Null => Leaf::Default,
            Json::Str(s) => self.leaf(s, &v_at)?,
            Json::Bool(b) => self.leaf(bool_key(*b), &v_at)?,
            _ => {
                return Err(v_at.refuse(
                    "a bucket's variant must be a variant key (computed variants are not supported)",
                ))
            }
        };
        let weight = match weight {
            None => 1,
            Some(Json::Num(f)) if f.fract() == 0.0 => {
                if *f > crate::config::MAX_TOTAL_WEIGHT as f64 {
                    return Err(at.idx(1).refuse("a weight must be at most 2147483647"));
                }
                f.max(0.0) as u32
            }
            Some(_) => {
                return Err(at
                    .idx(1)
                    .refuse("a weight must be an integer (computed weights are not supported)"))
            }
        };
        Ok((leaf, weight))
    }

    fn bucket_by(&self, v: &Json, at: &At) -> Result<BucketBy, Refusal> {
        if let Some((op, a)) = single_op(v, at)? {
            let inner = at.key(op);
            return match op {
                "var" => match self.var(a, &inner)? {
                    Operand::Var(attr) => Ok(BucketBy::Var {
                        attr,
                        fallback: self.targeting_key().filter(|_| self.spec.mode == Mode::V2),
                    }),
                    Operand::Lit(l) => Ok(BucketBy::Const(self.hash_string(&l))),
                },
                "cat" => self.cat(a, &inner),
                "$ref" => self.with_ref(a, &inner, |rule, p| self.bucket_by(rule, p)),
                _ => Err(unsupported(op, at)),
            };
        }
        match (self.spec.mode, v) {
            (_, Json::Str(s)) => Ok(BucketBy::Const(self.hash_string(s.as_bytes()))),
            (Mode::V3, _) => {
                let bytes = cbor::encode_bucket_value(v).map_err(|r| at.refuse(r))?;
                Ok(BucketBy::Const(murmur(&bytes)))
            }
            // flagd serves the default variant for any other value.
            (Mode::V2, _) => {
                Err(at.refuse("a bucketing value must be a string, a var or cat (fractional v2)"))
            }
        }
    }

    /// A literal string's bucketing hash: its bytes (v2), its CBOR text (v3).
    fn hash_string(&self, s: &[u8]) -> u32 {
        let mut h = Murmur3::default();
        if self.spec.mode == Mode::V3 {
            super::hash::write_text_head(&mut h, s.len());
        }
        h.write(s);
        h.finish()
    }

    fn cat(&self, a: &Json, at: &At) -> Result<BucketBy, Refusal> {
        let list = match a {
            Json::Arr(l) => l.as_slice(),
            one => std::slice::from_ref(one),
        };
        let mut pieces = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            pieces.push(match self.operand(p, &at.idx(i)) {
                Ok(Operand::Var(a)) => Piece::Var(a),
                Ok(Operand::Lit(l)) => Piece::Lit(l),
                Err(_) => return Err(at.idx(i).refuse("cat takes strings and vars")),
            });
        }
        // flagd (Go) trims the joined string of two or more pieces (strings.go concat);
        // flagd-core does not. Request values carry no outer whitespace; literals must not.
        let outer = |p: Option<&Piece>, first: bool| match p {
            Some(Piece::Lit(l)) => {
                if first { l.first() } else { l.last() }.is_some_and(u8::is_ascii_whitespace)
            }
            _ => false,
        };
        if pieces.len() >= 2 && (outer(pieces.first(), true) || outer(pieces.last(), false)) {
            return Err(at.refuse("cat with outer whitespace: flagd trims it, flagd-core does not"));
        }
        Ok(BucketBy::Cat(pieces))
    }
}

fn murmur(b: &[u8]) -> u32 {
    let mut h = Murmur3::default();
    h.write(b);
    h.finish()
}
