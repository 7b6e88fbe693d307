//! Servers (state and counters that survive reloads) and the `Pool` that picks one per
//! connection or request: round robin, least connections, source hash, random.

pub mod agent;
pub mod grpc_check;
pub mod health;
pub mod resolvers;
pub mod tcp_check;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::conf::{Backend, Balance, ServerConf};

/// What an operator asked of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Admin {
    /// Takes traffic when healthy.
    Ready = 0,
    /// No new traffic; what is in flight finishes.
    Drain = 1,
    /// Administratively off (`disabled`, or `maint` at run time); not checked.
    Maint = 2,
}

/// What health checks say of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Up = 0,
    Down = 1,
    /// Checks are on and none has finished yet: no traffic until one passes.
    Unchecked = 2,
}

/// The state shown to people: UP, DOWN, DRAIN, MAINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
    Drain,
    Maint,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "UP",
            State::Down => "DOWN",
            State::Drain => "DRAIN",
            State::Maint => "MAINT",
        }
    }
}

/// Bumped whenever any server's eligibility or weight changes; schedules older
/// than it are rebuilt on their next pick.
static STATE_EPOCH: AtomicU64 = AtomicU64::new(1);

fn bump_epoch() {
    STATE_EPOCH.fetch_add(1, Ordering::Release);
}

/// One upstream server. Everything that may change at run time is atomic, so a
/// reload updates a kept server in place and the request path never locks.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    /// `backend/server`, for logs.
    pub id: String,
    pub addr: SocketAddr,
    weight: AtomicU32,
    /// The weight was set at run time and survives reloads.
    pub weight_overridden: AtomicBool,
    backup: AtomicBool,
    admin: AtomicU8,
    health: AtomicU8,
    /// Health checks (and passive observation) are on.
    pub checked: AtomicBool,
    /// Passive checks: 0 off, 4 layer4 (connect failures), 7 layer7 (also invalid responses).
    pub observe: AtomicU8,
    pub rise: AtomicU32,
    pub fall: AtomicU32,
    /// Consecutive successes / failures of checks (active and passive).
    successes: AtomicU32,
    failures: AtomicU32,
    /// Idle keep-alive connections kept per worker thread (HTTP).
    pub pool_max_conn: AtomicUsize,
    /// How long an idle connection is kept, in ms (HTTP).
    pool_purge_ms: AtomicU64,
    /// Connections (TCP) or requests (HTTP) in flight to this server.
    pub inflight: AtomicUsize,
    /// Requests waiting for a slot under `maxconn` (HAProxy's queue), and
    /// what wakes them when one frees (`dial::opts::wait_for_slot`).
    pub queued: AtomicUsize,
    pub slot: tokio::sync::Notify,
    pub total: AtomicU64,
    pub connect_errors: AtomicU64,
    pub check_failures: AtomicU64,
    pub transitions: AtomicU64,
    /// Prometheus handles of this `backend/server` (shared by name across reloads).
    pub stats: Arc<crate::stats::ServerStats>,
}

impl Server {
    pub fn new(backend: &str, c: &ServerConf) -> Server {
        let s = Server {
            name: c.name.clone(),
            id: format!("{backend}/{}", c.name),
            addr: c.addr,
            weight: AtomicU32::new(c.opts.weight),
            weight_overridden: AtomicBool::new(false),
            backup: AtomicBool::new(c.opts.backup),
            admin: AtomicU8::new(Admin::Ready as u8),
            health: AtomicU8::new(Health::Up as u8),
            checked: AtomicBool::new(false),
            observe: AtomicU8::new(0),
            rise: AtomicU32::new(c.opts.rise),
            fall: AtomicU32::new(c.opts.fall),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            pool_max_conn: AtomicUsize::new(0),
            pool_purge_ms: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            slot: tokio::sync::Notify::new(),
            total: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            check_failures: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            stats: crate::stats::server(backend, &c.name),
        };
        s.configure(c, true);
        s
    }

