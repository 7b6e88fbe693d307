//! The keyspace: typed values (see `value`) with optional absolute expiry, an expiry index, memory accounting, glob and scan.

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

pub use super::value::Value;

/// Bytes charged per key on top of key and value, roughly our per-entry overhead.
pub const ENTRY_OVERHEAD: u64 = 64;

/// Milliseconds since the Unix epoch (Redis's clock for absolute expiries).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub val: Value,
    /// Absolute expiry in ms since the epoch; 0 = persistent.
    pub exp: u64,
}

impl Entry {
    pub fn expired(&self, now: u64) -> bool {
        self.exp != 0 && self.exp <= now
    }
}

/// One keyspace (Redis db 0).
#[derive(Debug, Default)]
pub struct Db {
    map: HashMap<Vec<u8>, Entry>,
    /// (expiry, key) for every key with a TTL, oldest first: active expiry pops the front.
    expires: BTreeSet<(u64, Vec<u8>)>,
    used: u64,
    /// Keys some client WATCHes: (watchers, times modified since first watched).
    watched: HashMap<Vec<u8>, (u32, u64)>,
}

fn cost(key: &[u8], val: &Value) -> u64 {
    key.len() as u64 + val.mem() + ENTRY_OVERHEAD
}

/// Fixed-key hash for SCAN cursors: stable for the life of the process.
fn scan_hash(key: &[u8]) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(key);
    h.finish()
}

impl Db {
    /// Records a modification of `key` for WATCH (cheap when nothing is watched).
    pub fn touch(&mut self, key: &[u8]) {
        if !self.watched.is_empty() {
            if let Some(w) = self.watched.get_mut(key) {
                w.1 += 1;
            }
        }
    }

    /// WATCH: registers one watcher of `key`; returns its modification count.
    pub fn watch(&mut self, key: &[u8]) -> u64 {
        let w = self.watched.entry(key.to_vec()).or_insert((0, 0));
        w.0 += 1;
        w.1
    }

