//! One tick of decisions over every watched primary (down states, the failover
//! steps, corrections of misplaced replicas) and the recording of what the links saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{Failover, Hello, InfoView, Instance, Master, Peer, Step};
use super::{jitter, links, Sentinel, World, TICK};

/// Something to do on the network, decided under the lock, done outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `REPLICAOF target` (`None`: `NO ONE`).
    ReplicaOf {
        addr: SocketAddr,
        target: Option<SocketAddr>,
    },
}

/// Which link task watches an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LinkKind {
    Command,
    Hello,
    Peer,
}

/// The decision loop: spawns the links the world needs, ticks, runs the actions.
pub async fn run(s: Arc<Sentinel>) {
    let mut tasks: HashMap<(String, SocketAddr, LinkKind), tokio::task::JoinHandle<()>> =
        HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (actions, wanted) = s.with(|w| {
            let actions = decide(&s, w, now);
            let mut wanted = Vec::new();
            for m in &w.masters {
                for a in std::iter::once(&m.primary.addr).chain(m.replicas.keys()) {
                    wanted.push((m.name.clone(), *a, LinkKind::Command));
                    wanted.push((m.name.clone(), *a, LinkKind::Hello));
                }
                for a in m.peers.keys() {
                    wanted.push((m.name.clone(), *a, LinkKind::Peer));
                }
            }
            s.metrics.refresh(w);
            (actions, wanted)
        });
        tasks.retain(|_, h| !h.is_finished());
        for key in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let (name, addr, kind) = key.clone();
            let s2 = s.clone();
            let h = match kind {
                LinkKind::Command => tokio::spawn(links::instance(s2, name, addr)),
                LinkKind::Hello => tokio::spawn(links::hellos(s2, name, addr)),
                LinkKind::Peer => tokio::spawn(links::peer(s2, name, addr)),
            };
            tasks.insert(key, h);
        }
        for a in actions {
            tokio::spawn(links::act(s.clone(), a));
        }
    }
}

/// `master NAME IP PORT`, as Redis describes a primary in events.
pub fn desc_master(m: &Master) -> String {
    format!(
        "master {} {} {}",
        m.name,
        m.primary.addr.ip(),
        m.primary.addr.port()
    )
}

/// `slave IP:PORT IP PORT @ NAME MIP MPORT`.
pub fn desc_replica(m: &Master, a: SocketAddr) -> String {
    format!(
        "slave {a} {} {} @ {} {} {}",
        a.ip(),
        a.port(),
        m.name,
        m.primary.addr.ip(),
        m.primary.addr.port()
    )
}

/// `sentinel RUNID IP PORT @ NAME MIP MPORT`.
pub fn desc_peer(m: &Master, p: &Peer) -> String {
    format!(
        "sentinel {} {} {} @ {} {} {}",
        p.run_id.as_deref().unwrap_or("?"),
        p.addr.ip(),
        p.addr.port(),
        m.name,
        m.primary.addr.ip(),
        m.primary.addr.port()
    )
}

/// One tick over every primary.
pub fn decide(s: &Sentinel, w: &mut World, now: Instant) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut events = Vec::new();
    let mut epoch = w.current_epoch;
    for m in &mut w.masters {
        down_states(m, now, &mut events);
        failover(s, m, &mut epoch, now, &mut actions, &mut events);
        corrections(m, now, &mut actions, &mut events);
        for (k, e) in &events {
            m.remember(format!("{k} {e}"));
        }
        for (k, e) in events.drain(..) {
            w.pending.push((k, e));
        }
    }
    w.current_epoch = epoch;
    actions
}

