//! Stick tables (`stick-table type ip size N expire T store ...`): per-key
//! counters that `track-scN` feeds and the `sc_*`/`src_*` fetches read.
//! Bounded: a table never holds more than `size` entries (the least recently
//! used is dropped for a new key), and entries idle past `expire` go.
//! Tables are kept across reloads by proxy name while their definition stays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::conf::sample::TableData;
use crate::conf::StickTableConf;

/// Shards: requests of different keys rarely wait on one another.
const SHARDS: usize = 16;

/// A rate over a period, as HAProxy's freq counters: the count of the
/// current period plus the previous one's, weighted by what is left of it.
#[derive(Debug, Clone, Copy, Default)]
struct Freq {
    start: Option<Instant>,
    cur: u32,
    prev: u32,
}

impl Freq {
    fn roll(&mut self, now: Instant, period: Duration) {
        let Some(start) = self.start else {
            self.start = Some(now);
            return;
        };
        let el = now.saturating_duration_since(start);
        if el >= period * 2 {
            (self.prev, self.cur, self.start) = (0, 0, Some(now));
        } else if el >= period {
            (self.prev, self.cur, self.start) = (self.cur, 0, Some(start + period));
        }
    }

    fn add(&mut self, now: Instant, period: Duration, n: u32) {
        self.roll(now, period);
        self.cur = self.cur.saturating_add(n);
    }

