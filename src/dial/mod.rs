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

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::balance::{InFlight, PickCtx, Server};
use crate::connect::open;
use crate::io::Io;
use crate::snapshot::BackendRt;

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
    pub key: idle::Key,
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
            if let Some(sock) = idle::take(key, !r.retryable) {
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
