//! Parsed certificates kept per worker, by digest.

use std::collections::{HashMap, VecDeque};

/// Default number of entries of a [`LabelCache`].
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// A bounded map from certificate digest to a parsed result, one per worker.
/// When full, inserting a new key evicts the oldest inserted one (FIFO);
/// re-inserting a present key replaces its value and keeps its age.
#[derive(Debug, Clone)]
pub struct LabelCache<V> {
    capacity: usize,
    map: HashMap<Box<[u8]>, V>,
    order: VecDeque<Box<[u8]>>,
}

impl<V> Default for LabelCache<V> {
    fn default() -> Self {
        LabelCache::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl<V> LabelCache<V> {
    /// A cache of at most `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        LabelCache {
            capacity,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&V> {
        self.map.get(key.as_ref())
    }

    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: V) {
        let key = key.as_ref();
        if let Some(slot) = self.map.get_mut(key) {
            *slot = value;
            return;
        }
        if self.capacity == 0 {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
        let key: Box<[u8]> = key.into();
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CertReject, PeerCert};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn cache_evicts_oldest_first() {
        let mut cache = LabelCache::new(3);
        assert!(cache.is_empty());
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            cache.insert(k, v);
        }
        assert_eq!(cache.len(), 3);
        // Reading does not refresh, re-inserting replaces in place.
        assert_eq!(cache.get("a"), Some(&1));
        cache.insert("a", 10);
        assert_eq!(cache.len(), 3);
        cache.insert("d", 4);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get(b"b".as_slice()), Some(&2));
        cache.insert("e", 5);
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("c"), Some(&3));
        assert_eq!(cache.get("d"), Some(&4));
        assert_eq!(cache.get("e"), Some(&5));
        assert_eq!(cache.len(), 3);

        let mut none = LabelCache::new(0);
        none.insert("a", 1);
        assert_eq!((none.len(), none.get("a")), (0, None));

        let mut big: LabelCache<std::rc::Rc<Result<PeerCert, CertReject>>> = LabelCache::default();
        assert_eq!(big.capacity(), DEFAULT_CACHE_CAPACITY);
        for i in 0..DEFAULT_CACHE_CAPACITY + 10 {
            big.insert(i.to_string(), std::rc::Rc::new(Err(CertReject::BadDer)));
        }
        assert_eq!(big.len(), DEFAULT_CACHE_CAPACITY);
        assert!(big.get("9").is_none() && big.get("10").is_some());
    }
}
