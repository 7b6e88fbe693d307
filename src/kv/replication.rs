//! Replication: the backlog ring, the primary's feed to one replica (PSYNC, snapshot, stream, ACKs), the replica's link.
//!
//! Protocol (Redis's, so real Redis servers interoperate both ways): the replica sends
//! `REPLCONF listening-port P`, `REPLCONF capa eof capa psync2` and
//! `PSYNC <replid> <offset+1>`. The primary answers `+CONTINUE <replid>` when it
//! still has the stream from that offset (same replid, or the previous one up to
//! the promotion point), else `+FULLRESYNC <replid> <offset>` then `$<len>\r\n` and
//! an RDB file (no trailing CRLF); from Redis also the diskless `$EOF:<40 bytes>`
//! form. Then the stream: every write as a RESP array; offsets count stream bytes;
//! the primary PINGs every `repl-ping-replica-period`. The replica answers
//! `REPLCONF ACK <offset>` after each batch it applies and every second. A stream
//! command the replica cannot apply (unknown, or failing) marks it diverged: it
//! logs, shows it in INFO, drops the link and stops acknowledging until REPLICAOF.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::command::{self, Ctx, WRITE};
use super::db::{self, Db};
use super::frame::{self, fmt_i64, parse_i64, reply, Args, Argv, Limits};
use super::{Kv, Master, ReplicaInfo, State};

/// Most stream bytes copied out of the backlog per lock hold.
const FEED_CHUNK: usize = 256 << 10;
/// A replica acknowledges at least this often, so the primary sees its lag.
const ACK_EVERY: Duration = Duration::from_secs(1);
/// Reconnect backoff after a failed link to the primary.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Connecting to the primary and each handshake reply.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a replication link ended.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("primary refused: {0}")]
    Refused(String),
    #[error("primary closed the connection")]
    Closed,
    #[error("bad data from primary: {0}")]
    Protocol(String),
    #[error("role changed")]
    RoleChanged,
    #[error("diverged from the primary: {0}")]
    Diverged(String),
}

/// The last `cap` bytes of the replication stream, addressed by stream offset.
#[derive(Debug)]
pub struct Backlog {
    ring: Vec<u8>,
    end: u64,
    len: usize,
}

impl Backlog {
    /// An empty backlog whose next byte is at stream offset `end`.
    pub fn new(cap: usize, end: u64) -> Backlog {
        Backlog {
            ring: vec![0; cap.max(1)],
            end,
            len: 0,
        }
    }

    /// Offset just past the newest byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Offset of the oldest byte kept.
    pub fn start(&self) -> u64 {
        self.end - self.len as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends stream bytes. A single write larger than half the ring grows it
    /// (to twice the write, kept), so one big value never alone pushes every
    /// replica out of the backlog into a full resync.
    pub fn push(&mut self, data: &[u8]) {
        if data.len() > self.ring.len() / 2 {
            let start = self.start();
            let mut old = Vec::with_capacity(self.len);
            self.read(start, self.len, &mut old);
            self.ring = vec![0; (data.len() * 2).next_power_of_two()];
            self.end = start;
            self.len = 0;
            self.push_ring(&old);
        }
        self.push_ring(data);
    }

    fn push_ring(&mut self, data: &[u8]) {
        let cap = self.ring.len();
        let keep = &data[data.len().saturating_sub(cap)..];
        let skipped = (data.len() - keep.len()) as u64;
        let mut at = ((self.end + skipped) % cap as u64) as usize;
        let mut rest = keep;
        while !rest.is_empty() {
            let n = rest.len().min(cap - at);
            self.ring[at..at + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            at = (at + n) % cap;
        }
        self.end += data.len() as u64;
        self.len = (self.len + data.len()).min(cap);
    }

    /// Appends up to `max` bytes from offset `from`; false if `from` is no longer
    /// (or not yet) in the backlog.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<u8>) -> bool {
        if from < self.start() || from > self.end {
            return false;
        }
        let cap = self.ring.len();
        let mut n = ((self.end - from) as usize).min(max);
        let mut at = (from % cap as u64) as usize;
        while n > 0 {
            let k = n.min(cap - at);
            out.extend_from_slice(&self.ring[at..at + k]);
            n -= k;
            at = (at + k) % cap;
        }
        true
    }
}

async fn write_all(sock: &mut TcpStream, data: &[u8], limit: Duration) -> Result<(), ReplError> {
    match tokio::time::timeout(limit, sock.write_all(data)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ReplError::Timeout("writing")),
    }
}

