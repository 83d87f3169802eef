//! `fractional` v3 input: RFC 8949 deterministic CBOR (§4.2.1, preferred serialization) of a
//! JSON value, as flagd's accepted design record specifies
//! (open-feature/flagd `docs/architecture-decisions/fractional-non-string-rand-units.md`,
//! "Deterministic and consistent byte encodings"): whole numbers in [-2^63, 2^64-1] become
//! integers (-0.0 too), other numbers the shortest float that holds them exactly, map keys
//! sorted bytewise by their encoding. Used at load for literal bucketing values; request
//! values are strings and are streamed by `hash`.

use super::json::Json;

use super::hash::cbor_head;

/// The encoding of `v`, or why the design record refuses it as a bucketing value
/// (`null`, arrays: "explicitly not supported as the first argument").
pub fn encode_bucket_value(v: &Json) -> Result<Vec<u8>, &'static str> {
    match v {
        Json::Null => Err("null is refused as a bucketing value (fractional v3)"),
        Json::Arr(_) => Err("an array is refused as a bucketing value (fractional v3)"),
        Json::Inexact => Err("a number the filter cannot read exactly (write it with fewer digits)"),
        // Not reachable from targeting: a JSON object there is an operation.
        Json::Obj(_) => Err("a map is not a bucketing value the filter can be given"),
        Json::Str(_) | Json::Num(_) | Json::Bool(_) => {
            let mut out = Vec::new();
            encode(v, &mut out);
            Ok(out)
        }
    }
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let (b, len) = cbor_head(major, n);
    out.extend_from_slice(b.get(..len).unwrap_or_default());
}

/// A JSON value. The filter's targeting can only reach strings, numbers and booleans (an
/// object is an operation, request values are strings), so arrays and maps, which the design
/// record specifies too, are compiled for the fixture tests only (module size).
pub fn encode(v: &Json, out: &mut Vec<u8>) {
    match v {
        Json::Null => out.push(0xf6),
        Json::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Json::Str(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Json::Num(f) => number(*f, out),
        Json::Inexact => {}
        #[cfg(not(test))]
        Json::Arr(_) | Json::Obj(_) => {}
        #[cfg(test)]
        Json::Arr(items) => {
            head(out, 4, items.len() as u64);
            for i in items {
                encode(i, out);
            }
        }
        #[cfg(test)]
        Json::Obj(map) => {
            let mut entries: Vec<(Vec<u8>, &Json)> = map
                .iter()
                .map(|(k, v)| {
                    let mut key = Vec::with_capacity(k.len() + 1);
                    head(&mut key, 3, k.len() as u64);
                    key.extend_from_slice(k.as_bytes());
                    (key, v)
                })
                .collect();
            // Insertion sort: maps are small, and the std sort costs ~5 KB of wasm.
            for i in 1..entries.len() {
                let mut j = i;
                while j > 0 && entries.get(j - 1).map(|e| &e.0) > entries.get(j).map(|e| &e.0) {
                    entries.swap(j - 1, j);
                    j -= 1;
                }
            }
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                out.extend_from_slice(&k);
                encode(v, out);
            }
        }
    }
}

fn number(f: f64, out: &mut Vec<u8>) {
    // Whole and within [-2^63, 2^64 - 1]: an integer (the record's number normalization).
    if f.fract() == 0.0 && (-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&f) {
        if f >= 0.0 {
            return head(out, 0, f as u64);
        }
        return head(out, 1, (-1 - f as i128) as u64);
    }
    float(f, out);
}

/// The shortest of half, single and double precision that holds `f` exactly.
fn float(f: f64, out: &mut Vec<u8>) {
    if let Some(h) = f16_bits(f) {
        out.push(0xf9);
        out.extend_from_slice(&h.to_be_bytes());
    } else if f64::from(f as f32) == f {
        out.push(0xfa);
        out.extend_from_slice(&(f as f32).to_bits().to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    }
}

/// IEEE 754 half-precision bits of `f` when it is exactly representable (finite, non-zero).
fn f16_bits(f: f64) -> Option<u16> {
    if !f.is_finite() || f == 0.0 {
        return None;
    }
    let sign: u16 = if f < 0.0 { 0x8000 } else { 0 };
    let bits = f.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mant = bits & ((1u64 << 52) - 1);
    if (-14..=15).contains(&exp) {
        // Normal: 10 mantissa bits, the other 42 must be zero.
        if mant & ((1u64 << 42) - 1) != 0 {
            return None;
        }
        return Some(sign | (((exp + 15) as u16) << 10) | (mant >> 42) as u16);
    }
    // Subnormal: a multiple of 2^-24 below 2^-14.
    let m = f.abs() * 16_777_216.0;
    (m.fract() == 0.0 && m < 1024.0).then_some(sign | m as u16)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A JSON text as the encoder's input; numbers beyond the filter's exact reader parsed
    /// by core's (correctly rounded) reader, which the module does not carry.
    pub fn exact(text: &str) -> Json {
        match Json::parse(text.as_bytes()).unwrap() {
            Json::Inexact => Json::Num(text.parse().unwrap()),
            v => v,
        }
    }

    fn hex(v: &str) -> String {
        let v = exact(v);
        let mut out = Vec::new();
        encode(&v, &mut out);
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 8949 Appendix A examples (preferred serialization) and the record's normalization.
    #[test]
    fn rfc_8949_examples() {
        for (json, want) in [
            ("0", "00"),
            ("23", "17"),
            ("24", "1818"),
            ("1000000", "1a000f4240"),
            // Read as binary64 (as flagd and flagd-core read JSON): 2^64, out of range, a float.
            ("18446744073709551615", "fa5f800000"),
            ("9007199254740993", "1b0020000000000000"),
            ("-1", "20"),
            ("-1000", "3903e7"),
            ("1.5", "f93e00"),
            ("65504.5", "fa477fe080"),
            ("65504.0", "19ffe0"),
            ("100000.5", "fa47c35040"),
            ("5.9604644775390625e-8", "f90001"),
            ("0.00006103515625", "f90400"),
            ("-4.1", "fbc010666666666666"),
            ("1.0e+300", "fb7e37e43c8800759c"),
            ("true", "f5"),
            ("\"a\"", "6161"),
            ("\"\\u00fc\"", "62c3bc"),
            ("[1,[2,3]]", "8201820203"),
            // Normalized: whole floats are integers, -0.0 is 0.
            ("1.0", "01"),
            ("-0.0", "00"),
            ("-2.0", "21"),
            ("1e19", "1b8ac7230489e80000"),
            // Keys sorted bytewise by encoding: shorter first, then lexicographic.
            (
                r#"{"b":1,"aa":2,"a":3}"#,
                "a3616103616201626161 02".replace(' ', "").as_str(),
            ),
        ] {
            assert_eq!(hex(json), want, "{json}");
        }
    }

    #[test]
    fn null_and_arrays_are_refused_at_the_top() {
        assert!(encode_bucket_value(&Json::Null).is_err());
        assert!(encode_bucket_value(&Json::Arr(vec![Json::Num(1.0)])).is_err());
        assert!(encode_bucket_value(&Json::parse(br#"{"a": 1}"#).unwrap()).is_err());
        // Nested, null is encoded (only the top level is refused).
        let mut out = Vec::new();
        encode(&Json::parse(br#"{"a": null}"#).unwrap(), &mut out);
        assert_eq!(out, vec![0xa1, 0x61, b'a', 0xf6]);
    }
}
