//! A concurrent map of shared states, for the ledger's scopes and the
//! limiter's limits: sharded, so that a lookup takes one uncontended read
//! lock (an atomic) and only a key's first use takes a shard's write lock.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, PoisonError, RwLock};

const SHARDS: usize = 64;

type Shard<K, V> = RwLock<HashMap<K, Arc<V>, foldhash::fast::RandomState>>;

#[derive(Debug)]
pub struct Sharded<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: foldhash::fast::RandomState,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Hash + Eq, V: Default> Sharded<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % SHARDS]
    }

    /// The state of `key`, made on first use. Looked up by a borrowed key
    /// (a `&str` for a `Box<str>`): the request path allocates nothing
    /// but a key's first use.
    pub fn get_or_default<Q>(&self, key: &Q) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        for<'q> &'q Q: Into<K>,
    {
        let shard = self.shard(key);
        if let Some(v) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(v);
        }
        Arc::clone(
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.into())
                .or_default(),
        )
    }

    /// The state of `key`, if it has one.
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Calls `f` with every entry, one shard at a time.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in self.shards.iter() {
            for (k, v) in shard.read().unwrap_or_else(PoisonError::into_inner).iter() {
                f(k, v);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.read().unwrap_or_else(PoisonError::into_inner).is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn one_state_per_key_shared_by_every_lookup() {
        let map: Sharded<Box<str>, AtomicU64> = Sharded::default();
        assert!(map.is_empty());
        let a = map.get_or_default("a");
        a.fetch_add(2, Ordering::Relaxed);
        let again = map.get_or_default("a");
        assert_eq!(again.load(Ordering::Relaxed), 2);
        assert!(map.get("b").is_none());
        let mut n = 0;
        map.for_each(|_, _| n += 1);
        assert_eq!(n, 1);
    }
}