/// Primary side: serves one replica that sent PSYNC/SYNC until it goes away.
pub async fn feed(
    kv: Arc<Kv>,
    mut sock: TcpStream,
    addr: SocketAddr,
    replid: Vec<u8>,
    psync_offset: i64,
    mut inbuf: Vec<u8>,
) {
    let id = kv.next_id.fetch_add(1, Ordering::Relaxed);
    let mut kill = kv.kill_replicas_tx.subscribe();
    let mut off_rx = kv.offset_tx.subscribe();
    let wt = kv.conf.write_timeout;
    let mut head = Vec::new();
    let (mut pos, full) = {
        let mut st = kv.lock();
        st.ensure_backlog();
        let from = psync_offset - 1;
        let r = &st.repl;
        let same_history = replid == r.replid.as_bytes()
            || (replid == r.replid2.as_bytes() && from <= r.second_offset);
        let in_backlog = r
            .backlog
            .as_ref()
            .is_some_and(|b| from >= 0 && (from as u64) >= b.start() && (from as u64) <= b.end());
        if same_history && in_backlog {
            head.extend_from_slice(format!("+CONTINUE {}\r\n", r.replid).as_bytes());
            (from as u64, false)
        } else {
            let off = r.offset;
            // SYNC (empty replid) predates PSYNC: the RDB comes without a +FULLRESYNC line.
            if !replid.is_empty() {
                head.extend_from_slice(format!("+FULLRESYNC {} {off}\r\n", r.replid).as_bytes());
            }
            let aux = super::rdb::Aux {
                repl_id: Some(r.replid.clone()),
                repl_offset: Some(off as i64),
            };
            let snap = st.to_rdb(db::now_ms(), &aux);
            // The replica starts with no database selected: the next write says which.
            st.reselect();
            head.extend_from_slice(format!("${}\r\n", snap.len()).as_bytes());
            head.extend_from_slice(&snap);
            (off, true)
        }
    };
    if full {
        kv.stats.sync_full.fetch_add(1, Ordering::Relaxed);
        if replid != b"?" && !replid.is_empty() {
            kv.stats.sync_partial_err.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(kv = %kv.name, replica = %addr, "full resync at offset {pos}");
    } else {
        kv.stats.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(kv = %kv.name, replica = %addr, "partial resync from offset {pos}");
    }
    if write_all(&mut sock, &head, wt).await.is_err() {
        return;
    }
    drop(head);
    kv.replicas().push(ReplicaInfo {
        id,
        addr,
        ack: if full { 0 } else { pos },
        last_ack: Instant::now(),
        online: !full,
    });
    let why = stream_to_replica(
        &kv,
        &mut sock,
        &mut pos,
        &mut off_rx,
        &mut kill,
        &mut inbuf,
        id,
    )
    .await;
    tracing::info!(kv = %kv.name, replica = %addr, "replica feed ended: {why}");
    kv.replicas().retain(|r| r.id != id);
    kv.ack_tx.send_modify(|v| *v += 1);
}

async fn stream_to_replica(
    kv: &Kv,
    sock: &mut TcpStream,
    pos: &mut u64,
    off_rx: &mut tokio::sync::watch::Receiver<u64>,
    kill: &mut tokio::sync::watch::Receiver<u64>,
    inbuf: &mut Vec<u8>,
    id: u64,
) -> String {
    let wt = kv.conf.write_timeout;
    let mut chunk = Vec::with_capacity(FEED_CHUNK);
    let mut args = Args::default();
    let lim = Limits {
        max_bulk: 64,
        max_array: 8,
        max_inline: 1024,
        authed: true,
    };
    kill.borrow_and_update();
    loop {
        off_rx.borrow_and_update();
        loop {
            chunk.clear();
            let ok = {
                let st = kv.lock();
                st.repl
                    .backlog
                    .as_ref()
                    .is_some_and(|b| b.read(*pos, FEED_CHUNK, &mut chunk))
            };
            if !ok {
                return "replica fell behind the backlog".into();
            }
            if chunk.is_empty() {
                break;
            }
            if let Err(e) = write_all(sock, &chunk, wt).await {
                return e.to_string();
            }
            *pos += chunk.len() as u64;
        }
        // Acknowledgements already buffered.
        let mut used = 0;
        loop {
            match frame::parse(&inbuf[used..], &lim, &mut args) {
                Ok(Some(n)) => {
                    let a = Argv {
                        buf: &inbuf[used..],
                        ranges: &args.ranges,
                    };
                    // Redis 7.2 appends `FACK <offset>`.
                    if a.len() >= 3
                        && a.get(0).eq_ignore_ascii_case(b"REPLCONF")
                        && a.get(1).eq_ignore_ascii_case(b"ACK")
                    {
                        if let Some(off) = parse_i64(a.get(2)).filter(|o| *o >= 0) {
                            if let Some(r) = kv.replicas().iter_mut().find(|r| r.id == id) {
                                r.ack = off as u64;
                                r.last_ack = Instant::now();
                                r.online = true;
                            }
                            kv.ack_tx.send_modify(|v| *v += 1);
                        }
                    }
                    used += n;
                }
                Ok(None) => break,
                Err(e) => return format!("bad data from replica: {e}"),
            }
        }
        inbuf.drain(..used);
        if inbuf.len() > lim.max_inline * 4 {
            return "replica sent an oversized request".into();
        }
        inbuf.reserve(1024);
        tokio::select! {
            r = off_rx.changed() => if r.is_err() { return "shutting down".into() },
            r = sock.read_buf(inbuf) => match r {
                Ok(0) => return "replica closed the connection".into(),
                Err(e) => return e.to_string(),
                Ok(_) => {}
            },
            _ = kill.changed() => return "killed".into(),
        }
    }
}

/// Primary side: a PING in the stream every `repl-ping-replica-period` while
/// replicas are attached, so their `master_last_io_seconds_ago` means something.
pub async fn ping_replicas(kv: Arc<Kv>) {
    loop {
        // Re-read each time: CONFIG SET repl-ping-replica-period applies at once.
        tokio::time::sleep(kv.settings.repl_ping_replica_period()).await;
        if kv.replicas().is_empty() {
            continue;
        }
        let off = {
            let mut st = kv.lock();
            if st.repl.is_replica {
                continue;
            }
            st.propagate(&[b"PING"]);
            st.repl.offset
        };
        kv.publish_offset(off);
    }
}

/// Replica side: follows `master_tx`, keeping a link to the current primary.
pub async fn replica_loop(kv: Arc<Kv>) {
    let mut master_rx = kv.master_tx.subscribe();
    let mut kill_rx = kv.kill_master_tx.subscribe();
    let mut backoff = RETRY_MIN;
    loop {
        let target = master_rx.borrow_and_update().clone();
        let Some(m) = target else {
            set_link(&kv, false, "connect");
            if master_rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        kill_rx.borrow_and_update();
        let res = tokio::select! {
            r = link(&kv, &m) => Some(r),
            _ = master_rx.changed() => None,
            _ = kill_rx.changed() => None,
        };
        set_link(&kv, false, "connect");
        {
            let mut l = kv.link();
            l.sync_in_progress = false;
        }
        match res {
            Some(Err(ReplError::RoleChanged)) | None => backoff = RETRY_MIN,
            Some(Err(ReplError::Diverged(why))) => {
                tracing::error!(kv = %kv.name, "replica of {}:{} diverged, link stopped until REPLICAOF or CLIENT KILL TYPE master: {why}", m.host, m.port);
                kv.stats.diverged.fetch_add(1, Ordering::Relaxed);
                kv.link().diverged = Some(why);
                tokio::select! {
                    _ = master_rx.changed() => {}
                    _ = kill_rx.changed() => {}
                }
                kv.link().diverged = None;
                backoff = RETRY_MIN;
            }
            Some(Err(e)) => {
                tracing::warn!(kv = %kv.name, "link to primary {}:{}: {e}", m.host, m.port);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = master_rx.changed() => {}
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Some(Ok(())) => backoff = RETRY_MIN,
        }
    }
}

fn set_link(kv: &Kv, up: bool, state: &'static str) {
    let mut l = kv.link();
    l.up = up;
    l.state = state;
    l.last_io = Instant::now();
}

/// Buffered reads from the primary.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn fill(&mut self, limit: Option<Duration>) -> Result<(), ReplError> {
        self.buf.reserve(16 << 10);
        let r = match limit {
            Some(t) => tokio::time::timeout(t, self.sock.read_buf(&mut self.buf))
                .await
                .map_err(|_| ReplError::Timeout("waiting for the primary"))?,
            None => self.sock.read_buf(&mut self.buf).await,
        };
        match r? {
            0 => Err(ReplError::Closed),
            _ => Ok(()),
        }
    }

    /// One `\r\n`-terminated line (without it), bounded in length.
    async fn line(&mut self) -> Result<String, ReplError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(l);
            }
            if self.buf.len() > 4096 {
                return Err(ReplError::Protocol("reply line too long".into()));
            }
            self.fill(Some(HANDSHAKE_TIMEOUT)).await?;
        }
    }

    async fn send(&mut self, args: &[&[u8]], wt: Duration) -> Result<(), ReplError> {
        let mut out = Vec::new();
        reply::command(&mut out, args);
        write_all(&mut self.sock, &out, wt).await
    }

    /// Sends a handshake command and expects a `+` reply.
    async fn call(&mut self, args: &[&[u8]], wt: Duration) -> Result<(), ReplError> {
        self.send(args, wt).await?;
        let l = self.line().await?;
        if l.starts_with('+') {
            Ok(())
        } else {
            Err(ReplError::Refused(l))
        }
    }
}

