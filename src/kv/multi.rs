//! Transactions: a connection's MULTI queue and WATCHed keys (Redis 7.0 semantics).
//!
//! Commands after MULTI are checked (name, arity, role) and queued with
//! `+QUEUED`; a check failure flags the transaction so EXEC answers EXECABORT.
//! WATCH records each key's modification count (kept by `Db` for watched keys
//! only) and whether it was live; EXEC aborts with a nil array when any count
//! moved or a key that was live has since expired.

use std::ops::Range;

use super::db::Db;
use super::frame::Argv;

/// One queued command, owning its arguments.
#[derive(Debug)]
pub struct Queued {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Queued {
    pub fn new(a: Argv) -> Queued {
        let mut buf = Vec::new();
        let mut ranges = Vec::with_capacity(a.len());
        for arg in a.iter() {
            let s = buf.len();
            buf.extend_from_slice(arg);
            ranges.push(s..buf.len());
        }
        Queued { buf, ranges }
    }

    pub fn argv(&self) -> Argv<'_> {
        Argv {
            buf: &self.buf,
            ranges: &self.ranges,
        }
    }

    pub fn bytes(&self) -> usize {
        self.buf.len()
    }
}

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct Multi {
    pub queued: Vec<Queued>,
    /// A command failed its checks while queueing: EXEC will answer EXECABORT.
    pub failed: bool,
    /// Bytes queued, bounded by `max-query-bytes`.
    pub bytes: usize,
}

/// A connection's WATCHed keys.
#[derive(Debug, Default)]
pub struct Watches {
    keys: Vec<(Vec<u8>, u64, bool)>,
}

impl Watches {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// WATCH key: remembers its modification count and whether it was live.
    pub fn add(&mut self, db: &mut Db, key: &[u8], live: bool) {
        if self.keys.iter().any(|(k, _, _)| k == key) {
            return;
        }
        let v = db.watch(key);
        self.keys.push((key.to_vec(), v, live));
    }

    /// Whether EXEC must abort: a watched key was modified, or expired since WATCH.
    pub fn touched(&self, db: &Db, now: u64) -> bool {
        self.keys.iter().any(|(k, v, live)| {
            db.watch_version(k) != *v || (*live && db.peek(k).is_none_or(|e| e.expired(now)))
        })
    }

    /// UNWATCH (also after EXEC and DISCARD, and when the connection closes).
    pub fn clear(&mut self, db: &mut Db) {
        for (k, _, _) in self.keys.drain(..) {
            db.unwatch(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_key_counts_its_modifications() {
        let mut db = Db::default();
        db.set(b"k", b"1", None);
        let mut w = Watches::default();
        w.add(&mut db, b"k", true);
        w.add(&mut db, b"missing", false);
        assert!(!w.touched(&db, 0));
        db.set(b"other", b"x", None);
        assert!(!w.touched(&db, 0));
        db.set(b"missing", b"x", None);
        assert!(w.touched(&db, 0));
        w.clear(&mut db);
        assert_eq!(db.watch_version(b"missing"), 0);
        // A flush modifies watched keys that existed, not the others.
        let mut w = Watches::default();
        w.add(&mut db, b"nope", false);
        db.clear();
        assert!(!w.touched(&db, 0));
        w.clear(&mut db);
    }

    #[test]
    fn a_watched_key_that_expires_aborts() {
        let mut db = Db::default();
        db.set(b"k", b"1", Some(100));
        let mut w = Watches::default();
        w.add(&mut db, b"k", true);
        assert!(!w.touched(&db, 50));
        assert!(w.touched(&db, 100));
    }
}
