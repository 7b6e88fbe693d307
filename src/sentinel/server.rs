//! The Sentinel protocol on `bind`: `SENTINEL ...`, `INFO`, `PING`, `ROLE`, and
//! `(P)SUBSCRIBE` to the events (`+switch-master`, `+sdown`, ...) as Redis 7 answers them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use super::state::{Instance, Master, Peer, Step};
use super::Sentinel;
use crate::kv::db::glob;
use crate::kv::frame::{self, parse_i64, reply, Args, Argv, Limits};

const LIMITS: Limits = Limits {
    max_bulk: 64 << 10,
    max_array: 64,
    max_inline: 64 << 10,
    authed: true,
};

/// Accepts clients until the process ends; past `max-clients` they get an error and are closed.
pub async fn accept_loop(s: Arc<Sentinel>, l: TcpListener) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (sock, _) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(sentinel = %s.conf.name, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= s.conf.max_clients {
            let _ = sock.try_write(b"-ERR max number of clients reached\r\n");
            continue;
        }
        let _ = sock.set_nodelay(true);
        let (s, open) = (s.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            serve(&s, sock).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A client's subscriptions.
#[derive(Default)]
struct Subs {
    channels: HashSet<Vec<u8>>,
    patterns: HashSet<Vec<u8>>,
}

impl Subs {
    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

async fn serve(s: &Sentinel, mut sock: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let mut args = Args::default();
    let mut subs = Subs::default();
    let mut events: Option<broadcast::Receiver<(String, String)>> = None;
    loop {
        // Every complete request in the buffer first.
        let mut start = 0;
        loop {
            match frame::parse(&buf[start..], &LIMITS, &mut args) {
                Ok(None) => break,
                Ok(Some(n)) => {
                    let argv = Argv {
                        buf: &buf[start..start + n],
                        ranges: &args.ranges,
                    };
                    start += n;
                    if argv.is_empty() {
                        continue;
                    }
                    if command(s, argv, &mut subs, &mut out) {
                        let _ = sock.write_all(&out).await;
                        return;
                    }
                }
                Err(e) => {
                    reply::err(&mut out, &format!("ERR Protocol error: {e}"));
                    let _ = sock.write_all(&out).await;
                    return;
                }
            }
        }
        buf.drain(..start);
        if subs.count() > 0 && events.is_none() {
            events = Some(s.events.subscribe());
        } else if subs.count() == 0 {
            events = None;
        }
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if buf.len() > LIMITS.max_inline + LIMITS.max_bulk * 2 {
            return;
        }
        let mut chunk = [0u8; 4096];
        tokio::select! {
            r = sock.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            ev = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Ok((chan, msg)) => deliver(&subs, chan.as_bytes(), msg.as_bytes(), &mut out),
                // A slow subscriber misses events rather than holding memory.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

fn deliver(subs: &Subs, chan: &[u8], msg: &[u8], out: &mut Vec<u8>) {
    if subs.channels.contains(chan) {
        reply::array(out, 3);
        reply::bulk(out, b"message");
        reply::bulk(out, chan);
        reply::bulk(out, msg);
    }
    for p in &subs.patterns {
        if glob(p, chan) {
            reply::array(out, 4);
            reply::bulk(out, b"pmessage");
            reply::bulk(out, p);
            reply::bulk(out, chan);
            reply::bulk(out, msg);
        }
    }
}

fn unknown(out: &mut Vec<u8>, a: Argv) {
    reply::err(
        out,
        &format!(
            "ERR unknown command '{}'",
            String::from_utf8_lossy(&a.get(0)[..a.get(0).len().min(64)])
        ),
    );
}

fn arity(out: &mut Vec<u8>, name: &str) {
    reply::err(
        out,
        &format!("ERR wrong number of arguments for '{name}' command"),
    );
}

/// Runs one command; true = close the connection after the reply (QUIT).
fn command(s: &Sentinel, a: Argv, subs: &mut Subs, out: &mut Vec<u8>) -> bool {
    let name = a.get(0).to_ascii_uppercase();
    let in_sub = subs.count() > 0;
    if in_sub
        && !matches!(
            &name[..],
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"PING" | b"QUIT"
        )
    {
        reply::err(out, &format!("ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", String::from_utf8_lossy(&name).to_lowercase()));
        return false;
    }
    match &name[..] {
        b"PING" if in_sub => {
            reply::array(out, 2);
            reply::bulk(out, b"pong");
            reply::bulk(out, a.get(1));
        }
        b"PING" => match a.len() {
            1 => reply::simple(out, "PONG"),
            2 => reply::bulk(out, a.get(1)),
            _ => arity(out, "ping"),
        },
        b"QUIT" => {
            reply::ok(out);
            return true;
        }
        b"AUTH" => reply::err(
            out,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
        b"CLIENT" => {
            let sub = a.get(1).to_ascii_uppercase();
            match &sub[..] {
                b"SETNAME" | b"SETINFO" => reply::ok(out),
                b"GETNAME" => reply::nil(out),
                b"ID" => reply::int(out, 1),
                _ => reply::err(out, "ERR unknown subcommand for CLIENT in sentinel mode"),
            }
        }
        b"COMMAND" => reply::array(out, 0),
        b"ROLE" => {
            let names: Vec<String> = s.lock().masters.iter().map(|m| m.name.clone()).collect();
            reply::array(out, 2);
            reply::bulk(out, b"sentinel");
            reply::array(out, names.len());
            for n in names {
                reply::bulk(out, n.as_bytes());
            }
        }
        b"INFO" => info(s, a, out),
        b"PUBLISH" => {
            if a.len() != 3 {
                return {
                    arity(out, "publish");
                    false
                };
            }
            if a.get(1) == super::links::HELLO_CHANNEL.as_bytes() {
                s.saw_hello(a.get(2), Instant::now());
                reply::int(out, 1);
            } else {
                reply::err(out, "ERR Only HELLO messages are accepted by Sentinel instances.");
            }
        }
        b"SUBSCRIBE" | b"PSUBSCRIBE" => {
            if a.len() < 2 {
                arity(out, &String::from_utf8_lossy(&name).to_lowercase());
                return false;
            }
            let pattern = &name[..] == b"PSUBSCRIBE";
            for c in a.iter().skip(1) {
                if pattern {
                    subs.patterns.insert(c.to_vec());
                } else {
                    subs.channels.insert(c.to_vec());
                }
                reply::array(out, 3);
                reply::bulk(out, if pattern { b"psubscribe" } else { b"subscribe" });
                reply::bulk(out, c);
                reply::int(out, subs.count() as i64);
            }
        }
        b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" => {
            let pattern = &name[..] == b"PUNSUBSCRIBE";
            let kind: &[u8] = if pattern { b"punsubscribe" } else { b"unsubscribe" };
            let set = if pattern {
                &mut subs.patterns
            } else {
                &mut subs.channels
            };
            let names: Vec<Vec<u8>> = if a.len() > 1 {
                a.iter().skip(1).map(|c| c.to_vec()).collect()
            } else {
                set.iter().cloned().collect()
            };
            if names.is_empty() {
                reply::array(out, 3);
                reply::bulk(out, kind);
                reply::nil(out);
                reply::int(out, subs.count() as i64);
            }
            for c in names {
                let set = if pattern {
                    &mut subs.patterns
                } else {
                    &mut subs.channels
                };
                set.remove(&c);
                reply::array(out, 3);
                reply::bulk(out, kind);
                reply::bulk(out, &c);
                reply::int(out, subs.count() as i64);
            }
        }
        b"SENTINEL" => sentinel_cmd(s, a, out),
        _ => unknown(out, a),
    }
    false
}

fn info(s: &Sentinel, a: Argv, out: &mut Vec<u8>) {
    let want = |sec: &str| {
        a.len() < 2
            || a.iter().skip(1).any(|x| {
                x.eq_ignore_ascii_case(sec.as_bytes())
                    || x.eq_ignore_ascii_case(b"all")
                    || x.eq_ignore_ascii_case(b"default")
                    || x.eq_ignore_ascii_case(b"everything")
            })
    };
    let mut t = String::new();
    if want("server") {
        let up = s.uptime().as_secs();
        let _ = write!(
            t,
            "# Server\r\nredis_version:{}\r\nlb_version:{}\r\nredis_mode:sentinel\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nexecutable:lb\r\n\r\n",
            crate::kv::REDIS_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            s.myid,
            s.port(),
            up / 86400,
        );
    }
    if want("sentinel") {
        let w = s.lock();
        let _ = write!(
            t,
            "# Sentinel\r\nsentinel_masters:{}\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n",
            w.masters.len()
        );
        for (i, m) in w.masters.iter().enumerate() {
            let status = if m.odown_since.is_some() {
                "odown"
            } else if m.primary.sdown_since.is_some() {
                "sdown"
            } else {
                "ok"
            };
            let _ = write!(
                t,
                "master{i}:name={},status={status},address={},slaves={},sentinels={}\r\n",
                m.name,
                m.current_addr(),
                m.replicas.len(),
                m.voters()
            );
        }
        t.push_str("\r\n");
    }
    while t.ends_with("\r\n\r\n") {
        t.truncate(t.len() - 2);
    }
    reply::bulk(out, t.as_bytes());
}

/// Milliseconds since `t`, as Redis's `*-time` fields.
fn ms_since(t: Option<Instant>, now: Instant) -> i64 {
    t.map_or(0, |t| now.saturating_duration_since(t).as_millis() as i64)
}

/// A reply built as field/value pairs (Redis's flat map of an instance).
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn put(&mut self, k: &'static str, v: impl ToString) {
        self.0.push((k, v.to_string()));
    }

    fn write(self, out: &mut Vec<u8>) {
        reply::array(out, self.0.len() * 2);
        for (k, v) in self.0 {
            reply::bulk(out, k.as_bytes());
            reply::bulk(out, v.as_bytes());
        }
    }
}

fn common(f: &mut Fields, name: &str, addr: SocketAddr, runid: &str, flags: &str) {
    f.put("name", name);
    f.put("ip", addr.ip());
    f.put("port", addr.port());
    f.put("runid", runid);
    f.put("flags", flags);
    f.put("link-pending-commands", 0);
    f.put("link-refcount", 1);
}

fn instance_times(f: &mut Fields, i: &Instance, now: Instant) {
    f.put("last-ping-sent", 0);
    f.put("last-ok-ping-reply", ms_since(Some(i.last_pong), now));
    f.put("last-ping-reply", ms_since(Some(i.last_pong), now));
    if let Some(t) = i.sdown_since {
        f.put("s-down-time", ms_since(Some(t), now));
    }
}

fn master_fields(s: &Sentinel, m: &Master, now: Instant) -> Fields {
    let mut f = Fields(Vec::new());
    let mut flags = String::from("master");
    if m.primary.sdown_since.is_some() {
        flags.push_str(",s_down");
    }
    if m.odown_since.is_some() {
        flags.push_str(",o_down");
    }
    if m.failover.step != Step::None {
        flags.push_str(",failover_in_progress");
    }
    common(
        &mut f,
        &m.name,
        m.current_addr(),
        m.primary.run_id(),
        &flags,
    );
    instance_times(&mut f, &m.primary, now);
    if let Some(t) = m.odown_since {
        f.put("o-down-time", ms_since(Some(t), now));
    }
    f.put("down-after-milliseconds", m.down_after.as_millis());
    f.put("info-refresh", ms_since(m.primary.last_info, now));
    f.put("role-reported", "master");
    f.put("role-reported-time", ms_since(Some(s.started), now));
    f.put("config-epoch", m.config_epoch);
    f.put("num-slaves", m.replicas.len());
    f.put("num-other-sentinels", m.peers.len());
    f.put("quorum", m.quorum);
    f.put("failover-timeout", m.failover_timeout.as_millis());
    f.put("parallel-syncs", 1);
    if m.failover.step != Step::None {
        f.put("failover-state", m.failover.step.name());
    }
    f
}

fn replica_fields(m: &Master, r: &Instance, now: Instant) -> Fields {
    let mut f = Fields(Vec::new());
    let mut flags = String::from("slave");
    if r.sdown_since.is_some() {
        flags.push_str(",s_down");
    }
    if m.failover.promoted == Some(r.addr) {
        flags.push_str(",promoted");
    }
    if r.sdown_since.is_none() && r.info.is_none() {
        flags.push_str(",disconnected");
    }
    common(&mut f, &r.addr.to_string(), r.addr, r.run_id(), &flags);
    instance_times(&mut f, r, now);
    f.put("info-refresh", ms_since(r.last_info, now));
    let v = r.info.clone().unwrap_or_default();
    f.put(
        "role-reported",
        if v.role_master { "master" } else { "slave" },
    );
    f.put("role-reported-time", ms_since(r.last_info, now));
    f.put("master-link-down-time", v.link_down_secs * 1000);
    f.put(
        "master-link-status",
        if v.master_link_up { "ok" } else { "err" },
    );
    let (h, p) = match v.master {
        Some(a) => (a.ip().to_string(), a.port()),
        None => ("?".to_string(), 0),
    };
    f.put("master-host", h);
    f.put("master-port", p);
    f.put("slave-priority", v.priority);
    f.put("slave-repl-offset", v.offset);
    f.put("replica-announced", 1);
    f
}

fn peer_fields(p: &Peer, now: Instant) -> Fields {
    let mut f = Fields(Vec::new());
    let flags = if p.sdown_since.is_some() {
        "sentinel,s_down"
    } else {
        "sentinel"
    };
    let id = p.run_id.clone().unwrap_or_default();
    common(&mut f, &id, p.addr, &id, flags);
    f.put("last-ping-sent", 0);
    f.put("last-ok-ping-reply", ms_since(Some(p.last_pong), now));
    f.put("last-ping-reply", ms_since(Some(p.last_pong), now));
    if let Some(t) = p.sdown_since {
        f.put("s-down-time", ms_since(Some(t), now));
    }
    f.put("down-after-milliseconds", 0);
    f.put("last-hello-message", ms_since(p.last_hello, now));
    f.put("voted-leader", p.leader.as_deref().unwrap_or("?"));
    f.put("voted-leader-epoch", p.leader_epoch);
    f
}

const NO_MASTER: &str = "ERR No such master with that name";

fn sentinel_cmd(s: &Sentinel, a: Argv, out: &mut Vec<u8>) {
    let sub = a.get(1).to_ascii_lowercase();
    let now = Instant::now();
    let name = String::from_utf8_lossy(a.get(2)).into_owned();
    let need = |n: usize, out: &mut Vec<u8>| {
        if a.len() != n {
            reply::err(
                out,
                &format!(
                    "ERR wrong number of arguments for 'sentinel|{}' command",
                    String::from_utf8_lossy(&sub)
                ),
            );
            false
        } else {
            true
        }
    };
    match &sub[..] {
        b"myid" => reply::bulk(out, s.myid.as_bytes()),
        b"masters" => {
            let w = s.lock();
            reply::array(out, w.masters.len());
            for m in &w.masters {
                master_fields(s, m, now).write(out);
            }
        }
        b"master" if need(3, out) => {
            let w = s.lock();
            match w.masters.iter().find(|m| m.name == name) {
                Some(m) => master_fields(s, m, now).write(out),
                None => reply::err(out, NO_MASTER),
            }
        }
        b"replicas" | b"slaves" if need(3, out) => {
            let w = s.lock();
            match w.masters.iter().find(|m| m.name == name) {
                Some(m) => {
                    // After a promotion the promoted server is the primary, not a replica.
                    let cur = m.current_addr();
                    let list: Vec<&Instance> =
                        m.replicas.values().filter(|r| r.addr != cur).collect();
                    let old = (cur != m.primary.addr).then_some(&m.primary);
                    reply::array(out, list.len() + old.is_some() as usize);
                    for r in list {
                        replica_fields(m, r, now).write(out);
                    }
                    if let Some(o) = old {
                        replica_fields(m, o, now).write(out);
                    }
                }
                None => reply::err(out, NO_MASTER),
            }
        }
        b"sentinels" if need(3, out) => {
            let w = s.lock();
            match w.masters.iter().find(|m| m.name == name) {
                Some(m) => {
                    reply::array(out, m.peers.len());
                    for p in m.peers.values() {
                        peer_fields(p, now).write(out);
                    }
                }
                None => reply::err(out, NO_MASTER),
            }
        }
        b"get-master-addr-by-name" if need(3, out) => {
            let w = s.lock();
            match w.masters.iter().find(|m| m.name == name) {
                Some(m) => {
                    let addr = m.current_addr();
                    reply::array(out, 2);
                    reply::bulk(out, addr.ip().to_string().as_bytes());
                    reply::bulk(out, addr.port().to_string().as_bytes());
                }
                None => out.extend_from_slice(b"*-1\r\n"),
            }
        }
        b"is-master-down-by-addr" if need(6, out) => {
            let ip = String::from_utf8_lossy(a.get(2));
            let (Some(port), Some(epoch)) = (parse_i64(a.get(3)), parse_i64(a.get(4))) else {
                return reply::err(out, "ERR value is not an integer or out of range");
            };
            let addr = u16::try_from(port)
                .ok()
                .and_then(|p| super::state::resolve(&ip, p));
            let runid = String::from_utf8_lossy(a.get(5)).into_owned();
            let (down, leader, le) = match addr {
                Some(addr) => s.is_master_down(addr, epoch.max(0) as u64, &runid),
                None => (false, None, 0),
            };
            reply::array(out, 3);
            reply::int(out, down as i64);
            reply::bulk(out, leader.as_deref().unwrap_or("*").as_bytes());
            reply::int(out, le as i64);
        }
        b"failover" if need(3, out) => match s.force_failover(&name) {
            Ok(()) => reply::ok(out),
            Err(e) => reply::err(out, e),
        },
        b"ckquorum" if need(3, out) => {
            let w = s.lock();
            match w.masters.iter().find(|m| m.name == name) {
                Some(m) => {
                    let usable = m.reachable_sentinels();
                    let voters = m.voters();
                    let mut e = String::new();
                    if usable < m.quorum {
                        e.push_str(" Not enough available Sentinels to reach the specified quorum for this master.");
                    }
                    if usable < voters / 2 + 1 {
                        e.push_str(" Not enough available Sentinels to reach the majority and authorize a failover.");
                    }
                    if e.is_empty() {
                        reply::simple(out, &format!("OK {usable} usable Sentinels. Quorum and failover authorization can be reached"));
                    } else {
                        reply::err(out, &format!("NOQUORUM {usable} usable Sentinels.{e}"));
                    }
                }
                None => reply::err(out, NO_MASTER),
            }
        }
        b"reset" if need(3, out) => {
            let pat = a.get(2).to_vec();
            let n = s.with(|w| {
                let mut n = 0;
                for m in w
                    .masters
                    .iter_mut()
                    .filter(|m| glob(&pat, m.name.as_bytes()))
                {
                    m.replicas.clear();
                    m.peers.clear();
                    n += 1;
                }
                n
            });
            reply::int(out, n);
        }
        b"pending-scripts" => reply::array(out, 0),
        b"flushconfig" => reply::ok(out),
        // Arity errors were already written by `need`.
        b"master"
        | b"replicas"
        | b"slaves"
        | b"sentinels"
        | b"get-master-addr-by-name"
        | b"is-master-down-by-addr"
        | b"failover"
        | b"ckquorum"
        | b"reset" => {}
        _ => reply::err(
            out,
            &format!(
                "ERR Unknown sentinel subcommand '{}'",
                String::from_utf8_lossy(&sub[..sub.len().min(64)])
            ),
        ),
    }
}