type Events = Vec<(&'static str, String)>;

fn remember(events: &mut Events, kind: &'static str, msg: String) {
    events.push((kind, msg));
}

/// Subjective down of every instance and peer, objective down of the primary.
fn down_states(m: &mut Master, now: Instant, ev: &mut Events) {
    let after = m.down_after;
    let late = |last: Instant| now.duration_since(last) > after;
    if late(m.primary.last_pong) {
        if m.primary.sdown_since.is_none() {
            m.primary.sdown_since = Some(now);
            remember(ev, "+sdown", desc_master(m));
        }
    } else if m.primary.sdown_since.take().is_some() {
        remember(ev, "-sdown", desc_master(m));
    }
    let mut changes = Vec::new();
    for r in m.replicas.values_mut() {
        if late(r.last_pong) {
            if r.sdown_since.is_none() {
                r.sdown_since = Some(now);
                changes.push(("+sdown", r.addr));
            }
        } else if r.sdown_since.take().is_some() {
            changes.push(("-sdown", r.addr));
        }
    }
    for (k, a) in changes {
        remember(ev, k, desc_replica(m, a));
    }
    let mut peer_changes = Vec::new();
    for p in m.peers.values_mut() {
        if late(p.last_pong) {
            if p.sdown_since.is_none() {
                p.sdown_since = Some(now);
                peer_changes.push(("+sdown", p.clone()));
            }
        } else if p.sdown_since.take().is_some() {
            peer_changes.push(("-sdown", p.clone()));
        }
    }
    for (k, p) in peer_changes {
        remember(ev, k, desc_peer(m, &p));
    }
    let votes = m.odown_votes(now);
    if votes >= m.quorum {
        if m.odown_since.is_none() {
            m.odown_since = Some(now);
            remember(
                ev,
                "+odown",
                format!("{} #quorum {votes}/{}", desc_master(m), m.quorum),
            );
        }
    } else if m.odown_since.take().is_some() {
        remember(ev, "-odown", desc_master(m));
    }
}

/// Whether a new failover attempt may start: none in the last two failover timeouts.
fn may_start(m: &Master, now: Instant) -> bool {
    m.failover_start
        .is_none_or(|t| now >= t + m.failover_timeout * 2)
}

/// Starts a failover of `m` in a new epoch (ODOWN, or `SENTINEL FAILOVER`).
pub fn start_failover(
    s: &Sentinel,
    m: &mut Master,
    epoch: &mut u64,
    forced: bool,
    now: Instant,
    ev: &mut Events,
) {
    *epoch += 1;
    m.failover = Failover {
        step: Step::WaitStart,
        epoch: *epoch,
        step_since: now,
        promoted: None,
        forced,
        reconf_sent: Default::default(),
    };
    // The next attempt is desynchronized too (as Redis: up to 1 s later).
    m.failover_start = Some(now + jitter(Duration::from_secs(1)));
    remember(ev, "+new-epoch", epoch.to_string());
    remember(ev, "+try-failover", desc_master(m));
    let e = *epoch;
    let (_, _, voted) = m.vote(epoch, e, &s.myid, &s.myid, now, Duration::ZERO);
    if voted {
        remember(ev, "+vote-for-leader", format!("{} {e}", s.myid));
    }
    m.ask_now += 1;
}

fn abort(m: &mut Master, kind: &'static str, now: Instant, ev: &mut Events) {
    remember(ev, kind, desc_master(m));
    m.failover = Failover::idle(now);
}

fn failover(
    s: &Sentinel,
    m: &mut Master,
    epoch: &mut u64,
    now: Instant,
    actions: &mut Vec<Action>,
    ev: &mut Events,
) {
    let since = now.duration_since(m.failover.step_since);
    match m.failover.step {
        Step::None => {
            if m.odown_since.is_none() || !may_start(m, now) {
                m.attempt_at = None;
                return;
            }
            // Alone, at once; with peers, after a random delay of a few pings.
            let at = *m.attempt_at.get_or_insert_with(|| {
                if m.peers.is_empty() {
                    now
                } else {
                    now + jitter(s.ping_period() * 3)
                }
            });
            if now >= at {
                m.attempt_at = None;
                start_failover(s, m, epoch, false, now, ev);
                // A lone sentinel (or a forced one) is elected at once.
                failover(s, m, epoch, now, actions, ev);
            }
        }
        Step::WaitStart => {
            let elected =
                m.failover.forced || m.tally(m.failover.epoch).as_deref() == Some(s.myid.as_str());
            if elected {
                remember(
                    ev,
                    "+elected-leader",
                    format!("{} #epoch {}", desc_master(m), m.failover.epoch),
                );
                remember(ev, "+failover-state-select-slave", desc_master(m));
                m.failover.step = Step::SelectReplica;
                m.failover.step_since = now;
                // Selection happens right away rather than at the next tick.
                failover(s, m, epoch, now, actions, ev);
            } else if since > m.failover_timeout.min(Duration::from_secs(10)) {
                abort(m, "-failover-abort-not-elected", now, ev);
            }
        }
        Step::SelectReplica => match m.select_replica(now, s.info_period_of(m)) {
            None => abort(m, "-failover-abort-no-good-slave", now, ev),
            Some(r) => {
                remember(ev, "+selected-slave", desc_replica(m, r));
                remember(ev, "+failover-state-send-slaveof-noone", desc_replica(m, r));
                actions.push(Action::ReplicaOf {
                    addr: r,
                    target: None,
                });
                if let Some(i) = m.replicas.get_mut(&r) {
                    i.last_reconf = Some(now);
                }
                m.failover.promoted = Some(r);
                m.failover.step = Step::WaitPromotion;
                m.failover.step_since = now;
                remember(ev, "+failover-state-wait-promotion", desc_replica(m, r));
            }
        },
        Step::WaitPromotion => {
            let Some(r) = m.failover.promoted else {
                return abort(m, "-failover-abort-no-good-slave", now, ev);
            };
            let step_since = m.failover.step_since;
            let promoted = m.replicas.get(&r).is_some_and(|i| {
                i.last_info.is_some_and(|t| t > step_since)
                    && i.info.as_ref().is_some_and(|v| v.role_master)
            });
            if promoted {
                remember(ev, "+promoted-slave", desc_replica(m, r));
                remember(ev, "+failover-state-reconf-slaves", desc_master(m));
                m.config_epoch = m.failover.epoch;
                m.failover.step = Step::ReconfReplicas;
                m.failover.step_since = now;
                let others: Vec<SocketAddr> = m
                    .replicas
                    .values()
                    .filter(|i| i.addr != r && i.sdown_since.is_none())
                    .map(|i| i.addr)
                    .collect();
                for a in others {
                    actions.push(Action::ReplicaOf {
                        addr: a,
                        target: Some(r),
                    });
                    m.failover.reconf_sent.insert(a);
                    if let Some(i) = m.replicas.get_mut(&a) {
                        i.last_reconf = Some(now);
                    }
                    remember(ev, "+slave-reconf-sent", desc_replica(m, a));
                }
                failover(s, m, epoch, now, actions, ev);
            } else if since > m.failover_timeout {
                abort(m, "-failover-abort-slave-timeout", now, ev);
            } else if let Some(i) = m.replicas.get_mut(&r) {
                // The first REPLICAOF NO ONE may have met a closing connection.
                if i.last_reconf
                    .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
                {
                    i.last_reconf = Some(now);
                    actions.push(Action::ReplicaOf {
                        addr: r,
                        target: None,
                    });
                }
            }
        }
        Step::ReconfReplicas => {
            let Some(new) = m.failover.promoted else {
                return abort(m, "-failover-abort-no-good-slave", now, ev);
            };
            let done = m.failover.reconf_sent.iter().all(|a| {
                m.replicas.get(a).is_none_or(|i| {
                    i.sdown_since.is_some()
                        || i.info
                            .as_ref()
                            .is_some_and(|v| v.master == Some(new) && v.master_link_up)
                })
            });
            if done || since > m.failover_timeout {
                for a in m.failover.reconf_sent.clone() {
                    remember(ev, "+slave-reconf-done", desc_replica(m, a));
                }
                remember(ev, "+failover-end", desc_master(m));
                let old = m.primary.addr;
                m.switch_to(new, now);
                m.failovers += 1;
                remember(
                    ev,
                    "+switch-master",
                    format!(
                        "{} {} {} {} {}",
                        m.name,
                        old.ip(),
                        old.port(),
                        new.ip(),
                        new.port()
                    ),
                );
            }
        }
    }
}

/// Replicas that answer as primaries (a former primary back) or follow the wrong
/// primary are pointed at the current one; only while it is up and no failover runs.
fn corrections(m: &mut Master, now: Instant, actions: &mut Vec<Action>, ev: &mut Events) {
    if m.failover.step != Step::None || m.primary.sdown_since.is_some() {
        return;
    }
    let primary = m.primary.addr;
    let mut fixes = Vec::new();
    for r in m.replicas.values_mut() {
        let Some(v) = &r.info else { continue };
        if r.sdown_since.is_some()
            || r.last_reconf
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(2))
        {
            continue;
        }
        let kind = if v.role_master {
            // A former primary is turned at once, before it takes writes; any other
            // replica claiming to be primary is given time for a peer's hello to tell
            // us of a failover we missed.
            let claimed_for = r
                .role_master_since
                .map_or(Duration::ZERO, |t| now.duration_since(t));
            if m.demoted.contains(&r.addr) || claimed_for > Duration::from_secs(4) {
                "+convert-to-slave"
            } else {
                continue;
            }
        } else if v.master != Some(primary) {
            "+fix-slave-config"
        } else {
            continue;
        };
        r.last_reconf = Some(now);
        fixes.push((kind, r.addr));
    }
    for (kind, a) in fixes {
        remember(ev, kind, desc_replica(m, a));
        actions.push(Action::ReplicaOf {
            addr: a,
            target: Some(primary),
        });
    }
}

