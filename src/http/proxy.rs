//! The HTTP/1.1 client side of the proxy: one connection, its requests in order,
//! each through the pipeline (`super::pipeline`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::io::Io;
use bytes::BytesMut;

use super::conn::{Conn, Fail, Next, Version};
use super::head::{self, RequestHead};
use super::pipeline::{exchange, Tally};
use super::reply;
use crate::snapshot::{FrontendRt, Live};
use std::sync::atomic::Ordering;

/// While idle between requests, how often a connection looks at the drain flag.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Where a connection finds its frontend again after a reload.
pub struct FrontendSource {
    pub rt: Arc<Live>,
    pub name: Arc<str>,
}

/// Serves one client connection until it closes, times out or breaks the protocol.
/// Each request uses the configuration current when it starts: after a reload
/// the frontend is looked up again (the connection closes if it was removed).
pub async fn serve(mut client: Io, peer: SocketAddr, fe: Arc<FrontendRt>, src: FrontendSource) {
    let timeout = fe.conf.timeout_client;
    match serve_requests(&mut client, peer, fe, src).await {
        End::Linger => client.linger().await,
        End::Close if client.is_tls() => {
            // TLS close_notify: without it a client cannot tell a response that
            // ends at close from a cut one. Bounded: the client may not read it.
            let _ = tokio::time::timeout(
                timeout.min(CLOSE_NOTIFY_WAIT),
                tokio::io::AsyncWriteExt::shutdown(&mut client),
            )
            .await;
        }
        End::Close | End::Cut => {}
    }
}

/// How a client connection ends.
enum End {
    Close,
    /// Closed after an answer while the client may still be sending (see `Io::linger`).
    Linger,
    /// A response was cut short (see `Fail::Cut`).
    Cut,
}

/// How long a TLS client connection's close_notify may wait for the socket.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

async fn serve_requests(
    client: &mut Io,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    src: FrontendSource,
) -> End {
    let _session = fe.stats.open();
    let mut fe = fe;
    let mut generation = src.rt.generation.load(Ordering::Acquire);
    let mut rbuf = crate::io::take_buffer();
    // Server-side read buffer, reused by every exchange of this connection.
    let mut ubuf = crate::io::take_buffer();
    let mut first = true;
    loop {
        let now = src.rt.generation.load(Ordering::Acquire);
        if now != generation {
            generation = now;
            match src.rt.snapshot.load().frontends.get(&*src.name) {
                Some(f) if f.conf.mode == crate::conf::Mode::Http => fe = f.clone(),
                _ => return End::Close,
            }
        }
        let conn = Conn {
            fe: &fe,
            peer,
            limits: fe.limits,
            proto: if client.is_tls() { "https" } else { "http" },
            version: Version::Http1,
        };
        let req = match read_request(client, &mut rbuf, &mut ubuf, &conn, first).await {
            Ok(Some(r)) => r,
            Ok(None) => return End::Close,
            Err(status) => {
                // A request refused before it was parsed (400, 408, 413, 431) is
                // still a response: counted, and logged as `<BADREQ>`.
                Tally::unparsed(rbuf.len()).finish(&conn, &Err(Fail::Status(status)));
                return answer_error(client, status, &fe).await;
            }
        };
        match exchange(client, &mut rbuf, &mut ubuf, req, &conn, first).await {
            Ok(Next::KeepAlive) => first = false,
            Ok(Next::Close) | Err(Fail::Close) => return End::Close,
            Ok(Next::CloseUnread) => return End::Linger,
            Err(Fail::Status(s)) => return answer_error(client, s, &fe).await,
            Err(Fail::Cut) => return End::Cut,
        }
    }
}

/// Writes an error answer, the connection's last. It may come before the
/// request's body was read: the connection then lingers.
async fn answer_error(client: &mut Io, status: u16, fe: &FrontendRt) -> End {
    match client
        .write_all_idle(&reply::error(status), fe.conf.timeout_client)
        .await
    {
        Ok(()) => End::Linger,
        Err(_) => End::Close,
    }
}

