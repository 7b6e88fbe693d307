//! `GET /metrics`: the registered traffic metrics plus values read at scrape time (server state, health, reloads, kv), in Prometheus text format.

use std::sync::atomic::Ordering;

use prometheus::proto::{MetricFamily, MetricType};
use prometheus::Encoder;

use super::Admin;
use crate::balance::State;
use crate::stats::Fam;

/// The full exposition.
pub fn render(admin: &Admin) -> Vec<u8> {
    let certs = crate::stats::cert_families(&admin.rt.snapshot.load().conf);
    let mut families = crate::stats::registry().gather();
    families.extend(live(admin));
    families.extend(certs);
    // The encoder refuses a family without samples (e.g. no kv replica yet).
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::with_capacity(64 << 10);
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        tracing::error!("cannot encode metrics: {e}");
    }
    out
}

const STATES: [State; 4] = [State::Up, State::Down, State::Drain, State::Maint];

/// Values that live in the runtime's own atomics, read now.
fn live(admin: &Admin) -> Vec<MetricFamily> {
    use MetricType::{COUNTER, GAUGE};
    let mut current = Fam::new(
        "lb_server_current_sessions",
        "Requests (HTTP) or connections (TCP) in flight to the server",
        GAUGE,
    );
    let mut total = Fam::new(
        "lb_server_sessions_total",
        "Requests (HTTP) or connections (TCP) sent to the server",
        COUNTER,
    );
    let mut conn_err = Fam::new(
        "lb_server_connection_errors_total",
        "Failed connection attempts to the server",
        COUNTER,
    );
    let mut check_fail = Fam::new(
        "lb_server_check_failures_total",
        "Failed health checks (active and passive)",
        COUNTER,
    );
    let mut transitions = Fam::new(
        "lb_server_check_up_down_total",
        "Health transitions (UP to DOWN and back)",
        COUNTER,
    );
    let mut state = Fam::new(
        "lb_server_status",
        "1 for the server's current state (UP, DOWN, DRAIN, MAINT), 0 for the others",
        GAUGE,
    );
    let mut weight = Fam::new("lb_server_weight", "Effective weight", GAUGE);
    let mut backup = Fam::new("lb_server_backup", "1 for a backup server", GAUGE);
    let mut active = Fam::new(
        "lb_backend_active_servers",
        "Servers able to take traffic now",
        GAUGE,
    );
    let mut reuse = Fam::new(
        "lb_backend_connection_reuse_ratio",
        "Share of server connections taken from the idle pool (0..1)",
        GAUGE,
    );
    let snap = admin.rt.snapshot.load();
    for b in &snap.conf.backends {
        let Some(rt) = snap.backends.get(&b.name) else {
            continue;
        };
        let mut up = 0;
        for s in &rt.pool.servers {
            let l = [("backend", b.name.as_str()), ("server", s.name.as_str())];
            current.add(&l, s.inflight.load(Ordering::Relaxed) as f64);
            total.add(&l, s.total.load(Ordering::Relaxed) as f64);
            conn_err.add(&l, s.connect_errors.load(Ordering::Relaxed) as f64);
            check_fail.add(&l, s.check_failures.load(Ordering::Relaxed) as f64);
            transitions.add(&l, s.transitions.load(Ordering::Relaxed) as f64);
            let now = s.state();
            for st in STATES {
                let v = if st == now { 1.0 } else { 0.0 };
                state.add(&[l[0], l[1], ("state", st.as_str())], v);
            }
            weight.add(&l, s.weight() as f64);
            backup.add(&l, if s.backup() { 1.0 } else { 0.0 });
            if s.eligible() {
                up += 1;
            }
        }
        active.add(&[("backend", b.name.as_str())], up as f64);
        let (hit, miss) = (rt.stats.reuse_hit.get(), rt.stats.reuse_miss.get());
        let ratio = if hit + miss == 0 {
            0.0
        } else {
            hit as f64 / (hit + miss) as f64
        };
        reuse.add(&[("backend", b.name.as_str())], ratio);
    }
    let mut reloads = Fam::new("lb_reloads_total", "Successful reloads", COUNTER);
    reloads.add(&[], admin.rt.reloads.load(Ordering::Relaxed) as f64);
    let mut failed = Fam::new(
        "lb_reload_failures_total",
        "Reloads that kept the old conf (bad file or failed bind)",
        COUNTER,
    );
    failed.add(&[], admin.rt.reload_failures.load(Ordering::Relaxed) as f64);
    let mut dropped = Fam::new(
        "lb_access_log_dropped_total",
        "Access log lines dropped because the sink was slower than traffic",
        COUNTER,
    );
    dropped.add(&[], crate::accesslog::dropped() as f64);
    let mut uring = Fam::new(
        "lb_io_uring_workers",
        "Worker threads by data path (io_uring or epoll), ring mode, and why",
        GAUGE,
    );
    for (o, n) in crate::uring::outcomes() {
        let (path, mode, reason) = o.labels();
        uring.add(
            &[("path", path), ("mode", mode), ("reason", reason)],
            n as f64,
        );
    }
    let (spare, allocated) = crate::io::buffer_counts();
    let mut spare_buffers = Fam::new(
        "lb_spare_buffers",
        "16 KiB read buffers given back by idle connections, kept by the workers for reuse",
        GAUGE,
    );
    spare_buffers.add(&[], spare as f64);
    let mut buffers_allocated = Fam::new(
        "lb_buffers_allocated_total",
        "Read buffers allocated because no spare one was left",
        COUNTER,
    );
    buffers_allocated.add(&[], allocated as f64);
    let mut fds = Fam::new(
        "lb_process_fds",
        "File descriptors open in the process",
        GAUGE,
    );
    fds.add(&[], crate::fdlimit::open() as f64);
    let mut fd_limit = Fam::new(
        "lb_process_fd_limit",
        "The process's open-file limit (soft RLIMIT_NOFILE, raised to the hard limit at start)",
        GAUGE,
    );
    fd_limit.add(&[], crate::fdlimit::limit() as f64);
    let mut uptime = Fam::new("lb_uptime_seconds", "Seconds since start", GAUGE);
    uptime.add(&[], admin.started.elapsed().as_secs_f64());

    let mut out = vec![
        current.0,
        total.0,
        conn_err.0,
        check_fail.0,
        transitions.0,
        state.0,
        weight.0,
        backup.0,
        active.0,
        reuse.0,
        reloads.0,
        failed.0,
        dropped.0,
        uring.0,
        spare_buffers.0,
        buffers_allocated.0,
        fds.0,
        fd_limit.0,
        uptime.0,
    ];
    out.extend(crate::kv::metrics::families(&admin.kvs));
    out.extend(crate::web::metrics::families());
    out.extend(vrrp());
    out
}

