//! A small JSON tree for the flag-set document, read once at load. Objects keep their order
//! and the last of duplicate keys wins, as in flagd (Go `encoding/json`) and flagd-core
//! (`JSON.parse`). Numbers are binary64, as both read them. Smaller in the module than
//! `serde_json::Value` (no BTreeMap, no generic visitor); the config parser has already
//! checked the document's syntax, this parser only refuses what it cannot represent.

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number read exactly (correctly rounded to binary64, as Go and JavaScript read it).
    Num(f64),
    /// A number outside the exact reader's reach (more than 38 digits, large exponents).
    Inexact,
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Deeper documents are refused (recursion bound).
const MAX_DEPTH: u32 = 64;

impl Json {
    pub fn parse(b: &[u8]) -> Result<Json, &'static str> {
        let mut p = Parser { b, i: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.i != b.len() {
            return Err("trailing characters");
        }
        Ok(v)
    }

    /// A member of an object (the last of duplicates).
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.as_object()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Obj(m) => Some(m),
            _ => None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Result<u8, &'static str> {
        let c = *self.b.get(self.i).ok_or("unexpected end")?;
        self.i += 1;
        Ok(c)
    }

    fn eat(&mut self, word: &[u8], v: Json) -> Result<Json, &'static str> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err("invalid literal");
        }
        self.i += word.len();
        Ok(v)
    }

    fn value(&mut self, depth: u32) -> Result<Json, &'static str> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.ws();
        match self.b.get(self.i).copied().ok_or("unexpected end")? {
            b'n' => self.eat(b"null", Json::Null),
            b't' => self.eat(b"true", Json::Bool(true)),
            b'f' => self.eat(b"false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut out = Vec::new();
                self.list(b']', |p| {
                    out.push(p.value(depth + 1)?);
                    Ok(())
                })?;
                Ok(Json::Arr(out))
            }
            b'{' => {
                self.i += 1;
                let mut out = Vec::new();
                self.list(b'}', |p| {
                    p.ws();
                    let k = p.string()?;
                    p.ws();
                    if p.next()? != b':' {
                        return Err("expected `:`");
                    }
                    out.push((k, p.value(depth + 1)?));
                    Ok(())
                })?;
                Ok(Json::Obj(out))
            }
            _ => self.number(),
        }
    }

    /// Items separated by commas up to `close` (the opening bracket already read).
    fn list(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), &'static str>,
    ) -> Result<(), &'static str> {
        self.ws();
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.next()? {
                b',' => {}
                c if c == close => return Ok(()),
                _ => return Err("expected `,`"),
            }
        }
    }

    fn number(&mut self) -> Result<Json, &'static str> {
        let start = self.i;
        while matches!(
            self.b.get(self.i),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.i += 1;
        }
        let text = self.b.get(start..self.i).unwrap_or_default();
        if let Some(f) = exact_number(text) {
            return Ok(Json::Num(f));
        }
        // Kept as "some number": refused as a weight or a v3 bucketing value (where its exact
        // value would matter); fine anywhere else (another flag's variant values).
        Ok(Json::Inexact)
    }

    fn string(&mut self) -> Result<String, &'static str> {
        if self.next()? != b'"' {
            return Err("expected a string");
        }
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).map_err(|_| "invalid UTF-8"),
                b'\\' => {
                    let c = match self.next()? {
                        b'u' => self.unicode()?,
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        c @ (b'"' | b'\\' | b'/') => char::from(c),
                        _ => return Err("invalid escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, &'static str> {
        let mut n = 0;
        for _ in 0..4 {
            let d = char::from(self.next()?)
                .to_digit(16)
                .ok_or("invalid \\u escape")?;
            n = n * 16 + d;
        }
        Ok(n)
    }

    /// `\uXXXX`, a surrogate pair joined; a lone surrogate becomes U+FFFD (as Go does).
    fn unicode(&mut self) -> Result<char, &'static str> {
        let hi = self.hex4()?;
        if (0xd800..0xdc00).contains(&hi) && self.b.get(self.i..self.i + 2) == Some(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xdc00..0xe000).contains(&lo) {
                let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                return Ok(char::from_u32(c).unwrap_or('\u{fffd}'));
            }
            self.i = save;
        }
        Ok(char::from_u32(hi).unwrap_or('\u{fffd}'))
    }
}

/// 10^0 ..= 10^22: exact in binary64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// A JSON number correctly rounded, where one rounding suffices: an integer value that fits
/// u128 (its conversion rounds correctly), or up to 2^53 times or divided by 10^0..10^22
/// (Clinger's fast path). Else `None`. core's general reader costs ~17 KB of the module.
fn exact_number(text: &[u8]) -> Option<f64> {
    let (neg, rest) = match text.split_first() {
        Some((b'-', r)) => (true, r),
        _ => (false, text),
    };
    let (mut m, mut digits, mut scale, mut exp, mut i) = (0u128, 0u32, 0i32, 0i32, 0);
    let mut seen_dot = false;
    while let Some(&c) = rest.get(i) {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 38 {
                    return None;
                }
                m = m * 10 + u128::from(c - b'0');
                scale -= i32::from(seen_dot);
            }
            b'.' if !seen_dot => seen_dot = true,
            b'e' | b'E' => {
                exp = std::str::from_utf8(rest.get(i + 1..)?)
                    .ok()?
                    .trim_start_matches('+')
                    .parse()
                    .ok()?;
                break;
            }
            _ => return None,
        }
        i += 1;
    }
    let e = exp.checked_add(scale)?;
    let v = if m == 0 {
        0.0
    } else if e >= 0 {
        // An integer: exact in u128, then one rounding.
        let p = 10u128.checked_pow(u32::try_from(e).ok()?)?;
        m.checked_mul(p)? as f64
    } else if m <= 1 << 53 && e >= -22 {
        m as f64 / POW10.get(usize::try_from(-e).ok()?)?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_what_serde_json_parses() {
        let doc = r#" {"a": [1, -2.5e1, true, false, null, "x\"\\\/\b\f\n\r\t\u00fc\ud83d\ude00\ud800"],
                      "b": {}, "c": [], "a": "last"} "#;
        let j = Json::parse(doc.as_bytes()).unwrap();
        assert_eq!(j.get("a"), Some(&Json::Str("last".into())));
        let Json::Obj(m) = &j else { panic!() };
        let Json::Arr(a) = &m[0].1 else { panic!() };
        assert_eq!(a[0], Json::Num(1.0));
        for (t, f) in [
            ("0.1", 0.1),
            ("-4.1", -4.1),
            ("1e19", 1e19),
            ("3.4028234663852886e38", 3.4028234663852886e38),
            ("18446744073709551615", 18446744073709551615.0),
            ("1.5E+2", 150.0),
            ("-0", -0.0),
            ("100000.5", 100000.5),
        ] {
            assert_eq!(Json::parse(t.as_bytes()), Ok(Json::Num(f)), "{t}");
        }
        assert_eq!(Json::parse(b"1e300"), Ok(Json::Inexact));
        assert_eq!(a[1], Json::Num(-25.0));
        assert_eq!(
            a[5],
            Json::Str("x\"\\/\u{8}\u{c}\n\r\t\u{fc}\u{1f600}\u{fffd}".into())
        );
        assert_eq!(j.get("b"), Some(&Json::Obj(vec![])));
        for bad in [
            "",
            "[1,",
            "{\"a\" 1}",
            "tru",
            "\"\\x\"",
            "[1] x",
            "{1: 2}",
            "\"\\ud83",
        ] {
            assert!(Json::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(Json::parse(deep.as_bytes()), Err("nested too deeply"));
    }
}
