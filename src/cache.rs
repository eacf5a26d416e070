//! The verified-token cache: skips HMAC and JSON work for a token already verified.
//!
//! * Keyed by the whole token (exact string comparison, SipHash with a per-process random key,
//!   so no collision can map one token onto another's identity).
//! * Only tokens that verified are inserted: a flood of distinct bad tokens never evicts a good
//!   one and never grows memory.
//! * An entry is used only while the token is unexpired (`now < exp + leeway`, checked on every
//!   hit), and the cache belongs to one [`crate::auth::Verifier`], so a key rotation or config
//!   reload starts an empty one.
//! * Bounded in entries and in bytes (token plus claims, approximated), split over shards with
//!   one lock each, so threads rarely contend and there is no global lock on the hot path.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use crate::auth::Identity;

const SHARDS: usize = 32;

/// Most bytes the cache holds, whatever `entries` allows: tokens may be up to
/// `auth.max_token_bytes` each.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

struct Entry {
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is dead (`exp + leeway`).
    until: f64,
    cost: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<str>, Entry>,
    bytes: usize,
}

/// A bounded, sharded map from token to verified identity.
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    entries_per_shard: usize,
    bytes_per_shard: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        f.debug_struct("TokenCache")
            .field("entries_per_shard", &self.entries_per_shard)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of at most `entries` tokens (and [`MAX_BYTES`]); `None` when `entries` is 0.
    pub fn new(entries: usize) -> Option<TokenCache> {
        (entries > 0).then(|| TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            entries_per_shard: entries.div_ceil(SHARDS),
            bytes_per_shard: MAX_BYTES / SHARDS,
        })
    }

    fn shard(&self, token: &str) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(token) as usize;
        &self.shards[h % SHARDS]
    }

    /// The identity for `token` if it is cached and still valid at `now`.
    pub fn get(&self, token: &str, now: f64) -> Option<Arc<Identity>> {
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.map.get(token)?;
        if now < entry.until {
            return Some(entry.identity.clone());
        }
        let cost = entry.cost;
        shard.map.remove(token);
        shard.bytes -= cost;
        None
    }

    /// Remembers a verified token until `until` (Unix seconds).
    pub fn insert(&self, token: &str, identity: Arc<Identity>, until: f64, now: f64) {
        // Token, claims (at most about the token's size again) and bookkeeping.
        let cost = 2 * token.len() + 256;
        let mut shard = self.shard(token).lock().unwrap_or_else(|e| e.into_inner());
        if cost > self.bytes_per_shard {
            return;
        }
        if shard.map.len() >= self.entries_per_shard || shard.bytes + cost > self.bytes_per_shard {
            // First drop what has expired; if that is not enough, drop arbitrary entries
            // (HashMap order is randomized per process, so an attacker cannot aim).
            let mut freed = 0;
            shard.map.retain(|_, e| {
                let keep = now < e.until;
                if !keep {
                    freed += e.cost;
                }
                keep
            });
            shard.bytes -= freed;
            while shard.map.len() >= self.entries_per_shard
                || shard.bytes + cost > self.bytes_per_shard
            {
                let Some(k) = shard.map.keys().next().cloned() else {
                    break;
                };
                if let Some(e) = shard.map.remove(&k) {
                    shard.bytes -= e.cost;
                }
            }
        }
        let old = shard.map.insert(
            token.into(),
            Entry {
                identity,
                until,
                cost,
            },
        );
        shard.bytes += cost;
        if let Some(old) = old {
            shard.bytes -= old.cost;
        }
    }

    /// Number of cached tokens (tests, metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes accounted to cached entries.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn id(user: &'static str) -> Arc<Identity> {
        Arc::new(Identity {
            user: HeaderValue::from_static(user),
            claim_values: vec![],
            claims: Default::default(),
            exp: 0.0,
        })
    }

    #[test]
    fn hits_until_expiry_then_misses() {
        let c = TokenCache::new(100).unwrap();
        c.insert("t1", id("alice"), 1000.0, 0.0);
        assert_eq!(c.get("t1", 999.0).unwrap().user, "alice");
        assert!(c.get("t1", 1000.0).is_none());
        assert!(c.is_empty(), "an expired entry is dropped on sight");
        assert_eq!(c.bytes(), 0);
        assert!(c.get("t2", 0.0).is_none());
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let c = TokenCache::new(64).unwrap();
        for i in 0..10_000 {
            c.insert(&format!("token-{i}"), id("u"), 1e12, 0.0);
        }
        assert!(c.len() <= 64 + SHARDS, "{}", c.len());
        let big = TokenCache::new(1_000_000).unwrap();
        let token = "x".repeat(8192);
        for i in 0..10_000 {
            big.insert(&format!("{i}{token}"), id("u"), 1e12, 0.0);
        }
        assert!(big.bytes() <= MAX_BYTES, "{}", big.bytes());
    }

    #[test]
    fn expired_entries_go_first() {
        let c = TokenCache::new(SHARDS).unwrap(); // one entry per shard
        c.insert("old", id("old"), 10.0, 0.0);
        // Same shard or not, inserting at a later time never keeps a dead entry over a live one.
        for i in 0..200 {
            c.insert(&format!("new-{i}"), id("new"), 1e12, 20.0);
        }
        assert!(c.get("old", 20.0).is_none());
    }

    #[test]
    fn disabled_with_zero_entries() {
        assert!(TokenCache::new(0).is_none());
    }
}