/// One link to the primary: handshake, full or partial sync, then the stream.
async fn link(kv: &Arc<Kv>, m: &Master) -> Result<(), ReplError> {
    set_link(kv, false, "connecting");
    let gen = kv.lock().repl.master_gen;
    let wt = kv.conf.write_timeout;
    let addr = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio::net::lookup_host((m.host.as_str(), m.port)),
    )
    .await
    .map_err(|_| ReplError::Timeout("resolving"))??
    .next()
    .ok_or_else(|| ReplError::Resolve(m.host.clone()))?;
    let sock = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ReplError::Timeout("connecting"))??;
    let _ = sock.set_nodelay(true);
    let mut c = Conn {
        sock,
        buf: Vec::new(),
    };
    if let Some(pass) = kv.conf.masterauth.as_deref() {
        c.call(&[b"AUTH", pass.as_bytes()], wt).await?;
    }
    let port = kv.port.load(Ordering::Relaxed).to_string();
    c.call(&[b"REPLCONF", b"listening-port", port.as_bytes()], wt)
        .await?;
    c.call(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"], wt)
        .await?;
    // With no replication history at all, ask for a full sync as Redis does
    // (`PSYNC ? -1`); otherwise offer our history (also after a demotion).
    let (replid, next) = {
        let st = kv.lock();
        match st.repl.backlog {
            None => ("?".to_string(), "-1".to_string()),
            Some(_) => (st.repl.replid.clone(), (st.repl.offset + 1).to_string()),
        }
    };
    set_link(kv, false, "sync");
    c.send(&[b"PSYNC", replid.as_bytes(), next.as_bytes()], wt)
        .await?;
    let l = c.line().await?;
    let words: Vec<&str> = l.split_whitespace().collect();
    match words.as_slice() {
        ["+FULLRESYNC", id, off] => {
            let off: u64 = off.parse().map_err(|_| ReplError::Protocol(l.clone()))?;
            let id = id.to_string();
            kv.link().sync_in_progress = true;
            let dbs = load_rdb(kv, &mut c).await?;
            let keys: usize = dbs.iter().map(|d| d.len()).sum();
            {
                let mut st = kv.lock();
                if !st.repl.is_replica || st.repl.master_gen != gen {
                    return Err(ReplError::RoleChanged);
                }
                st.replace_all(dbs);
                st.repl_db = 0;
                st.repl.replid = id;
                st.repl.offset = off;
                st.repl.backlog = None;
                st.feed_raw(&[]);
                st.dirty += keys as u64;
                // The AOF must now describe the new data set on its own.
                if let Err(e) = super::aof::rewrite_now(&mut st, &kv.aof_sync) {
                    tracing::error!(kv = %kv.name, "AOF rewrite after full sync: {e}");
                }
            }
            kv.link().sync_in_progress = false;
            // Our own replicas followed the old history: they resync from us.
            kv.kill_replicas_tx.send_modify(|g| *g += 1);
            tracing::info!(kv = %kv.name, "full resync from {}:{}: {keys} keys at offset {off}", m.host, m.port);
        }
        ["+CONTINUE", rest @ ..] => {
            let mut st = kv.lock();
            if let Some(id) = rest.first() {
                if *id != st.repl.replid {
                    st.repl.replid2 = std::mem::replace(&mut st.repl.replid, id.to_string());
                    st.repl.second_offset = st.repl.offset as i64;
                }
            }
            st.ensure_backlog();
            tracing::info!(kv = %kv.name, "partial resync from {}:{} at offset {}", m.host, m.port, st.repl.offset);
        }
        _ => return Err(ReplError::Refused(l)),
    }
    set_link(kv, true, "connected");
    stream_from_primary(kv, c, gen).await
}

