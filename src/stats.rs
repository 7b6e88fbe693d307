//! Traffic metrics: prometheus handles resolved once per frontend/backend/server (kept across reloads by name), updated with atomics only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::core::{Collector, Metric as _};
use prometheus::proto::{
    Counter as ProtoCounter, Gauge as ProtoGauge, LabelPair, Metric as ProtoMetric, MetricFamily,
    MetricType,
};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Status classes, the `code` label of response counters.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Latency buckets in seconds, 0.5 ms .. 10 s.
pub const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Index into `CLASSES` of an HTTP status; 0 (no response) and oddities are "other".
pub fn class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100 - 1) as usize,
        _ => 5,
    }
}

/// The metric families, registered once, and the per-name handles made from them.
struct Families {
    registry: Registry,
    fe_current: IntGaugeVec,
    fe_idle: IntGaugeVec,
    fe_sessions: IntCounterVec,
    fe_responses: IntCounterVec,
    fe_bytes_in: IntCounterVec,
    fe_bytes_out: IntCounterVec,
    fe_duration: HistogramVec,
    fe_denied_conn: IntCounterVec,
    fe_denied_req: IntCounterVec,
    fe_requests: IntCounterVec,
    srv_responses: IntCounterVec,
    srv_bytes_in: IntCounterVec,
    srv_bytes_out: IntCounterVec,
    srv_duration: HistogramVec,
    srv_connect: HistogramVec,
    be_retries: IntCounterVec,
    be_redispatches: IntCounterVec,
    be_reuse: IntCounterVec,
    h2_abuse: IntCounterVec,
    tls_ok: IntCounterVec,
    tls_fail: IntCounterVec,
    frontends: Mutex<HashMap<String, Arc<FrontendStats>>>,
    backends: Mutex<HashMap<String, Arc<BackendStats>>>,
    servers: Mutex<HashMap<(String, String), Arc<ServerStats>>>,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(r, v.clone());
    v
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let v = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    register(r, v.clone());
    v
}

