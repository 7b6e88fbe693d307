//! Per-client-address abuse limits (`limit conn|rate|http-req-rate`): a sharded, bounded table of counters with expiry.
//!
//! HAProxy's stick tables, simplified. One `Table` per frontend, kept across reloads by
//! frontend name. Each client address (IPv4 stored v4-mapped) has one `Entry`: open
//! connections and two sliding-window rates (accepted connections, accepted requests) over one-second
//! periods, estimated like HAProxy's `freq_ctr`: `prev * (1 - elapsed) + curr`.
//!
//! Memory is bounded: each of `SHARDS` shards holds at most `capacity / SHARDS` entries.
//! An entry with no open connection whose windows are both over (two seconds idle) carries
//! no information and is dropped first; if the shard is still full, the least recently seen
//! idle entry goes; if every entry has open connections, the new address is not tracked
//! (it passes, counted in `untracked`): fail open rather than refuse strangers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::conf::ClientLimits;

/// Shards: a lock per shard keeps threads from contending on one mutex.
pub const SHARDS: usize = 64;
/// The rate period in milliseconds (limits are per second).
const PERIOD_MS: u64 = 1000;
/// `Retry-After` of a 429: by then the current window is over and the rate has decayed.
pub const RETRY_AFTER_SECS: u32 = 1;

type Key = [u8; 16];

/// Counters of one client address. Windows are whole seconds since the table's epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    conns: u32,
    /// The current window (also: when the address was last seen).
    win: u32,
    conn_prev: u32,
    conn_curr: u32,
    req_prev: u32,
    req_curr: u32,
}

impl Entry {
    /// Moves the windows forward to `now`.
    fn roll(&mut self, now: u32) {
        if now == self.win {
            return;
        }
        if now == self.win.wrapping_add(1) {
            self.conn_prev = self.conn_curr;
            self.req_prev = self.req_curr;
        } else {
            self.conn_prev = 0;
            self.req_prev = 0;
        }
        self.conn_curr = 0;
        self.req_curr = 0;
        self.win = now;
    }

    /// Nothing to remember: no open connection and both windows over.
    fn expired(&self, now: u32) -> bool {
        self.conns == 0 && now.wrapping_sub(self.win) >= 2
    }
}

/// Events per period, counting the previous window's part that still overlaps it.
fn rate(prev: u32, curr: u32, frac_ms: u64) -> u64 {
    u64::from(prev) * (PERIOD_MS - frac_ms) / PERIOD_MS + u64::from(curr)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many concurrent connections from this address (limit conn {0})")]
    Conn(u32),
    #[error("too many new connections per second from this address (limit rate {0}/s)")]
    Rate(u32),
}

struct Shard {
    map: HashMap<Key, Entry>,
}