/// Reads the full-sync payload (`$len` or diskless `$EOF:<mark>`) and decodes
/// its RDB into a fresh keyspace.
async fn load_rdb(kv: &Kv, c: &mut Conn) -> Result<Vec<Db>, ReplError> {
    // Redis sends bare newlines as keepalives while it prepares the RDB.
    loop {
        let nl = c.buf.iter().take_while(|&&b| b == b'\n').count();
        c.buf.drain(..nl);
        if !c.buf.is_empty() {
            break;
        }
        c.fill(Some(HANDSHAKE_TIMEOUT)).await?;
        kv.link().last_io = Instant::now();
    }
    let l = c.line().await?;
    let mut data = Vec::new();
    if let Some(mark) = l.strip_prefix("$EOF:") {
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err(ReplError::Protocol(format!("bad EOF mark in {l:?}")));
        }
        loop {
            let from = data.len().saturating_sub(mark.len());
            data.append(&mut c.buf);
            if let Some(i) = data[from..].windows(40).position(|w| w == &mark[..]) {
                let end = from + i;
                c.buf = data.split_off(end + 40);
                data.truncate(end);
                break;
            }
            c.fill(Some(HANDSHAKE_TIMEOUT)).await?;
            kv.link().last_io = Instant::now();
        }
    } else {
        let len: usize = l
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ReplError::Protocol(format!("expected RDB length, got {l:?}")))?;
        while data.len() < len {
            if c.buf.is_empty() {
                c.fill(Some(HANDSHAKE_TIMEOUT)).await?;
                kv.link().last_io = Instant::now();
            }
            let take = c.buf.len().min(len - data.len());
            data.extend_from_slice(&c.buf[..take]);
            c.buf.drain(..take);
        }
    }
    decode_rdb(kv, &data)
}