fn register(r: &Registry, c: impl Collector + 'static) {
    // Names are distinct constants: registration cannot clash.
    r.register(Box::new(c)).expect("unique metric names");
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let r = Registry::new();
        let fe = &["frontend"];
        let fe_code = &["frontend", "code"];
        let srv = &["backend", "server"];
        let srv_code = &["backend", "server", "code"];
        let be = &["backend"];
        let fe_current = IntGaugeVec::new(
            Opts::new(
                "lb_frontend_current_sessions",
                "Client connections open now",
            ),
            fe,
        )
        .expect("valid metric definition");
        register(&r, fe_current.clone());
        let fe_idle = IntGaugeVec::new(
            Opts::new(
                "lb_frontend_idle_sessions",
                "Keep-alive client connections idle for over a second, their read buffers released",
            ),
            fe,
        )
        .expect("valid metric definition");
        register(&r, fe_idle.clone());
        Families {
            fe_current,
            fe_idle,
            fe_sessions: counter_vec(
                &r,
                "lb_frontend_sessions_total",
                "Client connections accepted",
                fe,
            ),
            fe_responses: counter_vec(
                &r,
                "lb_frontend_http_responses_total",
                "HTTP responses sent to clients, by status class",
                fe_code,
            ),
            fe_bytes_in: counter_vec(
                &r,
                "lb_frontend_bytes_in_total",
                "Bytes received from clients (request heads and body payload)",
                fe,
            ),
            fe_bytes_out: counter_vec(
                &r,
                "lb_frontend_bytes_out_total",
                "Bytes sent to clients",
                fe,
            ),
            fe_duration: histogram_vec(
                &r,
                "lb_frontend_request_duration_seconds",
                "Time from request head to end of response (TCP: session length)",
                fe,
            ),
            fe_denied_conn: counter_vec(
                &r,
                "lb_frontend_denied_connections_total",
                "Client connections closed at accept, before any byte: by tcp-request connection reject (rule), limit conn or limit rate",
                &["frontend", "reason"],
            ),
            fe_denied_req: counter_vec(
                &r,
                "lb_frontend_denied_requests_total",
                "HTTP requests refused by http-request deny (rule) or limit http-req-rate (429)",
                &["frontend", "reason"],
            ),
            fe_requests: counter_vec(
                &r,
                "lb_frontend_http_requests_total",
                "HTTP requests from clients, by the protocol the client spoke (1.1 or 2)",
                &["frontend", "version"],
            ),
            srv_responses: counter_vec(
                &r,
                "lb_server_http_responses_total",
                "HTTP responses relayed from the server, by status class",
                srv_code,
            ),
            srv_bytes_in: counter_vec(
                &r,
                "lb_server_bytes_in_total",
                "Bytes received from clients for this server",
                srv,
            ),
            srv_bytes_out: counter_vec(
                &r,
                "lb_server_bytes_out_total",
                "Bytes sent to clients from this server",
                srv,
            ),
            srv_duration: histogram_vec(
                &r,
                "lb_server_request_duration_seconds",
                "Time from request head to end of response (TCP: session length)",
                srv,
            ),
            srv_connect: histogram_vec(
                &r,
                "lb_server_connect_duration_seconds",
                "Time to establish a new server connection, retries included",
                srv,
            ),
            be_retries: counter_vec(
                &r,
                "lb_backend_retries_total",
                "Connection attempts after a failed one",
                be,
            ),
            be_redispatches: counter_vec(
                &r,
                "lb_backend_redispatches_total",
                "Retries that went to another server",
                be,
            ),
            be_reuse: counter_vec(
                &r,
                "lb_backend_connection_reuse_total",
                "Server connections taken from the idle pool (hit) or opened (miss)",
                &["backend", "result"],
            ),
            h2_abuse: counter_vec(
                &r,
                "lb_h2_abuse_total",
                "HTTP/2 client connections cut for abuse, by kind (glitches: streams reset before their answer; calm: the h2 layer's limits on pending resets, error resets and CONTINUATION floods)",
                &["frontend", "kind"],
            ),
            tls_ok: counter_vec(
                &r,
                "lb_tls_handshakes_total",
                "TLS handshakes completed with clients",
                fe,
            ),
            tls_fail: counter_vec(
                &r,
                "lb_tls_handshake_failures_total",
                "TLS handshakes with clients that failed, by reason",
                &["frontend", "reason"],
            ),
            registry: r,
            frontends: Mutex::new(HashMap::new()),
            backends: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
        }
    })
}

/// Counts an HTTP/2 client connection cut for abuse. Rare: resolved on use.
pub fn h2_abuse(frontend: &str, kind: &str) {
    families()
        .h2_abuse
        .with_label_values(&[frontend, kind])
        .inc();
}

/// Counts a TLS handshake with a client of `frontend`: `Ok`, or the reason it
/// failed (see `tls_failure_reason`). Failures are rare: resolved on use.
pub fn tls_handshake(frontend: &str, result: Result<(), &str>) {
    let f = families();
    match result {
        Ok(()) => f.tls_ok.with_label_values(&[frontend]).inc(),
        Err(reason) => f.tls_fail.with_label_values(&[frontend, reason]).inc(),
    }
}

/// A short, bounded label for why a TLS handshake failed.
pub fn tls_failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, Error as E};
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "client_closed",
            std::io::ErrorKind::ConnectionReset => "client_closed",
            std::io::ErrorKind::TimedOut => "timeout",
            _ => "io_error",
        };
    };
    match inner {
        E::NoApplicationProtocol => "no_alpn_match",
        E::PeerIncompatible(_) => "incompatible",
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => "bad_message",
        E::InappropriateHandshakeMessage { .. } => "bad_message",
        E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateUnknown) => {
            "client_rejected_certificate"
        }
        E::AlertReceived(A::ProtocolVersion) => "protocol_version",
        E::AlertReceived(_) => "alert_received",
        E::General(m) if m.contains("no server certificate") => "no_certificate",
        E::NoCertificatesPresented | E::InvalidCertificate(_) => "bad_client_certificate",
        _ => "other",
    }
}

type BindKey = (String, SocketAddr, usize);

