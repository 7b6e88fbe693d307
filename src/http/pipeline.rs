//! The request pipeline: one exchange (a request and its response) in named
//! phases, whatever protocol brought the request: admit, apply rules, route,
//! connect (pick a server, retries, redispatch), send, receive, relay, log.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use super::downstream::{Answer, Downstream};
use super::h2side;
use super::head::{self, BodyKind, RequestHead, ResponseHead};
use super::relay::{relay_response, Cut};
use super::rewrite::{request_head, response_head};
use super::rules::{self, TxnState, Verdict};
use super::upload::{send_body, BodyError, Upload};
use super::upstream;
use crate::balance::Server;
use crate::conf::acl;
use crate::conf::Reuse;
use crate::dial::{dial, Dial, Pooled, Upstream};
use crate::h2::stream::H2Stream;
use crate::io::{Io, SpareBuffer};
use crate::snapshot::{BackendRt, FrontendRt};
use std::sync::atomic::Ordering;

pub use super::conn::{Conn, Fail, Next, Version};
pub(crate) use super::tally::Tally;

impl acl::Request for RequestHead {
    fn path(&self) -> &[u8] {
        RequestHead::path(self)
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        RequestHead::header(self, name)
    }
}

/// A request as `use_backend` conditions see it: the head plus facts about
/// its connection and what the rules phase left (variables, tracked counters).
struct ReqView<'a> {
    head: &'a RequestHead,
    tls: bool,
    src: std::net::IpAddr,
    conn: &'a Conn<'a>,
    st: &'a TxnState,
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
    fn headers(&self, name: &str) -> Vec<&[u8]> {
        let h = self.head;
        h.headers
            .iter()
            .filter(|x| h.slice(x.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(|x| h.slice(x.value))
            .collect()
    }
    fn src_port(&self) -> Option<u16> {
        Some(self.conn.peer.port())
    }
    fn dst(&self) -> Option<std::net::SocketAddr> {
        Some(rules::local_addr(self.conn))
    }
    fn sni(&self) -> Option<&[u8]> {
        self.tls
            .then(|| self.head.header("host").map(acl::strip_port))
            .flatten()
    }
    fn client_cert(&self) -> Option<&crate::conf::sample::ClientCert> {
        self.conn.client_cert.as_deref()
    }
    fn method(&self) -> &[u8] {
        self.head.method()
    }
    fn url(&self) -> &[u8] {
        self.head.target()
    }
    fn version(&self) -> &[u8] {
        match (self.conn.version, self.head.minor_version) {
            (Version::Http2, _) => b"2.0",
            (_, 0) => b"1.0",
            _ => b"1.1",
        }
    }
    fn var(&self, name: &str) -> Option<Vec<u8>> {
        self.st.var(name)
    }
    fn table(&self, q: &crate::conf::sample::TableQuery) -> Option<i64> {
        self.st.table(self.conn, q)
    }
}

/// One request/response exchange with an HTTP/1 client, counted in metrics
/// and the access log.
pub async fn exchange(
    client: &mut Io,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    req: RequestHead,
    conn: &Conn<'_>,
    first: bool,
) -> Result<Next, Fail> {
    let mut ds = Downstream::H1 { io: client, rbuf };
    let mut t = Tally::start(&req, conn.version);
    let r = run(&mut ds, ubuf, req, conn, first, &mut t).await;
    t.finish(conn, &r);
    r
}

/// One request on an HTTP/2 stream, answered on it (errors included),
/// counted in metrics and the access log.
pub async fn exchange_h2(mut stream: H2Stream, req: RequestHead, conn: &Conn<'_>) {
    let mut ubuf = crate::io::take_buffer();
    let mut t = Tally::start(&req, Version::Http2);
    // Each stream is treated as a connection's first request: with `http-reuse
    // safe` only an idempotent one rides on a server connection that may be dead.
    let mut ds = Downstream::H2(&mut stream);
    let r = run(&mut ds, &mut ubuf, req, conn, true, &mut t).await;
    t.finish(conn, &r);
    match r {
        Ok(_) => {}
        Err(Fail::Status(status)) => {
            let a = super::errorfile::as_answer(conn.fe, status).unwrap_or(Answer::Error {
                status,
                extra: Vec::new(),
            });
            let _ = Downstream::H2(&mut stream)
                .answer(&a, conn.fe.conf.timeout_client)
                .await;
        }
        // The response began and the server cut it: the client must not
        // take the stream for complete.
        Err(Fail::Cut) => stream.cancel(h2::Reason::INTERNAL_ERROR),
        Err(Fail::Close) => stream.cancel(h2::Reason::CANCEL),
    }
    crate::io::give_buffer(&mut ubuf);
}

/// The phases of one exchange, in order.
async fn run(
    ds: &mut Downstream<'_>,
    ubuf: &mut BytesMut,
    req: RequestHead,
    conn: &Conn<'_>,
    first: bool,
    t: &mut Tally,
) -> Result<Next, Fail> {
    if let Some(a) = admit(conn, &req)? {
        return answer(ds, &a, &req, conn, t).await;
    }
    let mut st = TxnState::default();
    let req = match apply_rules(conn, &req, &mut st)? {
        Verdict::Answer(a) => return answer(ds, &a, &req, conn, t).await,
        Verdict::Pass(Some(rewritten)) => rewritten,
        Verdict::Pass(None) => req,
    };
    let view = ReqView {
        head: &req,
        tls: conn.proto == "https",
        src: conn.peer.ip(),
        conn,
        st: &st,
    };
    let be = route(conn.fe, &view)?;
    t.backend = Some(be.stats.clone());
    // Cookie persistence: the server the cookie names, the cookie taken out.
    let req = rules::cookie_request(be, &req, conn, &mut st)?.unwrap_or(req);
    // The rarer paths are boxed: their state would otherwise make every
    // exchange's future (moved into each HTTP/2 stream's task) four times larger.
    if super::upstream_h2::speaks_h2(be) {
        return Box::pin(super::upstream_h2::run(ds, &req, conn, be, t, &st)).await;
    }
    // `compression`: the coding this client takes.
    let algo = super::compress::pick(conn, be, &req);
    let req = super::compress::offload(conn, be, &req, algo).unwrap_or(req);
    let plan = Plan::new(ds, &req, conn, be, first, t);
    let prefer = rules::cookie_preference(be, &st);
    let (up, resp, body_cut) = forward(ds, ubuf, &req, conn, be, plan, prefer, t).await?;
    let resp = rules::apply_response(conn, &req, resp, be, Some(&up.server.0), &st)?;
    if resp.status == 101 {
        return Box::pin(switch(ds, ubuf, up, &req, &resp, conn, be, t)).await;
    }
    let comp = super::compress::plan(conn, be, &req, &resp, algo);
    relay(ds, ubuf, up, &req, &resp, comp, conn, be, body_cut, t).await
}

/// Phase admit: per-address request rate (429), methods lb does not proxy,
/// a declared body over the limit.
fn admit(conn: &Conn<'_>, req: &RequestHead) -> Result<Option<Answer>, Fail> {
    let fe = conn.fe;
    if !crate::edge::request_allowed(fe, conn.peer) {
        let extra = vec![format!("Retry-After: {}", crate::limit::RETRY_AFTER_SECS)];
        return Ok(Some(Answer::Error { status: 429, extra }));
    }
    if req.is_connect() {
        return Err(Fail::Status(405));
    }
    if let (Some(max), BodyKind::Length(n)) = (fe.conf.http.max_body, req.body) {
        if n > max {
            return Err(Fail::Status(413));
        }
    }
    Ok(None)
}

/// Phase rules: `http-request` rules in order (`http::rules`), first answer wins.
fn apply_rules(conn: &Conn<'_>, req: &RequestHead, st: &mut TxnState) -> Result<Verdict, Fail> {
    rules::apply_request(conn, req, st)
}

/// Sends an answer lb made itself. The request body (if any) was not read:
/// an HTTP/1 connection stays open only when there is none.
async fn answer(
    ds: &mut Downstream<'_>,
    a: &Answer,
    req: &RequestHead,
    conn: &Conn<'_>,
    t: &mut Tally,
) -> Result<Next, Fail> {
    t.status = Some(a.status());
    let raw = match (a, &mut *ds) {
        (Answer::Error { status, .. }, Downstream::H1 { io, .. }) => {
            super::errorfile::find(conn.fe, *status).map(|b| (b, io))
        }
        _ => None,
    };
    if let Some((raw, io)) = raw {
        io.write_all_idle(raw, conn.fe.conf.timeout_client).await?;
        t.bytes_out += raw.len() as u64;
        return Ok(unread_close(req));
    }
    // An HTTP/2 client gets the file's status, headers and body.
    let file = match (a, &*ds) {
        (Answer::Error { status, .. }, Downstream::H2(_)) => {
            super::errorfile::as_answer(conn.fe, *status)
        }
        _ => None,
    };
    t.bytes_out += ds
        .answer(file.as_ref().unwrap_or(a), conn.fe.conf.timeout_client)
        .await?;
    Ok(match a {
        Answer::Redirect { .. } | Answer::Full { .. }
            if req.body == BodyKind::None && req.keep_alive =>
        {
            Next::KeepAlive
        }
        _ => unread_close(req),
    })
}

/// Phase route: the first `use_backend` whose condition holds, else the default.
/// A dynamic rule's name that names no HTTP backend ends the search at the
/// default, as HAProxy does.
fn route<'a>(fe: &'a FrontendRt, req: &ReqView<'_>) -> Result<&'a Arc<BackendRt>, Fail> {
    for (u, be) in fe.conf.http.use_backends.iter().zip(&fe.routes) {
        if u.cond.eval(&fe.conf.http.acls, req) {
            if let Some(fmt) = &u.dynamic {
                let name = fmt.render(req);
                let found = std::str::from_utf8(&name)
                    .ok()
                    .and_then(|n| fe.by_name.as_ref()?.get(n));
                if let Some(b) = found {
                    return Ok(b);
                }
                break;
            }
            return be.as_ref().ok_or(Fail::Status(503));
        }
    }
    fe.backend.as_ref().ok_or(Fail::Status(503))
}

/// How the request goes to a server, decided once before the first attempt.
struct Plan {
    /// The bytes of the first write: the head and, when buffered, the whole
    /// body; every attempt (retries included) sends exactly these.
    first_write: SpareBuffer,
    /// The body is all in `first_write`: the request can be replayed.
    replayable: bool,
    /// lb answers `100 Continue` itself (as nginx does) and drops Expect.
    answer_continue: bool,
    may_reuse: bool,
    /// An empty answer (close or reset before any response byte) is retried
    /// on another connection only for idempotent requests we can replay.
    retry_dead_reuse: bool,
}

impl Plan {
    fn new(
        ds: &mut Downstream<'_>,
        req: &RequestHead,
        conn: &Conn<'_>,
        be: &BackendRt,
        first: bool,
        t: &mut Tally,
    ) -> Plan {
        let bc = &be.conf;
        let buffered = ds.buffered() as u64;
        // A client that waits for 100 Continue before sending a body we must
        // stream gets it from us; the Expect header is then consumed.
        let answer_continue = req.expect_continue && matches!(req.body, BodyKind::Chunked)
            || matches!(req.body, BodyKind::Length(n) if req.expect_continue && buffered < n);
        let replayable_body = match req.body {
            BodyKind::None => Some(0),
            BodyKind::Length(n) if buffered >= n => Some(n as usize),
            _ => None,
        };
        // `option forwardfor except NET`: those clients get no X-Forwarded-For.
        let hap = &conn.fe.conf.hap;
        let forwardfor = (conn.fe.conf.http.forwardfor || bc.forwardfor)
            && !hap
                .forwardfor_except
                .as_ref()
                .is_some_and(|n| n.contains(conn.peer.ip()));
        let mut first_write = request_head(
            req,
            conn,
            forwardfor,
            bc.reuse == Reuse::Never || bc.hap.server_close,
            answer_continue,
        );
        if let (Some(n), Downstream::H1 { rbuf, .. }) = (replayable_body, &mut *ds) {
            first_write.put_slice(&rbuf.split_to(n));
            t.bytes_in += n as u64;
        }
        let may_reuse = match bc.reuse {
            Reuse::Never => false,
            Reuse::Safe => !first || req.is_idempotent(),
            Reuse::Always => true,
        };
        Plan {
            first_write,
            replayable: replayable_body.is_some(),
            answer_continue,
            may_reuse,
            retry_dead_reuse: req.is_idempotent() && replayable_body.is_some(),
        }
    }
}

/// Phases connect, send and receive, with retries: a server connection (a
/// pooled one when allowed), the request sent, the final response head read.
/// Returns the connection, the head, and whether the server answered before
/// the request body ended (`body_cut`).
#[allow(clippy::too_many_arguments)]
async fn forward(
    ds: &mut Downstream<'_>,
    ubuf: &mut BytesMut,
    req: &RequestHead,
    conn: &Conn<'_>,
    be: &BackendRt,
    plan: Plan,
    prefer: Option<Arc<Server>>,
    t: &mut Tally,
) -> Result<(Upstream, ResponseHead, bool), Fail> {
    let bc = &be.conf;
    let mut tried: Vec<Arc<Server>> = Vec::new();
    let host = req.host.map(|h| req.slice(h));
    let mut attempts = 0u32;
    let mut reuse_ok = plan.may_reuse;
    let mut body_cut = false;
    loop {
        ubuf.clear();
        let want = Dial {
            be,
            client: Some(conn.peer.ip()),
            tried: &tried,
            ring: true,
            host,
            reuse: Some(Pooled {
                take: reuse_ok,
                retryable: plan.retry_dead_reuse,
            }),
            prefer: prefer.clone(),
            proxy: Some((conn.peer, rules::local_addr(conn))),
            hash: super::hashkey::key(be, req),
        };
        let Some(mut up) = dial(&want, &mut attempts).await else {
            return Err(Fail::Status(503));
        };
        let reused = up.reused;
        t.connected(&up.server.0, reused);
        // Send the head, with the buffered body in the same write.
        if up
            .sock
            .write_all_idle(&plan.first_write, bc.timeout_server)
            .await
            .is_err()
        {
            if reused && plan.retry_dead_reuse {
                reuse_ok = false;
                continue;
            }
            return Err(Fail::Status(502));
        }
        if !plan.replayable {
            if plan.answer_continue {
                ds.send_continue(req, conn.fe.conf.timeout_client).await?;
            }
            match send(ds, &mut up, ubuf, req, conn, bc.timeout_server, t).await {
                Ok(()) => {}
                Err(BodyError::EarlyResponse) => body_cut = true,
                Err(BodyError::Client) => return Err(Fail::Close),
                Err(BodyError::Slow) => return Err(Fail::Status(408)),
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
        match read_response(&mut up.sock, ubuf, req, conn, bc.timeout_server, ds).await {
            Ok(r) => {
                t.response = Some(crate::clock::now() - t.start);
                t.status = Some(r.status);
                if (500..=504).contains(&r.status) && r.status != 501 {
                    up.server
                        .0
                        .observe_response(Err(format!("HTTP status {}", r.status)));
                }
                return Ok((up, r, body_cut));
            }
            Err(RespError::DeadReused)
                if plan.retry_dead_reuse && !body_cut && (reused || attempts <= bc.retries) =>
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
    }
}

/// Phase send: the request body the head did not carry, streamed. Full
/// duplex: a server may answer before the body ends (an early 413 or 401, or
/// a server that answers at the head); then the rest of the body is dropped
/// and neither connection is kept alive, since the client's framing is unfinished.
async fn send(
    ds: &mut Downstream<'_>,
    up: &mut Upstream,
    ubuf: &mut BytesMut,
    req: &RequestHead,
    conn: &Conn<'_>,
    server_timeout: Duration,
    t: &mut Tally,
) -> Result<(), BodyError> {
    match ds {
        Downstream::H1 { io, rbuf } => {
            let mut upload = Upload {
                client: io,
                server: &mut up.sock,
                ubuf,
                req,
                conn,
                server_timeout,
            };
            send_body(&mut upload, rbuf, req.body, &mut t.bytes_in).await
        }
        Downstream::H2(stream) => {
            let max = conn.fe.conf.http.max_body.unwrap_or(u64::MAX);
            let sent = &mut t.bytes_in;
            h2side::send_body(stream, &mut up.sock, req.body, max, server_timeout, sent).await
        }
    }
}

/// 101 Switching Protocols: the connection becomes a byte tunnel, if the
/// client asked for it. Otherwise 502, and the server connection closes
/// (dropped here): what follows on it is no longer HTTP.
#[allow(clippy::too_many_arguments)]
async fn switch(
    ds: &mut Downstream<'_>,
    ubuf: &mut BytesMut,
    mut up: Upstream,
    req: &RequestHead,
    resp: &ResponseHead,
    conn: &Conn<'_>,
    be: &BackendRt,
    t: &mut Tally,
) -> Result<Next, Fail> {
    let fe = conn.fe;
    let bc = &be.conf;
    if let Err(why) = switch_allowed(req, resp) {
        invalid_response(&up.server.0, why);
        return Err(Fail::Status(502));
    }
    let Downstream::H1 { io: client, rbuf } = ds else {
        // An HTTP/2 request never asks for an upgrade (switch_allowed).
        return Err(Fail::Status(502));
    };
    let head = response_head(resp, true, true);
    client.write_all_idle(&head, fe.conf.timeout_client).await?;
    if !ubuf.is_empty() {
        client.write_all_idle(ubuf, fe.conf.timeout_client).await?;
    }
    if !rbuf.is_empty() {
        up.sock.write_all_idle(rbuf, bc.timeout_server).await?;
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
    Ok(Next::Close)
}

/// Phase relay: the response head and body to the client; the server
/// connection back to its pool when the body ended cleanly.
#[allow(clippy::too_many_arguments)]
async fn relay(
    ds: &mut Downstream<'_>,
    ubuf: &mut BytesMut,
    mut up: Upstream,
    req: &RequestHead,
    resp: &ResponseHead,
    comp: Option<super::compress::Plan>,
    conn: &Conn<'_>,
    be: &BackendRt,
    body_cut: bool,
    t: &mut Tally,
) -> Result<Next, Fail> {
    let bc = &be.conf;
    let client = match ds {
        Downstream::H1 { io, .. } => io,
        Downstream::H2(stream) => {
            return relay_h2(stream, ubuf, up, resp, comp, conn, be, body_cut, t).await
        }
    };
    // RFC 9112 6.1: no Transfer-Encoding goes to an HTTP/1.0 client. Chunked
    // is undone below; another coding (gzip) cannot be told to it, and its
    // bytes passed on bare would read as the content itself: 502, as nginx.
    // The server is not blamed (no `observe layer7` failure): it answered
    // the HTTP/1.1 request it got.
    if req.minor_version == 0 && carries_codings(resp) {
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
        && !conn.fe.conf.hap.client_close
        && !conn.draining();
    let relayed = match comp {
        Some(c) => {
            let head = response_head(&c.head, client_keep, true);
            let (sock, out) = (&mut up.sock, &mut t.bytes_out);
            let timeout = bc.timeout_server;
            super::compress::relay(
                client, sock, ubuf, resp.body, c.algo, head, conn, timeout, out,
            )
            .await
        }
        None => {
            let head = response_head(resp, client_keep, req.minor_version == 1);
            relay_response(
                client,
                &mut up.sock,
                ubuf,
                resp,
                head,
                dechunk,
                conn,
                bc.timeout_server,
                &mut t.bytes_out,
            )
            .await
        }
    };
    let done = match relayed {
        Ok(done) => done,
        Err(Cut::Client) => return Err(Fail::Close),
        Err(Cut::Server(what)) => return Err(server_cut(&up, what, t)),
    };
    if done && !body_cut && ubuf.is_empty() {
        give_back(up, resp, be);
    }
    Ok(if client_keep {
        Next::KeepAlive
    } else if body_cut {
        Next::CloseUnread
    } else {
        Next::Close
    })
}

/// Phase relay for a client on an HTTP/2 stream: no connection-level
/// keep-alive to decide, and transfer codings other than chunked cannot be
/// told to it (502, as to an HTTP/1.0 client).
#[allow(clippy::too_many_arguments)]
async fn relay_h2(
    stream: &mut H2Stream,
    ubuf: &mut BytesMut,
    mut up: Upstream,
    resp: &ResponseHead,
    comp: Option<super::compress::Plan>,
    conn: &Conn<'_>,
    be: &BackendRt,
    body_cut: bool,
    t: &mut Tally,
) -> Result<Next, Fail> {
    if carries_codings(resp) {
        tracing::warn!(
            "server {}: invalid response: transfer coding an HTTP/2 client cannot receive",
            up.server.0.id
        );
        return Err(Fail::Status(502));
    }
    let (ct, st) = (conn.fe.conf.timeout_client, be.conf.timeout_server);
    let relayed = match comp {
        Some(c) => {
            let (sock, out) = (&mut up.sock, &mut t.bytes_out);
            h2side::relay_compressed(stream, sock, ubuf, resp.body, &c.head, c.algo, ct, st, out)
                .await
        }
        None => {
            h2side::relay_response(stream, &mut up.sock, ubuf, resp, ct, st, &mut t.bytes_out).await
        }
    };
    match relayed {
        Ok(true) if ubuf.is_empty() && !body_cut => give_back(up, resp, be),
        Ok(_) => {}
        Err(Cut::Client) => return Err(Fail::Close),
        Err(Cut::Server(what)) => return Err(server_cut(&up, what, t)),
    }
    Ok(Next::KeepAlive)
}

/// A server connection whose exchange ended cleanly goes back to its idle
/// pool, when the server keeps it open and the backend reuses connections.
fn give_back(up: Upstream, resp: &ResponseHead, be: &BackendRt) {
    if resp.keep_alive
        && !stray_body(resp)
        && be.conf.reuse != Reuse::Never
        && !be.conf.hap.server_close
        && !crate::dial::opts::sends_proxy(be, &up.server.0)
    {
        let s = &up.server.0;
        let max = s.pool_max_conn.load(Ordering::Relaxed);
        upstream::put(up.key, up.sock, max, s.pool_purge_delay());
    }
}

/// The server broke or cut the response body: a 502 when nothing reached
/// the client yet; once the response has begun, closing (or resetting the
/// stream) is the only way to tell it the rest is missing.
fn server_cut(up: &Upstream, what: String, t: &Tally) -> Fail {
    bad_response(&up.server.0, what);
    if t.bytes_out == 0 {
        Fail::Status(502)
    } else {
        Fail::Cut
    }
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
    ds: &mut Downstream<'_>,
) -> Result<ResponseHead, RespError> {
    let mut got_any = false;
    loop {
        if !ubuf.is_empty() {
            got_any = true;
            match head::parse_response_for(ubuf, &conn.limits, req.method()) {
                Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                    ds.interim(&r, req, conn)
                        .await
                        .map_err(|_| RespError::Client)?;
                    continue;
                }
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(RespError::Invalid(head_fault(e))),
            }
        }
        let deadline = crate::clock::now() + timeout;
        let read = match ds {
            Downstream::H1 { .. } => sock.read_until(ubuf, deadline).await,
            Downstream::H2(stream) => match h2side::server_read(stream, sock, ubuf, deadline).await
            {
                Some(r) => r,
                // The client reset its stream: the request is cancelled.
                None => return Err(RespError::Client),
            },
        };
        match read {
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
