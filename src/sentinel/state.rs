//! What a sentinel knows about one primary (its replicas, the other sentinels, down
//! states, the failover under way) and the decisions on it that need no network:
//! INFO parsing, votes, the tally of an election, the choice of a replica, hellos.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A Redis/kv server as seen through its INFO and PING replies.
#[derive(Debug, Clone)]
pub struct Instance {
    pub addr: SocketAddr,
    /// Last valid PING reply, or when watching began (so a server never reached goes down too).
    pub last_pong: Instant,
    pub last_ping_sent: Option<Instant>,
    pub last_info: Option<Instant>,
    pub info: Option<InfoView>,
    pub sdown_since: Option<Instant>,
    /// Since when this server, listed as a replica, reports itself a primary.
    pub role_master_since: Option<Instant>,
    /// Last REPLICAOF we sent it (spacing the corrections).
    pub last_reconf: Option<Instant>,
}

impl Instance {
    pub fn new(addr: SocketAddr, now: Instant) -> Instance {
        Instance {
            addr,
            last_pong: now,
            last_ping_sent: None,
            last_info: None,
            info: None,
            sdown_since: None,
            role_master_since: None,
            last_reconf: None,
        }
    }

    pub fn run_id(&self) -> &str {
        self.info.as_ref().map_or("", |i| i.run_id.as_str())
    }
}

/// The fields of an `INFO` reply a sentinel uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InfoView {
    pub run_id: String,
    pub role_master: bool,
    /// A replica's primary (`master_host`, `master_port`).
    pub master: Option<SocketAddr>,
    pub master_link_up: bool,
    pub link_down_secs: u64,
    pub priority: u64,
    pub offset: u64,
    /// A primary's replicas (`slaveN:ip=..,port=..`).
    pub replicas: Vec<SocketAddr>,
}

/// Parses the INFO text (any sections); unknown or malformed lines are skipped.
pub fn parse_info(text: &str) -> InfoView {
    let mut v = InfoView {
        priority: 100,
        ..InfoView::default()
    };
    let mut host = None;
    let mut port = None;
    let mut master_offset = 0;
    let mut replica_offset = None;
    for line in text.lines() {
        let Some((k, val)) = line.trim_end().split_once(':') else {
            continue;
        };
        match k {
            "run_id" => v.run_id = val.to_string(),
            "role" => v.role_master = val == "master",
            "master_host" => host = Some(val.to_string()),
            "master_port" => port = val.parse::<u16>().ok(),
            "master_link_status" => v.master_link_up = val == "up",
            "master_link_down_since_seconds" => v.link_down_secs = val.parse().unwrap_or(0),
            "slave_priority" | "replica_priority" => v.priority = val.parse().unwrap_or(100),
            "slave_repl_offset" => replica_offset = val.parse().ok(),
            "master_repl_offset" => master_offset = val.parse().unwrap_or(0),
            k if k.starts_with("slave") && k[5..].bytes().all(|b| b.is_ascii_digit()) => {
                let mut ip = None;
                let mut p = None;
                for kv in val.split(',') {
                    match kv.split_once('=') {
                        Some(("ip", x)) => ip = x.parse::<std::net::IpAddr>().ok(),
                        Some(("port", x)) => p = x.parse::<u16>().ok(),
                        _ => {}
                    }
                }
                if let (Some(ip), Some(p)) = (ip, p) {
                    v.replicas.push(SocketAddr::new(ip, p));
                }
            }
            _ => {}
        }
    }
    v.offset = replica_offset.unwrap_or(master_offset);
    if !v.role_master {
        v.master = match (host, port) {
            (Some(h), Some(p)) => resolve(&h, p),
            _ => None,
        };
    }
    v
}

/// `host` as an address: an IP, or `localhost`.
pub fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    None
}

