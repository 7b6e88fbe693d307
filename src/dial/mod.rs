//! The dialer: a connection to a server of a backend, for TCP mode and the
//! HTTP pipeline (health checks share its last step, `crate::connect`). Picks a server (`Pool::pick_with`),
//! takes an idle keep-alive connection when the caller allows it, else
//! connects within `timeout connect` and does TLS through the server's
//! connector; a failed attempt counts in `connect_errors` and passive health
//! (`observe layer4`), and the next goes to a server not tried yet, at most
//! `retries` more times (retries and redispatches counted in backend stats).
//!
//! - `idle`  the keep-alive pool of idle server connections, per worker thread

pub mod idle;
pub mod opts;

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::balance::{InFlight, PickCtx, Server};
use crate::connect::open_with;
use crate::io::Io;
use crate::snapshot::BackendRt;
use crate::tls::Connector;

/// What a connection is wanted for.
pub struct Dial<'a> {
    pub be: &'a BackendRt,
    /// The client's address (`balance source`).
    pub client: Option<IpAddr>,
    /// Servers this request already failed on: picked again only when no
    /// other is up.
    pub tried: &'a [Arc<Server>],
    /// A plain connection goes through the worker's io_uring when it has one
    /// (`Io::plain`); `false` keeps it on epoll, as TCP mode's splice needs.
    pub ring: bool,
    /// The request's Host, for servers with `sni req.hdr(host)`.
    pub host: Option<&'a [u8]>,
    /// HTTP: the keep-alive pool's part; `None` (TCP mode) leaves it out,
    /// reuse counters included.
    pub reuse: Option<Pooled>,
    /// The server a persistence cookie names: tried first.
    pub prefer: Option<Arc<Server>>,
    /// The client's address and the one it reached, for `send-proxy` servers.
    pub proxy: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// The request's hash under `balance uri|url_param|hdr(N)` (`http::hashkey`).
    pub hash: Option<u64>,
}

/// Whether an idle pooled connection may serve the request.
#[derive(Debug, Clone, Copy)]
pub struct Pooled {
    pub take: bool,
    /// The request can be replayed if the pooled connection turns out dead:
    /// then a connection idle a short while is trusted without a probe.
    pub retryable: bool,
}

/// A server connection, ready for bytes.
pub struct Upstream {
    pub sock: Io,
    /// The server, counted in flight while this lives.
    pub server: InFlight,
    /// The idle pool it came from and may go back to.
    pub key: idle::Key,
    /// Taken from the idle pool rather than made.
    pub reused: bool,
}

/// A connection to the next server. `attempts` counts the connects made for
/// the request so far (a caller that dials again after a dead response keeps
/// it): once it passes `retries`, only an idle pooled connection can still
/// be had. `None` when no server is up or none accepted.
pub async fn dial(d: &Dial<'_>, attempts: &mut u32) -> Option<Upstream> {
    dial_with(d, attempts, &mut Plain(d)).await.ok().flatten()
}

/// A picked server and how to reach it.
pub struct Target<'a> {
    pub server: &'a Arc<Server>,
    /// Its TLS connector (the per-request one under `sni req.hdr(host)`).
    pub connector: Option<&'a Connector>,
    pub key: idle::Key,
}

/// What one connect attempt gave.
pub enum Attempt<T, E> {
    Ready(T),
    /// The connect failed (why): counted against the server (`connect_errors`,
    /// `observe layer4`); the next attempt goes to a server not tried yet.
    Failed(String),
    /// The request failed otherwise: no more attempts, the caller answers it.
    Fatal(E),
}

/// How a caller of [`dial_with`] gets a connection to a picked server.
pub trait Connect {
    type Out;
    type Err;

    /// A connection that needs no attempt (an idle pooled one), when the
    /// dial allows reuse (`Dial::reuse`).
    fn reuse(&mut self, _server: &Arc<Server>, _key: idle::Key) -> Option<Self::Out> {
        None
    }

    /// One attempt.
    fn connect(
        &mut self,
        t: Target<'_>,
    ) -> impl Future<Output = Attempt<Self::Out, Self::Err>> + Send;
}

/// TCP (and TLS) connections, the idle keep-alive pool first when allowed.
struct Plain<'d, 'a>(&'d Dial<'a>);

impl Connect for Plain<'_, '_> {
    type Out = Upstream;
    type Err = ();

    fn reuse(&mut self, server: &Arc<Server>, key: idle::Key) -> Option<Upstream> {
        let r = self.0.reuse.filter(|r| r.take)?;
        // A PROXY header named the client that opened the connection: never another's.
        if opts::sends_proxy(self.0.be, server) {
            return None;
        }
        let sock = idle::take(key, !r.retryable)?;
        self.0.be.stats.reuse_hit.inc();
        Some(Upstream {
            sock,
            server: server.enter(),
            key,
            reused: true,
        })
    }

