//! The JSON path (`versions[0].weight`) of the place where serde_json stopped with an error,
//! found by walking the text up to that place. It stands in for tracking the path while
//! deserializing (serde_path_to_error), which costs about 20 KB of the module for what only an
//! error needs.

enum Frame {
    /// The key of the member being read, once its key is complete.
    Object(Option<String>),
    Array(usize),
}

/// The path of the value serde_json was reading at 1-based `line` and `column` (the last byte
/// it consumed); `.` for the document itself, as serde_path_to_error names it.
pub fn at(text: &[u8], line: usize, column: usize) -> String {
    let end = offset(text, line, column);
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i <= end {
        let Some(&c) = text.get(i) else { break };
        match c {
            // A value serde_json only peeked at (wrong type) is not entered.
            b'{' | b'[' if i == end => break,
            b'{' => stack.push(Frame::Object(None)),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object(key)) => *key = None,
                Some(Frame::Array(n)) => *n += 1,
                None => {}
            },
            b'"' => {
                let close = string_end(text, i);
                if let Some(Frame::Object(key @ None)) = stack.last_mut() {
                    // A string where a key is due is the key (values follow a key).
                    *key = Some(unescape(text.get(i + 1..close).unwrap_or_default()));
                }
                i = close;
            }
            _ => {}
        }
        i += 1;
    }
    render(&stack)
}

fn render(stack: &[Frame]) -> String {
    let mut out = String::new();
    for f in stack {
        match f {
            Frame::Object(Some(k)) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => {
                out.push('[');
                out.push_str(&n.to_string());
                out.push(']');
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The byte index of `line`:`column` (1-based; serde_json counts bytes).
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text.get(start..).and_then(|t| t.iter().position(|b| *b == b'\n')) {
            Some(nl) => start += nl + 1,
            None => break,
        }
    }
    (start + column).saturating_sub(1)
}

/// `i` at an opening quote: the index of the closing one (or the last byte).
fn string_end(text: &[u8], mut i: usize) -> usize {
    i += 1;
    while let Some(&c) = text.get(i) {
        match c {
            b'"' => return i,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    text.len().saturating_sub(1)
}

/// A key's text: the escapes a key name can carry, decoded as serde_json would.
fn unescape(raw: &[u8]) -> String {
    let quoted = [b"\"", raw, b"\""].concat();
    serde_json::from_slice::<String>(&quoted).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        versions: Vec<V>,
        #[serde(default)]
        trace: Option<T>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct V {
        name: String,
        #[serde(default)]
        weight: Option<u32>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        #[serde(default)]
        baggage: Option<bool>,
    }

    fn path(json: &str) -> String {
        let e = serde_json::from_str::<Doc>(json).unwrap_err();
        at(json.as_bytes(), e.line(), e.column())
    }

    #[test]
    fn names_the_place_serde_stopped() {
        let cases = [
            (r#"{"versions":[{"name":"a","extra":1}]}"#, "versions[0].extra"),
            (
                r#"{"versions":[{"name":"a"},{"name":"b","weight":-1}]}"#,
                "versions[1].weight",
            ),
            (r#"{"versions":[{"name":"a"},{"weight":1}]}"#, "versions[1]"),
            (r#"{"versions":[1]}"#, "versions[0]"),
            (r#"{"versions":[],"trace":{"baggage":"yes"}}"#, "trace.baggage"),
            (
                r#"{"versions":[],"trace":{"baggage":{"x":[1,2]}}}"#,
                "trace.baggage",
            ),
            (r#"{"versions":[],"trace":true}"#, "trace"),
            (r#"{"versions":[], "tr\"ace" :1}"#, "tr\"ace"),
            (r#"{"trace":{}}"#, "."),
            (
                "{\n  \"versions\": [\n    {\"name\": \"a\",\n     \"wieght\": 1}\n  ]\n}",
                "versions[0].wieght",
            ),
            ("[]", "."),
            (r#"{"versions":[{"name":[]}]}"#, "versions[0].name"),
            (r#"{"versions":{}}"#, "versions"),
        ];
        for (json, want) in cases {
            assert_eq!(path(json), want, "{json}");
        }
    }

    #[test]
    fn never_panics_on_positions_out_of_range() {
        assert_eq!(at(b"", 9, 9), ".");
        assert!(!at(b"{\"a", 1, 99).is_empty());
        assert!(!at(b"{\"a\\", 1, 4).is_empty());
    }
}
