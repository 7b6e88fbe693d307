//! Servers, their state and counters, and the `Pool` that picks one per connection or request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::conf::{Backend, ServerConf};

/// Administrative/health state of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Takes new traffic.
    Up = 0,
    /// Failed its health checks.
    Down = 1,
    /// No new traffic; existing connections finish.
    Drain = 2,
    /// Administratively off (`disabled`).
    Maint = 3,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Up,
            1 => State::Down,
            2 => State::Drain,
            _ => State::Maint,
        }
    }
}

/// One upstream server. Counters are atomics so the request path never locks.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// Idle keep-alive connections kept per worker thread (HTTP).
    pub pool_max_conn: usize,
    /// How long an idle connection is kept (HTTP).
    pub pool_purge_delay: std::time::Duration,
    state: AtomicU8,
    /// Connections (TCP) or requests (HTTP) in flight to this server.
    pub inflight: AtomicUsize,
    pub total: AtomicU64,
    pub connect_errors: AtomicU64,
}

impl Server {
    pub fn new(c: &ServerConf) -> Server {
        Server {
            name: c.name.clone(),
            addr: c.addr,
            weight: c.opts.weight,
            backup: c.opts.backup,
            pool_max_conn: c.opts.pool_max_conn,
            pool_purge_delay: c.opts.pool_purge_delay,
            state: AtomicU8::new(if c.opts.disabled {
                State::Maint as u8
            } else {
                State::Up as u8
            }),
            inflight: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: State) {
        if self.state.swap(s as u8, Ordering::Relaxed) != s as u8 {
            // Every pool rebuilds its schedule on its next pick.
            STATE_EPOCH.fetch_add(1, Ordering::Release);
        }
    }

    /// Marks one more in-flight use; the guard undoes it on drop.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Counts a use of a server while alive.
#[derive(Debug)]
pub struct InFlight(pub Arc<Server>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bumped whenever any server changes state; schedules older than it are rebuilt.
static STATE_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The servers of one backend with their round-robin schedule.
#[derive(Debug)]
pub struct Pool {
    pub servers: Vec<Arc<Server>>,
    sched: ArcSwap<Schedule>,
    cursor: AtomicUsize,
}

/// Smooth weighted round-robin order over the servers that can take traffic
/// now (indexes into `Pool::servers`), as of one state epoch.
#[derive(Debug, Default)]
struct Schedule {
    epoch: u64,
    order: Vec<u32>,
}

impl Pool {
    pub fn new(b: &Backend) -> Pool {
        let servers = b.servers.iter().map(|s| Arc::new(Server::new(s))).collect();
        Pool {
            servers,
            sched: ArcSwap::from_pointee(Schedule::default()),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next server to use. Only servers that are up take traffic; backups
    /// only when no active server is up (then the first backup that is up).
    /// `None` when nothing can take traffic.
    pub fn pick(&self) -> Option<&Arc<Server>> {
        let epoch = STATE_EPOCH.load(Ordering::Acquire);
        let mut sched = self.sched.load();
        if sched.epoch != epoch {
            self.sched.store(Arc::new(self.schedule(epoch)));
            sched = self.sched.load();
        }
        if sched.order.is_empty() {
            return None;
        }
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        let idx = sched.order[n % sched.order.len()] as usize;
        Some(&self.servers[idx])
    }

    fn schedule(&self, epoch: u64) -> Schedule {
        let up = |backup: bool| {
            self.servers
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.backup == backup && s.state() == State::Up && s.weight > 0)
                .map(|(i, s)| (i as u32, s.weight))
        };
        let mut members: Vec<(u32, u32)> = up(false).collect();
        if members.is_empty() {
            members = up(true).take(1).collect();
        }
        Schedule {
            epoch,
            order: smooth_schedule(&members),
        }
    }
}

/// nginx's smooth weighted round robin, unrolled into one period: weights 5,1,1
/// give a a b a c a a. Precomputing the order lets `pick` be one atomic add.
pub fn smooth_schedule(members: &[(u32, u32)]) -> Vec<u32> {
    let total: u64 = members.iter().map(|m| u64::from(m.1)).sum();
    let mut current: Vec<i64> = vec![0; members.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, m) in members.iter().enumerate() {
            current[i] += i64::from(m.1);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        out.push(members[best].0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse_conf;

    fn pool(servers: &str) -> Pool {
        let c = parse_conf("t", &format!("backend b\n{servers}")).unwrap();
        Pool::new(&c.backends[0])
    }

    fn names(p: &Pool, n: usize) -> String {
        (0..n)
            .map(|_| p.pick().map(|s| s.name.clone()).unwrap_or("-".into()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn smooth_weights() {
        let p = pool("    server a 127.0.0.1:1 weight 5\n    server b 127.0.0.1:2\n    server c 127.0.0.1:3\n");
        assert_eq!(names(&p, 7), "a a b a c a a");
    }

    #[test]
    fn plain_round_robin_and_skip_down() {
        let p =
            pool("    server a 127.0.0.1:1\n    server b 127.0.0.1:2\n    server c 127.0.0.1:3\n");
        assert_eq!(names(&p, 4), "a b c a");
        p.servers[1].set_state(State::Down);
        assert_eq!(names(&p, 4), "a c a c");
        p.servers[1].set_state(State::Up);
        let seq = names(&p, 3);
        assert!(
            seq.contains('b') && seq.contains('a') && seq.contains('c'),
            "{seq}"
        );
    }

    #[test]
    fn backup_only_when_no_active_is_up() {
        let p = pool("    server a 127.0.0.1:1\n    server k 127.0.0.1:2 backup\n");
        assert_eq!(names(&p, 2), "a a");
        p.servers[0].set_state(State::Down);
        assert_eq!(names(&p, 2), "k k");
        p.servers[0].set_state(State::Up);
        assert_eq!(names(&p, 2), "a a");
        p.servers[0].set_state(State::Down);
        p.servers[1].set_state(State::Maint);
        assert_eq!(names(&p, 1), "-");
    }

    #[test]
    fn disabled_and_zero_weight_take_nothing() {
        let p = pool("    server a 127.0.0.1:1 disabled\n    server b 127.0.0.1:2\n    server z 127.0.0.1:3 weight 0\n");
        assert_eq!(names(&p, 3), "b b b");
    }
}
