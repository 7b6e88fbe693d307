//! Conf -> Snapshot behind one ArcSwap; worker threads; listeners; signals and drain.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::balance::health::{self, CheckParams};
use crate::balance::Server;
use crate::conf::unplaced::Unplaced;
use crate::conf::{self, Conf, ConfError, ConfErrors, Mode};
use crate::l4;
use crate::listener::{self, Limits};
use crate::shutdown::Tracker;
use crate::snapshot::{bind_keys, head_limits, BindKey, Live, Snapshot};

/// Why `run` could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Conf(#[from] ConfErrors),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("{0}")]
    AccessLog(String),
    #[error("{0}")]
    Kv(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |err| RunError::Io { what, err }
}

/// How connections are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadModel {
    /// One current-thread runtime per worker, each with its own SO_REUSEPORT
    /// socket per address: no cross-thread wakeups on the data path.
    PerThread,
    /// One multi-thread tokio runtime with a work-stealing scheduler.
    Shared,
}

impl ThreadModel {
    /// `LB_THREADS=shared` picks the multi-thread runtime (kept for benchmarking).
    pub fn from_env() -> ThreadModel {
        match std::env::var("LB_THREADS").as_deref() {
            Ok("shared") => ThreadModel::Shared,
            _ => ThreadModel::PerThread,
        }
    }
}

/// The worker threads and how to spawn onto them.
pub struct Workers {
    pub handles: Vec<Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    shared: Option<tokio::runtime::Runtime>,
}

impl Workers {
    /// `uring`: give each per-thread worker an io_uring for its plain HTTP
    /// sockets (`tune.io-uring`); a worker whose ring the kernel refuses, or
    /// whose ring fails its proof, stays on epoll.
    /// `affinity[i]`: the CPUs worker `i` is pinned to (`cpu-map`; empty: none).
    pub fn start(
        n: usize,
        model: ThreadModel,
        uring: crate::conf::model::IoUringTune,
        affinity: &[Vec<usize>],
    ) -> Result<Workers, RunError> {
        if model == ThreadModel::Shared {
            if affinity.iter().any(|a| !a.is_empty()) {
                tracing::warn!(
                    "cpu-map pins per-thread workers only; ignored with LB_THREADS=shared"
                );
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .thread_name("lb-worker")
                .enable_all()
                .build()
                .map_err(io_err("cannot start runtime"))?;
            return Ok(Workers {
                handles: vec![rt.handle().clone()],
                stops: Vec::new(),
                threads: Vec::new(),
                shared: Some(rt),
            });
        }
        let mut w = Workers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
            shared: None,
        };
        // All workers start (and prove their rings) at once; their handles are
        // collected after.
        let mut ready = Vec::with_capacity(n);
        for i in 0..n {
            let (htx, hrx) = std::sync::mpsc::channel();
            let (stx, srx) = tokio::sync::oneshot::channel::<()>();
            let cpus = affinity.get(i).cloned().unwrap_or_default();
            let t = std::thread::Builder::new()
                .name(format!("lb-worker-{i}"))
                .spawn(move || {
                    if let Err(e) = crate::conf::cpumap::pin_current_thread(&cpus) {
                        let _ = htx.send(Err(std::io::Error::new(
                            e.kind(),
                            format!(
                                "cpu-map: cannot pin worker thread {} to CPUs {cpus:?}: {e}",
                                i + 1
                            ),
                        )));
                        return;
                    }
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .on_thread_park(crate::uring::flush)
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = htx.send(Err(e));
                            return;
                        }
                    };
                    use crate::conf::model::IoUringTune;
                    use crate::uring::{Fallback, Mode, Outcome};
                    let modes: &[Mode] = match uring {
                        IoUringTune::Off => &[],
                        // Not DEFER_TASKRUN after `signal`: on 6.18 it passes its
                        // proof and then waits ~32 ms per keep-alive request behind
                        // nginx (benches/RESULTS.md); epoll is the safe fallback.
                        IoUringTune::On => &[Mode::Signal],
                        IoUringTune::DeferTaskrun => &[Mode::DeferTaskrun],
                        IoUringTune::Signal => &[Mode::Signal],
                    };
                    if modes.is_empty() {
                        crate::uring::record(Outcome::Epoll(Fallback::Off));
                    } else {
                        rt.block_on(crate::uring::establish(i + 1, modes));
                    }
                    let _ = htx.send(Ok(rt.handle().clone()));
                    let _ = rt.block_on(srx);
                })
                .map_err(io_err("cannot start worker thread"))?;
            ready.push(hrx);
            w.stops.push(stx);
            w.threads.push(t);
        }
        for hrx in ready {
            let h = hrx
                .recv()
                .map_err(|_| RunError::Io {
                    what: "worker thread died".into(),
                    err: std::io::Error::other("no handle"),
                })?
                .map_err(io_err("cannot start worker runtime"))?;
            w.handles.push(h);
        }
        Ok(w)
    }

    /// Sockets per listening address: one per worker, or one for a shared runtime.
    pub fn sockets_per_address(&self) -> usize {
        self.handles.len()
    }

    pub fn stop(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(rt) = self.shared.take() {
            rt.shutdown_background();
        }
    }
}