impl Sentinel {
    /// How often INFO is asked of `m`'s servers: every second, every ping while
    /// the primary is down or a failover runs (promotion is seen at once).
    pub fn info_period_of(&self, m: &Master) -> Duration {
        if m.primary.sdown_since.is_some() || m.failover.step != Step::None {
            self.ping_period().min(Duration::from_millis(100))
        } else {
            Duration::from_secs(1)
        }
    }

    /// A valid PING reply from `addr`.
    pub fn saw_pong(&self, master: &str, addr: SocketAddr, now: Instant) {
        let mut w = self.lock();
        if let Some(m) = w.master(master) {
            if m.primary.addr == addr {
                m.primary.last_pong = now;
            } else if let Some(r) = m.replicas.get_mut(&addr) {
                r.last_pong = now;
            } else if let Some(p) = m.peers.get_mut(&addr) {
                p.last_pong = now;
            }
        }
    }

    /// An INFO reply from `addr`: its role, its replicas (discovered), its offset.
    pub fn saw_info(&self, master: &str, addr: SocketAddr, v: InfoView, now: Instant) {
        let max = self.conf.max_instances;
        self.with(|w| {
            let mut new = Vec::new();
            let Some(m) = w.master(master) else { return };
            if m.primary.addr == addr {
                if v.role_master {
                    for r in &v.replicas {
                        if *r != addr && !m.replicas.contains_key(r) && m.replicas.len() < max {
                            m.replicas.insert(*r, Instance::new(*r, now));
                            new.push(*r);
                        }
                    }
                }
                m.primary.info = Some(v);
                m.primary.last_info = Some(now);
            } else if let Some(r) = m.replicas.get_mut(&addr) {
                if v.role_master {
                    r.role_master_since.get_or_insert(now);
                } else {
                    r.role_master_since = None;
                }
                let follows = !v.role_master && v.master == Some(m.primary.addr);
                r.info = Some(v);
                r.last_info = Some(now);
                if follows {
                    m.demoted.remove(&addr);
                }
            }
            let descs: Vec<String> = new.iter().map(|a| desc_replica(m, *a)).collect();
            for d in &descs {
                m.remember(format!("+slave {d}"));
            }
            for d in descs {
                w.event("+slave", d);
            }
        })
    }