/// Every database of an RDB file; content kv cannot hold (more databases
/// than `databases`, streams, modules) is a divergence, not something to drop silently.
pub fn decode_rdb(kv: &Kv, data: &[u8]) -> Result<Vec<Db>, ReplError> {
    let n_dbs = kv.conf.databases.max(1) as usize;
    let mut dbs: Vec<Db> = (0..n_dbs).map(|_| Db::default()).collect();
    let mut other_db = None;
    let r = super::rdb::decode(data, kv.conf.max_value_bytes, |n, k, v, exp| {
        match dbs.get_mut(n as usize) {
            Some(db) => db.insert(&k, v, exp),
            None => other_db = Some(n),
        }
    });
    match r {
        Err(e @ (super::rdb::RdbError::Type(..) | super::rdb::RdbError::Opcode(..))) => {
            Err(ReplError::Diverged(e.to_string()))
        }
        Err(e) => Err(ReplError::Protocol(e.to_string())),
        Ok(_) => match other_db {
            Some(n) => Err(ReplError::Diverged(format!(
                "RDB has keys in database {n}; kv has {n_dbs} databases (conf 'databases')"
            ))),
            None => Ok(dbs),
        },
    }
}

fn stream_limits(kv: &Kv) -> Limits {
    Limits {
        max_bulk: kv.conf.max_value_bytes.min(usize::MAX as u64) as usize,
        max_array: kv.conf.max_array_len.min(usize::MAX as u64) as usize,
        max_inline: kv.conf.max_inline_bytes.min(usize::MAX as u64) as usize,
        authed: true,
    }
}

