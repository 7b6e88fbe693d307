//! What a connection needs from the conf: `Snapshot` (every frontend and backend,
//! swapped whole on reload), the per-proxy `FrontendRt` and `BackendRt`, and
//! `Live`, the current snapshot as connections read it.
//!
//! Built from a parsed `Conf` (`Snapshot::build`, `Snapshot::rebuild`), or one
//! proxy at a time from conf structs (`BackendRt::new`, `FrontendRt::new`), as
//! the embedded web server does for its app routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::balance::{Pool, Server};
use crate::conf::unplaced::Unplaced;
use crate::conf::{self, Backend, Conf, Frontend};
use crate::http::head::HeadLimits;

/// Everything a request needs from the conf, swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub conf: Conf,
    pub frontends: HashMap<String, Arc<FrontendRt>>,
    pub backends: HashMap<String, Arc<BackendRt>>,
}

/// The current snapshot and how many times it was swapped. The runtime swaps
/// it (`Live::store`); a long-lived connection compares `generation` to know
/// when to look its frontend up again.
#[derive(Debug)]
pub struct Live {
    pub snapshot: ArcSwap<Snapshot>,
    /// Bumped after each swap.
    pub generation: AtomicU64,
}

impl Live {
    pub fn new(snap: Snapshot) -> Live {
        Live {
            snapshot: ArcSwap::from_pointee(snap),
            generation: AtomicU64::new(0),
        }
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Makes `snap` current; connections see it at their next request.
    pub fn store(&self, snap: Arc<Snapshot>) {
        self.snapshot.store(snap);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

#[derive(Debug)]
pub struct FrontendRt {
    pub conf: Frontend,
    /// The TLS acceptor configuration of each bind (in `conf.binds` order).
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// The address each bind really listens on (port 0 resolved), same order.
    pub bound: Vec<SocketAddr>,
    pub backend: Option<Arc<BackendRt>>,
    /// The backend of each `use_backend` rule, in order.
    pub routes: Vec<Option<Arc<BackendRt>>>,
    /// Every HTTP backend by name, for `use_backend %[...]` (only when the
    /// frontend has such a rule).
    pub by_name: Option<Arc<HashMap<String, Arc<BackendRt>>>>,
    pub limits: HeadLimits,
    pub stats: Arc<crate::stats::FrontendStats>,
    /// Per-client-address counters (`limit ...`), kept across reloads by frontend name.
    pub clients: Option<Arc<crate::limit::Table>>,
}

#[derive(Debug)]
pub struct BackendRt {
    pub conf: Backend,
    pub pool: Arc<Pool>,
    pub stats: Arc<crate::stats::BackendStats>,
    /// How to reach each server over TLS (in `pool.servers` order); `None` = plain.
    pub connectors: Vec<Option<crate::tls::Connector>>,
}

impl BackendRt {
    /// A backend with new servers (no health or counters carried over).
    pub fn new(conf: Backend) -> BackendRt {
        let servers = conf
            .servers
            .iter()
            .map(|sc| Arc::new(Server::new(&conf.name, sc)))
            .collect();
        BackendRt::with_servers(conf, servers, None)
    }

    /// A backend over `servers` (in `conf.servers` order), its round-robin
    /// position `cursor` shared with the backend it replaces.
    fn with_servers(
        conf: Backend,
        servers: Vec<Arc<Server>>,
        cursor: Option<Arc<AtomicUsize>>,
    ) -> BackendRt {
        let connectors = conf
            .servers
            .iter()
            .map(|sc| {
                let t = sc.opts.tls.as_ref()?;
                crate::tls::connector(t, &sc.host)
                    .map_err(|e| tracing::error!("server {}/{}: {e}", conf.name, sc.name))
                    .ok()
            })
            .collect();
        BackendRt {
            pool: Arc::new(Pool::new(servers, &conf, cursor)),
            stats: crate::stats::backend(&conf.name),
            connectors,
            conf,
        }
    }

    /// The TLS connector of `server`, if it speaks TLS.
    pub fn connector(&self, server: &Arc<Server>) -> Option<&crate::tls::Connector> {
        if self.connectors.iter().all(Option::is_none) {
            return None;
        }
        let i = self
            .pool
            .servers
            .iter()
            .position(|s| Arc::ptr_eq(s, server))?;
        self.connectors.get(i)?.as_ref()
    }
}

impl FrontendRt {
    /// A frontend whose `default_backend` and `use_backend` rules name
    /// backends of `backends`; its binds are taken to listen where written,
    /// TLS binds get a new session cache of `ssl_cache_size` entries, and its
    /// `limit` table (if any) starts empty.
    pub fn new(
        conf: Frontend,
        backends: &HashMap<String, Arc<BackendRt>>,
        limits: HeadLimits,
        ssl_cache_size: usize,
    ) -> FrontendRt {
        let tls = bind_tls(&conf, ssl_cache_size, |_| None);
        let bound = conf.binds.iter().map(|b| b.addr).collect();
        let clients = new_table(&conf);
        FrontendRt::assemble(conf, backends, limits, tls, bound, clients)
    }

    fn assemble(
        conf: Frontend,
        backends: &HashMap<String, Arc<BackendRt>>,
        limits: HeadLimits,
        tls: Vec<Option<Arc<rustls::ServerConfig>>>,
        bound: Vec<SocketAddr>,
        clients: Option<Arc<crate::limit::Table>>,
    ) -> FrontendRt {
        let backend = conf
            .default_backend
            .as_ref()
            .and_then(|b| backends.get(b).cloned());
        let routes = conf
            .http
            .use_backends
            .iter()
            .map(|u| backends.get(&u.backend).cloned())
            .collect();
        let by_name = conf
            .http
            .use_backends
            .iter()
            .any(|u| u.dynamic.is_some())
            .then(|| {
                Arc::new(
                    backends
                        .iter()
                        .filter(|(_, b)| b.conf.mode == crate::conf::Mode::Http)
                        .map(|(n, b)| (n.clone(), b.clone()))
                        .collect(),
                )
            });
        FrontendRt {
            clients,
            tls,
            bound,
            backend,
            routes,
            by_name,
            limits,
            stats: crate::stats::frontend(&conf.name),
            conf,
        }
    }
}

/// The TLS acceptor configuration of each bind of `f`; `keep` offers the
/// configuration whose resumption state a bind's may carry over.
fn bind_tls(
    f: &Frontend,
    cache_size: usize,
    keep: impl Fn(&crate::conf::tls::BindTls) -> Option<Arc<rustls::ServerConfig>>,
) -> Vec<Option<Arc<rustls::ServerConfig>>> {
    f.binds
        .iter()
        .map(|b| {
            let t = b.tls.as_ref()?;
            let kept = keep(t);
            crate::tls::server_config(t, cache_size, kept.as_deref())
                .map_err(|e| tracing::error!("frontend {}: TLS: {e}", f.name))
                .ok()
        })
        .collect()
}

/// A new `limit` table for `f`, if it sets any limit.
fn new_table(f: &Frontend) -> Option<Arc<crate::limit::Table>> {
    f.client_limits
        .any()
        .then(|| Arc::new(crate::limit::Table::new(f.client_limits.table_size)))
}

/// The HTTP head limits of the `global` section.
pub fn head_limits(g: &conf::Global) -> HeadLimits {
    HeadLimits {
        max_bytes: g.max_head_bytes,
        max_headers: g.max_headers,
    }
}

/// A listener's identity across reloads: frontend, address as written, and its
/// rank among binds of that frontend with the same written address (two
/// `bind 127.0.0.1:0` lines are two listeners).
pub type BindKey = (String, SocketAddr, usize);

/// The key of each bind of `f`, in order.
pub fn bind_keys(f: &Frontend) -> Vec<BindKey> {
    f.binds
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let rank = f.binds[..i].iter().filter(|o| o.addr == b.addr).count();
            (f.name.clone(), b.addr, rank)
        })
        .collect()
}

impl Snapshot {
    pub fn build(conf: Conf) -> Snapshot {
        Snapshot::rebuild(conf, None, &HashMap::new()).0
    }