fn bound_addrs() -> &'static Mutex<HashMap<BindKey, SocketAddr>> {
    static B: OnceLock<Mutex<HashMap<BindKey, SocketAddr>>> = OnceLock::new();
    B.get_or_init(Default::default)
}

/// Records the address a frontend's bind (conf address, rank among equal ones)
/// listens on: port 0 in the conf becomes a real port, shown by the stats page.
pub fn bound(frontend: &str, bind: (SocketAddr, usize), addr: SocketAddr) {
    let mut b = bound_addrs().lock().unwrap_or_else(|p| p.into_inner());
    b.insert((frontend.to_string(), bind.0, bind.1), addr);
}

/// The address a frontend's bind listens on, if it was announced.
pub fn bound_addr(frontend: &str, bind: (SocketAddr, usize)) -> Option<SocketAddr> {
    let b = bound_addrs().lock().unwrap_or_else(|p| p.into_inner());
    b.get(&(frontend.to_string(), bind.0, bind.1)).copied()
}

/// Every metric registered here, for `/metrics`.
pub fn registry() -> &'static Registry {
    &families().registry
}

/// Responses, bytes and latency of one frontend or server.
#[derive(Debug)]
pub struct Traffic {
    pub responses: [IntCounter; 6],
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub duration: Histogram,
}

impl Traffic {
    /// Handles registered nowhere, for families built at scrape time
    /// (`lb_web_*`): read with `Traffic::export`.
    pub fn standalone() -> Traffic {
        let counter = || IntCounter::new("unregistered", "-").expect("valid metric definition");
        Traffic {
            responses: std::array::from_fn(|_| counter()),
            bytes_in: counter(),
            bytes_out: counter(),
            duration: Histogram::with_opts(
                HistogramOpts::new("unregistered", "-").buckets(BUCKETS.to_vec()),
            )
            .expect("valid metric definition"),
        }
    }

    fn new(
        responses: &IntCounterVec,
        bytes_in: &IntCounterVec,
        bytes_out: &IntCounterVec,
        duration: &HistogramVec,
        labels: &[&str],
    ) -> Traffic {
        let with_class = |c: &str| {
            let mut l = labels.to_vec();
            l.push(c);
            responses.with_label_values(&l)
        };
        Traffic {
            responses: CLASSES.map(with_class),
            bytes_in: bytes_in.with_label_values(labels),
            bytes_out: bytes_out.with_label_values(labels),
            duration: duration.with_label_values(labels),
        }
    }

    /// One finished request (HTTP, `status` > 0) or TCP session (`status` 0 counts no response).
    pub fn record(&self, status: Option<u16>, bytes_in: u64, bytes_out: u64, took: Duration) {
        if let Some(s) = status {
            self.responses[class_index(s)].inc();
        }
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
        self.duration.observe(took.as_secs_f64());
    }

    /// Responses of class 5xx.
    pub fn errors(&self) -> u64 {
        self.responses[4].get()
    }

    pub fn requests(&self) -> u64 {
        self.responses.iter().map(|c| c.get()).sum()
    }
}

#[derive(Debug)]
pub struct FrontendStats {
    pub name: Arc<str>,
    pub current: IntGauge,
    /// HTTP keep-alive connections (plain or TLS) idle past a second, holding no read buffers.
    pub idle: IntGauge,
    pub sessions: IntCounter,
    pub traffic: Traffic,
    pub denied: Denied,
    /// HTTP requests by protocol: HTTP/1.x, HTTP/2.
    pub requests_h1: IntCounter,
    pub requests_h2: IntCounter,
}

/// Refusals of one frontend, by the rule or limit that refused.
#[derive(Debug)]
pub struct Denied {
    /// `tcp-request connection reject`.
    pub conn_rule: IntCounter,
    pub conn_limit: IntCounter,
    pub conn_rate: IntCounter,
    /// `http-request deny`.
    pub req_rule: IntCounter,
    pub req_rate: IntCounter,
}

impl FrontendStats {
    /// Counts an accepted connection, open until the guard drops.
    pub fn open(self: &Arc<Self>) -> Session {
        self.sessions.inc();
        self.current.inc();
        Session(self.clone())
    }
}