/// Applies one command of our primary's stream. Connection-level commands
/// (PING, REPLCONF, SELECT 0, MULTI/EXEC framing, PUBLISH) only advance the
/// offset; a write kv does not know or that fails here is a divergence.
pub fn apply(kv: &Kv, st: &mut State, a: Argv, now: u64, sink: &mut Vec<u8>) -> Result<(), String> {
    let name = a.get(0);
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if is(b"PING") || is(b"REPLCONF") || is(b"MULTI") || is(b"EXEC") {
        return Ok(());
    }
    if is(b"PUBLISH") && a.len() == 3 {
        kv.pubsub().publish(a.get(1), a.get(2));
        return Ok(());
    }
    if is(b"SELECT") {
        return match super::frame::parse_i64(a.get(1)) {
            Some(n) if n >= 0 && (n as usize) < st.databases() => {
                st.repl_db = n as usize;
                Ok(())
            }
            _ => Err(format!(
                "SELECT {} (kv has {} databases, conf 'databases')",
                String::from_utf8_lossy(a.get(1)),
                st.databases()
            )),
        };
    }
    let shown = || String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
    let Some(spec) = command::lookup(name) else {
        return Err(format!("unknown command '{}'", shown()));
    };
    if !spec.is(WRITE) {
        return Ok(());
    }
    if !spec.arity_ok(a.len()) {
        return Err(format!("wrong number of arguments for '{}'", spec.name));
    }
    sink.clear();
    let db = st.repl_db;
    st.select(db);
    let mut c = Ctx {
        kv,
        st,
        out: sink,
        now,
        from_master: true,
        may_block: false,
        blocked: None,
        retry: false,
    };
    command::exec(&mut c, spec, a);
    c.st.select(0);
    if sink.first() == Some(&b'-') {
        let line = String::from_utf8_lossy(&sink[1..sink.len().saturating_sub(2)]).into_owned();
        return Err(format!("'{}' failed: {line}", spec.name));
    }
    Ok(())
}

