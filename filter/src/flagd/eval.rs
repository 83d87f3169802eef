//! The compiled targeting and its per-request evaluation. Every request value is read
//! through [`Context`] where it is used; nothing is copied or allocated.

use super::hash::{write_text_head, Murmur3};
use super::{Attr, Context, Flag, Leaf, Mode};

/// A result position: `if`, `fractional`, or a variant (or `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Leaf(Leaf),
    /// `if` / else-if: the first true condition's branch, else `otherwise` (`null` without one).
    If(Vec<(Cond, Node)>, Box<Node>),
    Fractional(Box<Fractional>),
}

/// A condition. flagd's string operators answer `null` (falsy) for a missing value, as
/// `false` would be: under `!`, `and`, `or` and `if` only truthiness counts, so a bool does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Const(bool),
    /// A var against a string: `==` / `===` (`!=`, `!==` negated), `in` (substring),
    /// `starts_with`, `ends_with`; `var_first` when the var is the first argument. A missing
    /// value passes no test (then `negate`).
    Test {
        attr: Attr,
        op: Test,
        lit: Vec<u8>,
        var_first: bool,
        negate: bool,
    },
    /// `in` with a list: the value is one of the strings.
    InList {
        attr: Attr,
        list: Vec<Vec<u8>>,
    },
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Eq,
    /// `in`: the first argument inside the second.
    In,
    StartsWith,
    EndsWith,
}

impl Test {
    /// The operator on two strings, in argument order.
    pub fn apply(self, a: &[u8], b: &[u8]) -> bool {
        match self {
            Test::Eq => a == b,
            Test::In => contains(b, a),
            Test::StartsWith => a.starts_with(b),
            Test::EndsWith => a.ends_with(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fractional {
    pub by: BucketBy,
    /// Weights in order (negative ones clamped to 0, as flagd does), summing to `total` >= 1.
    pub weights: Vec<u32>,
    pub total: u32,
    pub leaves: Vec<Leaf>,
}

/// What `fractional` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketBy {
    /// `flagKey` and `targetingKey` (v2: concatenated; v3: the CBOR array of both).
    Shorthand(Attr),
    /// A literal: hashed at load.
    Const(u32),
    /// `{"var": name}`. v2: a missing value buckets by the targetingKey instead (`fallback`),
    /// as flagd does (fractional.go:80-98: a nil first argument is dropped); flagd-core
    /// (fractional.ts:31-42) serves the default variant there. v3: the default variant.
    Var { attr: Attr, fallback: Option<Attr> },
    /// `{"cat": [...]}`: a missing value adds nothing (both implementations).
    Cat(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(Vec<u8>),
    Var(Attr),
}

pub fn node(flag: &Flag, n: &Node, ctx: &mut impl Context) -> Leaf {
    match n {
        Node::Leaf(l) => *l,
        Node::If(branches, otherwise) => {
            for (c, then) in branches.iter() {
                if cond(c, ctx) {
                    return node(flag, then, ctx);
                }
            }
            node(flag, otherwise, ctx)
        }
        Node::Fractional(f) => match bucket_hash(flag, &f.by, ctx) {
            Some(h) => f
                .leaves
                .get(crate::split::pick(h, &f.weights, f.total))
                .copied()
                .unwrap_or(Leaf::Default),
            None => Leaf::Default,
        },
    }
}

fn cond(c: &Cond, ctx: &mut impl Context) -> bool {
    match c {
        Cond::Const(b) => *b,
        Cond::Test {
            attr,
            op,
            lit,
            var_first,
            negate,
        } => {
            let pass = ctx.value(*attr).is_some_and(|v| {
                let (a, b) = if *var_first { (v, &lit[..]) } else { (&lit[..], v) };
                op.apply(a, b)
            });
            pass != *negate
        }
        Cond::InList { attr, list } => ctx.value(*attr).is_some_and(|v| list.iter().any(|l| &l[..] == v)),
        Cond::Not(c) => !cond(c, ctx),
        Cond::And(cs) => cs.iter().all(|c| cond(c, ctx)),
        Cond::Or(cs) => cs.iter().any(|c| cond(c, ctx)),
    }
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The request's bucketing hash; `None` serves the default variant.
pub(super) fn bucket_hash(flag: &Flag, by: &BucketBy, ctx: &mut impl Context) -> Option<u32> {
    let mut h = Murmur3::default();
    match by {
        BucketBy::Const(hash) => return Some(*hash),
        BucketBy::Shorthand(tk) => shorthand(flag, *tk, ctx, &mut h)?,
        BucketBy::Var { attr, fallback } => match ctx.value(*attr) {
            Some(v) => {
                if flag.mode == Mode::V3 {
                    write_text_head(&mut h, v.len());
                }
                h.write(v);
            }
            None => shorthand(flag, (*fallback)?, ctx, &mut h)?,
        },
        BucketBy::Cat(pieces) => {
            if flag.mode == Mode::V3 {
                // CBOR text: the length comes first, so the pieces are read twice.
                let len: usize = pieces.iter().map(|p| piece(p, ctx).map_or(0, <[u8]>::len)).sum();
                write_text_head(&mut h, len);
            }
            for p in pieces.iter() {
                if let Some(v) = piece(p, ctx) {
                    h.write(v);
                }
            }
        }
    }
    Some(h.finish())
}

fn piece<'c>(p: &'c Piece, ctx: &'c mut impl Context) -> Option<&'c [u8]> {
    match p {
        Piece::Lit(l) => Some(l),
        Piece::Var(a) => ctx.value(*a),
    }
}

/// The shorthand's input; `None` when there is no targetingKey (flagd 0.15+: the default
/// variant, fractional.go:85-95; flagd-core: fractional.ts:35-39).
fn shorthand(flag: &Flag, tk: Attr, ctx: &mut impl Context, h: &mut Murmur3) -> Option<()> {
    let key = ctx.value(tk).filter(|k| !k.is_empty())?;
    match flag.mode {
        Mode::V2 => {
            h.write(flag.flag_key.as_bytes());
            h.write(key);
        }
        Mode::V3 => {
            h.write(&[0x82]);
            write_text_head(h, flag.flag_key.len());
            h.write(flag.flag_key.as_bytes());
            write_text_head(h, key.len());
            h.write(key);
        }
    }
    Some(())
}