    fn read(&mut self, now: Instant, period: Duration) -> u64 {
        self.roll(now, period);
        let Some(start) = self.start else { return 0 };
        let el = now.saturating_duration_since(start).as_millis() as u64;
        let p = period.as_millis().max(1) as u64;
        let left = p.saturating_sub(el);
        u64::from(self.cur) + u64::from(self.prev) * left / p
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    last: Option<Instant>,
    http_req_cnt: u64,
    http_req_rate: Freq,
    http_err_rate: Freq,
    conn_cur: u64,
    conn_cnt: u64,
    conn_rate: Freq,
    gpc0: u64,
    gpc0_rate: Freq,
    gpc1: u64,
}

/// One stick table.
#[derive(Debug)]
pub struct Table {
    pub conf: StickTableConf,
    shards: Vec<Mutex<HashMap<Vec<u8>, Entry>>>,
}

fn shard_of(key: &[u8]) -> usize {
    // FNV-1a: cheap and spreads short keys (addresses) well.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    (h % SHARDS as u64) as usize
}

impl Table {
    pub fn new(conf: StickTableConf) -> Table {
        Table {
            conf,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Entries now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn period(&self, d: TableData) -> Duration {
        self.conf
            .period(d)
            .filter(|p| !p.is_zero())
            .unwrap_or(Duration::from_secs(1))
    }

    /// Runs `f` on the entry of `key`, made if missing (an old one dropped
    /// when the shard is full).
    fn with<T>(&self, key: &[u8], f: impl FnOnce(&mut Entry, Instant) -> T) -> T {
        let now = crate::clock::now();
        let mut m = match self.shards[shard_of(key)].lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let cap = self.conf.size.div_ceil(SHARDS).max(1);
        if !m.contains_key(key) && m.len() >= cap {
            self.evict(&mut m, now);
        }
        let e = m.entry(key.to_vec()).or_default();
        e.last = Some(now);
        f(e, now)
    }

    /// Drops expired entries, else the least recently used one.
    fn evict(&self, m: &mut HashMap<Vec<u8>, Entry>, now: Instant) {
        if let Some(exp) = self.conf.expire {
            m.retain(|_, e| {
                e.conn_cur > 0
                    || e.last
                        .is_some_and(|l| now.saturating_duration_since(l) < exp)
            });
        }
        let cap = self.conf.size.div_ceil(SHARDS).max(1);
        if m.len() >= cap {
            if let Some(k) = m.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone()) {
                m.remove(&k);
            }
        }
    }

    /// A request of `key` starts being tracked: it counts in the request and
    /// connection counters (`conn_cur` until `untrack`).
    pub fn track(&self, key: &[u8]) {
        let (rp, cp) = (
            self.period(TableData::HttpReqRate),
            self.period(TableData::ConnRate),
        );
        self.with(key, |e, now| {
            e.http_req_cnt += 1;
            e.http_req_rate.add(now, rp, 1);
            e.conn_cur += 1;
            e.conn_cnt += 1;
            e.conn_rate.add(now, cp, 1);
        });
    }

    pub fn untrack(&self, key: &[u8]) {
        let i = shard_of(key);
        if let Ok(mut m) = self.shards[i].lock() {
            if let Some(e) = m.get_mut(key) {
                e.conn_cur = e.conn_cur.saturating_sub(1);
            }
        }
    }

    /// A response of status >= 400 to a tracked request (`http_err_rate`).
    pub fn error(&self, key: &[u8]) {
        let p = self.period(TableData::HttpErrRate);
        self.with(key, |e, now| e.http_err_rate.add(now, p, 1));
    }

    /// Reads (or increments, or clears) a counter of `key`'s entry. A key
    /// with no entry reads 0 without making one.
    pub fn query(&self, key: &[u8], d: TableData, op: crate::conf::sample::TableOp) -> i64 {
        use crate::conf::sample::TableOp;
        let exists = self.shards[shard_of(key)]
            .lock()
            .is_ok_and(|m| m.contains_key(key));
        if !exists && op == TableOp::Get {
            return 0;
        }
        let p = self.period(d);
        let gp = self.period(TableData::Gpc0Rate);
        self.with(key, |e, now| {
            let v = match d {
                TableData::HttpReqRate => e.http_req_rate.read(now, p),
                TableData::HttpReqCnt => e.http_req_cnt,
                TableData::HttpErrRate => e.http_err_rate.read(now, p),
                TableData::ConnCur => e.conn_cur,
                TableData::ConnCnt => e.conn_cnt,
                TableData::ConnRate => e.conn_rate.read(now, p),
                TableData::Gpc0Rate => e.gpc0_rate.read(now, p),
                TableData::Gpc0 | TableData::Gpc1 => {
                    let slot = if d == TableData::Gpc0 {
                        &mut e.gpc0
                    } else {
                        &mut e.gpc1
                    };
                    match op {
                        TableOp::Get => *slot,
                        TableOp::Inc => {
                            *slot += 1;
                            if d == TableData::Gpc0 {
                                e.gpc0_rate.add(now, gp, 1);
                            }
                            *slot
                        }
                        TableOp::Clr => std::mem::take(slot),
                    }
                }
            };
            i64::try_from(v).unwrap_or(i64::MAX)
        })
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Table>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<Table>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The table of proxy `name`, made (or remade, when its definition changed)
/// from `conf`; the same one while the definition stays (reloads keep counts).
pub fn table(name: &str, conf: &StickTableConf) -> Arc<Table> {
    let mut r = match registry().lock() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    };
    let mut want = conf.clone();
    want.line = 0;
    if let Some(t) = r.get(name) {
        let mut have = t.conf.clone();
        have.line = 0;
        if have == want {
            return t.clone();
        }
    }
    let t = Arc::new(Table::new(conf.clone()));
    r.insert(name.to_string(), t.clone());
    t
}

/// Makes (or keeps) the table of every proxy of `conf` that has one.
pub fn install(conf: &crate::conf::Conf) {
    for f in &conf.frontends {
        if let Some(t) = &f.hap.stick_table {
            table(&f.name, t);
        }
    }
    for b in &conf.backends {
        if let Some(t) = &b.hap.stick_table {
            table(&b.name, t);
        }
    }
}

/// The table of proxy `name` if one was made.
pub fn lookup(name: &str) -> Option<Arc<Table>> {
    registry().lock().ok()?.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::sample::TableOp;
    use crate::conf::TableKeyType;

    fn conf(size: usize) -> StickTableConf {
        StickTableConf {
            line: 1,
            key: TableKeyType::Ip,
            size,
            expire: Some(Duration::from_secs(30)),
            store: vec![
                (TableData::HttpReqRate, Duration::from_secs(10)),
                (TableData::Gpc0, Duration::ZERO),
            ],
        }
    }

    #[test]
    fn counts_and_stays_bounded() {
        let t = Table::new(conf(32));
        for _ in 0..5 {
            t.track(b"a");
        }
        assert_eq!(t.query(b"a", TableData::HttpReqRate, TableOp::Get), 5);
        assert_eq!(t.query(b"a", TableData::ConnCur, TableOp::Get), 5);
        t.untrack(b"a");
        assert_eq!(t.query(b"a", TableData::ConnCur, TableOp::Get), 4);
        assert_eq!(t.query(b"b", TableData::HttpReqRate, TableOp::Get), 0);
        assert_eq!(t.query(b"a", TableData::Gpc0, TableOp::Inc), 1);
        for i in 0..10_000u32 {
            t.track(&i.to_be_bytes());
        }
        assert!(t.len() <= 32 + SHARDS, "{}", t.len());
    }

    #[test]
    fn rates_decay() {
        let mut f = Freq::default();
        let t0 = Instant::now();
        let p = Duration::from_secs(10);
        f.add(t0, p, 10);
        assert_eq!(f.read(t0, p), 10);
        assert_eq!(f.read(t0 + Duration::from_secs(15), p), 5);
        assert_eq!(f.read(t0 + Duration::from_secs(25), p), 0);
    }
}
