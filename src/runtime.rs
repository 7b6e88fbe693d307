//! Conf -> Snapshot behind one ArcSwap; worker threads; listeners; signals and drain.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::balance::Pool;
use crate::conf::{self, Backend, Conf, ConfError, Frontend, Mode};
use crate::http::head::HeadLimits;
use crate::l4;
use crate::listener::{self, Limits};
use crate::shutdown::Tracker;

/// Why `run` could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Conf(#[from] ConfError),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |err| RunError::Io { what, err }
}

/// Everything a request needs from the conf, swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub conf: Conf,
    pub frontends: HashMap<String, Arc<FrontendRt>>,
    pub backends: HashMap<String, Arc<BackendRt>>,
}

#[derive(Debug)]
pub struct FrontendRt {
    pub conf: Frontend,
    pub backend: Option<Arc<BackendRt>>,
    /// The backend of each `use_backend` rule, in order.
    pub routes: Vec<Option<Arc<BackendRt>>>,
    pub limits: HeadLimits,
}

#[derive(Debug)]
pub struct BackendRt {
    pub conf: Backend,
    pub pool: Arc<Pool>,
}

impl Snapshot {
    pub fn build(conf: Conf) -> Snapshot {
        let backends: HashMap<String, Arc<BackendRt>> = conf
            .backends
            .iter()
            .map(|b| {
                let rt = BackendRt {
                    conf: b.clone(),
                    pool: Arc::new(Pool::new(b)),
                };
                (b.name.clone(), Arc::new(rt))
            })
            .collect();
        let frontends = conf
            .frontends
            .iter()
            .map(|f| {
                let backend = f
                    .default_backend
                    .as_ref()
                    .and_then(|b| backends.get(b).cloned());
                let routes = f
                    .http
                    .use_backends
                    .iter()
                    .map(|u| backends.get(&u.backend).cloned())
                    .collect();
                let rt = FrontendRt {
                    conf: f.clone(),
                    backend,
                    routes,
                    limits: HeadLimits {
                        max_bytes: conf.global.max_head_bytes,
                        max_headers: conf.global.max_headers,
                    },
                };
                (f.name.clone(), Arc::new(rt))
            })
            .collect();
        Snapshot {
            conf,
            frontends,
            backends,
        }
    }
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
    pub fn start(n: usize, model: ThreadModel) -> Result<Workers, RunError> {
        if model == ThreadModel::Shared {
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
        for i in 0..n {
            let (htx, hrx) = std::sync::mpsc::channel();
            let (stx, srx) = tokio::sync::oneshot::channel::<()>();
            let t = std::thread::Builder::new()
                .name(format!("lb-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = htx.send(Err(e));
                            return;
                        }
                    };
                    let _ = htx.send(Ok(rt.handle().clone()));
                    let _ = rt.block_on(srx);
                })
                .map_err(io_err("cannot start worker thread"))?;
            let h = hrx
                .recv()
                .map_err(|_| RunError::Io {
                    what: "worker thread died".into(),
                    err: std::io::Error::other("no handle"),
                })?
                .map_err(io_err("cannot start worker runtime"))?;
            w.handles.push(h);
            w.stops.push(stx);
            w.threads.push(t);
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
    pub snapshot: ArcSwap<Snapshot>,
    pub tracker: Arc<Tracker>,
    pub global_limit: Arc<Semaphore>,
    pub stop: watch::Sender<bool>,
}

impl Runtime {
    async fn serve_frontend(
        self: Arc<Self>,
        name: Arc<str>,
        sock: TcpStream,
        peer: SocketAddr,
        _permits: Vec<OwnedSemaphorePermit>,
    ) {
        let _open = self.tracker.track();
        let snap = self.snapshot.load_full();
        let Some(fe) = snap.frontends.get(&*name).cloned() else {
            return;
        };
        drop(snap);
        match fe.conf.mode {
            Mode::Http => {
                let limits = fe.limits;
                crate::http::proxy::serve(sock, peer, fe, limits).await;
            }
            Mode::Tcp => {
                let Some(be) = fe.backend.clone() else {
                    return;
                };
                let policy = l4::ConnectPolicy {
                    retries: be.conf.retries,
                    timeout_connect: be.conf.timeout_connect,
                };
                let idle = l4::Idle {
                    client: fe.conf.timeout_client,
                    server: be.conf.timeout_server,
                };
                l4::serve(sock, be.pool.clone(), policy, idle).await;
            }
        }
    }
}

fn announce(kind: &str, name: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {kind} {name} {addr}");
    let _ = out.flush();
}

/// Reads the conf at `path` and runs it until SIGTERM/SIGINT.
pub fn run(path: &str) -> Result<(), RunError> {
    let conf = conf::load(path)?;
    for w in &conf.warnings {
        tracing::warn!("{w}");
    }
    let threads = conf.global.nbthread.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let model = ThreadModel::from_env();
    let workers = Workers::start(threads, model)?;
    tracing::info!("{threads} worker thread(s), {model:?} model");

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("cannot start control runtime"))?;
    let result = control.block_on(serve(path, conf, &workers));
    workers.stop();
    result
}

