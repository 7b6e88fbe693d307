//! `lb_sentinel_*`: the primary's address per master, failovers, sentinels seen, quorum reachable.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use super::state::Step;
use super::World;

struct Families {
    primary: IntGaugeVec,
    failovers: IntCounterVec,
    sentinels: IntGaugeVec,
    quorum: IntGaugeVec,
    replicas: IntGaugeVec,
    down: IntGaugeVec,
    failing_over: IntGaugeVec,
    epoch: IntGaugeVec,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let r = crate::stats::registry();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            // Names are distinct constants: registration cannot clash.
            r.register(Box::new(v.clone())).expect("unique metric names");
            v
        };
        Families {
            primary: gauge(
                "lb_sentinel_master_address",
                "1 for the address a sentinel gives as the current primary of a master name",
                &["sentinel", "master", "addr"],
            ),
            failovers: {
                let v = IntCounterVec::new(
                    Opts::new(
                        "lb_sentinel_failovers_total",
                        "Failovers completed (led by this sentinel or learnt from a peer) since start",
                    ),
                    &["sentinel", "master"],
                )
                .expect("valid metric definition");
                r.register(Box::new(v.clone())).expect("unique metric names");
                v
            },

            sentinels: gauge(
                "lb_sentinel_sentinels",
                "Sentinels known for a master, this one included",
                &["sentinel", "master"],
            ),
            quorum: gauge(
                "lb_sentinel_quorum_reachable",
                "1 when enough sentinels are reachable to reach the quorum and a majority (SENTINEL CKQUORUM)",
                &["sentinel", "master"],
            ),
            replicas: gauge(
                "lb_sentinel_replicas",
                "Replicas known for a master",
                &["sentinel", "master"],
            ),
            down: gauge(
                "lb_sentinel_master_down",
                "1 while the primary is down: state sdown (for this sentinel) or odown (for the quorum)",
                &["sentinel", "master", "state"],
            ),
            failing_over: gauge(
                "lb_sentinel_failover_in_progress",
                "1 while a failover of the master runs",
                &["sentinel", "master"],
            ),
            epoch: gauge(
                "lb_sentinel_current_epoch",
                "The sentinel's current epoch",
                &["sentinel"],
            ),
        }
    })
}

/// A sentinel section's view of the families; remembers the address label it set.
#[derive(Debug)]
pub struct Handles {
    name: String,
    addrs: Mutex<HashMap<String, String>>,
}

impl Handles {
    pub fn new(name: &str) -> Handles {
        families();
        Handles {
            name: name.to_string(),
            addrs: Mutex::new(HashMap::new()),
        }
    }

    /// Sets every gauge from the world (each tick; a handful of label lookups).
    pub fn refresh(&self, w: &World) {
        let f = families();
        let s = self.name.as_str();
        f.epoch.with_label_values(&[s]).set(w.current_epoch as i64);
        let mut addrs = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        for m in &w.masters {
            let n = m.name.as_str();
            let addr = m.current_addr().to_string();
            if let Some(old) = addrs.insert(m.name.clone(), addr.clone()) {
                if old != addr {
                    let _ = f.primary.remove_label_values(&[s, n, &old]);
                }
            }
            f.primary.with_label_values(&[s, n, &addr]).set(1);
            let c = f.failovers.with_label_values(&[s, n]);
            c.inc_by(m.failovers.saturating_sub(c.get()));
            f.sentinels
                .with_label_values(&[s, n])
                .set(m.voters() as i64);
            let ok = m.reachable_sentinels() >= m.majority();
            f.quorum.with_label_values(&[s, n]).set(ok as i64);
            f.replicas
                .with_label_values(&[s, n])
                .set(m.replicas.len() as i64);
            f.down
                .with_label_values(&[s, n, "sdown"])
                .set(m.primary.sdown_since.is_some() as i64);
            f.down
                .with_label_values(&[s, n, "odown"])
                .set(m.odown_since.is_some() as i64);
            f.failing_over
                .with_label_values(&[s, n])
                .set((m.failover.step != Step::None) as i64);
        }
    }
}

fn running() -> &'static Mutex<Vec<std::sync::Weak<super::Sentinel>>> {
    static R: OnceLock<Mutex<Vec<std::sync::Weak<super::Sentinel>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

/// Makes a started sentinel visible on the stats page.
pub fn register(s: &std::sync::Arc<super::Sentinel>) {
    let mut r = running().lock().unwrap_or_else(|p| p.into_inner());
    r.retain(|w| w.strong_count() > 0);
    r.push(std::sync::Arc::downgrade(s));
}

/// The stats page's view (`/api/stats`, `sentinels`): per sentinel and master, the
/// primary now, its state, and the last events.
pub fn stats_json(o: &mut String) {
    use crate::app::json_str;
    use std::fmt::Write as _;
    let list: Vec<_> = running()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|w| w.upgrade())
        .collect();
    o.push('[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let w = s.lock();
        o.push_str("{\"name\":");
        json_str(o, &s.conf.name);
        let _ = write!(o, ",\"epoch\":{},\"masters\":[", w.current_epoch);
        for (j, m) in w.masters.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let status = if m.failover.step != Step::None {
                "failover"
            } else if m.odown_since.is_some() {
                "odown"
            } else if m.primary.sdown_since.is_some() {
                "sdown"
            } else {
                "ok"
            };
            o.push_str("{\"name\":");
            json_str(o, &m.name);
            o.push_str(",\"primary\":");
            json_str(o, &m.current_addr().to_string());
            let _ = write!(
                o,
                ",\"status\":\"{status}\",\"replicas\":{},\"sentinels\":{},\"quorum\":{},\"quorum_reachable\":{},\"failovers\":{},\"events\":[",
                m.replicas.len(),
                m.voters(),
                m.quorum,
                m.reachable_sentinels() >= m.majority(),
                m.failovers
            );
            for (k, e) in m.history.iter().rev().take(8).enumerate() {
                if k > 0 {
                    o.push(',');
                }
                json_str(o, e);
            }
            o.push_str("]}");
        }
        o.push_str("]}");
    }
    o.push(']');
}