/// The per-address table of one frontend.
pub struct Table {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    epoch: Instant,
    seed: u64,
    /// Addresses that found their shard full of entries with open connections.
    pub untracked: AtomicU64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

fn key_of(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Table {
    /// A table for at most `capacity` addresses (rounded up to a multiple of `SHARDS`).
    pub fn new(capacity: usize) -> Table {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                })
            })
            .collect();
        // A per-table seed, so nobody can aim many addresses at one shard.
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(0);
            h.finish() | 1
        };
        Table {
            shards,
            per_shard,
            epoch: Instant::now(),
            seed,
            untracked: AtomicU64::new(0),
        }
    }

    /// The capacity `Table::new(capacity)` ends up with.
    pub fn new_capacity(capacity: usize) -> usize {
        capacity.div_ceil(SHARDS).max(1) * SHARDS
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Addresses currently tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the tables' buckets now (entries, keys and control bytes; the
    /// hash map allocates buckets in powers of two with 1/8 kept free).
    pub fn memory_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(Key, Entry)>() + 1;
        let shards = self
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .map_or(0, |s| bucket_count(s.map.capacity()) * bucket)
            })
            .sum::<usize>();
        shards + std::mem::size_of::<Table>() + SHARDS * std::mem::size_of::<Mutex<Shard>>()
    }

    /// The most `memory_bytes` can reach: a shard's map is shrunk back when evictions
    /// have let it grow past twice its entry bound, and one growth doubles it.
    pub fn max_memory_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(Key, Entry)>() + 1;
        SHARDS * bucket_count(4 * self.per_shard) * bucket
            + std::mem::size_of::<Table>()
            + SHARDS * std::mem::size_of::<Mutex<Shard>>()
    }

    fn shard(&self, k: &Key) -> &Mutex<Shard> {
        let a = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        let b = u64::from_le_bytes([k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15]]);
        let h =
            (a ^ b.rotate_left(29)).wrapping_mul(self.seed) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// (window, milliseconds into it) now.
    fn now(&self) -> (u32, u64) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        ((ms / PERIOD_MS) as u32, ms % PERIOD_MS)
    }

    /// Runs `f` on the entry of `k`, creating it if there is room. `None`: not tracked.
    fn with<R>(&self, k: Key, now: u32, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut shard = match self.shard(&k).lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let map = &mut shard.map;
        if !map.contains_key(&k) && map.len() >= self.per_shard {
            map.retain(|_, e| !e.expired(now));
            // Evictions leave tombstones that make the map grow on insert: keep it near its bound.
            if map.capacity() > 2 * self.per_shard {
                map.shrink_to(self.per_shard);
            }
            if map.len() >= self.per_shard {
                let oldest = map
                    .iter()
                    .filter(|(_, e)| e.conns == 0)
                    .max_by_key(|(_, e)| now.wrapping_sub(e.win))
                    .map(|(k, _)| *k);
                match oldest {
                    Some(o) => {
                        map.remove(&o);
                    }
                    None => {
                        self.untracked.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        }
        let e = map.entry(k).or_insert(Entry {
            win: now,
            ..Entry::default()
        });
        e.roll(now);
        Some(f(e))
    }

    /// A new connection from `ip`: refused if it would go over `limit conn` or `limit rate`,
    /// else counted. The guard gives the connection back when dropped.
    pub fn open(self: &Arc<Self>, ip: IpAddr, lim: &ClientLimits) -> Result<ConnGuard, Refused> {
        let k = key_of(ip);
        let (now, frac) = self.now();
        // Only accepted connections count: a refused client is served again as soon as
        // its accepted rate allows, however fast it retries.
        let verdict = self.with(k, now, |e| {
            if let Some(max) = lim.rate {
                if rate(e.conn_prev, e.conn_curr, frac) + 1 > u64::from(max) {
                    return Err(Refused::Rate(max));
                }
            }
            if let Some(max) = lim.conn {
                if e.conns >= max {
                    return Err(Refused::Conn(max));
                }
            }
            e.conn_curr = e.conn_curr.saturating_add(1);
            e.conns += 1;
            Ok(())
        });
        match verdict {
            Some(Err(r)) => Err(r),
            Some(Ok(())) => Ok(ConnGuard {
                table: self.clone(),
                key: k,
                tracked: true,
            }),
            None => Ok(ConnGuard {
                table: self.clone(),
                key: k,
                tracked: false,
            }),
        }
    }

    /// A new request from `ip`: false (not counted) when it would go over `limit http-req-rate`.
    pub fn request(&self, ip: IpAddr, lim: &ClientLimits) -> bool {
        let Some(max) = lim.http_req_rate else {
            return true;
        };
        let (now, frac) = self.now();
        self.with(key_of(ip), now, |e| {
            let ok = rate(e.req_prev, e.req_curr, frac) < u64::from(max);
            if ok {
                e.req_curr = e.req_curr.saturating_add(1);
            }
            ok
        })
        .unwrap_or(true)
    }

    fn close(&self, k: &Key) {
        let mut shard = match self.shard(k).lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        // Entries with open connections are never evicted, so it is there.
        if let Some(e) = shard.map.get_mut(k) {
            e.conns = e.conns.saturating_sub(1);
        }
    }
}

/// Buckets a hash map of this capacity holds (hashbrown: 7/8 load, powers of two).
fn bucket_count(cap: usize) -> usize {
    match cap {
        0 => 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (cap * 8 / 7).next_power_of_two(),
    }
}

/// One open connection of a tracked address; dropping it gives the slot back.
pub struct ConnGuard {
    table: Arc<Table>,
    key: Key,
    tracked: bool,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.tracked {
            self.table.close(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn lim(conn: Option<u32>, rate: Option<u32>, req: Option<u32>) -> ClientLimits {
        ClientLimits {
            conn,
            rate,
            http_req_rate: req,
            table_size: 1024,
        }
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn concurrent_connections_are_capped_and_given_back() {
        let t = Arc::new(Table::new(1024));
        let l = lim(Some(2), None, None);
        let a = t.open(v4(1), &l).unwrap();
        let _b = t.open(v4(1), &l).unwrap();
        assert_eq!(t.open(v4(1), &l).err(), Some(Refused::Conn(2)));
        // another address, and the v4-mapped v6 form of the same one
        assert!(t.open(v4(2), &l).is_ok());
        let mapped = IpAddr::V6(Ipv4Addr::from(1).to_ipv6_mapped());
        assert!(t.open(mapped, &l).is_err());
        drop(a);
        assert!(t.open(v4(1), &l).is_ok());
    }

    #[test]
    fn rates_slide_over_one_second() {
        let mut e = Entry {
            conn_curr: 10,
            ..Entry::default()
        };
        e.roll(1);
        assert_eq!((e.conn_prev, e.conn_curr), (10, 0));
        assert_eq!(rate(e.conn_prev, e.conn_curr, 0), 10);
        assert_eq!(rate(e.conn_prev, e.conn_curr, 500), 5);
        assert_eq!(rate(e.conn_prev, e.conn_curr, 999), 0);
        e.roll(3);
        assert_eq!((e.conn_prev, e.conn_curr), (0, 0));
        assert!(e.expired(5) && !e.expired(4));
    }

    #[test]
    fn connection_and_request_rates_are_limited() {
        let t = Arc::new(Table::new(1024));
        let l = lim(None, Some(3), Some(5));
        let ip: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        // within one window (a window change mid-test only lowers the count, so allow one)
        let ok = (0..10).filter(|_| t.open(ip, &l).is_ok()).count();
        assert!((3..=6).contains(&ok), "{ok}");
        let ok = (0..20).filter(|_| t.request(ip, &l)).count();
        assert!((5..=10).contains(&ok), "{ok}");
        assert!(t.request(v4(9), &l));
        assert!(t.request(ip, &lim(None, None, None)));
    }

    #[test]
    fn table_stays_bounded_under_100k_addresses() {
        let cap = 10_000;
        let t = Arc::new(Table::new(cap));
        let l = lim(None, Some(100), Some(100));
        // every address opens and closes a connection and sends a request
        for n in 0..100_000u32 {
            let ip = v4(0x0a00_0000 + n);
            drop(t.open(ip, &l).unwrap());
            assert!(t.request(ip, &l));
        }
        assert!(t.len() <= t.capacity(), "{} > {}", t.len(), t.capacity());
        assert!(
            t.len() >= cap / 2,
            "table should be mostly full: {}",
            t.len()
        );
        let mem = t.memory_bytes();
        let per_entry = mem as f64 / t.capacity() as f64;
        eprintln!(
            "limit table: capacity {}, {} entries, {mem} bytes ({per_entry:.1} bytes/entry of capacity, entry {} bytes)",
            t.capacity(),
            t.len(),
            std::mem::size_of::<(Key, Entry)>()
        );
        // bounded by the capacity, not by the 100k addresses seen
        assert!(
            mem <= t.max_memory_bytes(),
            "{mem} > {}",
            t.max_memory_bytes()
        );
        // a 100k-entry table filled with 100k addresses
        let big = Arc::new(Table::new(100_000));
        for n in 0..100_000u32 {
            drop(big.open(v4(n), &l).unwrap());
        }
        let mem = big.memory_bytes();
        eprintln!(
            "limit table: capacity {}, {} entries, {mem} bytes ({:.1} bytes/entry)",
            big.capacity(),
            big.len(),
            mem as f64 / big.len() as f64
        );
        assert!(mem <= big.max_memory_bytes());
        eprintln!(
            "limit table bound: capacity 10k {} bytes, 100k {} bytes",
            t.max_memory_bytes(),
            big.max_memory_bytes()
        );
    }

    #[test]
    fn full_shards_of_open_connections_leave_new_addresses_untracked() {
        let t = Arc::new(Table::new(SHARDS));
        let l = lim(Some(1), None, None);
        let mut held = Vec::new();
        for n in 0..10_000u32 {
            if let Ok(g) = t.open(v4(n), &l) {
                held.push(g);
            }
        }
        assert!(t.len() <= t.capacity());
        assert!(t.untracked.load(Ordering::Relaxed) > 0);
        // untracked addresses pass; the table never grew past its bound
        assert_eq!(held.len(), 10_000);
        drop(held);
        assert!(t.open(v4(1), &l).is_ok());
    }
}