/// The running process: current snapshot, workers, limits, drain tracking.
pub struct Runtime {
    pub conf_path: String,
    /// The current snapshot, shared with connections (`Live::generation`
    /// tells them when to look their frontend up again).
    pub snapshot: Arc<Live>,
    pub tracker: Arc<Tracker>,
    pub global_limit: Arc<Semaphore>,
    pub stop: watch::Sender<bool>,
    pub reloads: Arc<AtomicU64>,
    pub reload_failures: Arc<AtomicU64>,
    handles: Vec<Handle>,
    control: std::sync::Mutex<Control>,
    /// The embedded web and app servers, for reload.
    services: std::sync::Mutex<Services>,
    /// The VRRP instances (none without `vrrp` sections), for reload and SIGTERM.
    vrrp: std::sync::Mutex<Option<crate::vrrp::Vrrp>>,
}

/// One embedded web or app server: its section as written, its real address, and
/// its current state, which a reload swaps. A connection keeps the state it
/// started with, as an nginx worker from before a reload keeps its conf.
struct Service<T, C> {
    conf: C,
    addr: SocketAddr,
    current: Arc<ArcSwap<T>>,
}

#[derive(Default)]
struct Services {
    webs: HashMap<String, Service<crate::web::Web, crate::conf::web::WebConf>>,
    apps: HashMap<String, Service<crate::app::App, crate::conf::app::AppConf>>,
}

/// Logs why a web or app section of the new file waits for the next start:
/// `moved` (it names a running section but a new address) or new.
fn warn_restart(kind: &str, name: &str, moved: bool) {
    if moved {
        tracing::warn!(
            "{kind} {name}: a new bind address takes effect at the next start, not on reload"
        );
    } else {
        tracing::warn!("{kind} {name}: new sections start at the next start, not on reload");
    }
}

/// What a reload does to the web and app servers, prepared before anything
/// changes so that a bad section fails the whole reload.
struct ServiceSwaps {
    webs: Vec<(
        Arc<ArcSwap<crate::web::Web>>,
        crate::web::Web,
        crate::conf::web::WebConf,
    )>,
    apps: Vec<(
        Arc<ArcSwap<crate::app::App>>,
        crate::app::App,
        crate::conf::app::AppConf,
    )>,
}

impl Services {
    /// New state for each web and app section that changed and still has its
    /// name and address; warns about sections added, removed or moved, which
    /// need a restart.
    fn prepare(&self, conf: &Conf, old: &Conf) -> Result<ServiceSwaps, String> {
        let limits = head_limits(&conf.global);
        let limits_changed = limits != head_limits(&old.global);
        let mut out = ServiceSwaps {
            webs: Vec::new(),
            apps: Vec::new(),
        };
        for w in &conf.webs {
            match self.webs.get(&w.name) {
                Some(old) if old.conf.bind == w.bind => {
                    if limits_changed || !old.conf.same(w) {
                        let web = crate::web::Web::new(w, limits)
                            .map_err(|e| format!("{}:{}: {e}", conf.file, w.line_root))?;
                        out.webs.push((old.current.clone(), web, w.clone()));
                    }
                }
                other => warn_restart("web", &w.name, other.is_some()),
            }
        }
        for a in &conf.apps {
            match self.apps.get(&a.name) {
                Some(old) if old.conf.bind == a.bind => {
                    if limits_changed || !old.conf.same(a) {
                        let real = crate::conf::app::AppConf {
                            bind: old.addr,
                            ..a.clone()
                        };
                        let app = crate::app::App::reloaded(&real, limits, &old.current.load());
                        out.apps.push((old.current.clone(), app, a.clone()));
                    }
                }
                other => warn_restart("app", &a.name, other.is_some()),
            }
        }
        let gone = self
            .webs
            .keys()
            .filter(|n| !conf.webs.iter().any(|w| &w.name == *n))
            .map(|n| format!("web {n}"))
            .chain(
                self.apps
                    .keys()
                    .filter(|n| !conf.apps.iter().any(|a| &a.name == *n))
                    .map(|n| format!("app {n}")),
            );
        for g in gone {
            tracing::warn!("{g}: a removed section keeps serving until the next start");
        }
        Ok(out)
    }