/// An open client connection of a frontend.
#[derive(Debug)]
pub struct Session(Arc<FrontendStats>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.current.dec();
    }
}

#[derive(Debug)]
pub struct BackendStats {
    pub name: Arc<str>,
    pub retries: IntCounter,
    pub redispatches: IntCounter,
    pub reuse_hit: IntCounter,
    pub reuse_miss: IntCounter,
}

#[derive(Debug)]
pub struct ServerStats {
    pub backend: Arc<str>,
    pub name: Arc<str>,
    pub traffic: Traffic,
    pub connect: Histogram,
    /// The last state change, for the stats page ("DOWN: connection refused, 12 s ago").
    pub change: Mutex<Option<Change>>,
}

/// A server's last state change: to what, why, when.
#[derive(Debug, Clone)]
pub struct Change {
    pub state: &'static str,
    pub reason: String,
    pub at: std::time::Instant,
}

impl ServerStats {
    /// Records a state change (health or admin), for the stats page.
    pub fn changed(&self, state: &'static str, reason: &str) {
        let mut c = self.change.lock().unwrap_or_else(|p| p.into_inner());
        *c = Some(Change {
            state,
            reason: reason.to_string(),
            at: std::time::Instant::now(),
        });
    }

    pub fn last_change(&self) -> Option<Change> {
        self.change
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The handles of frontend `name` (the same object for the process's life).
pub fn frontend(name: &str) -> Arc<FrontendStats> {
    let f = families();
    let mut m = f.frontends.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(name.to_string())
        .or_insert_with(|| {
            let l = &[name];
            Arc::new(FrontendStats {
                name: name.into(),
                current: f.fe_current.with_label_values(l),
                idle: f.fe_idle.with_label_values(l),
                sessions: f.fe_sessions.with_label_values(l),
                traffic: Traffic::new(
                    &f.fe_responses,
                    &f.fe_bytes_in,
                    &f.fe_bytes_out,
                    &f.fe_duration,
                    l,
                ),
                denied: Denied {
                    conn_rule: f.fe_denied_conn.with_label_values(&[name, "rule"]),
                    conn_limit: f.fe_denied_conn.with_label_values(&[name, "limit_conn"]),
                    conn_rate: f.fe_denied_conn.with_label_values(&[name, "limit_rate"]),
                    req_rule: f.fe_denied_req.with_label_values(&[name, "rule"]),
                    req_rate: f
                        .fe_denied_req
                        .with_label_values(&[name, "limit_http_req_rate"]),
                },
                requests_h1: f.fe_requests.with_label_values(&[name, "1.1"]),
                requests_h2: f.fe_requests.with_label_values(&[name, "2"]),
            })
        })
        .clone()
}

/// The handles of backend `name`.
pub fn backend(name: &str) -> Arc<BackendStats> {
    let f = families();
    let mut m = f.backends.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(BackendStats {
                name: name.into(),
                retries: f.be_retries.with_label_values(&[name]),
                redispatches: f.be_redispatches.with_label_values(&[name]),
                reuse_hit: f.be_reuse.with_label_values(&[name, "hit"]),
                reuse_miss: f.be_reuse.with_label_values(&[name, "miss"]),
            })
        })
        .clone()
}

/// The handles of server `name` of `backend`.
pub fn server(backend: &str, name: &str) -> Arc<ServerStats> {
    let f = families();
    let mut m = f.servers.lock().unwrap_or_else(|p| p.into_inner());
    m.entry((backend.to_string(), name.to_string()))
        .or_insert_with(|| {
            let l = &[backend, name];
            Arc::new(ServerStats {
                backend: backend.into(),
                name: name.into(),
                traffic: Traffic::new(
                    &f.srv_responses,
                    &f.srv_bytes_in,
                    &f.srv_bytes_out,
                    &f.srv_duration,
                    l,
                ),
                connect: f.srv_connect.with_label_values(l),
                change: Mutex::new(None),
            })
        })
        .clone()
}

/// A metric family built at scrape time from values kept elsewhere (kv state,
/// standalone `Traffic` handles), in the same text format as the registry's.
pub struct Fam(pub MetricFamily);

impl Fam {
    pub fn new(name: &str, help: &str, ty: MetricType) -> Fam {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(ty);
        Fam(f)
    }

