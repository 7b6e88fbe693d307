//! The HTTP/1.1 reverse proxy: one client connection, its requests in order, each to a server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::io::{Io, SpareBuffer};
use bytes::{Buf, BufMut, BytesMut};

use super::body::{write_chunk_header, Chunk, ChunkedDecoder, LAST_CHUNK};
use super::head::{self, BodyKind, HeadLimits, RequestHead, ResponseHead, TargetForm};
use super::{reply, upstream};
use crate::balance::InFlight;
use crate::balance::{PickCtx, Server};
use crate::conf::acl;
use crate::conf::{HttpRule, Reuse};
use crate::snapshot::{BackendRt, FrontendRt, Live};
use std::sync::atomic::Ordering;

/// Flush re-framed chunked output once it holds this much.
const FLUSH_AT: usize = 64 << 10;

impl acl::Request for RequestHead {
    fn path(&self) -> &[u8] {
        RequestHead::path(self)
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        RequestHead::header(self, name)
    }
}

/// Why an exchange stopped; decides what the client gets.
#[derive(Debug)]
enum Fail {
    /// Nothing was sent to the client yet: answer with this status and close.
    Status(u16),
    /// The client is gone, or it got a whole answer: just close.
    Close,
    /// The response began but the server cut it: close, without the TLS
    /// close_notify that would mark a body ending at close as complete.
    Cut,
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Fail {
        Fail::Close
    }
}

/// What happens to the client connection after an exchange.
enum Next {
    KeepAlive,
    Close,
    /// Close, though the client may still be sending the request's body:
    /// linger (`Io::linger`).
    CloseUnread,
}

/// Per-connection settings, fixed for the connection's life.
struct Conn<'a> {
    fe: &'a FrontendRt,
    peer: SocketAddr,
    limits: HeadLimits,
    /// "http" or "https", for X-Forwarded-Proto.
    proto: &'static str,
}

/// While idle between requests, how often a connection looks at the drain flag.
const DRAIN_POLL: Duration = Duration::from_secs(1);

