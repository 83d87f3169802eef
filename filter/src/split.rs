//! Sticky weighted split, bit-identical to OpenFeature flagd's `fractional`.
//!
//! `hash = murmur3_x86_32(rolloutId ++ key, seed 0)`,
//! `bucket = (hash * totalWeight) >> 32`, then the first version whose running
//! weight sum exceeds the bucket. Raising one version's weight only widens its
//! range of buckets, so no user already there moves out.

/// murmur3 x86_32 (seed 0) of `prefix ++ key`, hashed without concatenating (the streaming
/// hasher the flagd evaluator uses too; the murmur3 crate, through `std::io::Read`, cost more
/// of the module and is now only the tests' reference).
pub fn hash(prefix: &[u8], key: &[u8]) -> u32 {
    let mut h = crate::flagd::hash::Murmur3::default();
    h.write(prefix);
    h.write(key);
    h.finish()
}

/// flagd's bucket of `hash` out of `total`: `(hash × total) >> 32`, in `0..total`.
/// Route-weights mode writes it for Envoy, whose `value % total` then keeps it as is.
pub fn bucket(hash: u32, total: u64) -> u64 {
    ((u128::from(hash) * u128::from(total)) >> 32) as u64
}

/// The version index for `hash` under `weights` (whose sum is `total`, >= 1).
///
/// Returns the last version with a non-zero weight if the weights do not add up
/// (never the case for a validated config), so there is always an answer.
/// Generic so certificate-adjusted weights (u64) use the same walk as flagd's (u32).
pub fn pick<W: Copy + Into<u64>>(hash: u32, weights: &[W], total: W) -> usize {
    let bucket = u128::from(bucket(hash, total.into()));
    let mut acc: u128 = 0;
    let mut last_nonzero = 0;
    for (i, w) in weights.iter().enumerate() {
        let w: u64 = (*w).into();
        if w == 0 {
            continue;
        }
        acc += u128::from(w);
        last_nonzero = i;
        if bucket < acc {
            return i;
        }
    }
    last_nonzero
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Vectors computed by `tests/vectors/gen_flagd.py` with Python's mmh3, not by this code.
    fn pick32(hash: u32, weights: &[u32], total: u32) -> usize {
        pick(hash, weights, total)
    }

    const VECTORS: &str = include_str!("../../tests/vectors/flagd.json");

    #[test]
    fn murmur3_matches_reference() {
        assert_eq!(hash(b"", b"abc"), 3017643002);
        assert_eq!(hash(b"ab", b"c"), 3017643002);
        assert_eq!(hash(b"abc", b""), 3017643002);
        assert_eq!(hash(b"", b""), 0);
    }

    #[test]
    fn matches_flagd_vectors() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let rollout = v["rolloutId"].as_str().unwrap().as_bytes();
        let splits = v["splits"].as_object().unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 200);
        for case in cases {
            let key = case["key"].as_str().unwrap();
            let h = hash(rollout, key.as_bytes());
            assert_eq!(u64::from(h), case["hash"].as_u64().unwrap(), "hash of {key:?}");
            for (name, split) in splits {
                let split = split.as_array().unwrap();
                let names: Vec<&str> = split.iter().map(|p| p[0].as_str().unwrap()).collect();
                let weights: Vec<u32> = split.iter().map(|p| p[1].as_u64().unwrap() as u32).collect();
                let total: u32 = weights.iter().sum();
                let got = names[pick(h, &weights, total)];
                assert_eq!(
                    got,
                    case[name.as_str()].as_str().unwrap(),
                    "key {key:?} split {name}"
                );
            }
        }
    }

    #[test]
    fn bucket_walk_is_the_pick() {
        // Envoy walks weighted_clusters in order over the bucket: the same answer as pick.
        let weights = [75u32, 25];
        for i in 0..2000 {
            let h = hash(b"r", format!("k{i}").as_bytes());
            let b = bucket(h, 100);
            assert!(b < 100);
            assert_eq!(usize::from(b >= 75), pick(h, &weights, 100));
        }
        assert_eq!(bucket(u32::MAX, u64::from(i32::MAX as u32)), i32::MAX as u64 - 1);
        assert_eq!(bucket(0, 100), 0);
    }

    #[test]
    fn zero_weight_is_never_picked() {
        for h in [0, 1, u32::MAX / 2, u32::MAX] {
            assert_eq!(pick32(h, &[0, 5, 0], 5), 1);
        }
    }

    #[test]
    fn extremes_of_the_hash_space() {
        assert_eq!(pick32(0, &[1, 1], 2), 0);
        assert_eq!(pick32(u32::MAX, &[1, 1], 2), 1);
        assert_eq!(pick32(u32::MAX, &[i32::MAX as u32], i32::MAX as u32), 0);
        assert_eq!(pick32(u32::MAX, &[i32::MAX as u32 - 1, 1], i32::MAX as u32), 1);
    }

    #[test]
    fn shares_follow_weights() {
        let weights = [90, 10];
        let mut counts = [0u32; 2];
        for i in 0..20_000 {
            counts[pick32(hash(b"r", format!("user-{i}").as_bytes()), &weights, 100)] += 1;
        }
        let canary = f64::from(counts[1]) / 20_000.0;
        assert!((canary - 0.10).abs() < 0.01, "canary share {canary}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Raising one version's weight never moves a user out of that version.
        #[test]
        fn raising_a_weight_keeps_its_users(
            weights in proptest::collection::vec(0u32..1000, 2..6),
            target in 0usize..6,
            step in 1u32..500,
            keys in proptest::collection::vec(any::<u32>(), 64),
        ) {
            let target = target % weights.len();
            let total: u32 = weights.iter().sum();
            prop_assume!(total > 0);
            let mut raised = weights.clone();
            raised[target] += step;
            let raised_total = total + step;
            for h in keys {
                if pick(h, &weights, total) == target {
                    prop_assert_eq!(pick(h, &raised, raised_total), target);
                }
            }
        }

        /// The same key always lands on the same version.
        #[test]
        fn same_key_same_version(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            let a = pick32(hash(b"rollout", &key), &[3, 7], 10);
            let b = pick32(hash(b"rollout", &key), &[3, 7], 10);
            prop_assert_eq!(a, b);
        }
    }
}