    pub fn counter(name: &str, help: &str) -> Fam {
        Fam::new(name, help, MetricType::COUNTER)
    }

    pub fn gauge(name: &str, help: &str) -> Fam {
        Fam::new(name, help, MetricType::GAUGE)
    }

    pub fn histogram(name: &str, help: &str) -> Fam {
        Fam::new(name, help, MetricType::HISTOGRAM)
    }

    fn labels(labels: &[(&str, &str)]) -> Vec<LabelPair> {
        // Sorted by name, as the registry's own families are.
        let mut pairs: Vec<LabelPair> = labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect();
        pairs.sort_by(|a, b| a.get_name().cmp(b.get_name()));
        pairs
    }

    /// One sample of a counter or gauge family.
    pub fn add(&mut self, labels: &[(&str, &str)], v: f64) {
        let mut m = ProtoMetric::default();
        m.set_label(Fam::labels(labels));
        if self.0.get_field_type() == MetricType::COUNTER {
            let mut c = ProtoCounter::default();
            c.set_value(v);
            m.set_counter(c);
        } else {
            let mut g = ProtoGauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        self.0.mut_metric().push(m);
    }

    /// The current buckets of `h`, under `labels`.
    pub fn add_histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let mut m = h.metric();
        m.set_label(Fam::labels(labels));
        self.0.mut_metric().push(m);
    }
}

/// The families of `Traffic` values exported under one prefix: `PREFIX_requests_total`
/// (by `code` class), `PREFIX_bytes_in_total`, `PREFIX_bytes_out_total`,
/// `PREFIX_request_duration_seconds`.
pub struct TrafficFams {
    pub requests: Fam,
    pub bytes_in: Fam,
    pub bytes_out: Fam,
    pub duration: Fam,
}

impl TrafficFams {
    pub fn new(prefix: &str, what: &str) -> TrafficFams {
        TrafficFams {
            requests: Fam::counter(
                &format!("{prefix}_requests_total"),
                &format!("Requests {what}, by status class of the answer"),
            ),
            bytes_in: Fam::counter(
                &format!("{prefix}_bytes_in_total"),
                &format!("Bytes received for requests {what}"),
            ),
            bytes_out: Fam::counter(
                &format!("{prefix}_bytes_out_total"),
                &format!("Bytes sent in answers to requests {what}"),
            ),
            duration: Fam::histogram(
                &format!("{prefix}_request_duration_seconds"),
                &format!("Time from request head to end of answer, requests {what}"),
            ),
        }
    }

    pub fn add(&mut self, t: &Traffic, labels: &[(&str, &str)]) {
        for (i, class) in CLASSES.iter().enumerate() {
            let mut l = labels.to_vec();
            l.push(("code", class));
            self.requests.add(&l, t.responses[i].get() as f64);
        }
        self.bytes_in.add(labels, t.bytes_in.get() as f64);
        self.bytes_out.add(labels, t.bytes_out.get() as f64);
        self.duration.add_histogram(labels, &t.duration);
    }

    pub fn into_vec(self) -> Vec<MetricFamily> {
        vec![
            self.requests.0,
            self.bytes_in.0,
            self.bytes_out.0,
            self.duration.0,
        ]
    }
}

/// When each certificate a `bind ... ssl` serves stops being valid
/// (`lb_tls_certificate_expiry_timestamp_seconds`), for expiry alerts. Call it
/// before gathering the registry: it also makes each TLS frontend's handshake
/// counter exist.
pub fn cert_families(conf: &crate::conf::Conf) -> Vec<MetricFamily> {
    let mut f = Fam::gauge(
        "lb_tls_certificate_expiry_timestamp_seconds",
        "Unix time at which a certificate served by a bind stops being valid (notAfter)",
    );
    for fe in &conf.frontends {
        if fe.binds.iter().any(|b| b.tls.is_some()) {
            // A TLS frontend shows its handshake count from 0, before the first one.
            families().tls_ok.with_label_values(&[fe.name.as_str()]);
        }
        for b in &fe.binds {
            let Some(t) = &b.tls else { continue };
            for c in &t.certs {
                let Some(leaf) = c.key.cert.first() else {
                    continue;
                };
                let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
                    continue;
                };
                let not_after = cert.validity().not_after.timestamp();
                let bind = b.addr.to_string();
                f.add(
                    &[
                        ("frontend", fe.name.as_str()),
                        ("bind", bind.as_str()),
                        ("cert", c.source.as_str()),
                    ],
                    not_after as f64,
                );
            }
        }
    }
    vec![f.0]
}