impl Conn<'_> {
    /// SIGTERM arrived: finish what is in progress, take nothing new.
    fn draining(&self) -> bool {
        crate::shutdown::draining()
    }
}

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
    match write_all(client, &reply::error(status), fe.conf.timeout_client).await {
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
    };
    match exchange(client, rbuf, ubuf, req, &conn, first).await {
        Ok(Next::KeepAlive) => true,
        Ok(Next::Close | Next::CloseUnread) | Err(Fail::Close | Fail::Cut) => false,
        Err(Fail::Status(s)) => {
            let _ = write_all(client, &reply::error(s), fe.conf.timeout_client).await;
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
            read_until(client, rbuf, deadline).await
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
            match read_until(client, rbuf, step).await {
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

/// A request as conditions see it: the head plus facts about its connection.
struct ReqView<'a> {
    head: &'a RequestHead,
    tls: bool,
    src: std::net::IpAddr,
}

impl acl::Request for ReqView<'_> {
    fn path(&self) -> &[u8] {
        self.head.path()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }
    fn ssl(&self) -> bool {
        self.tls
    }
    fn src(&self) -> Option<std::net::IpAddr> {
        Some(self.src)
    }
}

fn pick_backend<'a>(fe: &'a FrontendRt, req: &ReqView<'_>) -> Option<&'a Arc<BackendRt>> {
    for (u, be) in fe.conf.http.use_backends.iter().zip(&fe.routes) {
        if u.cond.eval(&fe.conf.http.acls, req) {
            return be.as_ref();
        }
    }
    fe.backend.as_ref()
}

/// One request/response exchange, counted in metrics and the access log.
async fn exchange(
    client: &mut Io,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    req: RequestHead,
    conn: &Conn<'_>,
    first: bool,
) -> Result<Next, Fail> {
    let mut t = Tally::start(&req);
    let r = exchange_inner(client, rbuf, ubuf, req, conn, first, &mut t).await;
    t.finish(conn, &r);
    r
}

/// What one exchange did, for metrics and the access log.
struct Tally {
    start: Instant,
    backend: Option<Arc<crate::stats::BackendStats>>,
    server: Option<Arc<crate::stats::ServerStats>>,
    /// Connect time of a new server connection; `None` when reused or none.
    connect: Option<Duration>,
    /// Time to the response head.
    response: Option<Duration>,
    status: Option<u16>,
    bytes_in: u64,
    bytes_out: u64,
    /// The request line, kept only when an access log is on.
    request: Option<String>,
}

impl Tally {
    fn start(req: &RequestHead) -> Tally {
        Tally::new(req.buf.len(), || {
            format!(
                "{} {} HTTP/1.{}",
                String::from_utf8_lossy(req.method()),
                String::from_utf8_lossy(req.target()),
                req.minor_version
            )
        })
    }

    /// A request whose head was refused (`bytes_in` of it read), as HAProxy logs
    /// one: no backend, the request line `<BADREQ>`.
    fn unparsed(bytes_in: usize) -> Tally {
        Tally::new(bytes_in, || "<BADREQ>".to_string())
    }

    /// The request line is formatted only when an access log is on.
    fn new(bytes_in: usize, request: impl FnOnce() -> String) -> Tally {
        Tally {
            start: crate::clock::now(),
            backend: None,
            server: None,
            connect: None,
            response: None,
            status: None,
            bytes_in: bytes_in as u64,
            bytes_out: 0,
            request: crate::accesslog::get().map(|_| request()),
        }
    }

    /// A server connection is ready: a pooled one (`reused`) or a new one.
    fn connected(&mut self, server: &Server, reused: bool) {
        self.server = Some(server.stats.clone());
        self.connect = if reused {
            None
        } else {
            let took = crate::clock::now() - self.start;
            server.stats.connect.observe(took.as_secs_f64());
            Some(took)
        };
    }

    fn finish(mut self, conn: &Conn<'_>, r: &Result<Next, Fail>) {
        if let Err(Fail::Status(s)) = r {
            // The caller writes this error response next.
            self.status = Some(*s);
            self.bytes_out += reply::error(*s).len() as u64;
        }
        let took = crate::clock::now() - self.start;
        let fe = &conn.fe.stats;
        fe.traffic
            .record(self.status, self.bytes_in, self.bytes_out, took);
        if let Some(s) = &self.server {
            s.traffic
                .record(self.status, self.bytes_in, self.bytes_out, took);
        }
        if let Some(log) = crate::accesslog::get() {
            let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
            log.log(crate::accesslog::Record {
                time: std::time::SystemTime::now() - took,
                client: conn.peer,
                frontend: fe.name.clone(),
                backend: self.backend.map(|b| b.name.clone()),
                server: self.server.map(|s| s.name.clone()),
                tc: ms(self.connect),
                tr: ms(self.response),
                ta: took.as_millis() as u64,
                status: self.status,
                bytes_out: self.bytes_out,
                bytes_in: self.bytes_in,
                request: self.request,
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn exchange_inner(
    client: &mut Io,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    req: RequestHead,
    conn: &Conn<'_>,
    first: bool,
    t: &mut Tally,
) -> Result<Next, Fail> {
    let fe = conn.fe;
    if !crate::edge::request_allowed(fe, conn.peer) {
        let retry_after = format!("Retry-After: {}", crate::limit::RETRY_AFTER_SECS);
        let reply = reply::error_with(429, &[&retry_after]);
        t.status = Some(429);
        t.bytes_out += reply.len() as u64;
        write_all(client, &reply, fe.conf.timeout_client).await?;
        return Ok(unread_close(&req));
    }
    if req.is_connect() {
        return Err(Fail::Status(405));
    }
    if let (Some(max), BodyKind::Length(n)) = (fe.conf.http.max_body, req.body) {
        if n > max {
            return Err(Fail::Status(413));
        }
    }
    let view = ReqView {
        head: &req,
        tls: conn.proto == "https",
        src: conn.peer.ip(),
    };
    for rule in &fe.conf.http.rules {
        match rule {
            HttpRule::RedirectScheme {
                scheme, code, cond, ..
            } => {
                if cond
                    .as_ref()
                    .is_none_or(|c| c.eval(&fe.conf.http.acls, &view))
                {
                    let head = redirect(fe, &req, scheme, *code);
                    t.status = Some(*code);
                    t.bytes_out += head.len() as u64;
                    write_all(client, &head, fe.conf.timeout_client).await?;
                    // The request body (if any) was not read: close unless there is none.
                    return Ok(if req.body == BodyKind::None && req.keep_alive {
                        Next::KeepAlive
                    } else {
                        unread_close(&req)
                    });
                }
            }
            HttpRule::Deny { status, cond, .. } => {
                if cond
                    .as_ref()
                    .is_none_or(|c| c.eval(&fe.conf.http.acls, &view))
                {
                    fe.stats.denied.req_rule.inc();
                    return Err(Fail::Status(*status));
                }
            }
        }
    }
    let Some(be) = pick_backend(fe, &view) else {
        return Err(Fail::Status(503));
    };
    t.backend = Some(be.stats.clone());
    let bc = &be.conf;
    let forwardfor = fe.conf.http.forwardfor || bc.forwardfor;
    // A client that waits for 100 Continue before sending a body we must
    // stream gets it from us (as nginx does); the Expect header is then consumed.
    let answer_continue = req.expect_continue && matches!(req.body, BodyKind::Chunked)
        || matches!(req.body, BodyKind::Length(n) if req.expect_continue && (rbuf.len() as u64) < n);
    // A request whose body is already entirely buffered can be replayed on a
    // fresh connection if a reused one turns out dead.
    let replayable_body = match req.body {
        BodyKind::None => Some(0),
        BodyKind::Length(n) if (rbuf.len() as u64) >= n => Some(n as usize),
        _ => None,
    };
    // The bytes of the first write, built once: the head and, when buffered,
    // the whole body; every attempt (retries included) sends exactly these.
    let mut first_write = request_head(
        &req,
        conn,
        forwardfor,
        bc.reuse == Reuse::Never,
        answer_continue,
    );
    if let Some(n) = replayable_body {
        first_write.put_slice(&rbuf.split_to(n));
        t.bytes_in += n as u64;
    }
    let may_reuse = match bc.reuse {
        Reuse::Never => false,
        Reuse::Safe => !first || req.is_idempotent(),
        Reuse::Always => true,
    };
    // An empty answer (close or reset before any response byte) is retried
    // on another connection only for idempotent requests we can replay.
    let retry_dead_reuse = req.is_idempotent() && replayable_body.is_some();
    let mut tried: Vec<Arc<Server>> = Vec::new();

    let host = req.host.map(|h| req.slice(h));
    let mut attempts = 0u32;
    let mut reuse_ok = may_reuse;
    let mut body_cut = false;
    let (mut up, resp) = loop {
        ubuf.clear();
        let ctx = PickCtx {
            client: Some(conn.peer.ip()),
            tried: &tried,
            redispatch: bc.redispatch,
        };
        let (mut up, reused) =
            match connect(be, &ctx, host, reuse_ok, retry_dead_reuse, &mut attempts).await {
                Some(x) => x,
                None => return Err(Fail::Status(503)),
            };
        t.connected(&up.server.0, reused);
        // Send the head, with the buffered body in the same write.
        if write_all(&mut up.sock, &first_write, bc.timeout_server)
            .await
            .is_err()
        {
            if reused && retry_dead_reuse {
                reuse_ok = false;
                continue;
            }
            return Err(Fail::Status(502));
        }
        match replayable_body {
            Some(_) => {}
            None => {
                if answer_continue && req.minor_version == 1 {
                    write_all(
                        client,
                        b"HTTP/1.1 100 Continue\r\n\r\n",
                        fe.conf.timeout_client,
                    )
                    .await?;
                }
                // Full duplex: a server may answer before the body ends (an
                // early 413 or 401, or a server that answers at the head).
                // Then the rest of the body is dropped and neither connection
                // is kept alive, since the client's framing is unfinished.
                let mut upload = Upload {
                    client,
                    server: &mut up.sock,
                    ubuf,
                    req: &req,
                    conn,
                    server_timeout: bc.timeout_server,
                };
                match send_body(&mut upload, rbuf, req.body, &mut t.bytes_in).await {
                    Ok(()) => {}
                    Err(BodyError::EarlyResponse) => body_cut = true,
                    Err(BodyError::Client) => return Err(Fail::Close),
                    Err(BodyError::TooLarge) => return Err(Fail::Status(413)),
                    Err(BodyError::Bad) => return Err(Fail::Status(400)),
                    Err(BodyError::ServerTimeout) => {
                        up.server
                            .0
                            .observe_response(Err("request body timeout".into()));
                        return Err(Fail::Status(504));
                    }
                }
            }
        }
        match read_response(&mut up.sock, ubuf, &req, conn, bc.timeout_server, client).await {
            Ok(r) => {
                t.response = Some(crate::clock::now() - t.start);
                t.status = Some(r.status);
                if (500..=504).contains(&r.status) && r.status != 501 {
                    up.server
                        .0
                        .observe_response(Err(format!("HTTP status {}", r.status)));
                }
                break (up, r);
            }
            Err(RespError::DeadReused)
                if retry_dead_reuse && !body_cut && (reused || attempts <= bc.retries) =>
            {
                // A reused connection the server had closed costs no retry;
                // a fresh one that died is a failed attempt on that server.
                reuse_ok = false;
                if !reused {
                    up.server.0.observe_response(Err("empty response".into()));
                    tried.push(up.server.0.clone());
                }
                continue;
            }
            Err(RespError::DeadReused) => {
                bad_response(&up.server.0, "empty response".into());
                return Err(Fail::Status(502));
            }
            Err(RespError::Invalid(why)) => {
                invalid_response(&up.server.0, why);
                return Err(Fail::Status(502));
            }
            Err(RespError::Timeout) => {
                up.server.0.observe_response(Err("response timeout".into()));
                return Err(Fail::Status(504));
            }
            Err(RespError::Client) => return Err(Fail::Close),
        }
    };

    // 101 Switching Protocols: the connection becomes a byte tunnel, if the
    // client asked for it. Otherwise 502, and the server connection closes
    // (dropped here): what follows on it is no longer HTTP.
    if resp.status == 101 {
        if let Err(why) = switch_allowed(&req, &resp) {
            invalid_response(&up.server.0, why);
            return Err(Fail::Status(502));
        }
        let head = response_head(&resp, true, true);
        write_all(client, &head, fe.conf.timeout_client).await?;
        if !ubuf.is_empty() {
            write_all(client, ubuf, fe.conf.timeout_client).await?;
        }
        if !rbuf.is_empty() {
            write_all(&mut up.sock, rbuf, bc.timeout_server).await?;
        }
        let idle = crate::tunnel::Idle {
            client: fe.conf.timeout_client,
            server: bc.timeout_server,
        };
        t.bytes_out += (head.len() + ubuf.len()) as u64;
        t.bytes_in += rbuf.len() as u64;
        if let Ok(m) = crate::tunnel::tunnel(client, &mut up.sock, idle).await {
            t.bytes_in += m.to_server;
            t.bytes_out += m.to_client;
        }
        return Ok(Next::Close);
    }

    // RFC 9112 6.1: no Transfer-Encoding goes to an HTTP/1.0 client. Chunked
    // is undone below; another coding (gzip) cannot be told to it, and its
    // bytes passed on bare would read as the content itself: 502, as nginx.
    // The server is not blamed (no `observe layer7` failure): it answered
    // the HTTP/1.1 request it got.
    if req.minor_version == 0 && carries_codings(&resp) {
        tracing::warn!(
            "server {}: invalid response: transfer coding an HTTP/1.0 client cannot receive",
            up.server.0.id
        );
        return Err(Fail::Status(502));
    }
    // HTTP/1.0 clients cannot take chunked: send the raw body, end at close.
    let dechunk = req.minor_version == 0 && resp.body == BodyKind::Chunked;
    // While draining, the response in progress is the connection's last.
    let client_keep = req.keep_alive
        && resp.body != BodyKind::UntilClose
        && !dechunk
        && !body_cut
        && !conn.draining();
    let head = response_head(&resp, client_keep, req.minor_version == 1);
    let relayed = relay_response(
        client,
        &mut up.sock,
        ubuf,
        &resp,
        head,
        dechunk,
        conn,
        bc.timeout_server,
        &mut t.bytes_out,
    )
    .await;
    let done = match relayed {
        Ok(done) => done,
        Err(Cut::Client) => return Err(Fail::Close),
        // Nothing reached the client yet: it gets a 502. Once the response
        // has begun, closing is the only way to tell it the rest is missing.
        Err(Cut::Server(what)) => {
            bad_response(&up.server.0, what);
            return Err(if t.bytes_out == 0 {
                Fail::Status(502)
            } else {
                Fail::Cut
            });
        }
    };
    if done
        && !body_cut
        && resp.keep_alive
        && ubuf.is_empty()
        && !stray_body(&resp)
        && bc.reuse != Reuse::Never
    {
        let s = &up.server.0;
        let max = s.pool_max_conn.load(Ordering::Relaxed);
        upstream::put(up.key, up.sock, max, s.pool_purge_delay());
    }
    Ok(if client_keep {
        Next::KeepAlive
    } else if body_cut {
        Next::CloseUnread
    } else {
        Next::Close
    })
}

/// A response that broke HTTP/1.1, or whose body the server cut: logged
/// with what went wrong, and a failed response for `observe layer7`.
fn bad_response(server: &Server, what: String) {
    tracing::warn!("server {}: {what}", server.id);
    server.observe_response(Err(what));
}

/// `bad_response` for a response that is not valid HTTP/1.1.
fn invalid_response(server: &Server, why: &str) {
    bad_response(server, format!("invalid response: {why}"));
}

/// Whether a 101 may go to the client: only as the answer to a request with
/// `Upgrade` and `Connection: upgrade`, naming in its own `Upgrade` only
/// protocols the client offered (RFC 9110 section 7.8). Either side may
/// split its `Upgrade` list over several field lines (RFC 9110 5.3).
fn switch_allowed(req: &RequestHead, resp: &ResponseHead) -> Result<(), &'static str> {
    if !req.upgrade {
        return Err("unsolicited 101");
    }
    let mut to = list(resp.header_values("upgrade")).peekable();
    if to.peek().is_none() {
        return Err("101 without Upgrade");
    }
    if !to.all(|p| list(req.header_values("upgrade")).any(|o| o.eq_ignore_ascii_case(p))) {
        return Err("101 to a protocol the client did not offer");
    }
    Ok(())
}

/// The items of a list field over all its field lines.
fn list<'a>(lines: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    lines.flat_map(head::list_items)
}

/// A response that would reach the client with a transfer coding other than
/// `chunked` (1xx and 204 lose their Transfer-Encoding in `response_head`).
fn carries_codings(resp: &ResponseHead) -> bool {
    resp.status >= 200
        && resp.status != 204
        && list(resp.header_values("transfer-encoding"))
            .any(|c| !c.eq_ignore_ascii_case(b"chunked"))
}

/// A 204 announcing a body (RFC 9110 forbids it): the body is not part of
/// the message, yet its bytes may still come, and on a reused connection they
/// would be read as the next request's response.
fn stray_body(resp: &ResponseHead) -> bool {
    resp.status == 204
        && (resp.header("transfer-encoding").is_some()
            || resp.header("content-length").is_some_and(|v| v != b"0"))
}

/// Closing before `req`'s body was read: linger if it has one.
fn unread_close(req: &RequestHead) -> Next {
    if req.body == BodyKind::None {
        Next::Close
    } else {
        Next::CloseUnread
    }
}

/// A server connection in use for one exchange.
struct Upstream {
    sock: Io,
    server: InFlight,
    /// The idle pool it came from and goes back to.
    key: upstream::Key,
}

/// A connection to the next server: an idle pooled one when allowed, else a
/// new one, moving on to servers not tried yet on connect failure, at most
/// `retries` extra times. `None` when no server is up or none accepted.
async fn connect(
    be: &BackendRt,
    ctx: &PickCtx<'_>,
    host: Option<&[u8]>,
    reuse: bool,
    retryable: bool,
    attempts: &mut u32,
) -> Option<(Upstream, bool)> {
    let mut tried: Vec<Arc<Server>> = ctx.tried.to_vec();
    loop {
        let c = PickCtx {
            tried: &tried,
            ..*ctx
        };
        let server = be.pool.pick_with(&c)?.clone();
        let connector = be.connector(&server);
        let per_request = connector.and_then(|c| c.for_host(host));
        let connector = per_request.as_ref().or(connector);
        let key = (server.addr, connector.map(|c| c.identity));
        if reuse {
            if let Some(sock) = upstream::take(key, !retryable) {
                be.stats.reuse_hit.inc();
                let up = Upstream {
                    sock,
                    server: server.enter(),
                    key,
                };
                return Some((up, true));
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
        let connected = crate::dial::open(server.addr, connector, limit, true).await;
        match connected {
            Ok(sock) => {
                be.stats.reuse_miss.inc();
                let up = Upstream {
                    sock,
                    server: server.enter(),
                    key,
                };
                return Some((up, false));
            }
            Err(reason) => {
                tracing::debug!("connect to {} failed: {reason}", server.id);
                server.connect_errors.fetch_add(1, Ordering::Relaxed);
                server.observe_connect(Err(reason));
                tried.push(server);
            }
        }
    }
}

/// Writes the target in origin form: `scheme://authority/path?query` becomes
/// `/path?query`; other forms are written as they are.
fn put_origin_form(out: &mut BytesMut, req: &RequestHead) {
    let t = req.target();
    if req.form != TargetForm::Absolute {
        out.put_slice(t);
        return;
    }
    let after = t
        .windows(3)
        .position(|w| w == b"://")
        .map_or(t, |i| &t[i + 3..]);
    match after.iter().position(|&b| b == b'/' || b == b'?') {
        Some(i) if after[i] == b'/' => out.put_slice(&after[i..]),
        Some(i) => {
            out.put_u8(b'/');
            out.put_slice(&after[i..]);
        }
        None => out.put_u8(b'/'),
    }
}

/// The authority of an absolute-form target (`http://AUTHORITY/path`), else empty.
fn absolute_authority(req: &RequestHead) -> &[u8] {
    if req.form != TargetForm::Absolute {
        return b"";
    }
    let t = req.target();
    let after = t
        .windows(3)
        .position(|w| w == b"://")
        .map_or(t, |i| &t[i + 3..]);
    let end = after
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after.len());
    let auth = &after[..end];
    // userinfo never goes into Host
    auth.iter()
        .rposition(|&b| b == b'@')
        .map_or(auth, |i| &auth[i + 1..])
}

/// `http-request redirect scheme`: the same host and target under another
/// scheme. The port of the Host header is dropped; when redirecting to https
/// and the frontend has a TLS bind on another port than 443, that port is used.
fn redirect(fe: &FrontendRt, req: &RequestHead, scheme: &str, code: u16) -> BytesMut {
    let host = req.header("host").unwrap_or(b"");
    let bare = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host.ends_with(b"]") => &host[..i],
        _ => host,
    };
    let port = (scheme == "https")
        .then(|| {
            let i = fe.conf.binds.iter().position(|b| b.tls.is_some())?;
            fe.bound.get(i).map(SocketAddr::port)
        })
        .flatten()
        .filter(|p| *p != 443);
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(
        format!(
            "HTTP/1.1 {code} {}\r\nlocation: {scheme}://",
            reply::reason(code)
        )
        .as_bytes(),
    );
    out.put_slice(bare);
    if let Some(p) = port {
        out.put_slice(format!(":{p}").as_bytes());
    }
    match req.form {
        TargetForm::Origin | TargetForm::Absolute => put_origin_form(&mut out, req),
        _ => out.put_u8(b'/'),
    }
    out.put_slice(b"\r\ncontent-length: 0\r\ncache-control: no-cache\r\n\r\n");
    out
}

/// Builds the head sent to the server: origin-form target, HTTP/1.1,
/// hop-by-hop headers removed, X-Forwarded-* when asked.
fn request_head(
    req: &RequestHead,
    conn: &Conn<'_>,
    forwardfor: bool,
    close: bool,
    strip_expect: bool,
) -> SpareBuffer {
    // A worker's spare buffer: no allocation per request.
    let mut out = SpareBuffer::take();
    out.put_slice(req.method());
    out.put_u8(b' ');
    put_origin_form(&mut out, req);
    out.put_slice(b" HTTP/1.1\r\n");
    // An HTTP/1.0 request may lack Host; what we send is HTTP/1.1, which requires one:
    // the target's authority, else the address the client reached (servers reject an
    // empty Host although RFC 9112 allows it).
    if req.host.is_none() {
        out.put_slice(b"Host: ");
        match absolute_authority(req) {
            b"" => match conn.fe.bound.first() {
                Some(a) => out.put_slice(a.to_string().as_bytes()),
                None => out.put_slice(b"localhost"),
            },
            auth => out.put_slice(auth),
        }
        out.put_slice(b"\r\n");
    }
    let mut xff: Option<Vec<u8>> = None;
    let set_proto = forwardfor || conn.proto == "https";
    for h in &req.headers {
        if h.hop_by_hop {
            continue;
        }
        let name = req.slice(h.name);
        let value = req.slice(h.value);
        if strip_expect && name.eq_ignore_ascii_case(b"expect") {
            continue;
        }
        if forwardfor && name.eq_ignore_ascii_case(b"x-forwarded-for") {
            {
                let v = xff.get_or_insert_with(Vec::new);
                if !v.is_empty() {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(value);
                continue;
            }
        }
        // Behind TLS, or with forwardfor, lb states the scheme itself.
        if set_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    if forwardfor {
        out.put_slice(b"X-Forwarded-For: ");
        if let Some(v) = xff {
            out.put_slice(&v);
            out.put_slice(b", ");
        }
        out.put_slice(conn.peer.ip().to_string().as_bytes());
        out.put_slice(b"\r\n");
    }
    if set_proto {
        out.put_slice(b"X-Forwarded-Proto: ");
        out.put_slice(conn.proto.as_bytes());
        out.put_slice(b"\r\n");
    }
    if req.upgrade {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if close {
        out.put_slice(b"Connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

/// Builds the head sent to the client.
fn response_head(resp: &ResponseHead, keep_alive: bool, client_is_11: bool) -> SpareBuffer {
    // A worker's spare buffer, with room for the start of the body too.
    let mut out = SpareBuffer::take();
    out.put_slice(b"HTTP/1.1 ");
    // Three digits without formatting machinery (status is 100..=999).
    let st = resp.status;
    out.put_slice(&[
        b'0' + (st / 100 % 10) as u8,
        b'0' + (st / 10 % 10) as u8,
        b'0' + (st % 10) as u8,
    ]);
    out.put_u8(b' ');
    out.put_slice(resp.slice(resp.reason));
    out.put_slice(b"\r\n");
    let upgrading = resp.status == 101;
    for h in &resp.headers {
        let name = resp.slice(h.name);
        if upgrading && name.eq_ignore_ascii_case(b"upgrade") {
            // Keep the protocol the server switched to.
        } else if h.hop_by_hop {
            continue;
        }
        // Never to an HTTP/1.0 client (RFC 9112 6.1): only `chunked` gets
        // here (carries_codings), undone when there is a body.
        if !client_is_11 && name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        // A 1xx or 204 never has a body, nor may it say it has (RFC 9110 8.6, RFC 9112 6.1).
        if (st < 200 || st == 204)
            && (name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(resp.slice(h.value));
        out.put_slice(b"\r\n");
    }
    if upgrading {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    } else if !client_is_11 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

enum RespError {
    /// The server closed or reset before sending a byte of response.
    DeadReused,
    /// Why the head is not valid HTTP/1.1.
    Invalid(&'static str),
    Timeout,
    Client,
}

/// Why a response head was refused, for the log.
fn head_fault(e: head::HeadError) -> &'static str {
    match e {
        head::HeadError::Invalid(why) => why,
        head::HeadError::TooLarge => "response head too large",
        head::HeadError::TooManyHeaders => "too many response header fields",
    }
}

/// Reads the final response head, passing 1xx interim responses (but 101) to the client.
async fn read_response(
    sock: &mut Io,
    ubuf: &mut BytesMut,
    req: &RequestHead,
    conn: &Conn<'_>,
    timeout: Duration,
    client: &mut Io,
) -> Result<ResponseHead, RespError> {
    let mut got_any = false;
    loop {
        if !ubuf.is_empty() {
            got_any = true;
            match head::parse_response_for(ubuf, &conn.limits, req.method()) {
                Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                    pass_interim(client, &r, req, conn)
                        .await
                        .map_err(|_| RespError::Client)?;
                    continue;
                }
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(RespError::Invalid(head_fault(e))),
            }
        }
        match read_until(sock, ubuf, crate::clock::now() + timeout).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(RespError::Timeout),
            Ok(0) | Err(_) if !got_any && ubuf.is_empty() => {
                return Err(RespError::DeadReused);
            }
            Ok(0) => return Err(RespError::Invalid("response head cut short")),
            Ok(_) => {}
            Err(_) => return Err(RespError::Invalid("response head cut short")),
        }
    }
}

/// Passes an interim (1xx) response to an HTTP/1.1 client (an HTTP/1.0 one
/// cannot take it, so it is dropped).
async fn pass_interim(
    client: &mut Io,
    r: &ResponseHead,
    req: &RequestHead,
    conn: &Conn<'_>,
) -> io::Result<()> {
    if req.minor_version == 1 {
        let h = response_head(r, true, true);
        write_all(client, &h, conn.fe.conf.timeout_client).await?;
    }
    Ok(())
}

enum BodyError {
    /// The server spoke before the body ended with something other than an
    /// interim 1xx (an early 413 or 401, or a server that answers at the head),
    /// or stopped taking the body (closed or reset). What it sent, if anything,
    /// is read next as the response.
    EarlyResponse,
    Client,
    /// The server accepted no body byte, or did not finish an interim head,
    /// within `timeout server`.
    ServerTimeout,
    TooLarge,
    Bad,
}

/// A failed write of the body to the server: the server may have answered
/// before it closed (an early 401 then a reset), so the response is read
/// rather than assumed lost.
fn server_write_failed(e: io::Error) -> BodyError {
    if e.kind() == io::ErrorKind::TimedOut {
        BodyError::ServerTimeout
    } else {
        BodyError::EarlyResponse
    }
}

/// The two ends of a request-body upload, and what is needed to pass the
/// server's interim responses to the client while it lasts.
struct Upload<'a, 'c> {
    client: &'a mut Io,
    server: &'a mut Io,
    /// The server-side read buffer: interim heads are taken off it, the rest
    /// stays for `read_response`.
    ubuf: &'a mut BytesMut,
    req: &'a RequestHead,
    conn: &'a Conn<'c>,
    server_timeout: Duration,
}

/// Streams the request body from the client to the server, and waits until
/// the last of it has gone (a ring write returns once queued): a server that
/// reset the connection under the body's last part then counts as having
/// answered early, as under any other part.
async fn send_body(
    up: &mut Upload<'_, '_>,
    rbuf: &mut BytesMut,
    kind: BodyKind,
    sent: &mut u64,
) -> Result<(), BodyError> {
    if matches!(kind, BodyKind::None | BodyKind::UntilClose) {
        return Ok(());
    }
    send_body_parts(up, rbuf, kind, sent).await?;
    up.server.settle().await.map_err(server_write_failed)
}

async fn send_body_parts(
    up: &mut Upload<'_, '_>,
    rbuf: &mut BytesMut,
    kind: BodyKind,
    sent: &mut u64,
) -> Result<(), BodyError> {
    let fe = up.conn.fe;
    let client_timeout = fe.conf.timeout_client;
    let server_timeout = up.server_timeout;
    let max = fe.conf.http.max_body.unwrap_or(u64::MAX);
    match kind {
        BodyKind::None | BodyKind::UntilClose => Ok(()),
        BodyKind::Length(mut n) => {
            while n > 0 {
                if rbuf.is_empty() {
                    more_body(up, rbuf, crate::clock::now() + client_timeout).await?;
                }
                let k = (rbuf.len() as u64).min(n) as usize;
                let part = rbuf.split_to(k);
                write_all(up.server, &part, server_timeout)
                    .await
                    .map_err(server_write_failed)?;
                *sent += k as u64;
                n -= k as u64;
            }
            Ok(())
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(16 << 10);
            let mut out = BytesMut::new();
            let mut total = 0u64;
            loop {
                match dec.decode(rbuf) {
                    Ok(Some(Chunk::Data(d))) => {
                        total += d.len() as u64;
                        *sent += d.len() as u64;
                        if total > max {
                            return Err(BodyError::TooLarge);
                        }
                        write_chunk_header(&mut out, d.len());
                        out.put_slice(&d);
                        out.put_slice(b"\r\n");
                        if out.len() >= FLUSH_AT {
                            write_all(up.server, &out, server_timeout)
                                .await
                                .map_err(server_write_failed)?;
                            out.clear();
                        }
                    }
                    Ok(Some(Chunk::Trailers(t))) => {
                        out.put_slice(LAST_CHUNK);
                        out.put_slice(&t);
                        return write_all(up.server, &out, server_timeout)
                            .await
                            .map_err(server_write_failed);
                    }
                    Ok(None) => {
                        if !out.is_empty() {
                            write_all(up.server, &out, server_timeout)
                                .await
                                .map_err(server_write_failed)?;
                            out.clear();
                        }
                        more_body(up, rbuf, crate::clock::now() + client_timeout).await?;
                    }
                    Err(_) => return Err(BodyError::Bad),
                }
            }
        }
    }
}

/// Reads more request body from the client. Full duplex: when a plain server
/// speaks first, its interim 1xx responses are passed on and the upload goes
/// on; anything else ends it with `EarlyResponse`. (Behind TLS a server may
/// send session tickets at any time, so there only the response itself tells.)
async fn more_body(
    up: &mut Upload<'_, '_>,
    rbuf: &mut BytesMut,
    deadline: Instant,
) -> Result<(), BodyError> {
    loop {
        let read = up.client.read_until(rbuf, deadline);
        let r = match &*up.server {
            Io::Plain(s) => {
                let mut probe = [0u8; 1];
                tokio::select! {
                    r = read => Some(r),
                    _ = s.peek(&mut probe) => None,
                }
            }
            // A ring poll reports the socket's real state (no cached readiness).
            Io::Ring(s) => {
                tokio::select! {
                    r = read => Some(r),
                    _ = s.readable() => None,
                }
            }
            _ => Some(read.await),
        };
        match r {
            Some(Ok(0) | Err(_)) => return Err(BodyError::Client),
            Some(Ok(_)) => return Ok(()),
            None => server_spoke(up).await?,
        }
    }
}

/// The server sent bytes during the upload. Interim responses (1xx but 101)
/// go to the client and the upload goes on (`Ok`); a final response, EOF or
/// anything unparsable ends it, left in `ubuf` for `read_response`.
async fn server_spoke(up: &mut Upload<'_, '_>) -> Result<(), BodyError> {
    loop {
        let deadline = crate::clock::now() + up.server_timeout;
        match read_until(up.server, up.ubuf, deadline).await {
            // A head begun and not finished within timeout server: 504 now,
            // not after a second wait in `read_response`.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(BodyError::ServerTimeout),
            Ok(0) | Err(_) => return Err(BodyError::EarlyResponse),
            Ok(_) => {}
        }
        loop {
            match interim_status(up.ubuf) {
                // Too short to tell: read more.
                None => break,
                Some(false) => return Err(BodyError::EarlyResponse),
                Some(true) => {}
            }
            match head::parse_response_for(up.ubuf, &up.conn.limits, up.req.method()) {
                Ok(Some(r)) => {
                    pass_interim(up.client, &r, up.req, up.conn)
                        .await
                        .map_err(|_| BodyError::Client)?;
                    if up.ubuf.is_empty() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(_) => return Err(BodyError::EarlyResponse),
            }
        }
    }
}

/// Whether `buf` starts with an interim response head (`HTTP/1.x 1xx`, but
/// 101, which ends the exchange as HTTP); `None` while too short to tell.
fn interim_status(buf: &[u8]) -> Option<bool> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf.get(start..start + 12)?;
    Some(line.starts_with(b"HTTP/1.") && line[9] == b'1' && &line[9..12] != b"101")
}

/// Sends the response head and streams its body to the client. Returns true
/// when the body ended cleanly by its framing (the server connection is reusable).
#[allow(clippy::too_many_arguments)]
async fn relay_response(
    client: &mut Io,
    sock: &mut Io,
    ubuf: &mut BytesMut,
    resp: &ResponseHead,
    mut head: SpareBuffer,
    dechunk: bool,
    conn: &Conn<'_>,
    server_timeout: Duration,
    sent: &mut u64,
) -> Result<bool, Cut> {
    let client_timeout = conn.fe.conf.timeout_client;
    match resp.body {
        BodyKind::None => {
            write_all(client, &head, client_timeout).await?;
            *sent += head.len() as u64;
            Ok(true)
        }
        BodyKind::Length(mut n) => {
            // Head and the already-read start of the body in one write.
            let k = (ubuf.len() as u64).min(n) as usize;
            head.put_slice(&ubuf[..k]);
            ubuf.advance(k);
            n -= k as u64;
            write_all(client, &head, client_timeout).await?;
            *sent += head.len() as u64;
            while n > 0 {
                body_read(read_until(sock, ubuf, crate::clock::now() + server_timeout).await)?;
                let k = (ubuf.len() as u64).min(n) as usize;
                let part = ubuf.split_to(k);
                write_all(client, &part, client_timeout).await?;
                *sent += part.len() as u64;
                n -= k as u64;
            }
            Ok(true)
        }
        BodyKind::UntilClose => {
            write_all(client, &head, client_timeout).await?;
            *sent += head.len() as u64;
            if !ubuf.is_empty() {
                write_all(client, ubuf, client_timeout).await?;
                *sent += ubuf.len() as u64;
                ubuf.clear();
            }
            loop {
                match read_until(sock, ubuf, crate::clock::now() + server_timeout).await {
                    Ok(0) => return Ok(false),
                    r => body_read(r)?,
                }
                write_all(client, ubuf, client_timeout).await?;
                *sent += ubuf.len() as u64;
                ubuf.clear();
            }
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(16 << 10);
            let mut out = head;
            loop {
                match dec.decode(ubuf) {
                    Ok(Some(Chunk::Data(d))) => {
                        if !dechunk {
                            write_chunk_header(&mut out, d.len());
                        }
                        out.put_slice(&d);
                        if !dechunk {
                            out.put_slice(b"\r\n");
                        }
                        if out.len() >= FLUSH_AT {
                            write_all(client, &out, client_timeout).await?;
                            *sent += out.len() as u64;
                            out.clear();
                        }
                    }
                    Ok(Some(Chunk::Trailers(t))) => {
                        if !dechunk {
                            out.put_slice(LAST_CHUNK);
                            out.put_slice(&t);
                        }
                        write_all(client, &out, client_timeout).await?;
                        *sent += out.len() as u64;
                        return Ok(true);
                    }
                    Ok(None) => {
                        if !out.is_empty() {
                            write_all(client, &out, client_timeout).await?;
                            *sent += out.len() as u64;
                            out.clear();
                        }
                        body_read(
                            read_until(sock, ubuf, crate::clock::now() + server_timeout).await,
                        )?;
                    }
                    Err(e) => {
                        return Err(Cut::Server(format!("invalid response: chunked body: {e}")))
                    }
                }
            }
        }
    }
}

/// Why relaying a response body stopped.
enum Cut {
    /// Writing to the client failed.
    Client,
    /// The server broke the body's framing, closed early or went quiet.
    Server(String),
}

impl From<io::Error> for Cut {
    fn from(_: io::Error) -> Cut {
        Cut::Client
    }
}

/// A read of response body bytes that must bring some.
fn body_read(r: io::Result<usize>) -> Result<(), Cut> {
    match r {
        Ok(0) => Err(Cut::Server("response body cut short".into())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            Err(Cut::Server("response body timeout".into()))
        }
        Err(e) => Err(Cut::Server(format!("response body: {e}"))),
    }
}

/// Reads what is available into `buf`, waiting until `deadline` (see `Io::read_until`).
async fn read_until(s: &mut Io, buf: &mut BytesMut, deadline: Instant) -> io::Result<usize> {
    s.read_until(buf, deadline).await
}

/// Writes all of `data`, failing if the peer accepts nothing for `idle`.
async fn write_all(s: &mut Io, data: &[u8], idle: Duration) -> io::Result<()> {
    s.write_all_idle(data, idle).await
}