async fn send_ack(c: &mut Conn, offset: u64, wt: Duration) -> Result<(), ReplError> {
    let mut b = [0u8; 20];
    let off = fmt_i64(offset as i64, &mut b);
    c.send(&[b"REPLCONF", b"ACK", off], wt).await
}

async fn stream_from_primary(kv: &Kv, mut c: Conn, gen: u64) -> Result<(), ReplError> {
    let lim = stream_limits(kv);
    let wt = kv.conf.write_timeout;
    let mut args = Args::default();
    let mut sink = Vec::new();
    let mut tick = tokio::time::interval(ACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acked = u64::MAX;
    loop {
        let mut used = 0;
        let offset = {
            let mut st = kv.lock();
            if !st.repl.is_replica || st.repl.master_gen != gen {
                return Err(ReplError::RoleChanged);
            }
            let now = db::now_ms();
            loop {
                let rest = &c.buf[used..];
                let n = match frame::parse(rest, &lim, &mut args)
                    .map_err(|e| ReplError::Protocol(e.to_string()))?
                {
                    Some(n) => n,
                    None => break,
                };
                let a = Argv {
                    buf: rest,
                    ranges: &args.ranges,
                };
                if !a.is_empty() {
                    if let Err(why) = apply(kv, &mut st, a, now, &mut sink) {
                        // Keep what was applied before it; acknowledge nothing more.
                        drop(st);
                        kv.publish_offset(kv.lock().repl.offset);
                        return Err(ReplError::Diverged(why));
                    }
                }
                st.feed_raw(&rest[..n]);
                used += n;
            }
            if let Err(e) = super::persist::flush_aof(kv, &mut st, false) {
                tracing::error!(kv = %kv.name, "AOF: {e}");
            }
            st.repl.offset
        };
        c.buf.drain(..used);
        if used > 0 {
            kv.publish_offset(offset);
            kv.link().last_io = Instant::now();
        }
        if c.buf.len() as u64 > kv.conf.max_query_bytes {
            return Err(ReplError::Protocol(
                "request exceeds max-query-bytes".into(),
            ));
        }
        if offset != acked {
            send_ack(&mut c, offset, wt).await?;
            acked = offset;
        }
        tokio::select! {
            r = c.fill(None) => r?,
            _ = tick.tick() => {
                send_ack(&mut c, offset, wt).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_bigger_than_the_backlog_grows_it() {
        let mut b = Backlog::new(8, 100);
        b.push(b"abc");
        b.push(&[b'x'; 20]);
        let mut out = Vec::new();
        assert!(b.read(100, 100, &mut out));
        assert_eq!(out.len(), 23);
        assert_eq!(&out[..3], b"abc");
        assert_eq!(b.end(), 123);
    }

    #[test]
    fn backlog_wraps_and_forgets() {
        let mut b = Backlog::new(8, 100);
        // Writes of at most half the ring never grow it.
        b.push(b"abcd");
        assert_eq!((b.start(), b.end()), (100, 104));
        b.push(b"efgh");
        b.push(b"ij");
        assert_eq!((b.start(), b.end()), (102, 110));
        let mut out = Vec::new();
        assert!(b.read(102, 100, &mut out));
        assert_eq!(out, b"cdefghij");
        out.clear();
        assert!(b.read(107, 2, &mut out));
        assert_eq!(out, b"hi");
        assert!(!b.read(101, 10, &mut out));
        assert!(!b.read(111, 10, &mut out));
        out.clear();
        assert!(b.read(110, 10, &mut out) && out.is_empty());
        b.push(b"0123");
        b.push(b"4567");
        out.clear();
        assert!(b.read(b.start(), 100, &mut out));
        assert_eq!(out, b"01234567");
        assert_eq!(b.end(), 118);
    }
}