    /// Applies (re)loaded settings. `fresh`: a new server (initial states from
    /// the conf); otherwise a kept one, whose health and admin state carry over.
    pub fn configure(&self, c: &ServerConf, fresh: bool) {
        if !self.weight_overridden.load(Ordering::Relaxed) {
            self.weight.store(c.opts.weight, Ordering::Relaxed);
        }
        self.backup.store(c.opts.backup, Ordering::Relaxed);
        self.pool_max_conn
            .store(c.opts.pool_max_conn, Ordering::Relaxed);
        self.pool_purge_ms.store(
            c.opts.pool_purge_delay.as_millis() as u64,
            Ordering::Relaxed,
        );
        self.rise.store(c.opts.rise, Ordering::Relaxed);
        self.fall.store(c.opts.fall, Ordering::Relaxed);
        self.observe.store(c.opts.observe, Ordering::Relaxed);
        let was_checked = self.checked.swap(c.opts.check, Ordering::Relaxed);
        if fresh {
            self.admin.store(
                if c.opts.disabled {
                    Admin::Maint
                } else {
                    Admin::Ready
                } as u8,
                Ordering::Relaxed,
            );
            self.health.store(
                if c.opts.check {
                    Health::Unchecked
                } else {
                    Health::Up
                } as u8,
                Ordering::Relaxed,
            );
        } else {
            if c.opts.check && !was_checked {
                self.health
                    .store(Health::Unchecked as u8, Ordering::Relaxed);
            } else if !c.opts.check {
                self.health.store(Health::Up as u8, Ordering::Relaxed);
            }
            // `disabled` in the file is authoritative only when it changes the
            // conf; a run-time drain/maint of a kept server survives.
            if c.opts.disabled {
                self.admin.store(Admin::Maint as u8, Ordering::Relaxed);
            }
        }
        bump_epoch();
    }

    /// Carries run-time changes (admin state, weight override) over from the
    /// server this one replaces on reload (same name, new address).
    pub fn inherit(&self, old: &Server) {
        if old.weight_overridden.load(Ordering::Relaxed) {
            self.set_weight(old.weight());
        }
        if self.admin() == Admin::Ready {
            self.set_admin(old.admin());
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Sets the weight at run time; it survives reloads.
    pub fn set_weight(&self, w: u32) {
        self.weight_overridden.store(true, Ordering::Relaxed);
        if self.weight.swap(w, Ordering::Relaxed) != w {
            bump_epoch();
        }
    }

    pub fn backup(&self) -> bool {
        self.backup.load(Ordering::Relaxed)
    }

    pub fn pool_purge_delay(&self) -> Duration {
        Duration::from_millis(self.pool_purge_ms.load(Ordering::Relaxed))
    }

    pub fn admin(&self) -> Admin {
        match self.admin.load(Ordering::Relaxed) {
            0 => Admin::Ready,
            1 => Admin::Drain,
            _ => Admin::Maint,
        }
    }

    pub fn set_admin(&self, a: Admin) {
        self.set_admin_by(a, "set by the admin API")
    }

    /// Sets the admin state, saying who did (the admin API, an agent).
    pub fn set_admin_by(&self, a: Admin, who: &str) {
        if self.admin.swap(a as u8, Ordering::Relaxed) != a as u8 {
            bump_epoch();
            self.stats.changed(self.state().as_str(), who);
            tracing::warn!("server {} is now {}", self.id, self.state().as_str());
        }
    }

    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            0 => Health::Up,
            1 => Health::Down,
            _ => Health::Unchecked,
        }
    }

    pub fn state(&self) -> State {
        match (self.admin(), self.health()) {
            (Admin::Maint, _) => State::Maint,
            (Admin::Drain, _) => State::Drain,
            (Admin::Ready, Health::Up) => State::Up,
            (Admin::Ready, _) => State::Down,
        }
    }

    /// May take new traffic.
    pub fn eligible(&self) -> bool {
        self.admin() == Admin::Ready && self.health() == Health::Up
    }