/// Each virtual router's state, priority, transitions and adverts.
fn vrrp() -> Vec<MetricFamily> {
    use crate::vrrp::machine::State;
    use crate::vrrp::packet::Reject;
    use MetricType::{COUNTER, GAUGE};
    let list = crate::vrrp::statuses();
    if list.is_empty() {
        return Vec::new();
    }
    let mut state = Fam::new(
        "lb_vrrp_state",
        "1 for the virtual router's current state (INIT, BACKUP, MASTER), 0 for the others",
        GAUGE,
    );
    let mut prio = Fam::new(
        "lb_vrrp_priority",
        "Priority advertised now (the conf's, less failed tracks)",
        GAUGE,
    );
    let mut trans = Fam::new(
        "lb_vrrp_transitions_total",
        "State changes since start",
        COUNTER,
    );
    let mut sent = Fam::new("lb_vrrp_adverts_sent_total", "Adverts sent", COUNTER);
    let mut recv = Fam::new(
        "lb_vrrp_adverts_received_total",
        "Valid adverts received for this virtual router",
        COUNTER,
    );
    let mut dropped = Fam::new(
        "lb_vrrp_adverts_dropped_total",
        "Adverts refused, by reason (never acted on)",
        COUNTER,
    );
    let mut mismatch = Fam::new(
        "lb_vrrp_advert_mismatches_total",
        "Accepted adverts whose interval or address list differs from this node's conf",
        COUNTER,
    );
    for s in &list {
        let vrid = s.vrid.to_string();
        let l = [
            ("vrrp", s.name.as_str()),
            ("vrid", vrid.as_str()),
            ("interface", s.interface.as_str()),
        ];
        let now = s.state();
        for st in State::ALL {
            let v = if st == now { 1.0 } else { 0.0 };
            state.add(&[l[0], l[1], l[2], ("state", st.as_str())], v);
        }
        prio.add(&l, f64::from(s.priority()));
        trans.add(&l, s.transitions.load(Ordering::Relaxed) as f64);
        sent.add(&l, s.sent.load(Ordering::Relaxed) as f64);
        recv.add(&l, s.received.load(Ordering::Relaxed) as f64);
        for r in Reject::ALL {
            dropped.add(
                &[l[0], l[1], l[2], ("reason", r.as_str())],
                s.dropped(r) as f64,
            );
        }
        let m = [
            ("interval", &s.interval_mismatch),
            ("addresses", &s.address_mismatch),
        ];
        for (what, n) in m {
            mismatch.add(
                &[l[0], l[1], l[2], ("what", what)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
    }
    vec![
        state.0, prio.0, trans.0, sent.0, recv.0, dropped.0, mismatch.0,
    ]
}
