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
    idle: HashMap<Key, VecDeque<Idle>>,
    sweeper: bool,
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

/// Returns a connection to the pool (dropped if the pool for `key` is full).
pub fn put(key: Key, sock: Io, max: usize, max_idle: Duration) {
    if max == 0 {
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

/// Closes idle connections past their delay; one task per worker thread.
async fn sweep() {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let now = Instant::now();
        POOLS.with(|p| {
            let mut p = p.borrow_mut();
            for q in p.idle.values_mut() {
                q.retain(|c| c.until > now);
            }
            p.idle.retain(|_, q| !q.is_empty());
        });
    }
}

/// Idle connections held by this thread for `key` (tests and metrics).
pub fn idle_count(key: Key) -> usize {
    POOLS.with(|p| p.borrow().idle.get(&key).map_or(0, VecDeque::len))
}