async fn serve(path: &str, conf: Conf, workers: &Workers) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(io_err("cannot catch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_err("cannot catch SIGINT"))?;

    let (stop, _) = watch::channel(false);
    let drain = conf.global.timeout_drain;
    let rt = Arc::new(Runtime {
        conf_path: path.to_string(),
        global_limit: Arc::new(Semaphore::new(conf.global.maxconn)),
        tracker: Arc::new(Tracker::default()),
        snapshot: ArcSwap::from_pointee(Snapshot::build(conf.clone())),
        stop,
    });

    // Bind everything first, so a bad address fails the start before any traffic.
    let n = workers.sockets_per_address();
    let mut groups = Vec::new();
    for f in &conf.frontends {
        let limit = Arc::new(Semaphore::new(f.maxconn));
        for b in &f.binds {
            let (addr, socks) = listener::bind_group(b.addr, n).map_err(io_err(format!(
                "{}:{}: cannot bind {}",
                conf.file, b.line, b.addr
            )))?;
            groups.push(("frontend", f.name.clone(), addr, socks, limit.clone()));
        }
    }
    let mut kvs = Vec::new();
    for k in &conf.kvs {
        let (addr, socks) = listener::bind_group(k.bind, n).map_err(io_err(format!(
            "{}:{}: cannot bind {}",
            conf.file, k.line_bind, k.bind
        )))?;
        // The kv learns its real port (conf may say 0): replicas announce it to their primary.
        let kv = crate::kv::Kv::new(&crate::conf::kv::KvConf {
            bind: addr,
            ..k.clone()
        });
        kvs.push((k.name.clone(), addr, socks, kv));
    }
    let head_limits = HeadLimits {
        max_bytes: conf.global.max_head_bytes,
        max_headers: conf.global.max_headers,
    };
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
        webs.push((w.name.clone(), addr, socks, Arc::new(web)));
    }
    let mut apps = Vec::new();
    for a in &conf.apps {
        let (addr, socks) = listener::bind_group(a.bind, n).map_err(io_err(format!(
            "{}:{}: cannot bind {}",
            conf.file, a.line_bind, a.bind
        )))?;
        let app = crate::app::App::new(&crate::conf::app::AppConf {
            bind: addr,
            ..a.clone()
        });
        apps.push((a.name.clone(), addr, socks, Arc::new(app)));
    }

    for (kind, name, addr, socks, limit) in groups {
        let name: Arc<str> = name.into();
        let limits = Limits(vec![rt.global_limit.clone(), limit]);
        for (sock, h) in socks.into_iter().zip(&workers.handles) {
            let rt2 = rt.clone();
            let name = name.clone();
            h.spawn(listener::accept_loop(
                sock,
                limits.clone(),
                rt.stop.subscribe(),
                move |s, peer, permits| rt2.clone().serve_frontend(name.clone(), s, peer, permits),
            ));
        }
        announce(kind, &name, addr);
    }
    for (name, addr, socks, kv) in kvs {
        let limits = Limits(vec![rt.global_limit.clone()]);
        let bg = kv.clone();
        workers.handles[0].spawn(async move { bg.start() });
        for (sock, h) in socks.into_iter().zip(&workers.handles) {
            let kv = kv.clone();
            h.spawn(listener::accept_loop(
                sock,
                limits.clone(),
                rt.stop.subscribe(),
                move |s, peer, permits| {
                    let kv = kv.clone();
                    async move {
                        let _permits = permits;
                        kv.serve(s, peer).await
                    }
                },
            ));
        }
        announce("kv", &name, addr);
    }
    for (name, addr, socks, web) in webs {
        let limits = Limits(vec![rt.global_limit.clone()]);
        for (sock, h) in socks.into_iter().zip(&workers.handles) {
            let web = web.clone();
            let tracker = rt.tracker.clone();
            h.spawn(listener::accept_loop(
                sock,
                limits.clone(),
                rt.stop.subscribe(),
                move |s, peer, permits| {
                    let web = web.clone();
                    let open = tracker.track();
                    async move {
                        let _held = (permits, open);
                        crate::web::server::serve(s, peer, web).await
                    }
                },
            ));
        }
        announce("web", &name, addr);
    }
    for (name, addr, socks, app) in apps {
        let limits = Limits(vec![rt.global_limit.clone()]);
        for (sock, h) in socks.into_iter().zip(&workers.handles) {
            let app = app.clone();
            let tracker = rt.tracker.clone();
            h.spawn(listener::accept_loop(
                sock,
                limits.clone(),
                rt.stop.subscribe(),
                move |s, peer, permits| {
                    let app = app.clone();
                    let open = tracker.track();
                    async move {
                        let _held = (permits, open);
                        crate::app::server::serve(s, peer, app, head_limits).await
                    }
                },
            ));
        }
        announce("app", &name, addr);
    }

    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
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