    /// Builds a snapshot; servers of `old` that keep their backend, name and
    /// address are reused (health, counters, in-flight) and reconfigured in
    /// place, and each backend keeps its round-robin position. Also returns
    /// how many frontends, backends and servers were added, removed or changed.
    pub fn rebuild(
        conf: Conf,
        old: Option<&Snapshot>,
        bound: &HashMap<BindKey, SocketAddr>,
    ) -> (Snapshot, usize) {
        crate::stick::install(&conf);
        let mut changes = 0;
        let mut backends: HashMap<String, Arc<BackendRt>> = HashMap::new();
        for b in &conf.backends {
            let old_be = old.and_then(|o| o.backends.get(&b.name));
            let mut servers = Vec::with_capacity(b.servers.len());
            for sc in &b.servers {
                let kept = old_be.and_then(|ob| {
                    ob.conf
                        .servers
                        .iter()
                        .zip(&ob.pool.servers)
                        .find(|(c, _)| c.name == sc.name && c.addr == sc.addr)
                });
                match kept {
                    Some((old_conf, server)) => {
                        if !old_conf.same(sc) {
                            changes += 1;
                            server.configure(sc, false);
                        }
                        servers.push(server.clone());
                    }
                    None => {
                        changes += 1;
                        let server = Server::new(&b.name, sc);
                        // Run-time changes follow the name, even to a new address.
                        if let Some(old) =
                            old_be.and_then(|ob| ob.pool.servers.iter().find(|s| s.name == sc.name))
                        {
                            server.inherit(old);
                        }
                        servers.push(Arc::new(server));
                    }
                }
            }
            if let Some(ob) = old_be {
                let removed = ob
                    .conf
                    .servers
                    .iter()
                    .filter(|c| {
                        !b.servers
                            .iter()
                            .any(|n| n.name == c.name && n.addr == c.addr)
                    })
                    .count();
                changes += removed;
                let (mut a, mut c) = (ob.conf.clone(), b.clone());
                a.servers.clear();
                c.servers.clear();
                if !a.same(&c) {
                    changes += 1;
                }
            } else if old.is_some() {
                changes += 1;
            }
            let cursor = old_be.map(|ob| ob.pool.cursor());
            let rt = BackendRt::with_servers(b.clone(), servers, cursor);
            backends.insert(b.name.clone(), Arc::new(rt));
        }
        if let Some(o) = old {
            changes += o
                .backends
                .keys()
                .filter(|k| !backends.contains_key(*k))
                .count();
            changes += o
                .frontends
                .iter()
                .filter(|(k, f)| {
                    !conf
                        .frontends
                        .iter()
                        .find(|n| &n.name == *k)
                        .is_some_and(|n| n.same(&f.conf))
                })
                .count();
            changes += conf
                .frontends
                .iter()
                .filter(|f| !o.frontends.contains_key(&f.name))
                .count();
        }
        let limits = head_limits(&conf.global);
        let frontends = conf
            .frontends
            .iter()
            .map(|f| {
                let old_fe = old.and_then(|o| o.frontends.get(&f.name));
                // Resumption state carries over from an old bind with the same TLS
                // settings (certificates included) and the same cache size.
                let keep = |t: &crate::conf::tls::BindTls| {
                    let o = old_fe?;
                    if old?.conf.global.ssl_cache_size != conf.global.ssl_cache_size {
                        return None;
                    }
                    let j = o
                        .conf
                        .binds
                        .iter()
                        .position(|b| b.tls.as_ref() == Some(t))?;
                    o.tls.get(j)?.clone()
                };
                let tls = bind_tls(f, conf.global.ssl_cache_size, keep);
                let real = bind_keys(f)
                    .iter()
                    .map(|k| *bound.get(k).unwrap_or(&k.1))
                    .collect();
                // The table survives a reload unless its size changes.
                let clients = old_fe
                    .and_then(|o| o.clients.clone())
                    .filter(|t| {
                        f.client_limits.any()
                            && t.capacity()
                                == crate::limit::Table::new_capacity(f.client_limits.table_size)
                    })
                    .or_else(|| new_table(f));
                let rt = FrontendRt::assemble(f.clone(), &backends, limits, tls, real, clients);
                (f.name.clone(), Arc::new(rt))
            })
            .collect();
        (
            Snapshot {
                conf,
                frontends,
                backends,
            },
            changes,
        )
    }
}
