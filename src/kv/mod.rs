//! kv: the embedded RESP2 key-value store (primary/replica): shared state, INFO/ROLE, the runtime's entry points.
//!
//! - `frame`       RESP2 request parsing within limits, reply encoding
//! - `db`          the keyspace, expiry index, glob, scan, snapshot
//! - `command`     command table and keyspace commands
//! - `value`       value types (string, hash, list, set, zset), encodings, number formats
//! - `typed`       what collection commands share: WRONGTYPE, propagation, SCAN pages, random picks
//! - `hash`, `list`, `set`, `zset` the commands of each collection type; `zset_ops` ZUNION/ZINTER/ZDIFF
//! - `command_more` GETEX, INCRBYFLOAT, SETRANGE, RENAME, COPY, OBJECT and other keyspace commands
//! - `config`      CONFIG GET/SET/REWRITE and the settings changeable at run time
//! - `clients`     connected clients: CLIENT LIST, CLIENT KILL filters
//! - `dump`        DUMP / RESTORE payloads (Redis's format)
//! - `debug`       DEBUG subcommands the Redis test suite uses (RELOAD, SET-ACTIVE-EXPIRE, OBJECT)
//! - `select`      the numbered databases: SELECT swap, SWAPDB, MOVE, whole-keyspace views
//! - `blocking`    BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN, BZPOPMAX
//! - `mpop`        LMPOP, ZMPOP, BLMPOP, BZMPOP
//! - `monitor`     MONITOR: every command as a line to monitoring connections
//! - `server`      one client connection: batching, auth, dispatch, WAIT
//! - `aof`         the append-only file: fsync policy, group commit, rewrite, replay
//! - `multi`       MULTI/EXEC queue and WATCHed keys
//! - `persist`     dump.rdb (SAVE, BGSAVE, save rules), loading at start, AOF chores
//! - `pubsub`      channels, patterns, subscriber queues
//! - `rdb`         RDB v10 encode/decode (full sync, dump.rdb)
//! - `rdb_types`   RDB collections: plain encodings written, listpack/ziplist/intset/quicklist read
//! - `replication` backlog ring, primary-side replica feeds, the replica's link

pub mod aof;
pub mod blocking;
pub mod clients;
pub mod command;
pub mod command_more;
pub mod config;
pub mod db;
pub mod debug;
pub mod dump;
pub mod frame;
pub mod fuzz_check;
pub mod hash;
pub mod list;
pub mod metrics;
pub mod monitor;
pub mod mpop;
pub mod multi;
pub mod persist;
pub mod pubsub;
pub mod rdb;
pub mod rdb_types;
pub mod replication;
pub mod select;
pub mod server;
pub mod set;
pub mod typed;
pub mod value;
pub mod zset;
pub mod zset_ops;

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conf::kv::KvConf;
use db::Db;
use frame::reply;
use replication::Backlog;

/// The primary a replica follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub host: String,
    pub port: u16,
}

/// Counters shown by INFO.
#[derive(Debug, Default)]
pub struct Stats {
    pub clients: AtomicI64,
    pub blocked: AtomicI64,
    pub connections: AtomicU64,
    pub commands: AtomicU64,
    pub expired: AtomicU64,
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Times this replica stopped following its primary's stream (see `Link::diverged`).
    pub diverged: AtomicU64,
    /// Calls per command, indexed like `command::TABLE`.
    pub per_command: CommandCounts,
}

/// One counter per entry of `command::TABLE`.
#[derive(Debug)]
pub struct CommandCounts(Vec<AtomicU64>);

impl Default for CommandCounts {
    fn default() -> CommandCounts {
        CommandCounts(command::TABLE.iter().map(|_| AtomicU64::new(0)).collect())
    }
}