    async fn connect(&mut self, t: Target<'_>) -> Attempt<Upstream, ()> {
        let d = self.0;
        let limit = Some(d.be.conf.timeout_connect);
        let preface = opts::preface(d.be, t.server, d.proxy);
        match open_with(t.server.addr, t.connector, limit, d.ring, &preface).await {
            Ok(sock) => {
                if d.reuse.is_some() {
                    d.be.stats.reuse_miss.inc();
                }
                Attempt::Ready(Upstream {
                    sock,
                    server: t.server.enter(),
                    key: t.key,
                    reused: false,
                })
            }
            Err(reason) => Attempt::Failed(reason),
        }
    }
}

/// Connects that failed for want of descriptors: one log line a few seconds.
static SHORTAGE_LOG: crate::fdlimit::RateLimitedLog =
    crate::fdlimit::RateLimitedLog::new(std::time::Duration::from_secs(5));

/// The dialer's loop for any kind of connection: pick a server, take what
/// `c.reuse` finds for it (not an attempt), else make an attempt with
/// `c.connect`, at most `retries` more times, counting retries, redispatches
/// and failed connects. HTTP/1 and TCP mode use it through [`dial`]; the
/// HTTP/2 server pool through its own `Connect` (a stream on a pooled
/// connection, or a new one). `Ok(None)`: no server is up or none accepted.
pub async fn dial_with<C: Connect>(
    d: &Dial<'_>,
    attempts: &mut u32,
    c: &mut C,
) -> Result<Option<C::Out>, C::Err> {
    let be = d.be;
    let take = d.reuse.is_some_and(|r| r.take);
    let mut tried: Vec<Arc<Server>> = d.tried.to_vec();
    // Servers skipped as full (`maxconn`), and when the queue wait ends.
    let mut full: Vec<Arc<Server>> = Vec::new();
    let mut queue_deadline = None;
    loop {
        // Without a pool to look in, a pick after the last attempt is wasted.
        if !take && *attempts > be.conf.retries {
            return Ok(None);
        }
        let ctx = PickCtx {
            client: d.client,
            tried: &tried,
            redispatch: be.conf.redispatch,
            key: d.hash,
        };
        let preferred = d
            .prefer
            .as_ref()
            .filter(|p| !tried.iter().any(|t| Arc::ptr_eq(t, p)));
        let Some(server) = preferred.or_else(|| be.pool.pick_with(&ctx)).cloned() else {
            return Ok(None);
        };
        // `maxconn` on a server: a full one is skipped; when all are full the
        // request waits in the queue (`opts::wait_for_slot`), then 503.
        if opts::server_full(be, &server) {
            if tried.iter().any(|t| Arc::ptr_eq(t, &server)) {
                if full.is_empty() {
                    return Ok(None);
                }
                let deadline = *queue_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + opts::queue_timeout(be));
                if !opts::wait_for_slot(be, &full, deadline).await {
                    return Ok(None);
                }
                tried.retain(|t| !full.iter().any(|f| Arc::ptr_eq(f, t)));
                full.clear();
                continue;
            }
            tried.push(server.clone());
            full.push(server);
            continue;
        }
        let connector = be.connector(&server);
        let per_request = connector.and_then(|c| c.for_host(d.host));
        let connector = per_request.as_ref().or(connector);
        let key = (server.addr, connector.map(|c| c.identity));
        if take {
            if let Some(x) = c.reuse(&server, key) {
                return Ok(Some(x));
            }
        }
        if *attempts > be.conf.retries {
            return Ok(None);
        }
        *attempts += 1;
        if *attempts > 1 {
            be.stats.retries.inc();
            if !tried.iter().any(|s| Arc::ptr_eq(s, &server)) {
                be.stats.redispatches.inc();
            }
        }
        let target = Target {
            server: &server,
            connector,
            key,
        };
        match c.connect(target).await {
            Attempt::Ready(x) => return Ok(Some(x)),
            Attempt::Fatal(e) => return Err(e),
            // Out of descriptors here: this request alone gets its 503; the
            // server is not blamed, nor another one tried.
            Attempt::Failed(reason) if crate::fdlimit::is_local_reason(&reason) => {
                if let Some(n) = SHORTAGE_LOG.hit() {
                    tracing::warn!(
                        "connect to {}: {reason} ({n} since the last such line)",
                        server.id
                    );
                }
                return Ok(None);
            }
            Attempt::Failed(reason) => {
                tracing::debug!(
                    "connect to {} ({}) failed: {reason}",
                    server.id,
                    server.addr
                );
                server.connect_errors.fetch_add(1, Ordering::Relaxed);
                server.observe_connect(Err(reason));
                tried.push(server);
            }
        }
    }
}