    /// Swaps in what [`Services::prepare`] made; returns how many servers changed.
    fn apply(&mut self, swaps: ServiceSwaps) -> usize {
        let n = swaps.webs.len() + swaps.apps.len();
        for (slot, web, conf) in swaps.webs {
            slot.store(Arc::new(web));
            if let Some(s) = self.webs.get_mut(&conf.name) {
                s.conf = conf;
            }
        }
        for (slot, app, conf) in swaps.apps {
            slot.store(Arc::new(app));
            if let Some(s) = self.apps.get_mut(&conf.name) {
                s.conf = conf;
            }
        }
        n
    }
}

/// What only the control thread touches: listeners, limits, check tasks.
#[derive(Default)]
struct Control {
    /// (frontend name, address as written) -> its accept loops.
    listeners: HashMap<BindKey, ListenerGroup>,
    fe_limits: HashMap<String, (Arc<Semaphore>, usize)>,
    global_max: usize,
    /// Server identity -> its check loop.
    checks: HashMap<usize, (Arc<Server>, CheckParams, tokio::task::JoinHandle<()>)>,
}

struct ListenerGroup {
    stop: watch::Sender<bool>,
    /// The address really bound.
    addr: SocketAddr,
}

/// A connection just accepted, before anything was read from it.
struct Accepted {
    name: Arc<str>,
    /// The address as written in the conf, and which of its binds.
    bind: (SocketAddr, usize),
    sock: TcpStream,
    peer: SocketAddr,
    permits: Vec<OwnedSemaphorePermit>,
}

/// A connection ready to serve: what its whole life holds.
struct Opened {
    client: crate::io::Io,
    peer: SocketAddr,
    local: SocketAddr,
    fe: Arc<crate::snapshot::FrontendRt>,
    name: Arc<str>,
    /// `proto h2`, or TLS that chose h2 by ALPN.
    h2: bool,
    guards: Guards,
}

/// Held until the connection ends: its maxconn slots, the drain's count, the
/// per-address limit's slot.
struct Guards {
    _permits: Vec<OwnedSemaphorePermit>,
    _open: crate::shutdown::Tracked,
    _client_slot: Option<crate::limit::ConnGuard>,
}

/// An opened connection's service, holding its guards until it ends.
struct Serving<F> {
    run: Run<F>,
    _guards: Guards,
}

