//! Idle keep-alive server connections, pooled per worker thread, server address
//! and TLS identity.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::io::Io;

struct Idle {
    sock: Io,
    since: Instant,
    until: Instant,
}

/// A connection idle for less than this is trusted without a probe: a server
/// closing it in that window is rare, and idempotent requests are retried on a
/// fresh connection if it happens. Saves one syscall per request under load.
const TRUST_IDLE: Duration = Duration::from_millis(500);

/// Which idle connections a request may take: the server's address and, for a
/// TLS server, its connector's identity (verification, CA, SNI), so a
/// connection made for one SNI or with verification off never serves a server
/// configured otherwise at the same address.
pub type Key = (SocketAddr, Option<u64>);

#[derive(Default)]
struct Pools {
    idle: HashMap<Key, VecDeque<Idle>, KeyHasher>,
    sweeper: bool,
}

/// A multiply-and-rotate hash for pool keys: they are server addresses from
/// the conf and TLS identities (keyed hashes, even for the names clients
/// choose under `sni req.hdr(host)`), which clients cannot aim at one bucket,
/// so SipHash's resistance to chosen keys buys nothing here, and it costs on
/// every proxied request (a lookup in `take` and one in `put`).
#[derive(Default, Clone, Copy)]
struct KeyHasher;

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = FastHash;
    fn build_hasher(&self) -> FastHash {
        FastHash(0)
    }
}

struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(n.into());
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(n.into());
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

thread_local! {
    // Per thread: a connection belongs to the reactor of the worker that made
    // it, and a thread-local pool needs no lock on the request path.
    static POOLS: RefCell<Pools> = RefCell::new(Pools::default());
}

/// How often idle connections past their delay are closed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// An idle connection for `key` that is still open, newest first. Connections
/// past their idle delay, closed by the server, or with unexpected bytes
/// waiting are dropped on the way. `careful` (a request that cannot be
/// retried) probes every connection; otherwise only those idle a while.
pub fn take(key: Key, careful: bool) -> Option<Io> {
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        let q = p.idle.get_mut(&key)?;
        while let Some(c) = q.pop_back() {
            let now = crate::clock::now();
            if c.until <= now {
                continue;
            }
            if !careful && now.duration_since(c.since) < TRUST_IDLE {
                return Some(c.sock);
            }
            // EOF, stray bytes or an error: not reusable.
            if c.sock.idle_and_open() {
                return Some(c.sock);
            }
        }
        None
    })
}

/// Returns a connection to the pool (dropped if the pool for `key` is full, or
/// if the process is draining).
pub fn put(key: Key, sock: Io, max: usize, max_idle: Duration) {
    if max == 0 || crate::shutdown::draining() {
        return;
    }
    let spawn_sweeper = POOLS.with(|p| {
        let mut p = p.borrow_mut();
        let q = p.idle.entry(key).or_default();
        if q.len() >= max {
            q.pop_front();
        }
        let now = crate::clock::now();
        q.push_back(Idle {
            sock,
            since: now,
            until: now + max_idle,
        });
        !std::mem::replace(&mut p.sweeper, true)
    });
    if spawn_sweeper {
        tokio::spawn(sweep());
    }
}

/// Closes idle connections past their delay, and all of them as soon as the
/// drain starts (a server that counts them open, such as lb's own web and app
/// services, would otherwise hold the drain for `pool-purge-delay`); one task
/// per worker thread.
async fn sweep() {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::shutdown::drain_started(), if !crate::shutdown::draining() => {}
        }
        let now = Instant::now();
        let all = crate::shutdown::draining();
        POOLS.with(|p| {
            let mut p = p.borrow_mut();
            for q in p.idle.values_mut() {
                q.retain(|c| !all && c.until > now);
            }
            p.idle.retain(|_, q| !q.is_empty());
        });
    }
}

/// Idle connections held by this thread for `key` (tests and metrics).
pub fn idle_count(key: Key) -> usize {
    POOLS.with(|p| p.borrow().idle.get(&key).map_or(0, VecDeque::len))
}
