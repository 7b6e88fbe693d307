//! Connected clients as CLIENT LIST shows them and CLIENT KILL finds them:
//! one entry per connection, refreshed once per request batch (never per
//! command), and a kill signal each connection's read loop waits on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::command::ERR_SYNTAX;
use super::frame::{parse_i64, reply, Argv};

/// What CLIENT LIST prints of one connection.
#[derive(Debug, Clone)]
pub struct Info {
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i32,
    pub name: Vec<u8>,
    pub since: Instant,
    pub last: Instant,
    pub cmd: &'static str,
    pub sub: usize,
    pub psub: usize,
    /// Commands queued in MULTI, -1 outside one.
    pub multi: i64,
    /// The connection became a replica's feed (PSYNC).
    pub replica: bool,
    pub db: usize,
    pub kill: Arc<Notify>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Normal,
    Master,
    Replica,
    PubSub,
}

impl Type {
    fn parse(s: &[u8]) -> Option<Type> {
        let is = |n: &[u8]| s.eq_ignore_ascii_case(n);
        if is(b"normal") {
            Some(Type::Normal)
        } else if is(b"master") {
            Some(Type::Master)
        } else if is(b"replica") || is(b"slave") {
            Some(Type::Replica)
        } else if is(b"pubsub") {
            Some(Type::PubSub)
        } else {
            None
        }
    }
}

impl Info {
    fn kind(&self) -> Type {
        if self.replica {
            Type::Replica
        } else if self.sub + self.psub > 0 {
            Type::PubSub
        } else {
            Type::Normal
        }
    }

    /// One CLIENT LIST line, in Redis 7.0's field order.
    pub fn line(&self, id: u64, now: Instant) -> String {
        let flags = match self.kind() {
            Type::Replica => "S",
            Type::PubSub => "P",
            _ if self.multi >= 0 => "x",
            _ => "N",
        };
        format!(
            "id={id} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={} sub={} psub={} ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp=2\n",
            self.addr,
            self.laddr,
            self.fd,
            String::from_utf8_lossy(&self.name),
            now.duration_since(self.since).as_secs(),
            now.duration_since(self.last).as_secs(),
            self.db,
            self.sub,
            self.psub,
            self.multi,
            self.cmd,
        )
    }
}

#[derive(Debug, Default)]
pub struct Registry(Mutex<BTreeMap<u64, Info>>);