/// The plain HTTP/1 proxy inline in the task (what most idle connections
/// are); HTTP/2 and TCP mode boxed.
enum Run<F> {
    Inline(F),
    Boxed(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Serving<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // SAFETY: `run` is never moved out of the pinned `Serving`.
        match unsafe { &mut self.get_unchecked_mut().run } {
            Run::Inline(f) => unsafe { std::pin::Pin::new_unchecked(f) }.poll(cx),
            Run::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

/// What an opened connection runs, by mode and protocol.
fn serving(c: Opened, rt: Arc<Live>) -> Serving<impl std::future::Future<Output = ()> + Send> {
    let Opened {
        client,
        peer,
        local,
        fe,
        name,
        h2,
        guards,
    } = c;
    let run = match fe.conf.mode {
        Mode::Http if h2 => {
            let src = crate::http::proxy::FrontendSource { rt, name };
            Run::Boxed(Box::pin(crate::http::proxy::serve_h2(
                client, peer, fe, src,
            )))
        }
        Mode::Http => {
            let src = crate::http::proxy::FrontendSource { rt, name };
            Run::Inline(crate::http::proxy::serve(client, peer, fe, src))
        }
        Mode::Tcp => Run::Boxed(Box::pin(async move {
            if let Some(be) = fe.backend.clone() {
                l4::serve(
                    client,
                    (peer, local),
                    &be,
                    fe.conf.timeout_client,
                    &fe.stats,
                )
                .await;
            }
        })),
    };
    Serving {
        run,
        _guards: guards,
    }
}

impl Runtime {
    /// One connection's task. Not an `async fn`, and its start boxed: the task
    /// of every idle connection would otherwise keep the accept's arguments,
    /// the PROXY header read and the TLS handshake beside the serving state.
    fn serve_frontend(
        self: Arc<Self>,
        name: Arc<str>,
        bind: (SocketAddr, usize),
        sock: TcpStream,
        peer: SocketAddr,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let start = Box::new(Accepted {
            name,
            bind,
            sock,
            peer,
            permits,
        });
        async move {
            let Some(c) = Box::pin(self.open(start)).await else {
                return;
            };
            // `c` moves whole into a plain fn: destructured here, its storage
            // would stay in the task beside the serving future.
            serving(c, self.snapshot.clone()).await
        }
    }

    /// A connection's start: its frontend, the PROXY header, edge admission,
    /// the TLS handshake. None: closed.
    async fn open(&self, start: Box<Accepted>) -> Option<Opened> {
        let Accepted {
            name,
            bind,
            mut sock,
            peer,
            permits,
        } = *start;
        let _open = self.tracker.track();
        let snap = self.snapshot.load_full();
        let fe = snap.frontends.get(&*name).cloned()?;
        drop(snap);
        // `accept-proxy`: the client is who the PROXY header says (crate::proxy_proto).
        let local = sock.local_addr().unwrap_or(bind.0);
        let (peer, local) =
            crate::proxy_proto::accepted(&fe.conf, bind, &mut sock, peer, local).await?;
        // Edge filtering, before any byte is read: reject rules, then per-address limits.
        let client_slot = match crate::edge::admit(&fe, peer) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!("frontend {name}: connection from {peer} closed: {why}");
                return None;
            }
        };
        let guards = Guards {
            _permits: permits,
            _open,
            _client_slot: client_slot,
        };
        // TLS with the certificates of the snapshot current at accept time.
        let index = fe
            .conf
            .binds
            .iter()
            .enumerate()
            .filter(|(_, b)| b.addr == bind.0)
            .nth(bind.1)
            .map(|(i, _)| i);
        let tls = index.and_then(|i| fe.tls.get(i).cloned().flatten());
        let proto_h2 = index.is_some_and(|i| fe.conf.binds[i].h2);
        let client = match tls {
            None if fe.conf.mode == Mode::Http => match crate::io::Io::plain(sock) {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!("connection from {peer}: {e}");
                    return None;
                }
            },
            None => crate::io::Io::Plain(sock),
            Some(cfg) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                let limit = fe.conf.http.timeout_handshake;
                match tokio::time::timeout(limit, acceptor.accept(sock)).await {
                    Ok(Ok(t)) => {
                        crate::stats::tls_handshake(&name, Ok(()));
                        crate::io::Io::TlsIn(Box::new(t))
                    }
                    Ok(Err(e)) => {
                        crate::stats::tls_handshake(
                            &name,
                            Err(crate::stats::tls_failure_reason(&e)),
                        );
                        tracing::debug!("TLS handshake from {peer} failed: {e}");
                        return None;
                    }
                    Err(_) => {
                        crate::stats::tls_handshake(&name, Err("timeout"));
                        tracing::debug!("TLS handshake from {peer} timed out");
                        return None;
                    }
                }
            }
        };
        let alpn_h2 = matches!(&client, crate::io::Io::TlsIn(t)
            if t.get_ref().1.alpn_protocol() == Some(b"h2"));
        Some(Opened {
            client,
            peer,
            local,
            fe,
            name,
            h2: proto_h2 || alpn_h2,
            guards,
        })
    }

    /// Makes `conf` the running configuration: binds new listeners (failing
    /// before anything changes), swaps the snapshot, starts and stops accept
    /// loops and check tasks, adjusts maxconn limits. Returns the number of changes.
    fn apply(self: &Arc<Self>, conf: Conf) -> Result<usize, RunError> {
        let mut ctl = self.control.lock().map_err(|_| RunError::Io {
            what: "control state poisoned".into(),
            err: std::io::Error::other("poisoned"),
        })?;
        let n = self.handles.len();
        // 1. Bind what is new; nothing changes if any bind fails.
        let mut wanted: Vec<BindKey> = Vec::new();
        let mut fresh = Vec::new();
        for f in &conf.frontends {
            for (i, b) in f.binds.iter().enumerate() {
                let key = bind_keys(f)[i].clone();
                if !ctl.listeners.contains_key(&key) {
                    let (addr, socks) = listener::bind_group(b.addr, n).map_err(io_err(
                        format!("{}:{}: cannot bind {}", conf.file, b.line, b.addr),
                    ))?;
                    fresh.push((key.clone(), addr, socks));
                }
                wanted.push(key);
            }
        }
        // 2. Swap the snapshot.
        let old = self.snapshot.load_full();
        let first = ctl.listeners.is_empty() && ctl.checks.is_empty() && ctl.fe_limits.is_empty();
        let mut bound: HashMap<BindKey, SocketAddr> = ctl
            .listeners
            .iter()
            .map(|(k, g)| (k.clone(), g.addr))
            .collect();
        for (k, addr, _) in &fresh {
            bound.insert(k.clone(), *addr);
        }
        let (snap, changes) = Snapshot::rebuild(conf, (!first).then_some(&*old), &bound);
        let snap = Arc::new(snap);
        self.snapshot.store(snap.clone());
        // 3. Limits.
        resize(&self.global_limit, ctl.global_max, snap.conf.global.maxconn);
        ctl.global_max = snap.conf.global.maxconn;
        let mut limits = HashMap::new();
        for f in &snap.conf.frontends {
            let l = match ctl.fe_limits.remove(&f.name) {
                Some((sem, max)) => {
                    resize(&sem, max, f.maxconn);
                    sem
                }
                None => Arc::new(Semaphore::new(f.maxconn)),
            };
            limits.insert(f.name.clone(), (l, f.maxconn));
        }
        ctl.fe_limits = limits;
        // 4. Listeners: stop the removed, start the new.
        ctl.listeners.retain(|k, g| {
            let keep = wanted.contains(k);
            if !keep {
                let _ = g.stop.send(true);
                tracing::info!("closed listener of frontend {} on {}", k.0, k.1);
            }
            keep
        });
        for ((name, conf_addr, rank), addr, socks) in fresh {
            let (stop_tx, _) = watch::channel(false);
            let limit = ctl.fe_limits[&name].0.clone();
            let limits = Limits(vec![self.global_limit.clone(), limit]);
            let fe_name: Arc<str> = name.as_str().into();
            for (sock, h) in socks.into_iter().zip(&self.handles) {
                let rt2 = self.clone();
                let fe_name = fe_name.clone();
                let stops = [stop_tx.subscribe(), self.stop.subscribe()];
                h.spawn(listener::accept_loop(
                    sock,
                    limits.clone(),
                    stops,
                    move |s, peer, p| {
                        rt2.clone()
                            .serve_frontend(fe_name.clone(), (conf_addr, rank), s, peer, p)
                    },
                ));
            }
            announce("frontend", &name, addr);
            crate::stats::bound(&name, (conf_addr, rank), addr);
            ctl.listeners.insert(
                (name, conf_addr, rank),
                ListenerGroup {
                    stop: stop_tx,
                    addr,
                },
            );
        }
        // 5. Health checks: keep loops whose server and settings are unchanged.
        // On the workers, spread round robin: on the control thread a reload
        // (a debug build's, at 20 Hz) stalls them past a short `inter`.
        health::tune(
            snap.conf.global.spread_checks,
            snap.conf
                .global
                .max_checks
                .saturating_mul(self.handles.len()),
        );
        let mut want: HashMap<usize, (Arc<Server>, CheckParams)> = HashMap::new();
        for be in snap.backends.values() {
            for (sc, server) in be.conf.servers.iter().zip(&be.pool.servers) {
                if sc.opts.check || sc.opts.hap.agent.as_ref().is_some_and(|a| a.enabled) {
                    let key = Arc::as_ptr(server) as usize;
                    want.insert(key, (server.clone(), CheckParams::of(&be.conf, sc)));
                }
            }
        }
        ctl.checks.retain(|k, (_, params, task)| {
            let keep = want.get(k).is_some_and(|(_, p)| p == params);
            if !keep {
                task.abort();
            }
            keep
        });
        for (i, (k, (server, params))) in want.into_iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(v) = ctl.checks.entry(k) {
                let h = &self.handles[i % self.handles.len()];
                let task = h.spawn(health::run(server.clone(), params.clone()));
                v.insert((server, params, task));
            }
        }
        Ok(changes)
    }

    /// SIGHUP (and the admin API): re-read the file; a bad file or a failed
    /// bind keeps the running config. Returns the number of changes or why it failed.
    pub fn reload(self: &Arc<Self>) -> Result<usize, String> {
        let mut conf = match conf::load(&self.conf_path) {
            Ok(c) => c,
            Err(errs) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                for e in &errs.0 {
                    tracing::error!("reload failed: {e}");
                }
                return Err(errs.to_string());
            }
        };
        for w in &conf.warnings {
            tracing::warn!("{w}");
        }
        crate::balance::resolvers::patch(&mut conf);
        crate::fdlimit::fit(&mut conf, self.handles.len());
        let old = self.snapshot.load_full();
        if conf.global.nbthread != old.conf.global.nbthread {
            tracing::warn!("nbthread changes take effect at the next start, not on reload");
        }
        let pins = |c: &Conf| {
            let m = &c.global.cpu_map;
            m.iter()
                .map(|m| (m.auto, m.threads.clone(), m.cpus.clone()))
                .collect::<Vec<_>>()
        };
        if pins(&conf) != pins(&old.conf) {
            tracing::warn!("cpu-map changes take effect at the next start, not on reload");
        }
        if conf.global.io_uring != old.conf.global.io_uring {
            tracing::warn!("tune.io-uring changes take effect at the next start, not on reload");
        }
        if !conf.kvs.same(&old.conf.kvs) {
            tracing::warn!("kv sections change only at the next start, not on reload");
        }
        if conf.sentinels != old.conf.sentinels {
            tracing::warn!("sentinel sections change only at the next start, not on reload");
        }
        let g = (&conf.global, &old.conf.global);
        if (
            &g.0.admin,
            &g.0.admin_auth,
            &g.0.access_log,
            &g.0.log_format,
        ) != (
            &g.1.admin,
            &g.1.admin_auth,
            &g.1.access_log,
            &g.1.log_format,
        ) {
            tracing::warn!(
                "admin and access-log settings change only at the next start, not on reload"
            );
        }
        // Held for the whole reload, so that two at once (SIGHUP and the runtime
        // API) take turns.
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let swaps = match services.prepare(&conf, &old.conf) {
            Ok(s) => s,
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("reload failed: {e}");
                return Err(e);
            }
        };
        listener::set_freebind(vips(&conf));
        let vrrps = conf.vrrps.clone();
        match self.apply(conf) {
            Ok(n) => {
                let n = n + services.apply(swaps);
                self.reload_vrrp(&vrrps);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("reloaded: {n} changes");
                Ok(n)
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("reload failed: {e}");
                Err(e.to_string())
            }
        }
    }
}

