//! The verified-token cache: skips HMAC and JSON work for a token already verified. Built on
//! `quick_cache` (S3-FIFO: real recency and frequency, scan resistant, sharded locks).
//!
//! * Keyed by the whole token: an entry is used only when its token equals the request's, byte
//!   for byte, so no collision can map one token onto another's identity. Entries are found by
//!   a keyed hash (a per-process random key) of the token's signature segment only: it
//!   is the part that differs between tokens, and hashing 43 bytes instead of the whole token is
//!   most of a hit's cost. Tokens forged to share a cached token's signature find its slot and
//!   miss on the comparison; they can never be inserted, since only verified tokens are.
//! * Only tokens that verified are inserted: a flood of distinct bad tokens never evicts a good
//!   one and never grows memory.
//! * An entry is used only while the token is unexpired (`now < exp + leeway`, checked on every
//!   hit) and while the key that verified it is still configured ([`KeyId`], checked by the
//!   verifier), so a key rotation or removal stops what the old key verified at once.
//! * Bounded by weight: a token of up to [`UNIT`] bytes of token and claims weighs 1, a larger
//!   one as many units as it takes; the capacity is `auth.token_cache` units, and at most
//!   [`MAX_BYTES`] in all.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::Weighter;

use super::Identity;

/// What one unit of capacity holds: token, claims and bookkeeping.
pub const UNIT: usize = 1024;

/// Most bytes the cache holds, whatever `auth.token_cache` says: tokens may be up to
/// `auth.max_token_bytes` each.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Names the key that verified a cached token: a keyed hash (a per-process random key) of
/// what makes the key, so it names a key without revealing anything about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(pub u64);

impl KeyId {
    /// The id of the key made of `parts` (each length-prefixed, so no two lists collide).
    pub fn of(parts: &[&[u8]]) -> KeyId {
        static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        let mut h = STATE.get_or_init(RandomState::new).build_hasher();
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        KeyId(h.finish())
    }
}

struct Entry {
    token: Box<str>,
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is dead (`exp + leeway`).
    until: f64,
    key: KeyId,
}

/// Weighs an entry by its token's size (claims are about as large again).
#[derive(Clone)]
struct BySize;

impl Weighter<u64, Arc<Entry>> for BySize {
    fn weight(&self, _key: &u64, entry: &Arc<Entry>) -> u64 {
        (2 * entry.token.len() + 256).div_ceil(UNIT) as u64
    }
}

/// A `Hasher` for keys that are hashes already.
#[derive(Default, Clone)]
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

type Map = Cache<
    u64,
    Arc<Entry>,
    BySize,
    BuildHasherDefault<Prehashed>,
    DefaultLifecycle<u64, Arc<Entry>>,
>;

/// A bounded map from token to verified identity.
pub struct TokenCache {
    map: Map,
    seed: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        f.debug_struct("TokenCache")
            .field("capacity", &self.map.capacity())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of `units` (see the module docs); `None` when `units` is 0.
    pub fn new(units: usize) -> Option<TokenCache> {
        let units = units.min(MAX_BYTES / UNIT);
        (units > 0).then(|| TokenCache {
            map: Cache::with(
                units,
                units as u64,
                BySize,
                BuildHasherDefault::default(),
                DefaultLifecycle::default(),
            ),
            seed: RandomState::new().hash_one(0x006a_7774_6761_7465_u64),
        })
    }