    /// True while a transition is under way (some results against the current state).
    pub fn transitioning(&self) -> bool {
        match self.health() {
            Health::Up => self.failures.load(Ordering::Relaxed) > 0,
            Health::Down => self.successes.load(Ordering::Relaxed) > 0,
            Health::Unchecked => true,
        }
    }

    /// Records one check result (active, or passive when `observe` is on).
    /// Each state transition is logged once.
    pub fn report(&self, result: Result<(), String>) {
        let (rise, fall) = (
            self.rise.load(Ordering::Relaxed).max(1),
            self.fall.load(Ordering::Relaxed).max(1),
        );
        match (self.health(), result) {
            (Health::Unchecked, Ok(())) => {
                self.go(Health::Up, "check passed".into(), 1, 1, "succeeded")
            }
            (Health::Unchecked, Err(r)) => {
                self.check_failures.fetch_add(1, Ordering::Relaxed);
                self.go(Health::Down, r, 1, 1, "failed")
            }
            (Health::Up, Ok(())) => self.failures.store(0, Ordering::Relaxed),
            (Health::Up, Err(r)) => {
                self.check_failures.fetch_add(1, Ordering::Relaxed);
                self.successes.store(0, Ordering::Relaxed);
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= fall {
                    self.go(Health::Down, r, n, fall, "failed");
                }
            }
            (Health::Down, Ok(())) => {
                self.failures.store(0, Ordering::Relaxed);
                let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= rise {
                    self.go(Health::Up, "check passed".into(), n, rise, "succeeded");
                }
            }
            (Health::Down, Err(_)) => {
                self.check_failures.fetch_add(1, Ordering::Relaxed);
                self.successes.store(0, Ordering::Relaxed);
            }
        }
    }

    /// An agent's `up` or `down`: takes effect at once, not after rise/fall.
    pub fn agent_health(&self, up: bool, reason: &str) {
        let to = if up { Health::Up } else { Health::Down };
        if self.health() != to {
            self.go(to, reason.into(), 1, 1, "agent");
        }
    }

    fn go(&self, to: Health, reason: String, n: u32, of: u32, what: &str) {
        self.health.store(to as u8, Ordering::Relaxed);
        self.successes.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.transitions.fetch_add(1, Ordering::Relaxed);
        bump_epoch();
        let word = if to == Health::Up { "UP" } else { "DOWN" };
        self.stats.changed(word, &reason);
        // A server coming UP is normal operation; going DOWN needs a look.
        if to == Health::Up {
            tracing::info!(
                "server {} is UP (reason: {reason}, {n}/{of} {what})",
                self.id
            );
        } else {
            tracing::warn!(
                "server {} is DOWN (reason: {reason}, {n}/{of} {what})",
                self.id
            );
        }
    }

    /// Passive check of a connect attempt (`observe layer4` or `layer7`).
    pub fn observe_connect(&self, result: Result<(), String>) {
        if self.observe.load(Ordering::Relaxed) >= 4 && self.checked.load(Ordering::Relaxed) {
            if let Err(r) = result {
                self.report(Err(r));
            }
        }
    }