/// The virtual addresses of the conf's vrrp sections (listeners bind them with IP_FREEBIND).
fn vips(conf: &Conf) -> Vec<std::net::IpAddr> {
    conf.vrrps
        .iter()
        .flat_map(|v| v.addresses.iter().map(|a| a.0.into()))
        .collect()
}

impl Runtime {
    /// DNS changed the servers of a backend: the running conf with them.
    fn dns_changed(self: &Arc<Self>) {
        // As a reload: one at a time, so neither applies a conf older than the other's.
        let _turn = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let mut conf = self.snapshot.load().conf.clone();
        crate::balance::resolvers::patch(&mut conf);
        match self.apply(conf) {
            Ok(n) => tracing::info!("resolvers: servers changed ({n} changes)"),
            Err(e) => tracing::error!("resolvers: cannot apply the servers DNS gave: {e}"),
        }
    }

    /// Whether a backend has a server up, for `track backend`.
    fn backend_up(self: &Arc<Self>) -> crate::vrrp::BackendUp {
        let live = self.snapshot.clone();
        Arc::new(move |name: &str| {
            live.load()
                .backends
                .get(name)
                .is_some_and(|b| b.pool.servers.iter().any(|s| s.eligible()))
        })
    }

    fn reload_vrrp(self: &Arc<Self>, confs: &[crate::conf::vrrp::VrrpConf]) {
        let mut v = self.vrrp.lock().unwrap_or_else(|p| p.into_inner());
        match v.as_mut() {
            Some(v) => v.reload(confs),
            None if !confs.is_empty() => {
                tracing::warn!("vrrp sections added to a conf without any start at the next start, not on reload");
            }
            None => {}
        }
    }
}