    /// The token's slot: a keyed hash of its signature segment. Not SipHash: a verified
    /// token's signature is random already, and entries are only ever inserted for verified
    /// tokens, so nobody can aim collisions at the table; mixing the segment's words with a
    /// per-process key spreads them as well, for a tenth of the work.
    fn slot(&self, token: &str) -> u64 {
        let signature = token.rsplit('.').next().unwrap_or(token).as_bytes();
        let mut h = self.seed;
        for word in signature.chunks(8) {
            let mut w = [0u8; 8];
            w[..word.len()].copy_from_slice(word);
            h = (h ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(31);
        }
        h ^ (h >> 32)
    }

    /// The identity for `token` and the key that verified it, if it is cached and still valid
    /// at `now`.
    pub fn get(&self, token: &str, now: f64) -> Option<(Arc<Identity>, KeyId)> {
        let h = self.slot(token);
        let entry = self.map.get(&h).filter(|e| *e.token == *token)?;
        if now < entry.until {
            return Some((entry.identity.clone(), entry.key));
        }
        self.map.remove(&h);
        None
    }

    /// Remembers a token verified by `key`, until `until` (Unix seconds).
    pub fn insert(&self, token: &str, identity: Arc<Identity>, until: f64, key: KeyId) {
        let entry = Entry {
            token: token.into(),
            identity,
            until,
            key,
        };
        // A slot holds one token: a (2^-64) collision of two verified tokens keeps the newer.
        self.map.insert(self.slot(token), Arc::new(entry));
    }

    /// Forgets `token`.
    pub fn remove(&self, token: &str) {
        let h = self.slot(token);
        self.map.remove_if(&h, |e| *e.token == *token);
    }

    /// Number of cached tokens (tests, metrics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Units held (see the module docs).
    pub fn weight(&self) -> u64 {
        self.map.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const K: KeyId = KeyId(1);

    fn id(user: &'static str) -> Arc<Identity> {
        Arc::new(Identity {
            user: HeaderValue::from_static(user),
            claim_values: vec![],
            issuer: None,
            left_out: vec![],
            claims: Default::default(),
            assertions: Default::default(),
            exp: 0.0,
        })
    }

    #[test]
    fn hits_until_expiry_then_misses() {
        let c = TokenCache::new(100).unwrap();
        c.insert("t1", id("alice"), 1000.0, K);
        let (identity, key) = c.get("t1", 999.0).unwrap();
        assert_eq!((identity.user.to_str().unwrap(), key), ("alice", K));
        assert!(c.get("t1", 1000.0).is_none());
        assert!(c.is_empty(), "an expired entry is dropped on sight");
        assert!(c.get("t2", 0.0).is_none());
    }

    #[test]
    fn bounded_by_weight() {
        let c = TokenCache::new(64).unwrap();
        for i in 0..10_000 {
            c.insert(&format!("token-{i}"), id("u"), 1e12, K);
        }
        assert!(c.weight() <= 64, "{}", c.weight());
        let big = TokenCache::new(1_000_000).unwrap();
        let token = "x".repeat(8192);
        for i in 0..10_000 {
            big.insert(&format!("{i}{token}"), id("u"), 1e12, K);
        }
        assert!(
            big.weight() as usize * UNIT <= MAX_BYTES,
            "{} units",
            big.weight()
        );
    }

    #[test]
    fn recently_used_tokens_survive_a_scan() {
        let c = TokenCache::new(256).unwrap();
        c.insert("hot", id("hot"), 1e12, K);
        for i in 0..5_000 {
            // The hot token is used between one-off tokens: recency keeps it.
            assert!(
                c.get("hot", 0.0).is_some(),
                "evicted after {i} one-off tokens"
            );
            c.insert(&format!("cold-{i}"), id("cold"), 1e12, K);
        }
    }

    #[test]
    fn a_token_sharing_a_cached_signature_misses() {
        let c = TokenCache::new(100).unwrap();
        c.insert("h.alice.sig", id("alice"), 1e12, K);
        // Same signature segment, other header and claims: same slot, never a hit.
        assert!(c.get("h.admin.sig", 0.0).is_none());
        assert!(c.get("x.alice.sig", 0.0).is_none());
        c.remove("h.admin.sig");
        assert_eq!(c.get("h.alice.sig", 0.0).unwrap().0.user, "alice");
        c.remove("h.alice.sig");
        assert!(c.is_empty());
    }

    #[test]
    fn disabled_with_zero_entries() {
        assert!(TokenCache::new(0).is_none());
    }
}