    /// A hello from another sentinel (through a server's `__sentinel__:hello`, or PUBLISH to us).
    pub fn saw_hello(&self, payload: &[u8], now: Instant) {
        let Some(h) = Hello::parse(payload) else {
            return;
        };
        if h.run_id == self.myid {
            return;
        }
        let max = self.conf.max_instances;
        self.with(|w| {
            if h.current_epoch > w.current_epoch {
                w.current_epoch = h.current_epoch;
                w.event("+new-epoch", h.current_epoch.to_string());
            }
            let mut evs = Vec::new();
            let Some(m) = w.master(&h.master_name) else {
                return;
            };
            // The same sentinel at a new address replaces the old entry.
            let moved: Vec<SocketAddr> = m
                .peers
                .values()
                .filter(|p| p.addr != h.addr && p.run_id.as_deref() == Some(h.run_id.as_str()))
                .map(|p| p.addr)
                .collect();
            for a in moved {
                m.peers.remove(&a);
            }
            if !m.peers.contains_key(&h.addr) && m.peers.len() < max {
                let mut p = Peer::new(h.addr, now);
                p.run_id = Some(h.run_id.clone());
                evs.push(("+sentinel", desc_peer(m, &p)));
                m.peers.insert(h.addr, p);
            }
            if let Some(p) = m.peers.get_mut(&h.addr) {
                p.run_id = Some(h.run_id.clone());
                p.last_hello = Some(now);
            }
            // A newer configuration of this primary, from a failover we did not lead.
            if h.config_epoch > m.config_epoch {
                m.config_epoch = h.config_epoch;
                if h.master_addr != m.primary.addr {
                    if let Some(p) = m.peers.get(&h.addr) {
                        evs.push(("+config-update-from", desc_peer(m, p)));
                    }
                    let old = m.primary.addr;
                    m.switch_to(h.master_addr, now);
                    let new = h.master_addr;
                    evs.push((
                        "+switch-master",
                        format!(
                            "{} {} {} {} {}",
                            m.name,
                            old.ip(),
                            old.port(),
                            new.ip(),
                            new.port()
                        ),
                    ));
                }
            }
            for (k, e) in &evs {
                m.remember(format!("{k} {e}"));
            }
            for (k, e) in evs {
                w.event(k, e);
            }
        })
    }

