//! Reading the header map exactly as the proxy-wasm host serializes it, without
//! copying: `u32 count`, then `count` pairs of `u32` (name size, value size), then
//! each name and value followed by a NUL byte. One host call fetches the whole
//! map; every lookup after that is a scan over borrowed bytes.

/// What to do with one request header on the way upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Leave every value exactly as it came (or absent).
    Keep,
    /// Remove every value.
    Remove,
    /// Replace every value with this one.
    Set(Vec<u8>),
}

/// The non-empty members of a comma-separated list spread over several header
/// values (read as one value joined with commas), without the optional
/// whitespace around them. One concrete iterator for every list header
/// (`tracestate`, `baggage`), so the module carries its code once.
#[derive(Clone)]
pub struct ListMembers<'a, 'b> {
    values: &'a [&'b [u8]],
    current: Option<&'b [u8]>,
}

impl<'a, 'b> ListMembers<'a, 'b> {
    pub fn new(values: &'a [&'b [u8]]) -> Self {
        ListMembers {
            values,
            current: None,
        }
    }
}

impl<'b> Iterator for ListMembers<'_, 'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        loop {
            let cur = match self.current.take() {
                Some(c) => c,
                None => {
                    let (first, rest) = self.values.split_first()?;
                    self.values = rest;
                    first
                }
            };
            let member = match cur.iter().position(|b| *b == b',') {
                Some(i) => {
                    self.current = cur.get(i.saturating_add(1)..);
                    cur.get(..i).unwrap_or_default()
                }
                None => cur,
            };
            let member = trim_ows(member);
            if !member.is_empty() {
                return Some(member);
            }
        }
    }
}

/// `s` without leading and trailing spaces and tabs (RFC 9110 OWS).
pub fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i.saturating_add(1));
    s.get(start..end).unwrap_or_default()
}

/// A view over a serialized header map. Malformed input reads as fewer headers,
/// never as an error or a panic.
#[derive(Clone, Copy)]
pub struct SerializedMap<'a> {
    buf: &'a [u8],
}

impl<'a> SerializedMap<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        SerializedMap { buf }
    }

    /// Every (name, value) pair in order, including repeated names.
    pub fn iter(&self) -> Pairs<'a> {
        let count = read_u32(self.buf, 0).unwrap_or(0) as usize;
        Pairs {
            buf: self.buf,
            index: 0,
            count,
            // Data starts after the count and the size table.
            data: count
                .checked_mul(8)
                .and_then(|t| t.checked_add(4))
                .unwrap_or(usize::MAX),
        }
    }

    /// The first value of `name` (names are lowercase in Envoy's maps).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }

    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.iter()
            .filter(move |(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }
}

#[derive(Clone)]
pub struct Pairs<'a> {
    buf: &'a [u8],
    index: usize,
    count: usize,
    data: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    // Called per header per lookup: kept inline even in the size-optimized build.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let sizes = 4 + self.index * 8;
        let key_len = read_u32(self.buf, sizes)? as usize;
        let val_len = read_u32(self.buf, sizes + 4)? as usize;
        let key_end = self.data.checked_add(key_len)?;
        let key = self.buf.get(self.data..key_end)?;
        let val_start = key_end.checked_add(1)?;
        let val_end = val_start.checked_add(val_len)?;
        let value = self.buf.get(val_start..val_end)?;
        self.data = val_end.checked_add(1)?;
        self.index += 1;
        Some((key, value))
    }
}

#[inline(always)]
fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// Serialize pairs the way the host does.
pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    serialize_pairs(pairs.iter().map(|(k, v)| (k.as_bytes(), *v)))
}

/// Serialize (name, value) pairs in the host's format, for one `set_header_map_pairs` call.
pub fn serialize_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let (count, bytes) = pairs.clone().fold((0usize, 0usize), |(n, b), (k, v)| {
        (n + 1, b + k.len() + v.len() + 2)
    });
    let mut out = Vec::with_capacity(4 + count * 8 + bytes);
    out.extend_from_slice(&len32(count).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&len32(k.len()).to_le_bytes());
        out.extend_from_slice(&len32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn list_members() {
        let values: [&[u8]; 4] = [b" a=1 ,\t,b=2", b"", b",, c ", b"d"];
        let got: Vec<&[u8]> = ListMembers::new(&values).collect();
        assert_eq!(got, vec![&b"a=1"[..], b"b=2", b"c", b"d"]);
        assert_eq!(ListMembers::new(&[]).count(), 0);
        assert_eq!(ListMembers::new(&[b" , \t,"]).count(), 0);
        assert_eq!(trim_ows(b" \t x y\t "), b"x y");
        assert_eq!(trim_ows(b" \t "), b"");
    }

    #[test]
    fn reads_what_the_host_writes() {
        let buf = serialize(&[
            (":path", b"/a?b"),
            ("x", b"1"),
            ("cookie", b"uid=\xff"),
            ("x", b""),
        ]);
        let m = SerializedMap::new(&buf);
        assert_eq!(m.get(":path"), Some(&b"/a?b"[..]));
        assert_eq!(m.get("cookie"), Some(&b"uid=\xff"[..]));
        assert_eq!(m.get_all("x").collect::<Vec<_>>(), vec![&b"1"[..], &b""[..]]);
        assert_eq!(m.get("nope"), None);
        assert_eq!(m.iter().count(), 4);
    }

    #[test]
    fn serialize_round_trips() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b":path", b"/"), (b"a", b""), (b"a", b"\xff")];
        let buf = serialize_pairs(pairs.iter().copied());
        assert_eq!(SerializedMap::new(&buf).iter().collect::<Vec<_>>(), pairs);
        assert_eq!(serialize_pairs(std::iter::empty()), vec![0, 0, 0, 0]);
    }

    #[test]
    fn empty_and_malformed_maps_are_just_shorter() {
        assert_eq!(SerializedMap::new(&[]).iter().count(), 0);
        assert_eq!(SerializedMap::new(&[1, 0]).iter().count(), 0);
        let mut buf = serialize(&[("a", b"1"), ("b", b"2")]);
        buf.truncate(buf.len() - 3);
        assert_eq!(SerializedMap::new(&buf).iter().count(), 1);
        // A count far larger than the buffer.
        let huge = [0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0];
        assert_eq!(SerializedMap::new(&huge).iter().count(), 0);
        // Sizes pointing past the end.
        let mut bad = serialize(&[("a", b"1")]);
        bad[8] = 0xff;
        assert_eq!(SerializedMap::new(&bad).get("a"), None);
    }
}