    /// Passive check of a response (`observe layer7`).
    pub fn observe_response(&self, result: Result<(), String>) {
        if self.observe.load(Ordering::Relaxed) >= 7 && self.checked.load(Ordering::Relaxed) {
            if let Err(r) = result {
                self.report(Err(r));
            }
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
        // SeqCst pairs with `wait_for_slot`: a waiter that counted itself
        // before this decrement is woken, one that counts after sees the slot.
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        if self.0.queued.load(Ordering::SeqCst) > 0 {
            self.0.slot.notify_waiters();
        }
    }
}

/// The servers of one backend, as of one snapshot, and how to choose among them.
#[derive(Debug)]
pub struct Pool {
    pub servers: Vec<Arc<Server>>,
    balance: Balance,
    allbackups: bool,
    sched: ArcSwap<Schedule>,
    /// `hash-type`: map-based (index in the weighted order) or a consistent ring.
    hash_type: crate::conf::haproxy_hash::HashType,
    /// Round-robin position; shared with the pool this one replaced on reload.
    cursor: Arc<AtomicUsize>,
}

/// The servers that can take traffic now, as of one state epoch.
#[derive(Debug, Default)]
struct Schedule {
    epoch: u64,
    /// Smooth weighted round-robin order (indexes into `Pool::servers`); each
    /// server appears `weight` times, so indexing it is weighted.
    order: Vec<u32>,
    /// Each eligible server once, with its weight.
    members: Vec<(u32, u32)>,
    /// `hash-type consistent`: (point, server index) sorted by point, points
    /// per server in proportion to its weight, placed by the server's id so a
    /// server leaving moves only its own keys.
    ring: Vec<(u32, u32)>,
}

/// What a pick may consider beyond the pool itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickCtx<'a> {
    /// The client's address (for `balance source`).
    pub client: Option<IpAddr>,
    /// Servers already tried for this request or connection.
    pub tried: &'a [Arc<Server>],
    /// A retry may go to another server even under `balance source`.
    pub redispatch: bool,
    /// The request's hash under `balance uri|url_param|hdr(N)`; `None`
    /// (nothing to hash) falls back to round robin, as HAProxy.
    pub key: Option<u64>,
}

impl Pool {
    pub fn new(servers: Vec<Arc<Server>>, b: &Backend, cursor: Option<Arc<AtomicUsize>>) -> Pool {
        Pool {
            servers,
            balance: b.balance,
            allbackups: b.allbackups,
            sched: ArcSwap::from_pointee(Schedule::default()),
            hash_type: b.hap.hash_type,
            cursor: cursor.unwrap_or_default(),
        }
    }

    /// The shared round-robin position, handed to the next pool on reload.
    pub fn cursor(&self) -> Arc<AtomicUsize> {
        self.cursor.clone()
    }

    /// The next server without context (first attempt, no client address).
    pub fn pick(&self) -> Option<&Arc<Server>> {
        self.pick_with(&PickCtx::default())
    }