/// What CLIENT KILL matched, for the caller to act on the replication links.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Killed {
    pub clients: usize,
    pub master: bool,
    pub replicas: bool,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, BTreeMap<u64, Info>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection; its read loop waits on the returned signal.
    pub fn add(&self, id: u64, addr: SocketAddr, laddr: SocketAddr, fd: i32) -> Arc<Notify> {
        let kill = Arc::new(Notify::new());
        let now = Instant::now();
        self.map().insert(
            id,
            Info {
                addr,
                laddr,
                fd,
                name: Vec::new(),
                since: now,
                last: now,
                cmd: "NULL",
                sub: 0,
                psub: 0,
                multi: -1,
                replica: false,
                db: 0,
                kill: kill.clone(),
            },
        );
        kill
    }

    pub fn remove(&self, id: u64) {
        self.map().remove(&id);
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut Info)) {
        if let Some(i) = self.map().get_mut(&id) {
            f(i);
        }
    }

    /// CLIENT LIST [TYPE t] [ID id ...]; `me` is the caller (its current command shows).
    pub fn list(&self, a: Argv, me: u64, qbuf: usize, out: &mut Vec<u8>) {
        let mut want_type = None;
        let mut ids: Option<Vec<u64>> = None;
        if a.len() > 2 {
            let o = a.get(2);
            if o.eq_ignore_ascii_case(b"TYPE") && a.len() == 4 {
                match Type::parse(a.get(3)) {
                    Some(t) => want_type = Some(t),
                    None => {
                        return reply::err(
                            out,
                            &format!(
                                "ERR Unknown client type '{}'",
                                String::from_utf8_lossy(a.get(3))
                            ),
                        )
                    }
                }
            } else if o.eq_ignore_ascii_case(b"ID") && a.len() > 3 {
                let mut v = Vec::new();
                for s in a.iter().skip(3) {
                    match parse_i64(s) {
                        Some(n) if n > 0 => v.push(n as u64),
                        _ => return reply::err(out, "ERR Invalid client ID"),
                    }
                }
                ids = Some(v);
            } else {
                return reply::err(out, ERR_SYNTAX);
            }
        }
        let now = Instant::now();
        let mut text = String::new();
        for (id, i) in self.map().iter() {
            if want_type.is_some_and(|t| t != i.kind()) {
                continue;
            }
            if ids.as_ref().is_some_and(|v| !v.contains(id)) {
                continue;
            }
            let mut i = i.clone();
            let mut line = if *id == me {
                i.cmd = "client|list";
                i.last = now;
                i.line(*id, now)
            } else {
                i.line(*id, now)
            };
            if *id == me {
                line = line.replacen(" qbuf=0 ", &format!(" qbuf={qbuf} "), 1);
            }
            text.push_str(&line);
        }
        reply::bulk(out, text.as_bytes());
    }

    /// CLIENT INFO: the caller's own line.
    pub fn info(&self, me: u64, qbuf: usize, out: &mut Vec<u8>) {
        let now = Instant::now();
        let line = self.map().get(&me).map(|i| {
            let mut i = i.clone();
            i.cmd = "client|info";
            i.last = now;
            i.line(me, now)
                .replacen(" qbuf=0 ", &format!(" qbuf={qbuf} "), 1)
        });
        reply::bulk(out, line.unwrap_or_default().as_bytes());
    }

    /// CLIENT KILL, both forms. Replies, signals the matched connections, and
    /// says whether the replication links (not in the registry) must be cut.
    pub fn kill(&self, a: Argv, me: u64, is_replica: bool, out: &mut Vec<u8>) -> Killed {
        let mut k = Killed::default();
        if a.len() == 3 {
            // Old form: CLIENT KILL addr:port.
            let addr = a.get(2);
            let map = self.map();
            match map
                .iter()
                .find(|(_, i)| i.addr.to_string().as_bytes() == addr)
            {
                Some((_, i)) => {
                    i.kill.notify_one();
                    k.clients = 1;
                    reply::ok(out);
                }
                None => reply::err(out, "ERR No such client"),
            }
            return k;
        }
        if !a.len().is_multiple_of(2) {
            reply::err(out, ERR_SYNTAX);
            return k;
        }
        let (mut id, mut typ, mut addr, mut laddr, mut maxage) = (None, None, None, None, None);
        let mut skipme = true;
        let mut i = 2;
        while i < a.len() {
            let (o, v) = (a.get(i), a.get(i + 1));
            let is = |n: &[u8]| o.eq_ignore_ascii_case(n);
            if is(b"ID") {
                match parse_i64(v) {
                    Some(n) if n > 0 => id = Some(n as u64),
                    _ => {
                        reply::err(out, "ERR client-id should be greater than 0");
                        return k;
                    }
                }
            } else if is(b"TYPE") {
                match Type::parse(v) {
                    Some(t) => typ = Some(t),
                    None => {
                        reply::err(
                            out,
                            &format!("ERR Unknown client type '{}'", String::from_utf8_lossy(v)),
                        );
                        return k;
                    }
                }
            } else if is(b"ADDR") {
                addr = Some(v);
            } else if is(b"LADDR") {
                laddr = Some(v);
            } else if is(b"USER") {
                if v != b"default" {
                    reply::err(
                        out,
                        &format!("ERR No such user '{}'", String::from_utf8_lossy(v)),
                    );
                    return k;
                }
            } else if is(b"SKIPME") {
                if v.eq_ignore_ascii_case(b"yes") {
                    skipme = true;
                } else if v.eq_ignore_ascii_case(b"no") {
                    skipme = false;
                } else {
                    reply::err(out, ERR_SYNTAX);
                    return k;
                }
            } else if is(b"MAXAGE") {
                match parse_i64(v) {
                    Some(n) => maxage = Some(n),
                    None => {
                        reply::err(out, super::command::ERR_NOT_INT);
                        return k;
                    }
                }
            } else {
                reply::err(out, ERR_SYNTAX);
                return k;
            }
            i += 2;
        }
        // The link to our primary is not a registered client: TYPE master reaches it.
        if typ == Some(Type::Master) && id.is_none() && addr.is_none() && laddr.is_none() {
            k.master = is_replica;
            k.clients += is_replica as usize;
        }
        let now = Instant::now();
        for (cid, c) in self.map().iter() {
            let matched = typ.is_none_or(|t| t == c.kind())
                && id.is_none_or(|x| x == *cid)
                && addr.is_none_or(|x| c.addr.to_string().as_bytes() == x)
                && laddr.is_none_or(|x| c.laddr.to_string().as_bytes() == x)
                && maxage.is_none_or(|m| now.duration_since(c.since).as_secs() as i64 >= m)
                && !(skipme && *cid == me);
            if matched {
                if c.replica {
                    k.replicas = true;
                }
                c.kill.notify_one();
                k.clients += 1;
            }
        }
        reply::int(out, k.clients as i64);
        k
    }
}
