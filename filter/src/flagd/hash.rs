//! Streaming murmur3 x86_32 (seed 0) and the bucketing input of each `fractional` mode,
//! fed piece by piece so a request's values are hashed where they lie (no concatenation).

/// murmur3 x86_32 with seed 0, fed incrementally: the same hash as one call over the
/// concatenated input (flagd: `github.com/twmb/murmur3` `StringSum32`, fractional.go:55).
#[derive(Debug, Clone, Copy, Default)]
pub struct Murmur3 {
    h: u32,
    tail: u32,
    ntail: u32,
    len: u32,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

impl Murmur3 {
    pub fn write(&mut self, bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u32);
        for &b in bytes {
            self.tail |= u32::from(b) << (8 * self.ntail);
            self.ntail += 1;
            if self.ntail == 4 {
                self.h ^= mix_k(self.tail);
                self.h = self.h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
                self.tail = 0;
                self.ntail = 0;
            }
        }
    }

    pub fn finish(&self) -> u32 {
        let mut h = self.h;
        if self.ntail > 0 {
            h ^= mix_k(self.tail);
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// A CBOR head (RFC 8949 §3): major type and argument in the shortest form, as
/// deterministic encoding requires (§4.2.1). Returns the bytes and their count.
pub fn cbor_head(major: u8, n: u64) -> ([u8; 9], usize) {
    let mut out = [0u8; 9];
    let m = major << 5;
    let len = match n {
        0..=23 => {
            out[0] = m | n as u8;
            1
        }
        24..=0xff => {
            out[0] = m | 24;
            out[1] = n as u8;
            2
        }
        0x100..=0xffff => {
            out[0] = m | 25;
            out[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            3
        }
        0x1_0000..=0xffff_ffff => {
            out[0] = m | 26;
            out[1..5].copy_from_slice(&(n as u32).to_be_bytes());
            5
        }
        _ => {
            out[0] = m | 27;
            out[1..9].copy_from_slice(&n.to_be_bytes());
            9
        }
    };
    (out, len)
}

/// Feeds a CBOR text-string head for `len` bytes.
pub fn write_text_head(h: &mut Murmur3, len: usize) {
    let (head, n) = cbor_head(3, len as u64);
    h.write(head.get(..n).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn once(b: &[u8]) -> u32 {
        let mut h = Murmur3::default();
        h.write(b);
        h.finish()
    }

    #[test]
    fn known_values() {
        assert_eq!(once(b"abc"), 3_017_643_002);
        assert_eq!(once(b""), 0);
        // flagd-testbed's hash-edge keys (fractional.feature): murmur3 0 and 2^32-1.
        assert_eq!(once(b"ejOoVL"), 0);
        assert_eq!(once(b"ceQdGm"), u32::MAX);
    }

    #[test]
    fn heads_are_shortest() {
        let head = |m, n| {
            let (b, l) = cbor_head(m, n);
            b[..l].to_vec()
        };
        assert_eq!(head(3, 0), [0x60]);
        assert_eq!(head(3, 23), [0x77]);
        assert_eq!(head(3, 24), [0x78, 24]);
        assert_eq!(head(3, 256), [0x79, 1, 0]);
        assert_eq!(head(0, 65_536), [0x1a, 0, 1, 0, 0]);
        assert_eq!(
            head(1, u64::MAX),
            [0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Split anywhere, the stream hashes like the murmur3 crate over the whole input.
        #[test]
        fn streaming_matches_the_crate(bytes in proptest::collection::vec(any::<u8>(), 0..80), cut in 0usize..80, cut2 in 0usize..80) {
            let a = cut.min(bytes.len());
            let b = cut2.min(bytes.len()).max(a);
            let mut h = Murmur3::default();
            h.write(&bytes[..a]);
            h.write(&bytes[a..b]);
            h.write(&bytes[b..]);
            prop_assert_eq!(h.finish(), murmur3::murmur3_32(&mut &bytes[..], 0).unwrap());
        }
    }
}