/// Forwards one already-parsed request through `fe`'s routing to a server and
/// relays the response, for embedded servers that handle some paths
/// themselves (the `web` section sends its app paths here). On failure the
/// error response is written. Returns true when the client connection may
/// carry another request. `rbuf` holds bytes read after the head; `ubuf` is a
/// scratch buffer the caller keeps for the connection's life.
pub async fn forward(
    client: &mut Io,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    req: RequestHead,
    fe: &FrontendRt,
    peer: SocketAddr,
    first: bool,
) -> bool {
    let conn = Conn {
        fe,
        peer,
        limits: fe.limits,
        proto: if client.is_tls() { "https" } else { "http" },
        version: Version::Http1,
    };
    match exchange(client, rbuf, ubuf, req, &conn, first).await {
        Ok(Next::KeepAlive) => true,
        Ok(Next::Close | Next::CloseUnread) | Err(Fail::Close | Fail::Cut) => false,
        Err(Fail::Status(s)) => {
            let _ = client
                .write_all_idle(&reply::error(s), fe.conf.timeout_client)
                .await;
            false
        }
    }
}

/// Reads one request head. `Ok(None)`: the client closed or went idle between
/// requests (close silently); `Err(status)`: answer with it and close.
///
/// A keep-alive connection idle for DRAIN_POLL gives its two read buffers
/// (`rbuf`, `ubuf`: 32 KiB) to the worker's spare stack (`io::give_buffer`) and
/// waits for the client's next byte without them. A TLS connection does so
/// only when rustls holds no decrypted bytes, which no socket readiness would
/// announce.
async fn read_request(
    client: &mut Io,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    conn: &Conn<'_>,
    first: bool,
) -> Result<Option<RequestHead>, u16> {
    let http = &conn.fe.conf.http;
    // Between requests the keep-alive timeout waits for the first byte; from
    // then on (or from accept, for the first request) the whole head must
    // arrive within timeout http-request.
    let mut deadline = if first || !rbuf.is_empty() {
        crate::clock::now() + http.timeout_request
    } else {
        crate::clock::now() + http.timeout_keep_alive
    };
    let mut started = first || !rbuf.is_empty();
    // The read buffers went back to the worker's spare stack.
    let mut released = false;
    loop {
        if !rbuf.is_empty() {
            if !started {
                started = true;
                deadline = crate::clock::now() + http.timeout_request;
            }
            match head::parse_request(rbuf, &conn.limits) {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {}
                Err(e) => return Err(e.status()),
            }
        }
        let read = if started {
            client.read_until(rbuf, deadline).await
        } else {
            // Idle between requests: a drain (SIGTERM) closes the connection
            // within DRAIN_POLL rather than at the keep-alive timeout. (A flag
            // polled by the idle timer costs nothing per request; a waiter on a
            // shared channel would take a lock on every request.)
            if conn.draining() {
                return Ok(None);
            }
            let step = deadline.min(crate::clock::now() + DRAIN_POLL);
            if released {
                // Buffers released: wait for readiness alone, then read as usual.
                let _idle = IdleGauge::enter(&conn.fe.stats.idle);
                match tokio::time::timeout_at(step.into(), client.readable()).await {
                    Ok(Ok(())) => {
                        *rbuf = crate::io::take_buffer();
                        *ubuf = crate::io::take_buffer();
                        released = false;
                        continue;
                    }
                    Ok(Err(_)) => return Ok(None),
                    Err(_) if Instant::now() < deadline => continue,
                    Err(_) => return Ok(None),
                }
            }
            match client.read_until(rbuf, step).await {
                // The real clock: this poll's reading may predate the timeout.
                Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() < deadline => {
                    if rbuf.is_empty() && !client.has_buffered_plaintext() {
                        crate::io::give_buffer(rbuf);
                        crate::io::give_buffer(ubuf);
                        released = true;
                    }
                    continue;
                }
                r => r,
            }
        };
        match read {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return if started { Err(408) } else { Ok(None) };
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Counts a connection in a frontend's `idle` gauge while it lives.
struct IdleGauge<'a>(&'a prometheus::IntGauge);

impl<'a> IdleGauge<'a> {
    fn enter(g: &'a prometheus::IntGauge) -> IdleGauge<'a> {
        g.inc();
        IdleGauge(g)
    }
}

impl Drop for IdleGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