/// Grows or shrinks a semaphore that currently allows `from` to allow `to`.
fn resize(sem: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        sem.add_permits(to - from);
    } else if to < from {
        // Take the excess as connections end, then forget it.
        let sem = sem.clone();
        let n = (from - to) as u32;
        tokio::spawn(async move {
            if let Ok(p) = sem.acquire_many_owned(n).await {
                p.forget();
            }
        });
    }
}

/// Accept loops for an embedded service (kv, web, app) on every worker, then its
/// `listening` line. `track`: its connections hold the SIGTERM drain open.
fn spawn_service<F, Fut>(
    rt: &Arc<Runtime>,
    workers: &Workers,
    (kind, name, addr): (&str, &str, SocketAddr),
    socks: Vec<listener::Bound>,
    track: bool,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limits = Limits(vec![rt.global_limit.clone()]);
    for (sock, h) in socks.into_iter().zip(&workers.handles) {
        let serve = serve.clone();
        let tracker = rt.tracker.clone();
        h.spawn(listener::accept_loop(
            sock,
            limits.clone(),
            [rt.stop.subscribe(), rt.stop.subscribe()],
            move |s, peer, permits| {
                let open = track.then(|| tracker.track());
                let fut = serve(s, peer);
                async move {
                    let _held = (permits, open);
                    fut.await
                }
            },
        ));
    }
    announce(kind, name, addr);
}

