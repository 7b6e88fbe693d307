//! kv metrics (`lb_kv_*`) and the stats page's view of a kv server, read at scrape time from the state kv keeps; plus a sampler of the stream offset's timeline, so a replica's lag can be told in seconds.
//!
//! Replication lag in seconds is the age of the oldest write a replica has not
//! acknowledged: the sampler records when the primary's offset passed each
//! value (one entry per 10 ms at most), and a replica acknowledging offset A
//! lags by `now - (time the offset first went past A)`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::proto::MetricFamily;

use super::Kv;
use crate::stats::Fam;

/// Timeline entries kept per kv server: at one per 10 ms, over 80 s of steady writes.
const TIMELINE: usize = 8192;
const GRANULE: Duration = Duration::from_millis(10);

/// (end offset, first time the offset reached into this entry), oldest first.
type Timeline = VecDeque<(u64, Instant)>;

/// Per kv server (by name): its offset timeline and the replicas it has seen.
#[derive(Default)]
struct Watch {
    timeline: Timeline,
    /// Replica address -> when it was last seen attached.
    seen: BTreeMap<String, Instant>,
    /// The last role seen, and how many times it changed.
    was_replica: Option<bool>,
    role_changes: u64,
}

/// Replica addresses remembered per kv server (a bound on what a churn of
/// ephemeral replicas can leave behind); the least recently seen go first.
const SEEN_MAX: usize = 64;

fn watch(name: &str) -> Arc<Mutex<Watch>> {
    static W: OnceLock<Mutex<HashMap<String, Arc<Mutex<Watch>>>>> = OnceLock::new();
    let mut m = W
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    m.entry(name.to_string()).or_default().clone()
}