    /// The server for this attempt. Only eligible servers take traffic;
    /// backups only when no active server is eligible (the first one, or all
    /// of them with `option allbackups`). Servers in `ctx.tried` are avoided
    /// while another is eligible. `None` when nothing can take traffic.
    pub fn pick_with(&self, ctx: &PickCtx<'_>) -> Option<&Arc<Server>> {
        let epoch = STATE_EPOCH.load(Ordering::Acquire);
        let mut sched = self.sched.load();
        if sched.epoch != epoch {
            self.sched.store(Arc::new(self.schedule(epoch)));
            sched = self.sched.load();
        }
        let order = &sched.order;
        if order.is_empty() {
            return None;
        }
        let tried = |i: u32| {
            let s = &self.servers[i as usize];
            ctx.tried.iter().any(|t| Arc::ptr_eq(t, s))
        };
        let untried_exists = sched.members.iter().any(|&(i, _)| !tried(i));
        let rr = || {
            let start = self.cursor.fetch_add(1, Ordering::Relaxed);
            (0..order.len())
                .map(|k| order[(start + k) % order.len()])
                .find(|&i| !untried_exists || !tried(i))
                .unwrap_or(order[start % order.len()])
        };
        let idx = match self.balance {
            Balance::RoundRobin => rr(),
            Balance::Hash => match ctx.key {
                Some(h) => self.by_hash(&sched, h, ctx.redispatch && untried_exists, &tried),
                None => rr(),
            },
            Balance::First => sched
                .members
                .iter()
                .map(|m| m.0)
                .find(|&i| !untried_exists || !tried(i))
                .unwrap_or(sched.members[0].0),
            Balance::LeastConn => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let m = &sched.members;
                let mut best: Option<(u32, usize, u32)> = None;
                for k in 0..m.len() {
                    let (i, w) = m[(start + k) % m.len()];
                    if untried_exists && tried(i) {
                        continue;
                    }
                    let load = self.servers[i as usize].inflight.load(Ordering::Relaxed);
                    // load/w < best_load/best_w, without division.
                    let better = best.is_none_or(|(_, bl, bw)| {
                        (load as u64) * u64::from(bw) < (bl as u64) * u64::from(w)
                    });
                    if better {
                        best = Some((i, load, w));
                    }
                }
                best?.0
            }
            Balance::Source => {
                let h = ctx.client.map_or(0, hash_ip);
                self.by_hash(&sched, h, ctx.redispatch && untried_exists, &tried)
            }
            Balance::Random => {
                // Power of two random choices, weighted by position in `order`.
                let a = order[random() as usize % order.len()];
                let b = order[random() as usize % order.len()];
                let pick = match (tried(a), tried(b)) {
                    (false, true) => a,
                    (true, false) => b,
                    _ => {
                        let la = self.servers[a as usize].inflight.load(Ordering::Relaxed);
                        let lb = self.servers[b as usize].inflight.load(Ordering::Relaxed);
                        if lb < la {
                            b
                        } else {
                            a
                        }
                    }
                };
                if untried_exists && tried(pick) {
                    sched
                        .members
                        .iter()
                        .map(|m| m.0)
                        .find(|&i| !tried(i))
                        .unwrap_or(pick)
                } else {
                    pick
                }
            }
        };
        Some(&self.servers[idx as usize])
    }

    /// The server for hash `h`: the weighted order's slot (map-based) or the
    /// next point on the ring (consistent). With `avoid_tried` (a retry under
    /// `option redispatch`), the next server along that was not tried.
    fn by_hash(
        &self,
        sched: &Schedule,
        h: u64,
        avoid_tried: bool,
        tried: &dyn Fn(u32) -> bool,
    ) -> u32 {
        if self.hash_type.consistent && !sched.ring.is_empty() {
            let ring = &sched.ring;
            let h = crate::conf::haproxy_hash::mix(h as u32);
            let at = ring.partition_point(|p| p.0 < h) % ring.len();
            let first = ring[at].1;
            if !avoid_tried || !tried(first) {
                return first;
            }
            return (1..ring.len())
                .map(|k| ring[(at + k) % ring.len()].1)
                .find(|&i| !tried(i))
                .unwrap_or(first);
        }
        let order = &sched.order;
        let h = h as usize;
        let first = order[h % order.len()];
        if !avoid_tried || !tried(first) {
            first
        } else {
            (1..order.len())
                .map(|k| order[(h + k) % order.len()])
                .find(|&i| !tried(i))
                .unwrap_or(first)
        }
    }

    fn schedule(&self, epoch: u64) -> Schedule {
        let eligible = |backup: bool| {
            self.servers
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.backup() == backup && s.eligible() && s.weight() > 0)
                .map(|(i, s)| (i as u32, s.weight()))
        };
        let mut members: Vec<(u32, u32)> = eligible(false).collect();
        if members.is_empty() {
            members = eligible(true).collect();
            if !self.allbackups {
                members.truncate(1);
            }
        }
        let ring = if self.hash_type.consistent {
            ring(&self.servers, &members)
        } else {
            Vec::new()
        };
        Schedule {
            epoch,
            order: smooth_schedule(&members),
            members,
            ring,
        }
    }
}

/// Points on the consistent-hash ring: 16 per unit of weight (HAProxy's
/// scale), each placed by a hash of the server's id and its number.
fn ring(servers: &[Arc<Server>], members: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut ring = Vec::new();
    for &(i, w) in members {
        let id = servers[i as usize].id.as_bytes();
        for k in 0..w.saturating_mul(16) {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in id.iter().chain(&k.to_le_bytes()) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x100000001b3);
            }
            ring.push(((h ^ (h >> 32)) as u32, i));
        }
    }
    ring.sort_unstable();
    ring
}

