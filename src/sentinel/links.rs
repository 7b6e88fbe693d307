//! The sentinel's network side: a command link to every primary and replica (PING,
//! INFO, hellos), a subscription to their `__sentinel__:hello`, a link to every peer
//! sentinel (PING, `is-master-down-by-addr`), and the REPLICAOF commands of a failover.
//! Each link ends by itself once its server is no longer watched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decide::Action;
use super::state::{parse_info, Hello, Step};
use super::{Sentinel, ASK_PERIOD, HELLO_PERIOD, TICK};
use crate::app::kvclient::{text, Conn, KvError, Reply};

pub const HELLO_CHANNEL: &str = "__sentinel__:hello";

/// What a link needs to know of its primary this round; `None`: no longer watched.
struct Plan {
    info_period: Duration,
    hello: Option<Hello>,
}

fn due(last: Option<Instant>, period: Duration, now: Instant) -> bool {
    last.is_none_or(|t| now.duration_since(t) >= period)
}

impl Sentinel {
    fn plan(&self, master: &str, addr: SocketAddr) -> Option<Plan> {
        let mut w = self.lock();
        let epoch = w.current_epoch;
        let m = w.master(master)?;
        if m.primary.addr != addr && !m.replicas.contains_key(&addr) {
            return None;
        }
        Some(Plan {
            info_period: self.info_period_of(m),
            hello: Some(Hello {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                run_id: self.myid.clone(),
                current_epoch: epoch,
                master_name: m.name.clone(),
                master_addr: m.current_addr(),
                config_epoch: m.config_epoch,
            }),
        })
    }

    fn watches(&self, master: &str, addr: SocketAddr) -> bool {
        let mut w = self.lock();
        w.master(master)
            .is_some_and(|m| m.primary.addr == addr || m.replicas.contains_key(&addr))
    }

    /// Our address in hellos: the bound IP, or the one our link to the server uses.
    fn announce(&self, conn: &Conn) -> SocketAddr {
        let ip = if self.conf.bind.ip().is_unspecified() {
            conn.local_addr().map_or(self.conf.bind.ip(), |a| a.ip())
        } else {
            self.conf.bind.ip()
        };
        SocketAddr::new(ip, self.port())
    }

    async fn open(&self, addr: SocketAddr, auth: bool) -> Result<Conn, KvError> {
        let pass = if auth {
            self.conf.auth_pass.as_deref()
        } else {
            None
        };
        let mut c = Conn::open(addr, pass, self.call_timeout()).await?;
        let name = format!("sentinel-{}-link", &self.myid[..8]);
        // Older servers may not know CLIENT SETNAME: the answer does not matter.
        let _ = c
            .call(
                &[b"CLIENT", b"SETNAME", name.as_bytes()],
                self.call_timeout(),
            )
            .await?;
        Ok(c)
    }
}

/// Whether a PING reply shows the server alive (Redis counts LOADING and MASTERDOWN too).
fn alive(r: &Reply) -> bool {
    match r {
        Reply::Status(_) => true,
        Reply::Error(e) => e.starts_with("LOADING") || e.starts_with("MASTERDOWN"),
        _ => false,
    }
}