    /// A peer's answer to `is-master-down-by-addr`.
    pub fn saw_vote(
        &self,
        master: &str,
        peer: SocketAddr,
        down: bool,
        leader: Option<String>,
        leader_epoch: u64,
        now: Instant,
    ) {
        let mut w = self.lock();
        if let Some(p) = w.master(master).and_then(|m| m.peers.get_mut(&peer)) {
            p.says_down = down;
            p.reply_at = Some(now);
            if let Some(l) = leader {
                p.leader = Some(l);
                p.leader_epoch = leader_epoch;
            }
        }
    }

    /// `SENTINEL is-master-down-by-addr IP PORT EPOCH RUNID` from a peer: whether we
    /// see that primary down, and (RUNID not `*`) our vote for the leader of EPOCH.
    pub fn is_master_down(
        &self,
        addr: SocketAddr,
        epoch: u64,
        runid: &str,
    ) -> (bool, Option<String>, u64) {
        let myid = self.myid.clone();
        let desync = jitter(Duration::from_secs(1));
        self.with(|w| {
            let mut cur = w.current_epoch;
            let mut evs = Vec::new();
            let r = match w.masters.iter_mut().find(|m| m.primary.addr == addr) {
                None => (false, None, 0),
                Some(m) => {
                    let down = m.primary.sdown_since.is_some();
                    if runid == "*" {
                        (down, None, 0)
                    } else {
                        let before = cur;
                        let (l, e, voted) =
                            m.vote(&mut cur, epoch, runid, &myid, Instant::now(), desync);
                        if cur > before {
                            evs.push(("+new-epoch", cur.to_string()));
                        }
                        if voted {
                            evs.push(("+vote-for-leader", format!("{runid} {e}")));
                        }
                        (down, l, e)
                    }
                }
            };
            w.current_epoch = cur;
            for (k, e) in evs {
                w.event(k, e);
            }
            r
        })
    }