fn hash_ip(ip: IpAddr) -> u64 {
    // FNV-1a: stable across runs and processes (unlike std's RandomState).
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A fast per-thread xorshift generator; quality is ample for load spreading.
pub(crate) fn random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (t ^ (&t as *const u64 as u64)) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
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
    use std::collections::HashMap;

    fn pool(extra: &str, servers: &str) -> Pool {
        let c = parse_conf("t", &format!("backend b\n{extra}{servers}")).unwrap();
        let b = &c.backends[0];
        let servers = b
            .servers
            .iter()
            .map(|s| Arc::new(Server::new("b", s)))
            .collect();
        Pool::new(servers, b, None)
    }

    fn names(p: &Pool, n: usize) -> String {
        (0..n)
            .map(|_| p.pick().map(|s| s.name.clone()).unwrap_or("-".into()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn down(s: &Server) {
        s.health.store(Health::Down as u8, Ordering::Relaxed);
        bump_epoch();
    }

    fn up(s: &Server) {
        s.health.store(Health::Up as u8, Ordering::Relaxed);
        bump_epoch();
    }

    #[test]
    fn smooth_weights() {
        let p = pool("", "    server a 127.0.0.1:1 weight 5\n    server b 127.0.0.1:2\n    server c 127.0.0.1:3\n");
        assert_eq!(names(&p, 7), "a a b a c a a");
    }

    #[test]
    fn plain_round_robin_and_skip_down() {
        let p = pool(
            "",
            "    server a 127.0.0.1:1\n    server b 127.0.0.1:2\n    server c 127.0.0.1:3\n",
        );
        assert_eq!(names(&p, 4), "a b c a");
        down(&p.servers[1]);
        assert_eq!(names(&p, 4), "a c a c");
        up(&p.servers[1]);
        let seq = names(&p, 3);
        assert!(
            seq.contains('b') && seq.contains('a') && seq.contains('c'),
            "{seq}"
        );
    }

    #[test]
    fn backup_only_when_no_active_is_up() {
        let p = pool("", "    server a 127.0.0.1:1\n    server k 127.0.0.1:2 backup\n    server l 127.0.0.1:3 backup\n");
        assert_eq!(names(&p, 2), "a a");
        down(&p.servers[0]);
        assert_eq!(names(&p, 3), "k k k");
        up(&p.servers[0]);
        assert_eq!(names(&p, 2), "a a");
        down(&p.servers[0]);
        p.servers[1].set_admin(Admin::Maint);
        assert_eq!(names(&p, 2), "l l");
        p.servers[2].set_admin(Admin::Drain);
        assert_eq!(names(&p, 1), "-");
    }

    #[test]
    fn allbackups_share() {
        let p = pool("    option allbackups\n", "    server a 127.0.0.1:1\n    server k 127.0.0.1:2 backup\n    server l 127.0.0.1:3 backup\n");
        down(&p.servers[0]);
        assert_eq!(names(&p, 4), "k l k l");
    }

    #[test]
    fn disabled_and_zero_weight_take_nothing() {
        let p = pool("", "    server a 127.0.0.1:1 disabled\n    server b 127.0.0.1:2\n    server z 127.0.0.1:3 weight 0\n");
        assert_eq!(names(&p, 3), "b b b");
    }

    #[test]
    fn leastconn_prefers_fewest_in_flight_then_rotates() {
        let p = pool(
            "    balance leastconn\n",
            "    server a 127.0.0.1:1\n    server b 127.0.0.1:2\n    server c 127.0.0.1:3\n",
        );
        let _busy = p.servers[0].enter();
        let _busy2 = p.servers[0].enter();
        let _b = p.servers[1].enter();
        assert_eq!(names(&p, 3), "c c c");
        drop(_b);
        let seq = names(&p, 4);
        assert!(!seq.contains('a'), "{seq}");
        assert!(seq.contains('b') && seq.contains('c'), "ties rotate: {seq}");
    }

    #[test]
    fn source_is_stable_and_spreads() {
        let p = pool(
            "    balance source\n",
            "    server a 127.0.0.1:1\n    server b 127.0.0.1:2\n    server c 127.0.0.1:3\n",
        );
        let mut seen = HashMap::new();
        for i in 0..200u8 {
            let ip: IpAddr = format!("10.0.{i}.7").parse().unwrap();
            let ctx = PickCtx {
                client: Some(ip),
                ..Default::default()
            };
            let first = p.pick_with(&ctx).unwrap().name.clone();
            for _ in 0..3 {
                assert_eq!(p.pick_with(&ctx).unwrap().name, first);
            }
            *seen.entry(first).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.values().all(|&n| n > 30), "{seen:?}");
        // Redispatch moves a retry off a tried server; without it the hash holds.
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let first = p
            .pick_with(&PickCtx {
                client: Some(ip),
                ..Default::default()
            })
            .unwrap()
            .clone();
        let tried = [first.clone()];
        let same = p
            .pick_with(&PickCtx {
                client: Some(ip),
                tried: &tried,
                redispatch: false,
                key: None,
            })
            .unwrap();
        assert!(Arc::ptr_eq(same, &first));
        let other = p
            .pick_with(&PickCtx {
                client: Some(ip),
                tried: &tried,
                redispatch: true,
                key: None,
            })
            .unwrap();
        assert!(!Arc::ptr_eq(other, &first));
    }

    #[test]
    fn random_spreads_and_prefers_idle() {
        let p = pool(
            "    balance random\n",
            "    server a 127.0.0.1:1\n    server b 127.0.0.1:2\n",
        );
        let mut seen = HashMap::new();
        for _ in 0..400 {
            *seen.entry(p.pick().unwrap().name.clone()).or_insert(0) += 1;
        }
        assert!(seen.values().all(|&n| n > 120), "{seen:?}");
        let _busy: Vec<_> = (0..5).map(|_| p.servers[0].enter()).collect();
        let b = (0..100).filter(|_| p.pick().unwrap().name == "b").count();
        // With two choices, a is only chosen when both draws are a (~25%).
        assert!(b > 60, "b chosen {b}/100");
    }

    #[test]
    fn retries_avoid_tried_servers() {
        let p = pool(
            "    balance leastconn\n",
            "    server a 127.0.0.1:1\n    server b 127.0.0.1:2\n",
        );
        let a = p.servers[0].clone();
        let tried = [a.clone()];
        for _ in 0..5 {
            let s = p
                .pick_with(&PickCtx {
                    tried: &tried,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(s.name, "b");
        }
        // When everything was tried, a pick is still made.
        let all = [p.servers[0].clone(), p.servers[1].clone()];
        assert!(p
            .pick_with(&PickCtx {
                tried: &all,
                ..Default::default()
            })
            .is_some());
    }

    #[test]
    fn health_transitions_follow_rise_and_fall() {
        let c = parse_conf(
            "t",
            "backend b\n    server a 127.0.0.1:1 check rise 2 fall 3\n",
        )
        .unwrap();
        let s = Server::new("b", &c.backends[0].servers[0]);
        assert_eq!(s.health(), Health::Unchecked);
        assert!(!s.eligible());
        s.report(Ok(()));
        assert_eq!(s.state(), State::Up);
        s.report(Err("x".into()));
        s.report(Err("x".into()));
        assert_eq!(s.state(), State::Up);
        s.report(Ok(()));
        s.report(Err("x".into()));
        s.report(Err("x".into()));
        assert_eq!(s.state(), State::Up, "a success resets the failure count");
        s.report(Err("x".into()));
        assert_eq!(s.state(), State::Down);
        s.report(Ok(()));
        assert_eq!(s.state(), State::Down);
        assert!(s.transitioning());
        s.report(Ok(()));
        assert_eq!(s.state(), State::Up);
        assert_eq!(s.transitions.load(Ordering::Relaxed), 3);
        s.set_admin(Admin::Drain);
        assert_eq!(s.state(), State::Drain);
        assert!(!s.eligible());
    }
}