    /// Drops one watcher of `key`.
    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(w) = self.watched.get_mut(key) {
            w.0 = w.0.saturating_sub(1);
            if w.0 == 0 {
                self.watched.remove(key);
            }
        }
    }

    /// The modification count of a watched key (0 if nobody watches it).
    pub fn watch_version(&self, key: &[u8]) -> u64 {
        self.watched.get(key).map_or(0, |w| w.1)
    }

    /// Replaces the whole keyspace (full sync), keeping the watchers: every
    /// watched key counts as modified.
    pub fn replace_with(&mut self, mut new: Db) {
        new.watched = std::mem::take(&mut self.watched);
        for w in new.watched.values_mut() {
            w.1 += 1;
        }
        *self = new;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every entry, live or not (callers filter on expiry).
    pub fn entries(&self) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
        self.map.iter()
    }

    /// SWAPDB: trades keys with `other`; each keeps its own watchers, and every
    /// watched key counts as modified.
    pub fn swap_contents(&mut self, other: &mut Db) {
        std::mem::swap(&mut self.map, &mut other.map);
        std::mem::swap(&mut self.expires, &mut other.expires);
        std::mem::swap(&mut self.used, &mut other.used);
        for w in self.watched.values_mut().chain(other.watched.values_mut()) {
            w.1 += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn expires_len(&self) -> usize {
        self.expires.len()
    }

    /// Bytes charged for keys and values.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The entry, whether or not it is logically expired (callers decide).
    pub fn peek(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    pub fn peek_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.map.get_mut(key)
    }

    /// Sets `key` to `val`; `exp` = Some(at) sets (0 = clear) the expiry, None keeps it.
    /// Reuses the old value's allocation when there is one.
    pub fn set(&mut self, key: &[u8], val: &[u8], exp: Option<u64>) {
        self.touch(key);
        if let Some(e) = self.map.get_mut(key) {
            self.used = self.used.saturating_sub(e.val.mem()) + val.len() as u64;
            match &mut e.val {
                Value::Str(v) => {
                    v.clear();
                    v.extend_from_slice(val);
                }
                other => *other = Value::Str(val.to_vec()),
            }
            if let Some(at) = exp {
                let old = e.exp;
                e.exp = at;
                if old != at {
                    self.reindex(key, old, at);
                }
            }
            return;
        }
        self.insert(key, Value::Str(val.to_vec()), exp.unwrap_or(0));
    }

    /// Sets `key` to `val` with absolute expiry `exp` (0 = none), replacing any value.
    pub fn insert(&mut self, key: &[u8], val: Value, exp: u64) {
        self.remove(key);
        self.touch(key);
        self.used += cost(key, &val);
        self.map.insert(key.to_vec(), Entry { val, exp });
        if exp != 0 {
            self.expires.insert((exp, key.to_vec()));
        }
    }

    /// The value of `key` for in-place change by a collection command, which
    /// then calls `modified` with the byte delta.
    pub fn value_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        self.map.get_mut(key).map(|e| &mut e.val)
    }

    /// After an in-place change: memory accounting, WATCH, and an emptied
    /// collection deleted (as Redis never keeps empty ones).
    pub fn modified(&mut self, key: &[u8], delta: i64) {
        self.touch(key);
        self.used = self.used.saturating_add_signed(delta);
        if self.map.get(key).is_some_and(|e| e.val.is_empty()) {
            self.remove(key);
        }
    }

    /// Replaces the value through a closure on the existing bytes (APPEND, INCR).
    pub fn update(&mut self, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
        self.touch(key);
        if let Some(Entry {
            val: Value::Str(v), ..
        }) = self.map.get_mut(key)
        {
            let before = v.len() as u64;
            f(v);
            self.used = self.used - before + v.len() as u64;
        }
    }

    /// Runs `f` on the value of `key` if it exists and is live at `now` (0 = ignore
    /// expiry), keeping the memory count right; `None` if absent or expired.
    pub fn with_live_mut<R>(
        &mut self,
        key: &[u8],
        now: u64,
        f: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> Option<R> {
        let e = self.map.get_mut(key)?;
        if e.expired(now) {
            return None;
        }
        let Value::Str(v) = &mut e.val else {
            return None;
        };
        let before = v.len() as u64;
        let r = f(v);
        self.used = self.used - before + v.len() as u64;
        self.touch(key);
        Some(r)
    }

    fn reindex(&mut self, key: &[u8], old: u64, new: u64) {
        if old != 0 {
            self.expires.remove(&(old, key.to_vec()));
        }
        if new != 0 {
            self.expires.insert((new, key.to_vec()));
        }
    }

    /// Sets the absolute expiry of an existing key (0 = persist); false if absent.
    pub fn set_expiry(&mut self, key: &[u8], at: u64) -> bool {
        self.touch(key);
        let Some(e) = self.map.get_mut(key) else {
            return false;
        };
        let old = e.exp;
        e.exp = at;
        if old != at {
            self.reindex(key, old, at);
        }
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.touch(key);
        self.used = self.used.saturating_sub(cost(key, &e.val));
        if e.exp != 0 {
            self.expires.remove(&(e.exp, key.to_vec()));
        }
        Some(e)
    }

    pub fn clear(&mut self) {
        // As Redis: a flush modifies the watched keys that existed.
        for (k, w) in self.watched.iter_mut() {
            if self.map.contains_key(k) {
                w.1 += 1;
            }
        }
        self.map.clear();
        self.expires.clear();
        self.used = 0;
    }

    /// Removes up to `max` keys whose expiry is at or before `now`, returning them
    /// (the caller propagates each as DEL).
    pub fn pop_expired(&mut self, now: u64, max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((at, _)) = self.expires.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some((_, key)) = self.expires.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&key) {
                self.used = self.used.saturating_sub(cost(&key, &e.val));
            }
            self.touch(&key);
            out.push(key);
        }
        out
    }

    /// Keys matching a glob pattern, skipping logically expired ones.
    pub fn keys(&self, pattern: &[u8], now: u64) -> Vec<&[u8]> {
        let all = pattern == b"*";
        self.map
            .iter()
            .filter(|(k, e)| !e.expired(now) && (all || glob(pattern, k)))
            .map(|(k, _)| k.as_slice())
            .collect()
    }

    /// One SCAN step: keys whose cursor hash is >= `cursor`, in hash order, about
    /// `count` of them (all keys sharing the last hash are included, so none is
    /// skipped). Returns the next cursor (0 = done) and the keys passing `pattern`.
    /// Keys present for the whole scan are returned at least once.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&[u8]>,
        now: u64,
    ) -> (u64, Vec<&[u8]>) {
        let (next, page) = scan_page(self.map.keys().map(|k| k.as_slice()), cursor, count);
        let keys = page
            .into_iter()
            .filter(|k| {
                self.map.get(*k).is_some_and(|e| !e.expired(now))
                    && pattern.is_none_or(|p| glob(p, k))
            })
            .collect();
        (next, keys)
    }

    /// Every live key as an RDB file (full sync, SAVE).
    pub fn to_rdb(&self, now: u64, aux: &super::rdb::Aux) -> Vec<u8> {
        let mut w = super::rdb::Writer::new(self.used, aux);
        w.select_db(0, self.map.len() as u64, self.expires.len() as u64);
        for (k, e) in &self.map {
            if !e.expired(now) {
                w.key(k, &e.val, e.exp);
            }
        }
        w.finish()
    }

    /// A copy of every live entry, for encoding off the lock (BGSAVE, AOF rewrite).
    pub fn clone_entries(&self, now: u64) -> Vec<(Vec<u8>, Entry)> {
        self.map
            .iter()
            .filter(|(_, e)| !e.expired(now))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }
}