fn announce(kind: &str, name: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {kind} {name} {addr}");
    let _ = out.flush();
}

/// Each worker's CPUs from `cpu-map` (empty: not pinned); errors name the conf line.
fn worker_cpus(path: &str, conf: &Conf, threads: usize) -> Result<Vec<Vec<usize>>, RunError> {
    crate::conf::cpumap::for_workers(&conf.global.cpu_map, threads).map_err(|(line, m)| {
        RunError::Conf(
            ConfError {
                file: path.to_string(),
                line,
                msg: format!("'cpu-map': {m}"),
            }
            .into(),
        )
    })
}

/// Reads the conf at `path` and runs it until SIGTERM/SIGINT.
pub fn run(path: &str) -> Result<(), RunError> {
    crate::fdlimit::raise();
    let conf = conf::load(path)?;
    for w in &conf.warnings {
        tracing::warn!("{w}");
    }
    if let Some(crate::vrrp::VrrpError::Start { file, line, msg }) =
        crate::vrrp::check_caps(path, &conf.vrrps)
    {
        return Err(RunError::Conf(ConfError { file, line, msg }.into()));
    }
    let threads = conf.global.threads();
    let model = ThreadModel::from_env();
    let affinity = worker_cpus(path, &conf, threads)?;
    let workers = Workers::start(threads, model, conf.global.io_uring, &affinity)?;
    tracing::info!(
        "{threads} worker thread(s), {model:?} model, data path: {}",
        crate::uring::summary()
    );

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("cannot start control runtime"))?;
    let result = control.block_on(serve(path, conf, &workers));
    workers.stop();
    result
}

