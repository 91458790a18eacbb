//! Tokens already validated, so a request pays one hash and one lookup for its token instead of
//! an RSA verification: clients reuse one token for up to an hour.

use std::hash::BuildHasher;
use std::time::Duration;

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::Mutex;

/// What validated tokens resolved to (`T`: the tenant), by exact token.
///
/// Only successful validations belong here: caching refusals would let a client pin memory with
/// one garbage token after another, and a refusal is cheap to repeat (most are refused before
/// the RSA step; a bad signature costs one verification, as a good token's first use does).
pub struct Verified<T: Clone> {
    /// foldhash, seeded at random per map, so nobody can choose tokens that share a bucket.
    hasher: DefaultHashBuilder,
    capacity: usize,
    clock_skew: u64,
    /// One lock, not shards: a hit holds it ~50 ns, and two threads hammering one token
    /// measured ~100-200 ns per hit (`tests::cost`), small next to the ~30 us of a proxied
    /// request. A `HashTable` rather than a `HashMap` so the token is hashed once, here.
    table: Mutex<HashTable<Entry<T>>>,
}

struct Entry<T> {
    /// Kept beside the token so most probes compare eight bytes, not a kilobyte.
    hash: u64,
    /// The whole token, compared exactly: a hash collision must never authenticate a different
    /// token. Plain `==` is enough: it only runs against an entry whose 64-bit seeded hash
    /// matches, which a client cannot arrange for a token it does not know, so its timing
    /// reveals nothing.
    token: Box<str>,
    generation: u64,
    expires_at: u64,
    value: T,
}

impl<T: Clone> Verified<T> {
    /// Holds up to `capacity` tokens (at least one). `clock_skew` is the one the tokens were
    /// validated with (`Rules::clock_skew`), so a cached token expires when `validate` would
    /// start refusing it.
    pub fn new(capacity: usize, clock_skew: Duration) -> Self {
        Self {
            hasher: DefaultHashBuilder::default(),
            capacity: capacity.max(1),
            clock_skew: clock_skew.as_secs(),
            table: Mutex::new(HashTable::new()),
        }
    }

    /// The cached value for exactly this token, if it was validated against key-set
    /// `generation` and is not past `expires_at` plus skew at `now_unix`.
    pub fn get(&self, token: &str, generation: u64, now_unix: u64) -> Option<T> {
        let hash = self.hasher.hash_one(token);
        let table = self.table.lock();
        let entry = table.find(hash, |e| e.hash == hash && *e.token == *token)?;
        let fresh = entry.generation == generation && !self.expired(entry, now_unix);
        fresh.then(|| entry.value.clone())
    }

    /// Remembers what `token` resolved to, once `validate` accepted it against key-set
    /// `generation` (which only grows) with `exp` `expires_at`, at `now_unix`.
    ///
    /// When full, entries that can no longer match (expired, or from an older key set) go
    /// first; if every entry is still live, all go. That costs each live client one RSA
    /// verification (24 us against a 50 ns hit, `tests::cost`) on its next request, spread over
    /// requests as they come. An LRU would be smoother but makes every `get` write its
    /// bookkeeping, and this only happens if the capacity is set below the live tokens.
    pub fn insert(&self, token: &str, generation: u64, expires_at: u64, now_unix: u64, value: T) {
        let hash = self.hasher.hash_one(token);
        let entry = Entry {
            hash,
            token: token.into(),
            generation,
            expires_at,
            value,
        };
        let mut table = self.table.lock();
        if let Some(old) = table.find_mut(hash, |e| e.hash == hash && *e.token == *token) {
            *old = entry;
            return;
        }
        if table.len() >= self.capacity {
            table.retain(|e| e.generation >= generation && !self.expired(e, now_unix));
            if table.len() >= self.capacity {
                table.clear();
            }
        }
        table.insert_unique(hash, entry, |e| e.hash);
    }

    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, entry: &Entry<T>, now_unix: u64) -> bool {
        now_unix >= entry.expires_at.saturating_add(self.clock_skew)
    }
}

/// Sizes only: the tokens are credentials.
impl<T: Clone> std::fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests;