/// Another sentinel watching the same primary.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub run_id: Option<String>,
    pub last_hello: Option<Instant>,
    pub last_pong: Instant,
    pub sdown_since: Option<Instant>,
    /// Its last answer to `is-master-down-by-addr`: does it see the primary down.
    pub says_down: bool,
    pub reply_at: Option<Instant>,
    /// Whom it voted for, in which epoch (from the same answers).
    pub leader: Option<String>,
    pub leader_epoch: u64,
}

impl Peer {
    pub fn new(addr: SocketAddr, now: Instant) -> Peer {
        Peer {
            addr,
            run_id: None,
            last_hello: None,
            last_pong: now,
            sdown_since: None,
            says_down: false,
            reply_at: None,
            leader: None,
            leader_epoch: 0,
        }
    }
}

/// The steps of a failover, as Redis names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    None,
    WaitStart,
    SelectReplica,
    WaitPromotion,
    ReconfReplicas,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::None => "none",
            Step::WaitStart => "wait_start",
            Step::SelectReplica => "select_slave",
            Step::WaitPromotion => "wait_promotion",
            Step::ReconfReplicas => "reconf_slaves",
        }
    }
}

/// The failover under way, if any.
#[derive(Debug, Clone)]
pub struct Failover {
    pub step: Step,
    pub epoch: u64,
    pub step_since: Instant,
    pub promoted: Option<SocketAddr>,
    /// `SENTINEL FAILOVER`: no agreement asked for.
    pub forced: bool,
    pub reconf_sent: HashSet<SocketAddr>,
}

impl Failover {
    pub fn idle(now: Instant) -> Failover {
        Failover {
            step: Step::None,
            epoch: 0,
            step_since: now,
            promoted: None,
            forced: false,
            reconf_sent: HashSet::new(),
        }
    }
}

/// One watched primary and everything around it.
#[derive(Debug, Clone)]
pub struct Master {
    pub name: String,
    pub quorum: usize,
    pub down_after: Duration,
    pub failover_timeout: Duration,
    pub primary: Instance,
    pub replicas: BTreeMap<SocketAddr, Instance>,
    pub peers: BTreeMap<SocketAddr, Peer>,
    pub config_epoch: u64,
    pub odown_since: Option<Instant>,
    /// Our vote: for whom, in which epoch.
    pub leader: Option<String>,
    pub leader_epoch: u64,
    pub failover: Failover,
    /// Start of the last failover attempt (ours, or the one we voted for): no new
    /// attempt before twice `failover_timeout` has passed, as Redis.
    pub failover_start: Option<Instant>,
    /// Former primaries: made replicas as soon as they answer again.
    pub demoted: HashSet<SocketAddr>,
    pub failovers: u64,
    /// The last events, newest last, for the stats page.
    pub history: std::collections::VecDeque<String>,
    /// Bumped to make every peer link ask `is-master-down-by-addr` at once.
    pub ask_now: u64,
    /// With peers: when this sentinel may start its attempt (a random delay after
    /// ODOWN, so sentinels that saw it at the same moment do not split the votes).
    pub attempt_at: Option<Instant>,
}

impl Master {
    pub fn new(
        name: &str,
        addr: SocketAddr,
        quorum: usize,
        timing: (Duration, Duration),
        now: Instant,
    ) -> Master {
        Master {
            name: name.to_string(),
            quorum,
            down_after: timing.0,
            failover_timeout: timing.1,
            primary: Instance::new(addr, now),
            replicas: BTreeMap::new(),
            peers: BTreeMap::new(),
            config_epoch: 0,
            odown_since: None,
            leader: None,
            leader_epoch: 0,
            failover: Failover::idle(now),
            failover_start: None,
            demoted: HashSet::new(),
            failovers: 0,
            history: Default::default(),
            ask_now: 0,
            attempt_at: None,
        }
    }

    /// Sentinels that may vote: the others plus ourselves.
    pub fn voters(&self) -> usize {
        self.peers.len() + 1
    }

    /// Votes needed to win an election (and sentinels needed to authorize a failover).
    pub fn majority(&self) -> usize {
        self.quorum.max(self.voters() / 2 + 1)
    }