fn with_watch<R>(w: &Mutex<Watch>, f: impl FnOnce(&mut Watch) -> R) -> R {
    f(&mut w.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Records when the stream offset grows, for as long as the kv server lives.
/// Spawned by `Kv::start`.
pub async fn sample_offsets(kv: Arc<Kv>) {
    let w = watch(&kv.name);
    let mut rx = kv.offset_tx.subscribe();
    while rx.changed().await.is_ok() {
        let off = *rx.borrow_and_update();
        let now = Instant::now();
        with_watch(&w, |w| record(&mut w.timeline, off, now));
    }
}

fn record(t: &mut Timeline, off: u64, now: Instant) {
    match t.back_mut() {
        // A reset (a replica promoted, a full resync): the old timeline says nothing.
        Some(&mut (end, _)) if off < end => {
            t.clear();
            t.push_back((off, now));
        }
        // Within one granule: the entry grows; its time stays the earliest.
        Some((end, at)) if now.duration_since(*at) < GRANULE => *end = off,
        _ => {
            if t.len() == TIMELINE {
                t.pop_front();
            }
            t.push_back((off, now));
        }
    }
}

/// Seconds since the stream first went past `ack` (0 when `ack` is at the end).
/// When the timeline no longer reaches back that far, its oldest entry bounds
/// the lag from below.
fn lag_seconds(t: &Timeline, ack: u64, offset: u64, now: Instant) -> f64 {
    if ack >= offset {
        return 0.0;
    }
    match t.iter().find(|(end, _)| *end > ack) {
        Some((_, at)) => now.duration_since(*at).as_secs_f64(),
        None => 0.0,
    }
}

/// What the page and the metrics show of one kv server.
#[derive(Debug)]
pub struct KvView {
    pub clients: i64,
    pub keys: usize,
    pub used_memory: u64,
    pub is_replica: bool,
    pub offset: u64,
    /// Replicas attached to this server (a primary's view), then those seen
    /// before and gone now (`missing`).
    pub replicas: Vec<ReplicaView>,
    /// A replica's link to its primary: `None` on a primary.
    pub link_up: Option<bool>,
    /// A replica's link state, as ROLE says it (connect, connecting, sync, connected).
    pub link_state: Option<&'static str>,
    pub master: Option<String>,
    /// A replica's seconds since it last heard from its primary.
    pub master_last_io_seconds: Option<f64>,
    /// Times the role changed (primary <-> replica) since start.
    pub role_changes: u64,
}

#[derive(Debug)]
pub struct ReplicaView {
    pub addr: String,
    pub ack: u64,
    pub lag_bytes: u64,
    /// Age of the oldest write not acknowledged.
    pub lag_seconds: f64,
    /// Seconds since the replica's last acknowledgement (Redis's `lag`).
    pub last_ack_seconds: f64,
    /// Attached and past its initial sync.
    pub online: bool,
    /// Seen attached before, not attached now: seconds since it was last seen.
    pub missing_for: Option<f64>,
}

/// Reads one kv server's state now. `expected`: replica addresses the conf
/// names for it (shown as missing until they attach).
pub fn view(k: &Kv, expected: &[SocketAddr]) -> KvView {
    let (keys, used_memory, offset, is_replica) = {
        let st = k.lock();
        (
            st.keys_total(),
            st.used(),
            st.repl.offset,
            st.repl.is_replica,
        )
    };
    let now = Instant::now();
    let attached = k.replicas().clone();
    let master = k
        .master_tx
        .borrow()
        .as_ref()
        .map(|m| format!("{}:{}", m.host, m.port));
    let (link_up, link_state, master_last_io_seconds) = if master.is_some() {
        let l = k.link();
        (
            Some(l.up),
            Some(l.state),
            Some(l.last_io.elapsed().as_secs_f64()),
        )
    } else {
        (None, None, None)
    };
    with_watch(&watch(&k.name), |w| {
        if w.was_replica.is_some_and(|r| r != is_replica) {
            w.role_changes += 1;
        }
        w.was_replica = Some(is_replica);
        let mut replicas: Vec<ReplicaView> = attached
            .iter()
            .map(|r| {
                let addr = r.addr.to_string();
                w.seen.insert(addr.clone(), now);
                ReplicaView {
                    addr,
                    ack: r.ack,
                    lag_bytes: offset.saturating_sub(r.ack),
                    lag_seconds: if r.online {
                        lag_seconds(&w.timeline, r.ack, offset, now)
                    } else {
                        0.0
                    },
                    last_ack_seconds: now.duration_since(r.last_ack).as_secs_f64(),
                    online: r.online,
                    missing_for: None,
                }
            })
            .collect();
        for e in expected {
            w.seen.entry(e.to_string()).or_insert(k.started);
        }
        if is_replica {
            // A replica has no replicas of its own to miss.
            w.seen.clear();
        }
        while w.seen.len() > SEEN_MAX {
            let oldest = w
                .seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(a, _)| a.clone());
            if let Some(a) = oldest {
                w.seen.remove(&a);
            }
        }
        for (addr, at) in &w.seen {
            if !replicas.iter().any(|r| &r.addr == addr) {
                replicas.push(ReplicaView {
                    addr: addr.clone(),
                    ack: 0,
                    lag_bytes: 0,
                    lag_seconds: 0.0,
                    last_ack_seconds: 0.0,
                    online: false,
                    missing_for: Some(now.duration_since(*at).as_secs_f64()),
                });
            }
        }
        KvView {
            clients: k.stats.clients.load(Ordering::Relaxed),
            keys,
            used_memory,
            is_replica,
            offset,
            replicas,
            link_up,
            link_state,
            master,
            master_last_io_seconds,
            role_changes: w.role_changes,
        }
    })
}

/// Replica addresses the conf names for `k`: kv sections of this process whose
/// `replicaof` is `k`'s address.
pub fn expected_replicas(k: &Kv, all: &[Arc<Kv>]) -> Vec<SocketAddr> {
    all.iter()
        .filter(|o| o.conf.replicaof == Some(k.conf.bind))
        .map(|o| o.conf.bind)
        .collect()
}

/// The `lb_kv_*` families of `kvs`, read now.
pub fn families(kvs: &[Arc<Kv>]) -> Vec<MetricFamily> {
    if kvs.is_empty() {
        return Vec::new();
    }
    let mut cmds = Fam::counter("lb_kv_commands_total", "Commands processed, by name");
    let mut clients = Fam::gauge("lb_kv_connected_clients", "Client connections open");
    let mut conns = Fam::counter("lb_kv_connections_total", "Client connections accepted");
    let mut keys = Fam::gauge("lb_kv_keys", "Keys in the keyspace");
    let mut expired = Fam::counter(
        "lb_kv_expired_keys_total",
        "Keys removed because their expiry passed",
    );
    let mut mem = Fam::gauge(
        "lb_kv_memory_used_bytes",
        "Bytes of keys and values (what maxmemory bounds)",
    );
    let mut mem_max = Fam::gauge("lb_kv_memory_max_bytes", "maxmemory (0: unbounded)");
    let mut role = Fam::gauge(
        "lb_kv_replication_role",
        "1 for the current role (primary or replica)",
    );
    let mut role_changes = Fam::counter(
        "lb_kv_role_changes_total",
        "Role changes (a replica promoted, a primary turned replica) seen since start",
    );
    let mut offset = Fam::gauge(
        "lb_kv_replication_offset_bytes",
        "Replication stream offset (produced on a primary, applied on a replica)",
    );
    let mut connected = Fam::gauge(
        "lb_kv_connected_replicas",
        "Replicas attached and past their initial sync",
    );
    let mut lag_b = Fam::gauge(
        "lb_kv_replica_lag_bytes",
        "Bytes of stream a replica has not acknowledged (seen from the primary)",
    );
    let mut lag_s = Fam::gauge(
        "lb_kv_replica_lag_seconds",
        "Age of the oldest write a replica has not acknowledged (seen from the primary)",
    );
    let mut last_ack = Fam::gauge(
        "lb_kv_replica_last_ack_seconds",
        "Seconds since a replica's last acknowledgement (Redis's lag; replicas ack every second)",
    );
    let mut online = Fam::gauge(
        "lb_kv_replica_online",
        "1 for a replica attached and synced, 0 for one seen (or named by the conf) and missing now",
    );
    let mut link = Fam::gauge(
        "lb_kv_master_link_up",
        "1 when a replica's link to its primary is up",
    );
    let mut last_io = Fam::gauge(
        "lb_kv_master_last_io_seconds",
        "Seconds since a replica last heard from its primary",
    );
    let mut syncs = Fam::counter(
        "lb_kv_syncs_total",
        "Replica synchronisations served: full, partial_ok (continued from the backlog), partial_err (asked partial, got full)",
    );
    for k in kvs {
        let v = view(k, &expected_replicas(k, kvs));
        let name = k.name.as_str();
        let l = [("kv", name)];
        for (c, n) in k.stats.per_command.snapshot() {
            cmds.add(&[("kv", name), ("command", c)], n as f64);
        }
        clients.add(&l, v.clients as f64);
        conns.add(&l, k.stats.connections.load(Ordering::Relaxed) as f64);
        keys.add(&l, v.keys as f64);
        expired.add(&l, k.stats.expired.load(Ordering::Relaxed) as f64);
        mem.add(&l, v.used_memory as f64);
        mem_max.add(&l, k.conf.maxmemory.unwrap_or(0) as f64);
        for r in ["primary", "replica"] {
            let on = (r == "replica") == v.is_replica;
            role.add(&[("kv", name), ("role", r)], if on { 1.0 } else { 0.0 });
        }
        role_changes.add(&l, v.role_changes as f64);
        offset.add(&l, v.offset as f64);
        if !v.is_replica {
            let n = v.replicas.iter().filter(|r| r.online).count();
            connected.add(&l, n as f64);
        }
        for r in &v.replicas {
            let rl = [("kv", name), ("replica", r.addr.as_str())];
            online.add(&rl, if r.online { 1.0 } else { 0.0 });
            if r.missing_for.is_none() {
                lag_b.add(&rl, r.lag_bytes as f64);
                lag_s.add(&rl, r.lag_seconds);
                last_ack.add(&rl, r.last_ack_seconds);
            }
        }
        if let Some(up) = v.link_up {
            link.add(&l, if up { 1.0 } else { 0.0 });
        }
        if let Some(s) = v.master_last_io_seconds {
            last_io.add(&l, s);
        }
        let st = &k.stats;
        for (kind, c) in [
            ("full", &st.sync_full),
            ("partial_ok", &st.sync_partial_ok),
            ("partial_err", &st.sync_partial_err),
        ] {
            syncs.add(
                &[("kv", name), ("type", kind)],
                c.load(Ordering::Relaxed) as f64,
            );
        }
    }
    [
        cmds,
        clients,
        conns,
        keys,
        expired,
        mem,
        mem_max,
        role,
        role_changes,
        offset,
        connected,
        lag_b,
        lag_s,
        last_ack,
        online,
        link,
        last_io,
        syncs,
    ]
    .into_iter()
    .map(|f| f.0)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_unacknowledged_write() {
        let t0 = Instant::now();
        let mut t = Timeline::new();
        record(&mut t, 100, t0);
        record(&mut t, 150, t0 + Duration::from_millis(5)); // same granule
        record(&mut t, 200, t0 + Duration::from_secs(1));
        record(&mut t, 300, t0 + Duration::from_secs(2));
        assert_eq!(t.len(), 3);
        let now = t0 + Duration::from_secs(3);
        assert_eq!(lag_seconds(&t, 300, 300, now), 0.0);
        // Acked 150: the writes up to 200 began at 1 s.
        assert!((lag_seconds(&t, 150, 300, now) - 2.0).abs() < 1e-9);
        assert!((lag_seconds(&t, 250, 300, now) - 1.0).abs() < 1e-9);
        assert!((lag_seconds(&t, 10, 300, now) - 3.0).abs() < 1e-9);
        // A reset of the stream starts a new timeline.
        record(&mut t, 50, now);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_timeline_is_bounded() {
        let t0 = Instant::now();
        let mut t = Timeline::new();
        for i in 0..(TIMELINE as u64 + 10) {
            record(&mut t, i + 1, t0 + GRANULE * (i as u32));
        }
        assert_eq!(t.len(), TIMELINE);
    }
}
