//! The verified-token cache: skips HMAC and JSON work for a token already verified.
//!
//! * Keyed by the whole token: an entry is used only when its token equals the request's, byte
//!   for byte, so no collision can map one token onto another's identity. Entries are found by
//!   a keyed hash (SipHash, per-process random key) of the token's signature segment only: it
//!   is the part that differs between tokens, and hashing 43 bytes instead of the whole token
//!   (once, for both the shard and the slot) is most of a hit's cost. Tokens forged to share a
//!   cached token's signature find its slot and miss on the comparison; they can never be
//!   inserted, since only verified tokens are.
//! * Only tokens that verified are inserted: a flood of distinct bad tokens never evicts a good
//!   one and never grows memory.
//! * An entry is used only while the token is unexpired (`now < exp + leeway`, checked on every
//!   hit), and the cache belongs to one [`crate::auth::Verifier`], so a key rotation or config
//!   reload starts an empty one.
//! * Bounded in entries and in bytes (token plus claims, approximated), split over shards with
//!   one lock each, so threads rarely contend and there is no global lock on the hot path.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use crate::auth::Identity;

const SHARDS: usize = 32;

/// Most bytes the cache holds, whatever `entries` allows: tokens may be up to
/// `auth.max_token_bytes` each.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

struct Entry {
    token: Box<str>,
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is dead (`exp + leeway`).
    until: f64,
    cost: usize,
}

#[derive(Default)]
struct Shard {
    /// By the keyed hash of the token's signature (already random: used as it is).
    map: HashMap<u64, Entry, BuildHasherDefault<Prehashed>>,
    bytes: usize,
}

/// A `Hasher` for keys that are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in rather than ignore it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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

    /// The token's slot: the keyed hash of its signature segment, and its shard.
    fn slot(&self, token: &str) -> (u64, &Mutex<Shard>) {
        let signature = token.rsplit('.').next().unwrap_or(token);
        let h = self.hasher.hash_one(signature);
        // The shard from the low bits (the map takes its control bytes from the high ones).
        (h, &self.shards[h as usize % SHARDS])
    }

    /// The identity for `token` if it is cached and still valid at `now`.
    pub fn get(&self, token: &str, now: f64) -> Option<Arc<Identity>> {
        let (h, shard) = self.slot(token);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.map.get(&h).filter(|e| *e.token == *token)?;
        if now < entry.until {
            return Some(entry.identity.clone());
        }
        let cost = entry.cost;
        shard.map.remove(&h);
        shard.bytes -= cost;
        None
    }

    /// Remembers a verified token until `until` (Unix seconds).
    pub fn insert(&self, token: &str, identity: Arc<Identity>, until: f64, now: f64) {
        // Token, claims (at most about the token's size again) and bookkeeping.
        let cost = 2 * token.len() + 256;
        let (h, shard) = self.slot(token);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
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
        // A slot holds one token: a (2^-64) collision of two verified tokens keeps the newer.
        let old = shard.map.insert(
            h,
            Entry {
                token: token.into(),
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
    fn a_token_sharing_a_cached_signature_misses() {
        let c = TokenCache::new(100).unwrap();
        c.insert("h.alice.sig", id("alice"), 1e12, 0.0);
        // Same signature segment, other header and claims: same slot, never a hit.
        assert!(c.get("h.admin.sig", 0.0).is_none());
        assert!(c.get("x.alice.sig", 0.0).is_none());
        assert_eq!(c.get("h.alice.sig", 0.0).unwrap().user, "alice");
    }

    #[test]
    fn disabled_with_zero_entries() {
        assert!(TokenCache::new(0).is_none());
    }
}