impl CommandCounts {
    pub fn inc(&self, spec: &command::Spec) {
        let i = (spec as *const command::Spec as usize - command::TABLE.as_ptr() as usize)
            / std::mem::size_of::<command::Spec>();
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (command name, calls) for every command called at least once.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        command::TABLE
            .iter()
            .zip(&self.0)
            .map(|(s, c)| (s.name, c.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// Replication identity and stream position, guarded with the keyspace so that
/// every write and its place in the stream are decided together.
#[derive(Debug)]
pub struct Repl {
    pub is_replica: bool,
    /// Bumped by every REPLICAOF, so a link to an old primary stops applying its stream.
    pub master_gen: u64,
    pub replid: String,
    /// The previous primary's replid after a promotion, valid up to `second_offset`.
    pub replid2: String,
    pub second_offset: i64,
    /// Bytes of replication stream produced (primary) or applied (replica).
    pub offset: u64,
    /// Created when the first replica attaches (or on a replica's first sync).
    pub backlog: Option<Backlog>,
    pub backlog_size: usize,
}

/// Everything under the one state lock.
#[derive(Debug)]
pub struct State {
    /// The selected database while a command runs, database 0 otherwise (see `select`).
    pub db: Db,
    /// Databases 1..N (one slot holds database 0 while another is selected).
    pub others: Vec<Db>,
    /// Which database `db` holds.
    pub cur: usize,
    /// The database the stream and AOF last SELECTed; usize::MAX = none yet.
    stream_db: usize,
    /// On a replica: the database our primary's stream selected.
    pub repl_db: usize,
    pub repl: Repl,
    scratch: Vec<u8>,
    /// Writes since the last successful save (`save` rules, INFO).
    pub dirty: u64,
    /// Writes ever made here: blocked pops retry when it moves.
    pub write_seq: u64,
    /// Unix seconds of the last successful save (LASTSAVE).
    pub last_save: u64,
    pub bgsave_running: bool,
    pub last_bgsave_ok: bool,
    /// The append-only file, when `appendonly yes`.
    pub aof: Option<aof::Aof>,
    /// During EXEC: whether the stream already got its opening MULTI (a
    /// transaction with writes is propagated as MULTI ... EXEC, as Redis does).
    multi: MultiProp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MultiProp {
    Off,
    Pending,
    Open,
}

impl State {
    /// Appends a write to the replication stream (when replication is active).
    /// Appends a write to the replication stream and the AOF (when active).
    pub fn propagate(&mut self, args: &[&[u8]]) {
        self.dirty += 1;
        self.write_seq += 1;
        if self.repl.backlog.is_none() && self.aof.is_none() {
            return;
        }
        if self.stream_db != self.cur {
            self.stream_db = self.cur;
            let mut b = [0u8; 20];
            let n = frame::fmt_i64(self.cur as i64, &mut b).to_vec();
            self.emit(&[b"SELECT", &n]);
        }
        if self.multi == MultiProp::Pending {
            self.multi = MultiProp::Open;
            self.emit(&[b"MULTI"]);
        }
        self.emit(args);
    }

    /// The next write is preceded by a SELECT (a full sync or AOF rewrite
    /// started a new stream whose reader has no database selected yet).
    pub fn reselect(&mut self) {
        self.stream_db = usize::MAX;
    }

    /// The database the stream last selected (AOF rewrite base ends with it).
    pub fn stream_db(&self) -> Option<usize> {
        (self.stream_db != usize::MAX).then_some(self.stream_db)
    }

    /// To replicas only, not the AOF nor the dirty count (PUBLISH, as Redis).
    /// A replica never adds its own commands to the stream (Redis feeds replicas
    /// only from a primary): its offsets must stay its primary's, or a PUBLISH on it
    /// (Sentinel hellos) would shift them and break partial resyncs after a failover.
    pub fn propagate_repl(&mut self, args: &[&[u8]]) {
        if self.repl.is_replica {
            return;
        }
        let Some(b) = self.repl.backlog.as_mut() else {
            return;
        };
        self.scratch.clear();
        reply::command(&mut self.scratch, args);
        b.push(&self.scratch);
        self.repl.offset = b.end();
    }

    /// EXEC starts: its first write opens MULTI in the stream.
    pub fn exec_begin(&mut self) {
        self.multi = MultiProp::Pending;
    }

    /// EXEC ends: closes the MULTI if one was opened.
    pub fn exec_end(&mut self) {
        if self.multi == MultiProp::Open {
            self.emit(&[b"EXEC"]);
        }
        self.multi = MultiProp::Off;
    }

    fn emit(&mut self, args: &[&[u8]]) {
        if self.repl.backlog.is_none() && self.aof.is_none() {
            return;
        }
        self.scratch.clear();
        reply::command(&mut self.scratch, args);
        if let Some(a) = self.aof.as_mut() {
            a.append(&self.scratch);
        }
        if let Some(b) = self.repl.backlog.as_mut() {
            b.push(&self.scratch);
            self.repl.offset = b.end();
        }
    }

    /// Appends bytes received from our primary verbatim, keeping offsets equal to its own.
    pub fn feed_raw(&mut self, bytes: &[u8]) {
        if let Some(a) = self.aof.as_mut() {
            a.append(bytes);
        }
        let size = self.repl.backlog_size;
        let off = self.repl.offset;
        let b = self
            .repl
            .backlog
            .get_or_insert_with(|| Backlog::new(size, off));
        b.push(bytes);
        self.repl.offset = b.end();
    }

    /// Makes sure the backlog exists (a replica is attaching).
    pub fn ensure_backlog(&mut self) {
        let size = self.repl.backlog_size;
        let off = self.repl.offset;
        self.repl
            .backlog
            .get_or_insert_with(|| Backlog::new(size, off));
    }
}

/// A replica attached to this server, as its feed reports it.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub ack: u64,
    pub last_ack: Instant,
    /// False from a full resync until the replica's first ACK: it is still loading
    /// the snapshot, and its `ack` (0) acknowledges nothing.
    pub online: bool,
}

impl ReplicaInfo {
    /// Whether this replica has applied everything up to `offset`.
    pub fn has(&self, offset: u64) -> bool {
        self.online && self.ack >= offset
    }
}

/// This server's link to its primary, when it is a replica.
#[derive(Debug, Clone)]
pub struct Link {
    pub up: bool,
    /// Redis's ROLE states: connect, connecting, sync, connected.
    pub state: &'static str,
    pub last_io: Instant,
    pub sync_in_progress: bool,
    /// Why this replica stopped applying its primary's stream, if it did.
    pub diverged: Option<String>,
}

/// One `kv NAME` server: keyspace, replication role, clients.
#[derive(Debug)]
pub struct Kv {
    pub name: String,
    pub conf: KvConf,
    state: Mutex<State>,
    /// The stream offset after each batch of writes; replica feeds wait on it.
    pub offset_tx: watch::Sender<u64>,
    /// Bumped on every replica acknowledgement; WAIT waits on it.
    pub ack_tx: watch::Sender<u64>,
    pub replicas: Mutex<Vec<ReplicaInfo>>,
    pub pubsub: Mutex<pubsub::Registry>,
    /// The primary to follow; `None` = this server is a primary.
    pub master_tx: watch::Sender<Option<Master>>,
    pub link: Mutex<Link>,
    /// Bumped to cut the link to our primary (it reconnects and resyncs).
    pub kill_master_tx: watch::Sender<u64>,
    /// Bumped to cut every replica's feed (each reconnects and resyncs).
    pub kill_replicas_tx: watch::Sender<u64>,
    pub stats: Stats,
    /// Group commit of AOF fsyncs.
    pub aof_sync: aof::Syncer,
    pub started: Instant,
    /// Our listening port, learnt from the first accepted connection (port 0 in conf).
    pub port: AtomicU16,
    pub next_id: AtomicU64,
    /// INFO's `run_id`: this server's identity until it restarts (Sentinel tells reboots by it).
    pub run_id: String,
    /// What CONFIG SET may change at run time.
    pub settings: config::Settings,
    /// Connected clients, for CLIENT LIST / KILL.
    pub clients: clients::Registry,
    /// Connections in MONITOR mode.
    pub monitors: monitor::Monitors,
    /// `State::write_seq` after the last batch, while some client is blocked.
    pub writes_tx: watch::Sender<u64>,
}

/// The Redis version kv answers as (INFO, HELLO, RDB aux).
pub const REDIS_VERSION: &str = "7.0.15";

/// 40 hex characters, as Redis's replication ids.
pub fn new_replid() -> String {
    let mut s = String::with_capacity(40);
    let seed = std::collections::hash_map::RandomState::new();
    let mut i = 0u64;
    while s.len() < 40 {
        let mut h = seed.build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        let _ = write!(s, "{:016x}", h.finish());
        i += 1;
    }
    s.truncate(40);
    s
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

impl Kv {
    pub fn new(conf: &KvConf) -> Arc<Kv> {
        let master = conf.replicaof.map(|a| Master {
            host: a.ip().to_string(),
            port: a.port(),
        });
        let repl = Repl {
            is_replica: master.is_some(),
            master_gen: 0,
            replid: new_replid(),
            replid2: "0".repeat(40),
            second_offset: -1,
            offset: 0,
            backlog: None,
            backlog_size: conf.repl_backlog_size as usize,
        };
        Arc::new(Kv {
            name: conf.name.clone(),
            conf: conf.clone(),
            state: Mutex::new(State {
                db: Db::default(),
                others: (1..conf.databases.max(1)).map(|_| Db::default()).collect(),
                cur: 0,
                stream_db: usize::MAX,
                repl_db: 0,
                repl,
                scratch: Vec::new(),
                dirty: 0,
                write_seq: 0,
                last_save: db::now_ms() / 1000,
                bgsave_running: false,
                last_bgsave_ok: true,
                aof: None,
                multi: MultiProp::Off,
            }),
            offset_tx: watch::channel(0).0,
            ack_tx: watch::channel(0).0,
            replicas: Mutex::new(Vec::new()),
            pubsub: Mutex::new(pubsub::Registry::default()),
            master_tx: watch::channel(master).0,
            link: Mutex::new(Link {
                up: false,
                state: "connect",
                last_io: Instant::now(),
                sync_in_progress: false,
                diverged: None,
            }),
            kill_master_tx: watch::channel(0).0,
            kill_replicas_tx: watch::channel(0).0,
            stats: Stats::default(),
            aof_sync: aof::Syncer::default(),
            started: Instant::now(),
            port: AtomicU16::new(conf.bind.port()),
            next_id: AtomicU64::new(1),
            run_id: new_replid(),
            settings: config::Settings::new(conf),
            clients: clients::Registry::default(),
            monitors: monitor::Monitors::default(),
            writes_tx: watch::channel(0).0,
        })
    }

    /// A server with its data loaded from `dir` (AOF or dump.rdb) and its AOF open.
    pub fn open(conf: &KvConf) -> Result<Arc<Kv>, persist::PersistError> {
        let kv = Kv::new(conf);
        {
            let mut st = kv.lock();
            persist::load_at_start(&kv, &mut st)?;
        }
        Ok(kv)
    }

    /// The state lock; a panic elsewhere never poisons the store for everyone else.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pubsub(&self) -> MutexGuard<'_, pubsub::Registry> {
        self.pubsub.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn replicas(&self) -> MutexGuard<'_, Vec<ReplicaInfo>> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells replica feeds that the stream grew.
    pub fn publish_offset(&self, offset: u64) {
        self.offset_tx.send_if_modified(|o| {
            let changed = *o != offset;
            *o = offset;
            changed
        });
    }

    /// Starts background work (expiry, replication); called once on a worker.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(metrics::sample_offsets(self.clone()));
        tokio::spawn(active_expiry(self.clone()));
        tokio::spawn(replication::replica_loop(self.clone()));
        tokio::spawn(replication::ping_replicas(self.clone()));
        tokio::spawn(persist::cron(self.clone()));
    }

    /// Serves one client connection until it closes.
    pub async fn serve(self: Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        server::serve(self, sock, peer).await
    }

    /// REPLICAOF host port / NO ONE, with the state lock held.
    pub fn replicaof(&self, st: &mut State, target: Option<Master>, out: &mut Vec<u8>) {
        match target {
            None => {
                if st.repl.is_replica {
                    // Promotion: remember the old history so its other replicas can
                    // continue from it with a partial resync.
                    st.repl.is_replica = false;
                    st.repl.master_gen += 1;
                    st.repl.replid2 = std::mem::replace(&mut st.repl.replid, new_replid());
                    st.repl.second_offset = st.repl.offset as i64;
                    self.master_tx.send_replace(None);
                    tracing::info!(kv = %self.name, "promoted to primary (REPLICAOF NO ONE)");
                }
                reply::ok(out);
            }
            Some(m) => {
                if *self.master_tx.borrow() == Some(m.clone()) {
                    return reply::simple(out, "OK Already connected to specified master");
                }
                st.repl.is_replica = true;
                st.repl.master_gen += 1;
                self.master_tx.send_replace(Some(m.clone()));
                // Our replicas must follow the new history from scratch.
                self.kill_replicas_tx.send_modify(|g| *g += 1);
                tracing::info!(kv = %self.name, "now a replica of {}:{}", m.host, m.port);
                reply::ok(out);
            }
        }
    }

    /// ROLE, in Redis's shape.
    pub fn role(&self, st: &State, out: &mut Vec<u8>) {
        let master = self.master_tx.borrow().clone();
        match master {
            Some(m) => {
                let link = self.link().clone();
                reply::array(out, 5);
                reply::bulk(out, b"slave");
                reply::bulk(out, m.host.as_bytes());
                reply::int(out, m.port as i64);
                reply::bulk(out, link.state.as_bytes());
                reply::int(out, st.repl.offset as i64);
            }
            None => {
                let reps = self.replicas().clone();
                reply::array(out, 3);
                reply::bulk(out, b"master");
                reply::int(out, st.repl.offset as i64);
                reply::array(out, reps.len());
                for r in reps {
                    reply::array(out, 3);
                    reply::bulk(out, r.addr.ip().to_string().as_bytes());
                    reply::bulk(out, r.addr.port().to_string().as_bytes());
                    reply::bulk(out, r.ack.to_string().as_bytes());
                }
            }
        }
    }

    /// INFO [section ...], with Redis's field names.
    pub fn info(&self, st: &State, sections: &[&[u8]], out: &mut Vec<u8>) {
        let all = sections.iter().any(|s| {
            s.eq_ignore_ascii_case(b"all")
                || s.eq_ignore_ascii_case(b"everything")
                || s.eq_ignore_ascii_case(b"default")
        }) || sections.is_empty();
        let want = |name: &str| {
            all || sections
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name.as_bytes()))
        };
        let mut t = String::new();
        let up = self.started.elapsed().as_secs();
        if want("server") {
            let _ = write!(
                t,
                "# Server\r\nredis_version:7.2.0\r\nlb_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nhz:{}\r\nexecutable:lb\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                self.run_id,
                self.port.load(Ordering::Relaxed),
                up / 86400,
                self.conf.hz,
            );
        }
        if want("clients") {
            let _ = write!(
                t,
                "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\n\r\n",
                self.stats.clients.load(Ordering::Relaxed),
                self.stats.blocked.load(Ordering::Relaxed),
            );
        }
        if want("memory") {
            let used = st.used();
            let max = self.conf.maxmemory.unwrap_or(0);
            let _ = write!(
                t,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:noeviction\r\n\r\n",
                human(used),
                human(max),
            );
        }
        if want("persistence") {
            let aof = st.aof.as_ref();
            let _ = write!(
                t,
                "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_last_write_status:{}\r\naof_current_size:{}\r\naof_base_size:{}\r\n\r\n",
                st.dirty,
                st.bgsave_running as u8,
                st.last_save,
                if st.last_bgsave_ok { "ok" } else { "err" },
                aof.is_some() as u8,
                aof.is_some_and(|a| a.rewrite.is_some()) as u8,
                if aof.is_some_and(|a| a.error.is_some()) { "err" } else { "ok" },
                aof.map_or(0, |a| a.size),
                aof.map_or(0, |a| a.base_size),
            );
        }
        if want("stats") {
            let s = &self.stats;
            let _ = write!(
                t,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nexpired_keys:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n\r\n",
                s.connections.load(Ordering::Relaxed),
                s.commands.load(Ordering::Relaxed),
                s.expired.load(Ordering::Relaxed),
                s.sync_full.load(Ordering::Relaxed),
                s.sync_partial_ok.load(Ordering::Relaxed),
                s.sync_partial_err.load(Ordering::Relaxed),
            );
        }
        if want("replication") {
            self.info_replication(st, &mut t);
        }
        if want("keyspace") {
            t.push_str("# Keyspace\r\n");
            t.push_str(&st.keyspace_info());
            t.push_str("\r\n");
        }
        // Redis ends the text with a single CRLF after the last section.
        while t.ends_with("\r\n\r\n") {
            t.truncate(t.len() - 2);
        }
        reply::bulk(out, t.as_bytes());
    }

    fn info_replication(&self, st: &State, t: &mut String) {
        let master = self.master_tx.borrow().clone();
        let r = &st.repl;
        t.push_str("# Replication\r\n");
        match &master {
            Some(m) => {
                let link = self.link().clone();
                let _ = write!(
                    t,
                    "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\n",
                    m.host,
                    m.port,
                    if link.up { "up" } else { "down" },
                    if link.up { link.last_io.elapsed().as_secs() as i64 } else { -1 },
                    link.sync_in_progress as u8,
                    r.offset,
                    r.offset,
                );
                if !link.up {
                    // Sentinel skips replicas cut off from their primary for too long.
                    let _ = write!(
                        t,
                        "master_link_down_since_seconds:{}\r\n",
                        link.last_io.elapsed().as_secs()
                    );
                }
                let _ = write!(
                    t,
                    "kv_diverged:{}\r\nkv_diverged_reason:{}\r\nkv_diverged_total:{}\r\n",
                    link.diverged.is_some() as u8,
                    link.diverged
                        .as_deref()
                        .unwrap_or("")
                        .replace(['\r', '\n'], " "),
                    self.stats.diverged.load(Ordering::Relaxed),
                );
            }
            None => t.push_str("role:master\r\n"),
        }
        let reps = self.replicas().clone();
        let _ = write!(t, "connected_slaves:{}\r\n", reps.len());
        for (i, rep) in reps.iter().enumerate() {
            let _ = write!(
                t,
                "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
                rep.addr.ip(),
                rep.addr.port(),
                if rep.online { "online" } else { "wait_bgsave" },
                rep.ack,
                rep.last_ack.elapsed().as_secs(),
            );
        }
        let (first, histlen) = match &r.backlog {
            Some(b) => (b.start() + 1, b.len()),
            None => (0, 0),
        };
        let _ = write!(
            t,
            "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{histlen}\r\n\r\n",
            r.replid,
            r.replid2,
            r.offset,
            if r.second_offset < 0 { -1 } else { r.second_offset + 1 },
            r.backlog.is_some() as u8,
            r.backlog_size,
        );
    }
}

/// Keys most deleted by one active-expiry pass, so one pass never holds the lock long.
const EXPIRE_BATCH: usize = 200;

/// Deletes expired keys in the background (primaries only; replicas wait for DEL).
async fn active_expiry(kv: Arc<Kv>) {
    let period = Duration::from_millis(1000 / kv.conf.hz.max(1) as u64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !kv.settings.active_expire.load(Ordering::Relaxed) {
            continue;
        }
        loop {
            let (n, off) = {
                let mut st = kv.lock();
                if st.repl.is_replica {
                    break;
                }
                let mut n = 0;
                for i in 0..st.databases() {
                    st.select(i);
                    let gone = st.db.pop_expired(db::now_ms(), EXPIRE_BATCH);
                    for k in &gone {
                        st.propagate(&[b"DEL", k]);
                    }
                    n += gone.len();
                }
                st.select(0);
                (n, st.repl.offset)
            };
            kv.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
            kv.publish_offset(off);
            if n < EXPIRE_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_loading_its_snapshot_acknowledges_nothing() {
        // Writes before any replica attached leave the offset at 0, so a WAIT right
        // after them targets 0: a replica that has not loaded the snapshot yet must
        // not count (it did once, and a GET on the replica then missed the write).
        let mut r = ReplicaInfo {
            id: 1,
            addr: "127.0.0.1:1".parse().unwrap(),
            ack: 0,
            last_ack: Instant::now(),
            online: false,
        };
        assert!(!r.has(0));
        r.online = true; // its first ACK, sent once the snapshot is applied
        assert!(r.has(0));
        assert!(!r.has(1));
    }

    #[test]
    fn replids_are_40_hex_and_distinct() {
        let a = new_replid();
        let b = new_replid();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(2048), "2.00K");
    }
}