/// The `q` quantile of several histograms with the same buckets taken together.
pub fn quantile_merged(hs: &[&Histogram], q: f64) -> Option<f64> {
    let mut cumulative = vec![0u64; BUCKETS.len()];
    let mut total = 0;
    for h in hs {
        let m = h.metric();
        let hist = m.get_histogram();
        total += hist.get_sample_count();
        for (c, b) in cumulative.iter_mut().zip(hist.get_bucket()) {
            *c += b.get_cumulative_count();
        }
    }
    quantile_of(&cumulative, total, q)
}

/// The `q` quantile (0..1) of a histogram in seconds, interpolated within its
/// bucket; `None` without samples. Values past the last bucket report its bound.
pub fn quantile(h: &Histogram, q: f64) -> Option<f64> {
    let m = h.metric();
    let hist = m.get_histogram();
    let cumulative: Vec<u64> = hist
        .get_bucket()
        .iter()
        .map(|b| b.get_cumulative_count())
        .collect();
    quantile_of(&cumulative, hist.get_sample_count(), q)
}

/// The quantile from cumulative counts per `BUCKETS` bound.
fn quantile_of(cumulative: &[u64], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut prev_bound = 0.0;
    let mut prev_count = 0u64;
    for (&c, &bound) in cumulative.iter().zip(BUCKETS) {
        if c as f64 >= rank {
            let in_bucket = (c - prev_count) as f64;
            let frac = if in_bucket > 0.0 {
                (rank - prev_count as f64) / in_bucket
            } else {
                1.0
            };
            return Some(prev_bound + (bound - prev_bound) * frac);
        }
        prev_bound = bound;
        prev_count = c;
    }
    Some(prev_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(CLASSES[class_index(101)], "1xx");
        assert_eq!(CLASSES[class_index(200)], "2xx");
        assert_eq!(CLASSES[class_index(404)], "4xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(0)], "other");
        assert_eq!(CLASSES[class_index(600)], "other");
    }

    #[test]
    fn handles_are_shared_by_name() {
        let a = server("stats-test-be", "s1");
        let b = server("stats-test-be", "s1");
        assert!(Arc::ptr_eq(&a, &b));
        a.traffic
            .record(Some(503), 10, 20, Duration::from_millis(3));
        assert_eq!(b.traffic.errors(), 1);
        assert_eq!(b.traffic.requests(), 1);
        assert_eq!(b.traffic.bytes_out.get(), 20);
        let f = frontend("stats-test-fe");
        {
            let _s = f.open();
            assert_eq!(f.current.get(), 1);
        }
        assert_eq!((f.current.get(), f.sessions.get()), (0, 1));
    }

    #[test]
    fn quantiles_interpolate_in_buckets() {
        let h = server("stats-test-q", "s").traffic.duration.clone();
        assert_eq!(quantile(&h, 0.5), None);
        for _ in 0..99 {
            h.observe(0.0007); // bucket (0.0005, 0.001]
        }
        h.observe(3.0); // bucket (2.5, 5]
        let p50 = quantile(&h, 0.5).unwrap();
        assert!((0.0005..=0.001).contains(&p50), "{p50}");
        let p99 = quantile(&h, 0.99).unwrap();
        assert!(p99 <= 0.001, "{p99}");
        let p100 = quantile(&h, 1.0).unwrap();
        assert!((2.5..=5.0).contains(&p100), "{p100}");
    }
}
