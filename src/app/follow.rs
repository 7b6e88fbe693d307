//! Following the kv primary through sentinels (`kv-sentinel ADDR NAME`): asks them
//! where the primary and the replicas are, listens for `+switch-master`, and asks
//! again at once when a write fails, so a failover costs the app no reload.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::kvclient::{text, Conn, KvError, Reply};

/// Where the kv tier is now, as the sentinels say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub primary: Option<SocketAddr>,
    /// Replicas that are up and linked to their primary.
    pub replicas: Vec<SocketAddr>,
    /// Replicas the sentinels know but that are down or cut from their primary.
    pub replicas_down: usize,
}

/// One app's view of a master name, kept current by a background task.
#[derive(Debug)]
pub struct Follower {
    pub app: String,
    pub master: String,
    pub sentinels: Vec<SocketAddr>,
    pub timeout: Duration,
    current: watch::Sender<Arc<Topology>>,
    /// Woken when a call suggests the primary moved (refused, READONLY).
    suspect: Notify,
    /// Where the stats page reads the app's kv addresses.
    stats: Arc<super::metrics::AppStats>,
}

/// Events after which the primary or the replicas may have changed.
const EVENTS: [&[u8]; 6] = [
    b"+switch-master",
    b"+sdown",
    b"-sdown",
    b"+slave",
    b"+convert-to-slave",
    b"+slave-reconf-done",
];

/// How often the sentinels are asked even without events (a missed message costs at most this).
const REFRESH: Duration = Duration::from_secs(1);

impl Follower {
    /// A follower; its task starts on the current runtime if there is one, else at
    /// the first `wait_primary`.
    pub fn new(
        app: &str,
        master: &str,
        sentinels: &[SocketAddr],
        timeout: Duration,
        stats: Arc<super::metrics::AppStats>,
    ) -> Arc<Follower> {
        let f = Arc::new(Follower {
            app: app.to_string(),
            master: master.to_string(),
            sentinels: sentinels.to_vec(),
            timeout,
            current: watch::channel(Arc::new(Topology::default())).0,
            suspect: Notify::new(),
            stats,
        });
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(run(Arc::downgrade(&f)));
        }
        f
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.current.borrow().clone()
    }

    /// A call failed in a way a failover explains: ask the sentinels now.
    pub fn suspect(&self) {
        self.suspect.notify_one();
    }

    /// The primary, waiting up to `timeout` for the first answer of the sentinels.
    pub async fn primary(&self) -> Result<SocketAddr, KvError> {
        if let Some(p) = self.current.borrow().primary {
            return Ok(p);
        }
        let mut rx = self.current.subscribe();
        let found = tokio::time::timeout(self.timeout, async {
            rx.wait_for(|t| t.primary.is_some())
                .await
                .ok()
                .and_then(|t| t.primary)
        })
        .await;
        found
            .ok()
            .flatten()
            .ok_or_else(|| KvError::NoPrimary(self.master.clone()))
    }

    fn set(&self, t: Topology) {
        let changed = self.current.send_if_modified(|cur| {
            if **cur == t {
                return false;
            }
            if cur.primary != t.primary {
                if let (Some(old), Some(new)) = (cur.primary, t.primary) {
                    tracing::warn!(
                        "app {}: kv primary of '{}' moved from {old} to {new}",
                        self.app,
                        self.master
                    );
                } else if let Some(new) = t.primary {
                    tracing::info!("app {}: kv primary of '{}' is {new}", self.app, self.master);
                }
            }
            *cur = Arc::new(t.clone());
            true
        });
        if changed {
            if let Ok(mut a) = self.stats.addrs.lock() {
                a.kv_primary = t.primary;
                a.kv_replica = t.replicas.first().copied();
            }
        }
    }
}

/// Asks one sentinel for the primary and the healthy replicas.
async fn ask(c: &mut Conn, master: &str, t: Duration) -> Result<Option<Topology>, KvError> {
    let r = c
        .call(
            &[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()],
            t,
        )
        .await?;
    let primary = match r {
        Reply::Array(Some(v)) if v.len() == 2 => {
            let ip = v.first().and_then(text);
            let port = v.get(1).and_then(text).and_then(|p| p.parse::<u16>().ok());
            match (ip.and_then(|i| i.parse::<std::net::IpAddr>().ok()), port) {
                (Some(ip), Some(port)) => SocketAddr::new(ip, port),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let mut replicas = Vec::new();
    let mut replicas_down = 0;
    if let Reply::Array(Some(list)) = c
        .call(&[b"SENTINEL", b"replicas", master.as_bytes()], t)
        .await?
    {
        for r in list {
            let Reply::Array(Some(kv)) = r else { continue };
            let field = |name: &str| {
                kv.chunks(2).find_map(|p| match p {
                    [k, v] if text(k).as_deref() == Some(name) => text(v),
                    _ => None,
                })
            };
            let flags = field("flags").unwrap_or_default();
            let healthy = !flags.contains("s_down")
                && !flags.contains("o_down")
                && !flags.contains("disconnected")
                && field("master-link-status").as_deref() == Some("ok");
            let addr = match (field("ip"), field("port")) {
                (Some(ip), Some(p)) => format!("{ip}:{p}").parse::<SocketAddr>().ok(),
                _ => None,
            };
            match addr {
                Some(a) if a == primary => {}
                Some(a) if healthy => replicas.push(a),
                _ => replicas_down += 1,
            }
        }
    }
    Ok(Some(Topology {
        primary: Some(primary),
        replicas,
        replicas_down,
    }))
}

/// Subscribes to the events that move the primary or the replicas.
async fn subscribe(addr: SocketAddr, t: Duration) -> Result<Conn, KvError> {
    let mut c = Conn::open(addr, None, t).await?;
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(EVENTS);
    c.send(&args, t).await?;
    Ok(c)
}

/// The follower's task: one sentinel at a time (the next when it fails), asked
/// every second, on every event and whenever a call suggests a failover.
async fn run(f: Weak<Follower>) {
    let mut next = 0usize;
    loop {
        let Some(me) = f.upgrade() else { return };
        let (sentinels, master, t) = (me.sentinels.clone(), me.master.clone(), me.timeout);
        drop(me);
        if sentinels.is_empty() {
            return;
        }
        let addr = sentinels[next % sentinels.len()];
        next += 1;
        let conns = async {
            Ok::<_, KvError>((Conn::open(addr, None, t).await?, subscribe(addr, t).await?))
        };
        let (mut cmd, mut sub) = match conns.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("kv-sentinel {addr}: {e}");
                // All of them refused: wait a little before another round.
                if next.is_multiple_of(sentinels.len()) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
        };
        loop {
            let Some(me) = f.upgrade() else { return };
            match ask(&mut cmd, &master, t).await {
                Ok(Some(top)) => me.set(top),
                Ok(None) => {}
                Err(_) => break,
            }
            // Wait for an event, a suspicion or the refresh period.
            let woke = tokio::select! {
                r = sub.read(REFRESH) => match r {
                    Ok(_) | Err(KvError::Timeout(_)) => true,
                    Err(_) => false,
                },
                _ = me.suspect.notified() => true,
            };
            drop(me);
            if !woke {
                break;
            }
        }
    }
}