/// The command link to a primary or replica of `master`.
pub async fn instance(s: Arc<Sentinel>, master: String, addr: SocketAddr) {
    let mut conn: Option<Conn> = None;
    let (mut last_ping, mut last_info, mut last_hello) = (None, None, None);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let Some(plan) = s.plan(&master, addr) else {
            return;
        };
        let now = Instant::now();
        let t = s.call_timeout();
        if conn.is_none() {
            if !due(last_ping, s.ping_period(), now) {
                continue;
            }
            last_ping = Some(now);
            match s.open(addr, true).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(sentinel = %s.conf.name, "link to {addr}: {e}");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let r: Result<(), KvError> = async {
            if due(last_ping, s.ping_period(), now) {
                last_ping = Some(now);
                if alive(&c.call(&[b"PING"], t).await?) {
                    s.saw_pong(&master, addr, Instant::now());
                }
            }
            if due(last_info, plan.info_period, now) {
                last_info = Some(now);
                if let Some(info) = text(&c.call(&[b"INFO"], t).await?) {
                    s.saw_info(&master, addr, parse_info(&info), Instant::now());
                }
            }
            if due(last_hello, HELLO_PERIOD, now) {
                last_hello = Some(now);
                if let Some(mut h) = plan.hello {
                    h.addr = s.announce(c);
                    let msg = h.format();
                    c.call(&[b"PUBLISH", HELLO_CHANNEL.as_bytes(), msg.as_bytes()], t)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::debug!(sentinel = %s.conf.name, "link to {addr} lost: {e}");
            conn = None;
        }
    }
}

/// The subscription to a server's `__sentinel__:hello`: how sentinels find each other.
pub async fn hellos(s: Arc<Sentinel>, master: String, addr: SocketAddr) {
    let wait = Duration::from_secs(1);
    while s.watches(&master, addr) {
        let mut c = match s.open(addr, true).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if c.send(&[b"SUBSCRIBE", HELLO_CHANNEL.as_bytes()], s.call_timeout())
            .await
            .is_err()
        {
            continue;
        }
        loop {
            match c.read(wait).await {
                Ok(Reply::Array(Some(parts))) => {
                    if let (Some(Reply::Bulk(Some(kind))), Some(Reply::Bulk(Some(payload)))) =
                        (parts.first(), parts.get(2))
                    {
                        if kind == b"message" {
                            s.saw_hello(payload, Instant::now());
                        }
                    }
                }
                Ok(_) => {}
                Err(KvError::Timeout(_)) => {
                    if !s.watches(&master, addr) {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// A question for a peer: the primary's address, the epoch, and our run id when
/// asking for a vote (else `*`).
type Ask = (SocketAddr, u64, String);

/// What to ask a peer about a primary: (its address, the epoch, our run id when
/// asking for a vote, else `*`), and the ask generation.
fn ask_plan(s: &Sentinel, master: &str, peer: SocketAddr) -> Option<(Option<Ask>, u64)> {
    let mut w = s.lock();
    let epoch = w.current_epoch;
    let m = w.master(master)?;
    if !m.peers.contains_key(&peer) {
        return None;
    }
    let ask = m.primary.sdown_since.is_some().then(|| {
        let runid = if m.failover.step == Step::WaitStart && !m.failover.forced {
            s.myid.clone()
        } else {
            "*".to_string()
        };
        (m.primary.addr, epoch, runid)
    });
    Some((ask, m.ask_now))
}

/// The link to another sentinel: PING, its run id, and while the primary is down
/// `is-master-down-by-addr` (with our run id during an election).
pub async fn peer(s: Arc<Sentinel>, master: String, addr: SocketAddr) {
    let mut conn: Option<Conn> = None;
    let (mut last_ping, mut last_ask, mut asked_gen) = (None, None, 0);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let Some((ask, ask_gen)) = ask_plan(&s, &master, addr) else {
            return;
        };
        let now = Instant::now();
        let t = s.call_timeout();
        let period = s.ping_period().max(Duration::from_millis(250));
        if conn.is_none() {
            if !due(last_ping, period, now) {
                continue;
            }
            last_ping = Some(now);
            match s.open(addr, false).await {
                Ok(mut c) => {
                    // Its run id; a peer line naming ourselves is dropped.
                    match c
                        .call(&[b"SENTINEL", b"MYID"], t)
                        .await
                        .ok()
                        .as_ref()
                        .and_then(text)
                    {
                        Some(id) if id == s.myid => {
                            s.with(|w| {
                                if let Some(m) = w.master(&master) {
                                    m.peers.remove(&addr);
                                }
                            });
                            return;
                        }
                        Some(id) => {
                            if let Some(p) = s
                                .lock()
                                .master(&master)
                                .and_then(|m| m.peers.get_mut(&addr))
                            {
                                p.run_id = Some(id);
                            }
                        }
                        None => {}
                    }
                    conn = Some(c);
                }
                Err(_) => continue,
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let r: Result<(), KvError> = async {
            if due(last_ping, period, now) {
                last_ping = Some(now);
                if alive(&c.call(&[b"PING"], t).await?) {
                    s.saw_pong(&master, addr, Instant::now());
                }
            }
            if let Some((primary, epoch, runid)) = ask {
                if due(last_ask, ASK_PERIOD, now) || ask_gen != asked_gen {
                    last_ask = Some(now);
                    asked_gen = ask_gen;
                    let (ip, port, ep) = (
                        primary.ip().to_string(),
                        primary.port().to_string(),
                        epoch.to_string(),
                    );
                    let r = c
                        .call(
                            &[
                                b"SENTINEL",
                                b"is-master-down-by-addr",
                                ip.as_bytes(),
                                port.as_bytes(),
                                ep.as_bytes(),
                                runid.as_bytes(),
                            ],
                            t,
                        )
                        .await?;
                    if let Reply::Array(Some(v)) = r {
                        if let (Some(Reply::Int(down)), Some(leader), Some(Reply::Int(le))) =
                            (v.first(), v.get(1).and_then(text), v.get(2))
                        {
                            let leader = (leader != "*").then_some(leader);
                            s.saw_vote(
                                &master,
                                addr,
                                *down == 1,
                                leader,
                                (*le).max(0) as u64,
                                Instant::now(),
                            );
                        }
                    }
                }
            } else {
                asked_gen = ask_gen;
            }
            Ok(())
        }
        .await;
        if r.is_err() {
            conn = None;
        }
    }
}

/// Runs one action: REPLICAOF on a server (then, as Redis, CONFIG REWRITE and
/// CLIENT KILL TYPE normal so clients reconnect and ask the sentinels again).
pub async fn act(s: Arc<Sentinel>, a: Action) {
    let Action::ReplicaOf { addr, target } = a;
    let (host, port) = match target {
        Some(t) => (t.ip().to_string(), t.port().to_string()),
        None => ("NO".to_string(), "ONE".to_string()),
    };
    let t = s.call_timeout();
    let r: Result<Reply, KvError> = async {
        let mut c = s.open(addr, true).await?;
        let r = c
            .call(&[b"REPLICAOF", host.as_bytes(), port.as_bytes()], t)
            .await?;
        let _ = c.call(&[b"CONFIG", b"REWRITE"], t).await;
        let _ = c.call(&[b"CLIENT", b"KILL", b"TYPE", b"normal"], t).await;
        Ok(r)
    }
    .await;
    match r {
        Ok(Reply::Error(e)) => {
            tracing::warn!(sentinel = %s.conf.name, "REPLICAOF {host} {port} on {addr} refused: {e}")
        }
        Err(e) => {
            tracing::warn!(sentinel = %s.conf.name, "REPLICAOF {host} {port} on {addr} failed: {e}")
        }
        Ok(_) => tracing::info!(sentinel = %s.conf.name, "{addr}: REPLICAOF {host} {port}"),
    }
}
