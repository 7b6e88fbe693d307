//! Metrics of `app` sections (`lb_app_*`): requests by endpoint and status class, kv calls by role with latency and errors, read-your-writes fallbacks; handles resolved once per app name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, IntCounter};

use crate::stats::{class_index, CLASSES};

/// The endpoints of the foobar API, the `endpoint` label.
pub const ENDPOINTS: [&str; 5] = ["healthz", "whoami", "items", "item", "other"];

/// The `endpoint` label of a request path.
pub fn endpoint(path: &[u8]) -> usize {
    match path {
        b"/healthz" => 0,
        b"/api/whoami" => 1,
        b"/api/items" | b"/api/items/" => 2,
        p if p.starts_with(b"/api/items/") => 3,
        _ => 4,
    }
}

/// Which kv server a call went to, the `role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary = 0,
    Replica = 1,
}

pub const ROLES: [&str; 2] = ["primary", "replica"];

/// Why a read went to the primary though a replica is configured, the `reason` label.
#[derive(Debug, Clone, Copy)]
pub enum Fallback {
    /// The replica had not applied the client's last write (read-your-writes).
    Behind = 0,
    /// The replica did not answer.
    Unreachable = 1,
}

pub const FALLBACKS: [&str; 2] = ["replica_behind", "replica_unreachable"];

/// Handles of one endpoint.
#[derive(Debug)]
pub struct EndpointStats {
    pub responses: [IntCounter; 6],
    pub duration: Histogram,
}

/// Handles of kv calls to one role.
#[derive(Debug)]
pub struct KvCalls {
    pub calls: IntCounter,
    pub errors: IntCounter,
    pub duration: Histogram,
}

/// What one `app` section did, by name, kept across reloads.
#[derive(Debug)]
pub struct AppStats {
    pub name: String,
    pub endpoints: [EndpointStats; 5],
    pub kv: [KvCalls; 2],
    pub fallbacks: [IntCounter; 2],
    /// Whether the last call to each role got an answer (for logging changes once).
    pub kv_reachable: [std::sync::atomic::AtomicBool; 2],
    /// Listening address and kv addresses, for the stats page.
    pub addrs: Mutex<AppAddrs>,
}

#[derive(Debug, Default, Clone)]
pub struct AppAddrs {
    pub bind: Option<SocketAddr>,
    pub kv_primary: Option<SocketAddr>,
    pub kv_replica: Option<SocketAddr>,
}

struct Families {
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
    kv_calls: prometheus::IntCounterVec,
    kv_errors: prometheus::IntCounterVec,
    kv_duration: prometheus::HistogramVec,
    fallbacks: prometheus::IntCounterVec,
    apps: Mutex<BTreeMap<String, Arc<AppStats>>>,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let r = crate::stats::registry();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let v = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
                .expect("valid metric definition");
            // Names are distinct constants: registration cannot clash.
            r.register(Box::new(v.clone()))
                .expect("unique metric names");
            v
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let v = prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(name, help).buckets(crate::stats::BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric definition");
            r.register(Box::new(v.clone()))
                .expect("unique metric names");
            v
        };
        Families {
            requests: counter(
                "lb_app_requests_total",
                "Requests answered by an app section, by endpoint and status class",
                &["app", "endpoint", "code"],
            ),
            duration: histogram(
                "lb_app_request_duration_seconds",
                "Time from request head to answer, by endpoint",
                &["app", "endpoint"],
            ),
            kv_calls: counter(
                "lb_app_kv_calls_total",
                "Round trips from the app to a kv server (a pipelined batch is one), by role",
                &["app", "role"],
            ),
            kv_errors: counter(
                "lb_app_kv_errors_total",
                "kv round trips that failed (unreachable, timeout, protocol error) or got an error reply (READONLY, OOM), by role",
                &["app", "role"],
            ),
            kv_duration: histogram(
                "lb_app_kv_call_duration_seconds",
                "Time of one kv round trip, connect included, by role",
                &["app", "role"],
            ),
            fallbacks: counter(
                "lb_app_read_fallbacks_total",
                "Reads sent to the primary although a replica is configured, by reason",
                &["app", "reason"],
            ),
            apps: Mutex::new(BTreeMap::new()),
        }
    })
}

/// The handles of app section `name` (the same object for the process's life).
pub fn app(name: &str) -> Arc<AppStats> {
    let f = families();
    let mut m = f.apps.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(name.to_string())
        .or_insert_with(|| {
            let ep = |e: &str| EndpointStats {
                responses: CLASSES.map(|c| f.requests.with_label_values(&[name, e, c])),
                duration: f.duration.with_label_values(&[name, e]),
            };
            let kv = |r: &str| KvCalls {
                calls: f.kv_calls.with_label_values(&[name, r]),
                errors: f.kv_errors.with_label_values(&[name, r]),
                duration: f.kv_duration.with_label_values(&[name, r]),
            };
            Arc::new(AppStats {
                name: name.to_string(),
                endpoints: ENDPOINTS.map(ep),
                kv: ROLES.map(kv),
                fallbacks: FALLBACKS.map(|r| f.fallbacks.with_label_values(&[name, r])),
                kv_reachable: [(); 2].map(|_| std::sync::atomic::AtomicBool::new(true)),
                addrs: Mutex::new(AppAddrs::default()),
            })
        })
        .clone()
}

/// Every app section seen, by name.
pub fn apps() -> Vec<Arc<AppStats>> {
    let m = families().apps.lock().unwrap_or_else(|p| p.into_inner());
    m.values().cloned().collect()
}

impl AppStats {
    pub fn answered(&self, endpoint: usize, status: u16, took: Duration) {
        if let Some(e) = self.endpoints.get(endpoint) {
            e.responses[class_index(status)].inc();
            e.duration.observe(took.as_secs_f64());
        }
    }

    pub fn kv_call(&self, role: Role, ok: bool, took: Duration) {
        let k = &self.kv[role as usize];
        k.calls.inc();
        if !ok {
            k.errors.inc();
        }
        k.duration.observe(took.as_secs_f64());
    }

    pub fn fallback(&self, why: Fallback) {
        self.fallbacks[why as usize].inc();
    }

    pub fn addrs(&self) -> AppAddrs {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// All endpoints' requests, and those answered 5xx.
    pub fn totals(&self) -> (u64, u64) {
        self.endpoints.iter().fold((0, 0), |(r, e), ep| {
            (
                r + ep.responses.iter().map(|c| c.get()).sum::<u64>(),
                e + ep.responses[4].get(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        assert_eq!(ENDPOINTS[endpoint(b"/api/items/k1")], "item");
        assert_eq!(ENDPOINTS[endpoint(b"/api/items")], "items");
        assert_eq!(ENDPOINTS[endpoint(b"/healthz")], "healthz");
        assert_eq!(ENDPOINTS[endpoint(b"/nope")], "other");
    }

    #[test]
    fn handles_exist_before_use() {
        let a = app("metrics-test-app");
        a.answered(3, 200, Duration::from_millis(2));
        a.kv_call(Role::Replica, false, Duration::from_millis(1));
        assert_eq!(a.totals(), (1, 0));
        assert_eq!(a.kv[1].errors.get(), 1);
        assert!(Arc::ptr_eq(&a, &app("metrics-test-app")));
    }
}
