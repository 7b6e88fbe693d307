//! The numbered databases (`databases`, 16 by default). `State::db` is the
//! database a command works on: a connection's selected one is swapped in for
//! its commands and database 0 swapped back before the lock is released, so
//! every other path (expiry, saves, INFO) finds database 0 there and reaches
//! the others through `db_at`. Also SWAPDB, MOVE, FLUSHALL, and the
//! whole-keyspace views (RDB, AOF rewrite, keyspace INFO) over all of them.

use super::command::{Ctx, ERR_NOT_INT};
use super::db::{Db, Entry};
use super::frame::{parse_i64, reply, Argv};
use super::State;

/// One database's number and a copy of its live entries (BGSAVE, AOF rewrite).
pub type DbEntries = (usize, Vec<(Vec<u8>, Entry)>);

pub const ERR_DB_RANGE: &str = "ERR DB index is out of range";

impl State {
    pub fn databases(&self) -> usize {
        self.others.len() + 1
    }

    /// Makes database `i` the one in `self.db` (out of range: no change).
    pub fn select(&mut self, i: usize) {
        if i == self.cur || i >= self.databases() {
            return;
        }
        if self.cur != 0 {
            std::mem::swap(&mut self.db, &mut self.others[self.cur - 1]);
        }
        if i != 0 {
            std::mem::swap(&mut self.db, &mut self.others[i - 1]);
        }
        self.cur = i;
    }

    /// The database numbered `i`, wherever the swap put it.
    pub fn db_at(&mut self, i: usize) -> &mut Db {
        if i == self.cur {
            &mut self.db
        } else if i == 0 {
            &mut self.others[self.cur - 1]
        } else {
            &mut self.others[i - 1]
        }
    }

    pub fn db_ref(&self, i: usize) -> &Db {
        if i == self.cur {
            &self.db
        } else if i == 0 {
            &self.others[self.cur - 1]
        } else {
            &self.others[i - 1]
        }
    }

    /// Bytes charged across every database (maxmemory, INFO).
    pub fn used(&self) -> u64 {
        (0..self.databases()).map(|i| self.db_ref(i).used()).sum()
    }

    /// Keys across every database.
    pub fn keys_total(&self) -> usize {
        (0..self.databases()).map(|i| self.db_ref(i).len()).sum()
    }

    /// Every live entry of every non-empty database, for encoding off the lock.
    pub fn clone_all(&self, now: u64) -> Vec<DbEntries> {
        (0..self.databases())
            .filter(|&i| !self.db_ref(i).is_empty())
            .map(|i| (i, self.db_ref(i).clone_entries(now)))
            .collect()
    }

    /// The whole keyspace as an RDB file (full sync, SAVE, DEBUG RELOAD).
    pub fn to_rdb(&self, now: u64, aux: &super::rdb::Aux) -> Vec<u8> {
        let mut w = super::rdb::Writer::new(self.used(), aux);
        for i in 0..self.databases() {
            let db = self.db_ref(i);
            if db.is_empty() {
                continue;
            }
            w.select_db(i as u64, db.len() as u64, db.expires_len() as u64);
            for (k, e) in db.entries() {
                if !e.expired(now) {
                    w.key(k, &e.val, e.exp);
                }
            }
        }
        w.finish()
    }

    /// Replaces every database (full sync, load), keeping each one's watchers.
    pub fn replace_all(&mut self, dbs: Vec<Db>) {
        let cur = self.cur;
        self.select(0);
        for (i, db) in dbs.into_iter().enumerate().take(self.databases()) {
            self.db_at(i).replace_with(db);
        }
        self.select(cur);
    }

    /// FLUSHALL: every database emptied.
    pub fn clear_all(&mut self) {
        for i in 0..self.databases() {
            self.db_at(i).clear();
        }
    }

    /// Keyspace INFO lines, one per non-empty database.
    pub fn keyspace_info(&self) -> String {
        let mut t = String::new();
        for i in 0..self.databases() {
            let db = self.db_ref(i);
            if !db.is_empty() {
                t.push_str(&format!(
                    "db{i}:keys={},expires={},avg_ttl=0\r\n",
                    db.len(),
                    db.expires_len()
                ));
            }
        }
        t
    }
}

/// A database index argument: Some(i) if valid, else Redis's error replied.
pub fn db_index(c: &mut Ctx, s: &[u8]) -> Option<usize> {
    match parse_i64(s) {
        None => {
            c.err(ERR_NOT_INT);
            None
        }
        Some(n) if n < 0 || n as usize >= c.st.databases() => {
            c.err(ERR_DB_RANGE);
            None
        }
        Some(n) => Some(n as usize),
    }
}

/// SWAPDB a b: the two databases' contents trade places; their watchers stay
/// and count every watched key as modified, as in Redis.
pub fn swapdb(c: &mut Ctx, a: Argv) {
    let n = c.st.databases() as i64;
    let Some(x) = parse_i64(a.get(1)) else {
        return c.err("ERR invalid first DB index");
    };
    let Some(y) = parse_i64(a.get(2)) else {
        return c.err("ERR invalid second DB index");
    };
    if !(0..n).contains(&x) || !(0..n).contains(&y) {
        return c.err(ERR_DB_RANGE);
    }
    let (x, y) = (x as usize, y as usize);
    if x != y {
        // y's data and watchers out; x trades data with them (watchers stay); back into y.
        let mut other = std::mem::take(c.st.db_at(y));
        c.st.db_at(x).swap_contents(&mut other);
        *c.st.db_at(y) = other;
    }
    super::typed::propagate_argv(c, a);
    reply::ok(c.out);
}

/// MOVE key db: the key (with its TTL) to another database if absent there.
pub fn move_key(c: &mut Ctx, a: Argv) {
    let k = a.get(1);
    let Some(to) = parse_i64(a.get(2)) else {
        return c.err(ERR_NOT_INT);
    };
    if to < 0 || to as usize >= c.st.databases() {
        return c.err(ERR_DB_RANGE);
    }
    let to = to as usize;
    if to == c.st.cur {
        return c.err("ERR source and destination objects are the same");
    }
    if !c.exists(k) {
        return reply::int(c.out, 0);
    }
    let now = c.now;
    if c.st.db_at(to).peek(k).is_some_and(|e| !e.expired(now)) {
        return reply::int(c.out, 0);
    }
    let Some(e) = c.st.db.remove(k) else {
        return reply::int(c.out, 0);
    };
    c.st.db_at(to).insert(k, e.val, e.exp);
    super::typed::propagate_argv(c, a);
    reply::int(c.out, 1);
}
