//! sentinel: Redis Sentinel inside lb. Watches primaries (kv or redis-server), agrees
//! with its peers that one is down, elects a leader per epoch and fails over; speaks
//! the Sentinel protocol so Sentinel-aware clients work unchanged.
//!
//! - `state`    what is known of one primary; votes, tallies, replica choice, hellos (pure)
//! - `decide`   one tick of decisions over every primary: down states, the failover steps, corrections
//! - `links`    the network side: links to primaries, replicas and peers; REPLICAOF sent
//! - `server`   the Sentinel protocol on `bind`: SENTINEL, INFO, PING, (P)SUBSCRIBE to events
//! - `metrics`  `lb_sentinel_*`

pub mod decide;
pub mod links;
pub mod metrics;
pub mod server;
pub mod state;

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::conf::sentinel::SentinelConf;
use state::Master;

/// Why a sentinel could not start.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("cannot bind {addr}: {err}")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
}

/// Everything the sentinel knows, under one lock (decisions need several primaries'
/// state and the epoch at once; nothing slow happens under it).
#[derive(Debug)]
pub struct World {
    /// The highest epoch seen or started (Sentinel's `current_epoch`).
    pub current_epoch: u64,
    pub masters: Vec<Master>,
    /// Events decided under the lock, published after it (`Sentinel::flush`).
    pending: Vec<(&'static str, String)>,
}

impl World {
    /// Records an event: published to subscribers and logged once the lock is released.
    pub fn event(&mut self, kind: &'static str, msg: String) {
        self.pending.push((kind, msg));
    }

    pub fn master(&mut self, name: &str) -> Option<&mut Master> {
        self.masters.iter_mut().find(|m| m.name == name)
    }
}

/// One `sentinel NAME` section, running.
#[derive(Debug)]
pub struct Sentinel {
    pub conf: SentinelConf,
    /// 40 hex characters, as Redis's run ids.
    pub myid: String,
    world: Mutex<World>,
    /// (channel, message) of every event, for SUBSCRIBE/PSUBSCRIBE clients.
    pub events: broadcast::Sender<(String, String)>,
    /// Our listening port (the conf may say 0).
    pub port: AtomicU16,
    pub metrics: metrics::Handles,
    pub started: Instant,
}

/// How often decisions are made.
pub const TICK: Duration = Duration::from_millis(50);
/// Hello messages, as Redis (every 2 s).
pub const HELLO_PERIOD: Duration = Duration::from_secs(2);
/// Asking peers whether the primary is down, as Redis (every 1 s while down).
pub const ASK_PERIOD: Duration = Duration::from_secs(1);

impl Sentinel {
    pub fn new(conf: &SentinelConf) -> Arc<Sentinel> {
        let now = Instant::now();
        let masters = conf
            .monitors
            .iter()
            .map(|m| {
                let mut st = Master::new(
                    &m.name,
                    m.addr,
                    m.quorum,
                    (conf.down_after, conf.failover_timeout),
                    now,
                );
                for p in &conf.peers {
                    st.peers.insert(*p, state::Peer::new(*p, now));
                }
                st
            })
            .collect();
        Arc::new(Sentinel {
            conf: conf.clone(),
            myid: crate::kv::new_replid(),
            world: Mutex::new(World {
                current_epoch: 0,
                masters,
                pending: Vec::new(),
            }),
            events: broadcast::channel(1024).0,
            port: AtomicU16::new(conf.bind.port()),
            metrics: metrics::Handles::new(&conf.name),
            started: now,
        })
    }

    /// The state lock; a panic elsewhere never poisons it for everyone else.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the world, then publishes and logs the events it recorded.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let (r, events) = {
            let mut w = self.lock();
            let r = f(&mut w);
            (r, std::mem::take(&mut w.pending))
        };
        for (kind, msg) in events {
            self.publish(kind, msg);
        }
        r
    }

    fn publish(&self, kind: &'static str, msg: String) {
        // Discoveries are routine; every step of a failover and every down state is news.
        if matches!(kind, "+slave" | "+sentinel") {
            tracing::info!(sentinel = %self.conf.name, "{kind} {msg}");
        } else {
            tracing::warn!(sentinel = %self.conf.name, "{kind} {msg}");
        }
        let _ = self.events.send((kind.to_string(), msg));
    }

    /// How often an instance is pinged: often enough that `down-after` is judged
    /// within a fraction of itself.
    pub fn ping_period(&self) -> Duration {
        (self.conf.down_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Bound on one command to an instance or a peer.
    pub fn call_timeout(&self) -> Duration {
        self.conf
            .down_after
            .clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// Starts the links and the decision loop on the current runtime.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(decide::run(self.clone()));
    }

    /// Uptime of this sentinel, for INFO.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }
}

/// Up to `max` pseudo-random milliseconds (desynchronizes sentinels' attempts, as Redis).
pub fn jitter(max: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let ms = max.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// Binds `conf.bind`, starts the sentinel and its protocol server on the current runtime.
pub async fn start(conf: &SentinelConf) -> Result<(Arc<Sentinel>, SocketAddr), SentinelError> {
    let listener = tokio::net::TcpListener::bind(conf.bind)
        .await
        .map_err(|err| SentinelError::Bind {
            addr: conf.bind,
            err,
        })?;
    let addr = listener.local_addr().map_err(|err| SentinelError::Bind {
        addr: conf.bind,
        err,
    })?;
    let s = Sentinel::new(conf);
    s.port.store(addr.port(), Ordering::Relaxed);
    metrics::register(&s);
    s.start();
    tokio::spawn(server::accept_loop(s.clone(), listener));
    Ok((s, addr))
}