async fn serve(path: &str, mut conf: Conf, workers: &Workers) -> Result<(), RunError> {
    crate::fdlimit::fit(&mut conf, workers.sockets_per_address());
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(io_err("cannot catch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_err("cannot catch SIGINT"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(io_err("cannot catch SIGHUP"))?;

    let (stop, _) = watch::channel(false);
    let drain = conf.global.timeout_drain;
    let rt = Arc::new(Runtime {
        conf_path: path.to_string(),
        global_limit: Arc::new(Semaphore::new(0)),
        tracker: Arc::new(Tracker::default()),
        snapshot: Arc::new(Live::new(Snapshot::build(conf.clone()))),
        stop,
        reloads: Arc::new(AtomicU64::new(0)),
        reload_failures: Arc::new(AtomicU64::new(0)),
        handles: workers.handles.clone(),
        control: std::sync::Mutex::new(Control::default()),
        services: std::sync::Mutex::new(Services::default()),
        vrrp: std::sync::Mutex::new(None),
    });

    // Bind everything first, so a bad address fails the start before any traffic.
    let n = workers.sockets_per_address();
    crate::accesslog::install(&conf.global).map_err(RunError::AccessLog)?;
    listener::set_freebind(vips(&conf));
    rt.apply(conf.clone())?;
    // `resolvers`: servers follow DNS; each change rebuilds the snapshot.
    let (rt1, rt2) = (rt.clone(), rt.clone());
    tokio::spawn(crate::balance::resolvers::run(
        move || crate::balance::resolvers::sets(&rt1.snapshot.load().conf),
        move || rt2.dns_changed(),
    ));
    let mut kvs = Vec::new();
    for k in &conf.kvs {
        let (addr, socks) = listener::bind_group(k.bind, n).map_err(io_err(format!(
            "{}:{}: cannot bind {}",
            conf.file, k.line_bind, k.bind
        )))?;
        // The kv learns its real port (conf may say 0): replicas announce it to their primary.
        let kv = crate::kv::Kv::open(&crate::conf::kv::KvConf {
            bind: addr,
            ..k.clone()
        })
        .map_err(|e| RunError::Kv(format!("{}:{}: kv '{}': {e}", conf.file, k.line, k.name)))?;
        kvs.push((k.name.clone(), addr, socks, kv));
    }
    let head_limits = head_limits(&conf.global);
    let mut webs = Vec::new();
    for w in &conf.webs {
        let (addr, socks) = listener::bind_group(w.bind, n).map_err(io_err(format!(
            "{}:{}: cannot bind {}",
            conf.file, w.line_bind, w.bind
        )))?;
        let web = crate::web::Web::new(w, head_limits).map_err(|e| RunError::Io {
            what: format!("{}:{}", conf.file, w.line_root),
            err: std::io::Error::other(e.to_string()),
        })?;
        webs.push((w.clone(), addr, socks, Arc::new(ArcSwap::from_pointee(web))));
    }
    let mut apps = Vec::new();
    for a in &conf.apps {
        let (addr, socks) = listener::bind_group(a.bind, n).map_err(io_err(format!(
            "{}:{}: cannot bind {}",
            conf.file, a.line_bind, a.bind
        )))?;
        let app = crate::app::App::new(
            &crate::conf::app::AppConf {
                bind: addr,
                ..a.clone()
            },
            head_limits,
        );
        apps.push((a.clone(), addr, socks, Arc::new(ArcSwap::from_pointee(app))));
    }

    let kv_handles: Vec<_> = kvs.iter().map(|k| k.3.clone()).collect();
    for (name, addr, socks, kv) in kvs {
        let bg = kv.clone();
        workers.handles[0].spawn(async move { bg.start() });
        spawn_service(
            &rt,
            workers,
            ("kv", &name, addr),
            socks,
            false,
            move |s, peer| kv.clone().serve(s, peer),
        );
    }
    let mut services = Services::default();
    for (conf, addr, socks, web) in webs {
        let current = web.clone();
        spawn_service(
            &rt,
            workers,
            ("web", &conf.name, addr),
            socks,
            true,
            move |s, peer| crate::web::server::serve(s, peer, web.load_full()),
        );
        services.webs.insert(
            conf.name.clone(),
            Service {
                conf,
                addr,
                current,
            },
        );
    }
    for (conf, addr, socks, app) in apps {
        let current = app.clone();
        spawn_service(
            &rt,
            workers,
            ("app", &conf.name, addr),
            socks,
            true,
            move |s, peer| crate::app::server::serve(s, peer, app.load_full()),
        );
        services.apps.insert(
            conf.name.clone(),
            Service {
                conf,
                addr,
                current,
            },
        );
    }
    if let Ok(mut s) = rt.services.lock() {
        *s = services;
    }
    for sc in &conf.sentinels {
        let (_, bound) = crate::sentinel::start(sc).await.map_err(|e| RunError::Io {
            what: format!("{}:{}: sentinel '{}'", conf.file, sc.line_bind, sc.name),
            err: std::io::Error::other(e.to_string()),
        })?;
        announce("sentinel", &sc.name, bound);
    }

    if let Some(addr) = conf.global.admin {
        let control = {
            let rt2 = rt.clone();
            crate::control::Control::new(
                rt.snapshot.clone(),
                rt.stop.clone(),
                (rt.reloads.clone(), rt.reload_failures.clone()),
                move || rt2.reload(),
            )
        };
        let admin = crate::admin::Admin::new(
            Arc::new(control),
            kv_handles,
            conf.global.admin_auth.as_deref(),
        );
        let bound = crate::admin::start(addr, Arc::new(admin))
            .await
            .map_err(|e| match e.kind() {
                // The admin listener has no SO_REUSEPORT: any other listener there clashes.
                std::io::ErrorKind::AddrInUse => listener::in_use(),
                _ => e,
            })
            .map_err(io_err(format!(
                "{}:{}: cannot bind {addr}",
                conf.file, conf.global.admin_line
            )))?;
        announce("admin", "admin", bound);
    }

    if !conf.vrrps.is_empty() {
        let v =
            crate::vrrp::Vrrp::start(path, &conf.vrrps, rt.backend_up()).map_err(|e| match e {
                crate::vrrp::VrrpError::Start { file, line, msg } => {
                    RunError::Conf(ConfError { file, line, msg }.into())
                }
            })?;
        *rt.vrrp.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }

    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: draining");
                break;
            }
            _ = hup.recv() => {
                let _ = rt.reload();
            }
        }
    }
    // A master hands over at once (priority 0) rather than after the drain.
    let v = rt.vrrp.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(mut v) = v {
        v.stop();
    }
    crate::shutdown::start_drain();
    let _ = rt.stop.send(true);
    if rt.tracker.drained(drain).await {
        tracing::info!("all connections finished; exiting");
    } else {
        tracing::warn!(
            "drain timeout: closing {} open connection(s)",
            rt.tracker.open()
        );
    }
    Ok(())
}