/// One SCAN page over any set of distinct names (keys, fields, members): the
/// about `count` names whose cursor hash is >= `cursor`, in hash order (all
/// names sharing the last hash included, so none is skipped), and the next
/// cursor (0 = done). Names present for the whole scan are returned at least once.
pub fn scan_page<'a, I>(names: I, cursor: u64, count: usize) -> (u64, Vec<&'a [u8]>)
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let count = count.max(1);
    // Max-heap of the `count` smallest hashes >= cursor.
    let mut heap: BinaryHeap<(u64, &[u8])> = BinaryHeap::with_capacity(count.min(1024) + 1);
    for k in names.clone() {
        let h = scan_hash(k);
        if h < cursor {
            continue;
        }
        if heap.len() < count {
            heap.push((h, k));
        } else if let Some(top) = heap.peek() {
            if h < top.0 {
                heap.pop();
                heap.push((h, k));
            }
        }
    }
    let mut page = heap.into_vec();
    page.sort_unstable();
    let next = match page.last() {
        Some(&(last, _)) if page.len() == count => {
            // Include every other key with the same hash as the last one.
            for k in names.clone() {
                let h = scan_hash(k);
                if h == last && !page.iter().any(|(_, p)| *p == k) {
                    page.push((h, k));
                }
            }
            last.checked_add(1).unwrap_or(0)
        }
        _ => 0,
    };
    (next, page.into_iter().map(|(_, k)| k).collect())
}

/// Redis's glob (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\\x`.
/// Iterative with backtracking to the last `*` only, so O(pattern x string) at worst.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if p.get(pi) == Some(&b'*') {
            pi += 1;
            star = Some((pi, si));
            continue;
        }
        if let Some(next) = match_one(p, pi, s[si]) {
            pi = next;
            si += 1;
            continue;
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Matches the pattern token at `pi` against one byte; returns the next token's index.
fn match_one(p: &[u8], pi: usize, ch: u8) -> Option<usize> {
    match *p.get(pi)? {
        b'?' => Some(pi + 1),
        b'\\' if pi + 1 < p.len() => (p[pi + 1] == ch).then_some(pi + 2),
        b'[' => {
            let mut i = pi + 1;
            let not = p.get(i) == Some(&b'^');
            if not {
                i += 1;
            }
            let mut matched = false;
            loop {
                match p.get(i) {
                    // Unterminated class: Redis treats the end as closing it.
                    None => break,
                    Some(b'\\') if i + 1 < p.len() => {
                        i += 1;
                        matched |= p[i] == ch;
                    }
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(&lo) if p.get(i + 1) == Some(&b'-') && i + 2 < p.len() => {
                        let hi = p[i + 2];
                        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                        matched |= ch >= a && ch <= b;
                        i += 2;
                    }
                    Some(&x) => matched |= x == ch,
                }
                i += 1;
            }
            (matched != not).then_some(i)
        }
        c => (c == ch).then_some(pi + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob(b"*", b""));
        assert!(glob(b"h?llo", b"hello"));
        assert!(glob(b"h*llo", b"heeeello"));
        assert!(glob(b"h[ae]llo", b"hallo"));
        assert!(!glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-b]llo", b"hbllo"));
        assert!(glob(b"a\\*", b"a*"));
        assert!(!glob(b"a\\*", b"ab"));
        assert!(!glob(b"a*b", b"acc"));
        assert!(glob(b"user:*:name", b"user:42:name"));
        assert!(glob(b"[abc", b"b"));
        assert!(glob(
            b"*a*a*a*a*a*a*a*a*b",
            &[b'a'; 40 + 1][..]
                .iter()
                .chain(b"b")
                .copied()
                .collect::<Vec<u8>>()
        ));
        assert!(!glob(b"*a*a*a*a*a*a*a*a*b", &[b'a'; 4000]));
    }

    #[test]
    fn memory_and_expiry_index() {
        let mut db = Db::default();
        db.set(b"a", b"12345", Some(100));
        db.set(b"b", b"x", None);
        assert_eq!(db.used(), 2 * ENTRY_OVERHEAD + 1 + 5 + 1 + 1);
        assert_eq!(db.expires_len(), 1);
        db.set(b"a", b"1", None); // keeps the TTL
        assert_eq!(db.peek(b"a").unwrap().exp, 100);
        db.set(b"a", b"1", Some(0)); // clears it
        assert_eq!(db.expires_len(), 0);
        db.set_expiry(b"b", 50);
        assert_eq!(db.pop_expired(49, 10), Vec::<Vec<u8>>::new());
        assert_eq!(db.pop_expired(50, 10), vec![b"b".to_vec()]);
        assert_eq!(db.len(), 1);
        db.remove(b"a");
        assert_eq!(db.used(), 0);
    }

    #[test]
    fn scan_visits_every_key_once() {
        let mut db = Db::default();
        for i in 0..1000 {
            db.set(format!("k{i}").as_bytes(), b"v", None);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = db.scan(cursor, 7, None, 0);
            for k in keys {
                assert!(seen.insert(k.to_vec()), "duplicate");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn rdb_skips_expired_keys() {
        let mut db = Db::default();
        db.set(b"k", b"v", Some(5000));
        db.set(b"gone", b"v", Some(10));
        let file = db.to_rdb(100, &super::super::rdb::Aux::default());
        let mut got = Vec::new();
        super::super::rdb::decode(&file, u64::MAX, |_, k, _, e| got.push((k, e))).unwrap();
        assert_eq!(got, vec![(b"k".to_vec(), 5000)]);
    }
}
