//! Metrics of `web` sections (`lb_web_*`): static answers counted here, forwarded ones read from the route's frontend (`web-NAME`), both exported at scrape time by kind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use prometheus::proto::MetricFamily;

use crate::stats::{Fam, Traffic, TrafficFams};

/// What one `web` section did, by name, kept across reloads.
#[derive(Debug)]
pub struct WebStats {
    pub name: String,
    /// Static files, `/healthz`, redirects and errors the web server answered itself.
    pub local: Traffic,
    /// Client connections open now / accepted.
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    /// Files held open now (a body being sent).
    pub open_files: AtomicI64,
    /// The address it listens on, as accepted connections report it (conf may say port 0).
    pub bind: Mutex<Option<SocketAddr>>,
    /// App routes: prefix and app address.
    pub routes: Mutex<Vec<(String, SocketAddr)>>,
}

fn all() -> &'static Mutex<BTreeMap<String, Arc<WebStats>>> {
    static M: OnceLock<Mutex<BTreeMap<String, Arc<WebStats>>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// The handles of web section `name` (the same object for the process's life).
pub fn web(name: &str) -> Arc<WebStats> {
    let mut m = all().lock().unwrap_or_else(|p| p.into_inner());
    m.entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(WebStats {
                name: name.to_string(),
                local: Traffic::standalone(),
                connections: AtomicI64::new(0),
                connections_total: AtomicU64::new(0),
                open_files: AtomicI64::new(0),
                bind: Mutex::new(None),
                routes: Mutex::new(Vec::new()),
            })
        })
        .clone()
}

/// Every web section seen, by name.
pub fn webs() -> Vec<Arc<WebStats>> {
    let m = all().lock().unwrap_or_else(|p| p.into_inner());
    m.values().cloned().collect()
}

/// The name of the frontend that carries a web section's app forwards.
pub fn route_frontend(web: &str) -> String {
    format!("web-{web}")
}

impl WebStats {
    /// Counts an accepted connection, open until the guard drops; learns the bind.
    pub fn open(self: &Arc<Self>, local: Option<SocketAddr>) -> ConnGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        if let Some(a) = local {
            let mut b = self.bind.lock().unwrap_or_else(|p| p.into_inner());
            if b.is_none() {
                *b = Some(a);
            }
        }
        ConnGuard(self.clone())
    }

    /// One file opened for an answer; closed (uncounted) when the guard drops.
    pub fn file_opened(self: &Arc<Self>) -> FileGuard {
        self.open_files.fetch_add(1, Ordering::Relaxed);
        FileGuard(self.clone())
    }

    /// One answer given by the web server itself.
    pub fn answered(&self, status: u16, bytes_in: u64, bytes_out: u64, start: Instant) {
        self.local
            .record(Some(status), bytes_in, bytes_out, start.elapsed());
    }

    /// The forwarded requests' traffic, when the section has app routes.
    pub fn forwarded(&self) -> Option<Arc<crate::stats::FrontendStats>> {
        let routed = !self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        routed.then(|| crate::stats::frontend(&route_frontend(&self.name)))
    }
}

/// An open client connection of a web section.
#[derive(Debug)]
pub struct ConnGuard(Arc<WebStats>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A file a web section holds open.
#[derive(Debug)]
pub struct FileGuard(Arc<WebStats>);

impl Drop for FileGuard {
    fn drop(&mut self) {
        self.0.open_files.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `lb_web_*` families, read now.
pub fn families() -> Vec<MetricFamily> {
    let webs = webs();
    if webs.is_empty() {
        return Vec::new();
    }
    let mut t = TrafficFams::new("lb_web", "answered by a web section");
    let mut conns = Fam::gauge("lb_web_current_connections", "Client connections open now");
    let mut conns_total = Fam::counter("lb_web_connections_total", "Client connections accepted");
    let mut files = Fam::gauge(
        "lb_web_open_files",
        "Files held open now to send an answer's body",
    );
    for w in &webs {
        let name = w.name.as_str();
        t.add(&w.local, &[("web", name), ("kind", "static")]);
        if let Some(f) = w.forwarded() {
            t.add(&f.traffic, &[("web", name), ("kind", "forwarded")]);
        }
        let l = [("web", name)];
        conns.add(&l, w.connections.load(Ordering::Relaxed) as f64);
        conns_total.add(&l, w.connections_total.load(Ordering::Relaxed) as f64);
        files.add(&l, w.open_files.load(Ordering::Relaxed) as f64);
    }
    let mut out = t.into_vec();
    out.extend([conns.0, conns_total.0, files.0]);
    out
}