    /// `SENTINEL FAILOVER NAME`: a failover without asking the others (as Redis).
    pub fn force_failover(&self, name: &str) -> Result<(), &'static str> {
        let now = Instant::now();
        self.with(|w| {
            let mut epoch = w.current_epoch;
            let mut evs = Vec::new();
            let info_period = match w.masters.iter().find(|m| m.name == name) {
                Some(m) => self.info_period_of(m),
                None => return Err("ERR No such master with that name"),
            };
            let Some(m) = w.master(name) else {
                return Err("ERR No such master with that name");
            };
            if m.failover.step != Step::None {
                return Err("INPROG Failover already in progress");
            }
            m.failover.forced = true;
            let ok = m.select_replica(now, info_period).is_some();
            m.failover.forced = false;
            if !ok {
                return Err("NOGOODSLAVE No suitable replica to promote");
            }
            start_failover(self, m, &mut epoch, true, now, &mut evs);
            w.current_epoch = epoch;
            for (k, e) in evs {
                w.event(k, e);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::sentinel::{MonitorConf, SentinelConf};

    fn sentinel(peers: usize, quorum: usize) -> Arc<Sentinel> {
        let mut c = SentinelConf::new("t".into(), 1);
        c.down_after = Duration::from_millis(100);
        c.failover_timeout = Duration::from_secs(5);
        c.monitors.push(MonitorConf {
            name: "db".into(),
            addr: "127.0.0.1:6379".parse().unwrap(),
            quorum,
            line: 1,
        });
        for i in 0..peers {
            c.peers
                .push(format!("127.0.0.1:{}", 26380 + i).parse().unwrap());
        }
        Sentinel::new(&c)
    }

    fn replica(s: &Sentinel, addr: &str, now: Instant) -> SocketAddr {
        let a: SocketAddr = addr.parse().unwrap();
        let mut i = Instance::new(a, now);
        i.last_info = Some(now);
        i.info = Some(InfoView {
            master: Some("127.0.0.1:6379".parse().unwrap()),
            master_link_up: true,
            priority: 100,
            offset: 10,
            ..InfoView::default()
        });
        s.lock().masters[0].replicas.insert(a, i);
        a
    }

    #[test]
    fn a_lone_sentinel_with_quorum_one_fails_over() {
        let s = sentinel(0, 1);
        let t0 = Instant::now();
        let r = replica(&s, "127.0.0.1:6380", t0);
        let later = t0 + Duration::from_millis(300);
        s.lock().masters[0].replicas.get_mut(&r).unwrap().last_pong = later;
        s.lock().masters[0].replicas.get_mut(&r).unwrap().last_info = Some(later);
        let acts = s.with(|w| decide(&s, w, later));
        assert_eq!(
            acts,
            vec![Action::ReplicaOf {
                addr: r,
                target: None
            }]
        );
        let w = s.lock();
        assert_eq!(w.masters[0].failover.step, Step::WaitPromotion);
        assert_eq!(w.current_epoch, 1);
    }

    #[test]
    fn a_minority_of_sentinels_does_not_fail_over() {
        // Three sentinels, quorum 2; the two others are silent: no ODOWN, no epoch.
        let s = sentinel(2, 2);
        let t0 = Instant::now();
        replica(&s, "127.0.0.1:6380", t0);
        let later = t0 + Duration::from_millis(300);
        let acts = s.with(|w| decide(&s, w, later));
        assert!(acts.is_empty());
        let w = s.lock();
        assert!(w.masters[0].primary.sdown_since.is_some());
        assert!(w.masters[0].odown_since.is_none());
        assert_eq!(w.current_epoch, 0);
    }

    #[test]
    fn odown_without_a_majority_of_votes_aborts() {
        // Quorum 1 of 3: ODOWN alone, but the election needs 2 votes.
        let s = sentinel(2, 1);
        let t0 = Instant::now();
        replica(&s, "127.0.0.1:6380", t0);
        let later = t0 + Duration::from_millis(300);
        s.with(|w| decide(&s, w, later));
        // With peers, the attempt starts after a random delay of at most three pings.
        let later = later + Duration::from_millis(200);
        s.with(|w| decide(&s, w, later));
        assert_eq!(s.lock().masters[0].failover.step, Step::WaitStart);
        let much_later = later + Duration::from_secs(6);
        s.with(|w| decide(&s, w, much_later));
        let w = s.lock();
        assert_eq!(w.masters[0].failover.step, Step::None);
        assert_eq!(w.masters[0].failovers, 0);
    }

    #[test]
    fn a_vote_is_given_once_per_epoch() {
        let s = sentinel(1, 1);
        let a: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let (_, l, e) = s.is_master_down(a, 5, "peerA");
        assert_eq!((l.as_deref(), e), (Some("peerA"), 5));
        let (_, l, _) = s.is_master_down(a, 5, "peerB");
        assert_eq!(l.as_deref(), Some("peerA"));
        assert_eq!(s.lock().current_epoch, 5);
    }
}