    /// Reachable sentinels, ourselves included.
    pub fn reachable_sentinels(&self) -> usize {
        1 + self
            .peers
            .values()
            .filter(|p| p.sdown_since.is_none())
            .count()
    }

    /// The address clients should use now: the promoted replica once promoted.
    pub fn current_addr(&self) -> SocketAddr {
        match (self.failover.step, self.failover.promoted) {
            (Step::ReconfReplicas, Some(a)) => a,
            _ => self.primary.addr,
        }
    }

    /// Whether the primary is down for us, for enough sentinels (`quorum`).
    pub fn odown_votes(&self, now: Instant) -> usize {
        if self.primary.sdown_since.is_none() {
            return 0;
        }
        1 + self
            .peers
            .values()
            .filter(|p| {
                p.says_down
                    && p.reply_at
                        .is_some_and(|t| now.duration_since(t) < ASK_VALIDITY)
            })
            .count()
    }

    /// Records our vote for `candidate` in `req_epoch` (Redis's `sentinelVoteLeader`):
    /// one vote per epoch, the first asker wins it. `current_epoch` is the sentinel's.
    /// Returns the vote held for this primary after the request.
    pub fn vote(
        &mut self,
        current_epoch: &mut u64,
        req_epoch: u64,
        candidate: &str,
        myid: &str,
        now: Instant,
        desync: Duration,
    ) -> (Option<String>, u64, bool) {
        if req_epoch > *current_epoch {
            *current_epoch = req_epoch;
        }
        let mut voted = false;
        if self.leader_epoch < req_epoch && *current_epoch <= req_epoch {
            self.leader = Some(candidate.to_string());
            self.leader_epoch = *current_epoch;
            voted = true;
            // Having voted for another, do not start our own attempt for a while.
            if candidate != myid {
                self.failover_start = Some(now + desync);
            }
        }
        (self.leader.clone(), self.leader_epoch, voted)
    }

    /// The winner of the election for `epoch`, if one has a majority of the
    /// voters and at least `quorum` votes.
    pub fn tally(&self, epoch: u64) -> Option<String> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for p in self.peers.values() {
            if p.leader_epoch == epoch {
                if let Some(l) = &p.leader {
                    *counts.entry(l.as_str()).or_default() += 1;
                }
            }
        }
        if self.leader_epoch == epoch {
            if let Some(l) = &self.leader {
                *counts.entry(l.as_str()).or_default() += 1;
            }
        }
        let (winner, n) = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
        (n >= self.majority()).then(|| winner.to_string())
    }

    /// The replica to promote: reachable, recently heard, not priority 0, its link
    /// to the primary not down much longer than the primary itself; then lowest
    /// `replica-priority`, highest offset, smallest run id (Redis's order).
    pub fn select_replica(&self, now: Instant, info_period: Duration) -> Option<SocketAddr> {
        let down_for = self
            .primary
            .sdown_since
            .map_or(Duration::ZERO, |t| now.duration_since(t));
        let max_link_down = down_for + self.down_after * 10;
        let fresh = (info_period * 5).max(Duration::from_secs(3));
        let mut c: Vec<(&Instance, &InfoView)> = self
            .replicas
            .values()
            .filter(|r| r.sdown_since.is_none() && !self.demoted.contains(&r.addr))
            .filter(|r| r.last_info.is_some_and(|t| now.duration_since(t) < fresh))
            .filter_map(|r| r.info.as_ref().map(|i| (r, i)))
            .filter(|(_, i)| !i.role_master || self.failover.forced)
            .filter(|(_, i)| i.priority != 0)
            .filter(|(_, i)| Duration::from_secs(i.link_down_secs) <= max_link_down)
            .collect();
        c.sort_by(|a, b| {
            a.1.priority
                .cmp(&b.1.priority)
                .then(b.1.offset.cmp(&a.1.offset))
                .then(a.1.run_id.cmp(&b.1.run_id))
        });
        c.first().map(|(r, _)| r.addr)
    }

    /// After a failover (ours, or learnt from a peer's hello): `new` is the primary,
    /// the old one and every other replica its replicas.
    pub fn switch_to(&mut self, new: SocketAddr, now: Instant) {
        let old = self.primary.addr;
        let mut replicas: BTreeMap<SocketAddr, Instance> = std::mem::take(&mut self.replicas);
        let mut primary = replicas
            .remove(&new)
            .unwrap_or_else(|| Instance::new(new, now));
        primary.sdown_since = None;
        primary.role_master_since = None;
        primary.last_pong = now;
        if old != new {
            let mut o = Instance::new(old, now);
            o.sdown_since = self.primary.sdown_since;
            o.last_pong = self.primary.last_pong;
            replicas.insert(old, o);
            self.demoted.insert(old);
        }
        self.demoted.remove(&new);
        self.primary = primary;
        self.replicas = replicas;
        self.odown_since = None;
        self.failover = Failover::idle(now);
        for p in self.peers.values_mut() {
            p.says_down = false;
        }
    }

    /// Keeps the last events for the stats page.
    pub fn remember(&mut self, line: String) {
        if self.history.len() >= 32 {
            self.history.pop_front();
        }
        self.history.push_back(line);
    }
}

