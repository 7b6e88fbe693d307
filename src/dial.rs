//! The dialer: a connection to a server of a backend, for every caller (TCP
//! mode, the HTTP proxy, health checks). Picks a server (`Pool::pick_with`),
//! takes an idle keep-alive connection when the caller allows it, else
//! connects within `timeout connect` and does TLS through the server's
//! connector; a failed attempt counts in `connect_errors` and passive health
//! (`observe layer4`), and the next goes to a server not tried yet, at most
//! `retries` more times (retries and redispatches counted in backend stats).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::balance::{InFlight, PickCtx, Server};
use crate::http::upstream;
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
    pub key: upstream::Key,
    /// Taken from the idle pool rather than made.
    pub reused: bool,
}

/// A connection to the next server. `attempts` counts the connects made for
/// the request so far (a caller that dials again after a dead response keeps
/// it): once it passes `retries`, only an idle pooled connection can still
/// be had. `None` when no server is up or none accepted.
pub async fn dial(d: &Dial<'_>, attempts: &mut u32) -> Option<Upstream> {
    let be = d.be;
    let take = d.reuse.is_some_and(|r| r.take);
    let mut tried: Vec<Arc<Server>> = d.tried.to_vec();
    loop {
        // Without a pool to look in, a pick after the last attempt is wasted.
        if !take && *attempts > be.conf.retries {
            return None;
        }
        let ctx = PickCtx {
            client: d.client,
            tried: &tried,
            redispatch: be.conf.redispatch,
        };
        let server = be.pool.pick_with(&ctx)?.clone();
        let connector = be.connector(&server);
        let per_request = connector.and_then(|c| c.for_host(d.host));
        let connector = per_request.as_ref().or(connector);
        let key = (server.addr, connector.map(|c| c.identity));
        if let Some(r) = d.reuse.filter(|r| r.take) {
            if let Some(sock) = upstream::take(key, !r.retryable) {
                be.stats.reuse_hit.inc();
                return Some(Upstream {
                    sock,
                    server: server.enter(),
                    key,
                    reused: true,
                });
            }
        }
        if *attempts > be.conf.retries {
            return None;
        }
        *attempts += 1;
        if *attempts > 1 {
            be.stats.retries.inc();
            if !tried.iter().any(|s| Arc::ptr_eq(s, &server)) {
                be.stats.redispatches.inc();
            }
        }
        let limit = Some(be.conf.timeout_connect);
        match open(server.addr, connector, limit, d.ring).await {
            Ok(sock) => {
                if d.reuse.is_some() {
                    be.stats.reuse_miss.inc();
                }
                return Some(Upstream {
                    sock,
                    server: server.enter(),
                    key,
                    reused: false,
                });
            }
            Err(reason) => {
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

/// Connects to `addr` and, with a connector, does the TLS handshake; each
/// step within `limit` (`None`: the caller bounds the whole). `ring`: see
/// `Dial::ring`. `Err` is a reason for logs and health checks.
pub async fn open(
    addr: SocketAddr,
    tls: Option<&Connector>,
    limit: Option<Duration>,
    ring: bool,
) -> Result<Io, String> {
    let sock = within(limit, connect(addr))
        .await
        .unwrap_or_else(|| Err("connect timeout".into()))?;
    match tls {
        None if ring => Io::plain(sock).map_err(|e| e.to_string()),
        None => Ok(Io::Plain(sock)),
        Some(c) => within(limit, handshake(c, sock))
            .await
            .unwrap_or_else(|| Err("TLS handshake timeout".into())),
    }
}

/// `fut` within `limit`; `None` once it ran out.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(l) => tokio::time::timeout(l, fut).await.ok(),
        None => Some(fut.await),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    match TcpStream::connect(addr).await {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connect refused".into())
        }
        Err(e) => Err(format!("connect failed: {e}")),
    }
}

async fn handshake(c: &Connector, sock: TcpStream) -> Result<Io, String> {
    let connector = tokio_rustls::TlsConnector::from(c.config.clone());
    match connector.connect(c.name.clone(), sock).await {
        Ok(t) => Ok(Io::TlsOut(Box::new(t))),
        Err(e) => Err(format!("TLS handshake failed: {e}")),
    }
}