/// How long a peer's "down" answer counts.
pub const ASK_VALIDITY: Duration = Duration::from_secs(5);

/// A hello message: `ip,port,runid,current_epoch,master_name,master_ip,master_port,master_config_epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub addr: SocketAddr,
    pub run_id: String,
    pub current_epoch: u64,
    pub master_name: String,
    pub master_addr: SocketAddr,
    pub config_epoch: u64,
}

impl Hello {
    pub fn parse(s: &[u8]) -> Option<Hello> {
        let s = std::str::from_utf8(s).ok()?;
        let f: Vec<&str> = s.split(',').collect();
        if f.len() != 8 {
            return None;
        }
        Some(Hello {
            addr: resolve(f[0], f[1].parse().ok()?)?,
            run_id: f[2].to_string(),
            current_epoch: f[3].parse().ok()?,
            master_name: f[4].to_string(),
            master_addr: resolve(f[5], f[6].parse().ok()?)?,
            config_epoch: f[7].parse().ok()?,
        })
    }

    pub fn format(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{}",
            self.addr.ip(),
            self.addr.port(),
            self.run_id,
            self.current_epoch,
            self.master_name,
            self.master_addr.ip(),
            self.master_addr.port(),
            self.config_epoch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn master(quorum: usize, peers: usize) -> Master {
        let now = Instant::now();
        let mut m = Master::new(
            "db",
            a("127.0.0.1:6379"),
            quorum,
            (Duration::from_secs(1), Duration::from_secs(10)),
            now,
        );
        for i in 0..peers {
            let p = a(&format!("127.0.0.1:{}", 26380 + i));
            m.peers.insert(p, Peer::new(p, now));
        }
        m
    }

    #[test]
    fn info_of_a_primary_and_a_replica() {
        let p = parse_info("# Server\r\nrun_id:abc\r\n# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=10,lag=0\r\nmaster_repl_offset:10\r\n");
        assert!(p.role_master);
        assert_eq!(p.run_id, "abc");
        assert_eq!(p.replicas, vec![a("127.0.0.1:6380")]);
        assert_eq!(p.offset, 10);
        let r = parse_info("role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nslave_repl_offset:7\r\nslave_priority:50\r\nmaster_repl_offset:9\r\n");
        assert!(!r.role_master);
        assert_eq!(r.master, Some(a("127.0.0.1:6379")));
        assert!(r.master_link_up);
        assert_eq!((r.offset, r.priority), (7, 50));
    }

    #[test]
    fn one_vote_per_epoch_first_asker_wins() {
        let mut m = master(2, 2);
        let mut cur = 0;
        let now = Instant::now();
        let d = Duration::ZERO;
        let (l, e, voted) = m.vote(&mut cur, 1, "A", "me", now, d);
        assert_eq!((l.as_deref(), e, voted), (Some("A"), 1, true));
        let (l, _, voted) = m.vote(&mut cur, 1, "B", "me", now, d);
        assert_eq!((l.as_deref(), voted), (Some("A"), false));
        // A stale epoch changes nothing; a newer one gets a new vote.
        let (l, _, _) = m.vote(&mut cur, 0, "C", "me", now, d);
        assert_eq!(l.as_deref(), Some("A"));
        let (l, e, _) = m.vote(&mut cur, 2, "B", "me", now, d);
        assert_eq!((l.as_deref(), e, cur), (Some("B"), 2, 2));
    }

    #[test]
    fn a_minority_never_wins() {
        // Three sentinels, quorum 2: our own vote alone is not enough.
        let mut m = master(2, 2);
        let mut cur = 0;
        m.vote(&mut cur, 1, "me", "me", Instant::now(), Duration::ZERO);
        assert_eq!(m.tally(1), None);
        let p = *m.peers.keys().next().unwrap();
        let peer = m.peers.get_mut(&p).unwrap();
        peer.leader = Some("me".into());
        peer.leader_epoch = 1;
        assert_eq!(m.tally(1).as_deref(), Some("me"));
        // A vote of another epoch does not count.
        assert_eq!(m.tally(2), None);
        // Five sentinels with quorum 2 still need a majority of 3.
        let mut m = master(2, 4);
        m.vote(&mut cur, 3, "me", "me", Instant::now(), Duration::ZERO);
        let p = *m.peers.keys().next().unwrap();
        let peer = m.peers.get_mut(&p).unwrap();
        peer.leader = Some("me".into());
        peer.leader_epoch = 3;
        assert_eq!(m.tally(3), None);
    }

    #[test]
    fn best_replica_by_priority_then_offset() {
        let now = Instant::now();
        let mut m = master(1, 0);
        let mk = |addr: &str, prio: u64, off: u64| {
            let mut i = Instance::new(a(addr), now);
            i.last_info = Some(now);
            i.info = Some(InfoView {
                run_id: addr.into(),
                priority: prio,
                offset: off,
                ..InfoView::default()
            });
            i
        };
        for r in [
            mk("127.0.0.1:1", 100, 50),
            mk("127.0.0.1:2", 100, 90),
            mk("127.0.0.1:3", 0, 99),
        ] {
            m.replicas.insert(r.addr, r);
        }
        let p = Duration::from_secs(1);
        assert_eq!(m.select_replica(now, p), Some(a("127.0.0.1:2")));
        m.replicas
            .insert(a("127.0.0.1:4"), mk("127.0.0.1:4", 10, 1));
        assert_eq!(m.select_replica(now, p), Some(a("127.0.0.1:4")));
        m.replicas.get_mut(&a("127.0.0.1:4")).unwrap().sdown_since = Some(now);
        assert_eq!(m.select_replica(now, p), Some(a("127.0.0.1:2")));
    }

    #[test]
    fn switching_keeps_the_old_primary_as_a_replica() {
        let now = Instant::now();
        let mut m = master(1, 0);
        let r = a("127.0.0.1:6380");
        m.replicas.insert(r, Instance::new(r, now));
        m.switch_to(r, now);
        assert_eq!(m.primary.addr, r);
        assert!(m.replicas.contains_key(&a("127.0.0.1:6379")));
        assert!(m.demoted.contains(&a("127.0.0.1:6379")));
    }

    #[test]
    fn hellos_round_trip() {
        let h = Hello {
            addr: a("127.0.0.1:26379"),
            run_id: "x".repeat(40),
            current_epoch: 3,
            master_name: "db".into(),
            master_addr: a("127.0.0.1:6379"),
            config_epoch: 2,
        };
        assert_eq!(Hello::parse(h.format().as_bytes()), Some(h));
        assert_eq!(Hello::parse(b"1,2,3"), None);
    }
}
