//! The pipeline's connect, send, receive and relay phases for a backend whose
//! servers speak HTTP/2 (`proto h2`, `ssl alpn h2`): the request goes as a
//! stream on a pooled connection (`crate::h2::client`), its body sent as the
//! server's window allows, the response and its trailers back to the client
//! whatever it speaks. An HTTP/2 client gets full duplex (gRPC streaming:
//! response messages flow while the request body is still open); an HTTP/1
//! client's body is sent first, unless the server answers before its end.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ::h2::client::ResponseFuture;
use ::h2::{RecvStream, SendStream};
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

use super::body::{write_chunk_header, Chunk, ChunkedDecoder, LAST_CHUNK};
use super::conn::{Conn, Fail, Next};
use super::downstream::Downstream;
use super::head::{BodyKind, RequestHead, ResponseHead};
use super::rewrite::response_head;
use super::tally::Tally;
use crate::balance::{InFlight, Server};
use crate::dial::{self, Dial};
use crate::h2::client::{self, Sent};
use crate::h2::forward::{self, Origin};
use crate::h2::stream::H2Stream;
use crate::io::Io;
use crate::snapshot::BackendRt;

/// True when requests to `be` go over HTTP/2 (the conf makes a backend's
/// servers agree).
pub(crate) fn speaks_h2(be: &BackendRt) -> bool {
    be.conf.servers.first().is_some_and(|s| s.opts.h2())
}

/// Phases connect to relay for an HTTP/2 server.
pub(crate) async fn run(
    ds: &mut Downstream<'_>,
    req: &RequestHead,
    conn: &Conn<'_>,
    be: &BackendRt,
    t: &mut Tally,
    st: &super::rules::TxnState,
) -> Result<Next, Fail> {
    let rp = ResPhase { be, st };
    let bc = &be.conf;
    let fallback = conn
        .fe
        .bound
        .first()
        .map_or_else(|| "localhost".to_string(), ToString::to_string);
    let tls = be.connectors.iter().any(Option::is_some);
    // lb answers 100-continue itself: the body is streamed anyway.
    let answer_continue = req.expect_continue && !matches!(req.body, BodyKind::None);
    let origin = Origin {
        scheme: if tls { "https" } else { "http" },
        fallback_authority: &fallback,
        forwardfor: conn.fe.conf.http.forwardfor || bc.forwardfor,
        peer: conn.peer.ip(),
        proto: conn.proto,
        strip_expect: answer_continue,
    };
    let h2req = match forward::request(req, &origin) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{e}");
            return Err(Fail::Status(if req.upgrade { 501 } else { 400 }));
        }
    };
    let end_of_stream = req.body == BodyKind::None;
    let prefer = super::rules::cookie_preference(be, st);
    let (sent, server) = connect(be, req, conn, h2req, end_of_stream, t, prefer).await?;
    if answer_continue {
        ds.send_continue(req, conn.fe.conf.timeout_client).await?;
    }
    let server_idle = bc.timeout_server;
    let r = match ds {
        Downstream::H1 { io, rbuf } => {
            h1_client(io, rbuf, req, conn, sent, &server.0, server_idle, t, &rp).await
        }
        Downstream::H2(stream) => {
            h2_client(stream, req, conn, sent, &server.0, server_idle, t, &rp).await
        }
    };
    drop(server);
    r
}

/// Phase connect: a stream on a pooled connection to the next server, with
/// retries and redispatch on connect failure as on HTTP/1 (the dialer's loop).
async fn connect(
    be: &BackendRt,
    req: &RequestHead,
    conn: &Conn<'_>,
    h2req: http::Request<()>,
    end_of_stream: bool,
    t: &mut Tally,
    prefer: Option<std::sync::Arc<Server>>,
) -> Result<(Sent, InFlight), Fail> {
    let d = Dial {
        be,
        client: Some(conn.peer.ip()),
        tried: &[],
        // h2 polls its socket: off the ring.
        ring: false,
        host: req.host.map(|h| req.slice(h)),
        reuse: None,
        // The server a persistence cookie names, as for HTTP/1 servers.
        prefer,
        proxy: None,
        hash: super::hashkey::key(be, req),
    };
    let mut c = Stream {
        be,
        max_header_list: conn.limits.max_bytes as u32,
        h2req,
        end_of_stream,
        t,
    };
    dial::dial_with(&d, &mut 0, &mut c)
        .await?
        .ok_or(Fail::Status(503))
}

/// A stream on the HTTP/2 pool's connection to a picked server (a live one
/// with room, else a new one).
struct Stream<'a> {
    be: &'a BackendRt,
    max_header_list: u32,
    h2req: http::Request<()>,
    end_of_stream: bool,
    t: &'a mut Tally,
}

impl dial::Connect for Stream<'_> {
    type Out = (Sent, InFlight);
    type Err = Fail;

    async fn connect(&mut self, target: dial::Target<'_>) -> dial::Attempt<(Sent, InFlight), Fail> {
        let (be, server) = (self.be, target.server);
        let bc = &be.conf;
        let limits = client::Limits {
            max_idle: server.pool_purge_delay(),
            max_header_list: self.max_header_list,
        };
        let timeout = bc.timeout_connect;
        let dial = crate::connect::open(server.addr, target.connector, Some(timeout), false);
        let send = client::send(
            target.key,
            limits,
            dial,
            self.h2req.clone(),
            self.end_of_stream,
        );
        let r = tokio::time::timeout(bc.timeout_server.max(timeout), send)
            .await
            .unwrap_or_else(|_| Err(client::Error::Connect("timeout".into())));
        match r {
            Ok(sent) => {
                if sent.fresh {
                    be.stats.reuse_miss.inc();
                } else {
                    be.stats.reuse_hit.inc();
                }
                self.t.connected(server, !sent.fresh);
                dial::Attempt::Ready((sent, server.enter()))
            }
            Err(e) if e.is_connect() => dial::Attempt::Failed(e.to_string()),
            Err(e) => {
                tracing::warn!("server {}: {e}", server.id);
                server.observe_response(Err(e.to_string()));
                dial::Attempt::Fatal(Fail::Status(502))
            }
        }
    }
}

/// What the response phase needs (`http-response` rules, cookie insertion):
/// the same step as for HTTP/1 servers (`rules::apply_response`).
struct ResPhase<'a> {
    be: &'a BackendRt,
    st: &'a super::rules::TxnState,
}

/// The final response head, as lb's parsed head after the response rules,
/// and its body.
fn response(
    r: Result<http::Response<RecvStream>, ::h2::Error>,
    req: &RequestHead,
    conn: &Conn<'_>,
    server: &std::sync::Arc<Server>,
    t: &mut Tally,
    rp: &ResPhase<'_>,
) -> Result<(ResponseHead, RecvStream), Fail> {
    let r = r.map_err(|e| {
        let why = format!("HTTP/2 response: {e}");
        tracing::warn!("server {}: {why}", server.id);
        server.observe_response(Err(why));
        Fail::Status(502)
    })?;
    let (parts, body) = r.into_parts();
    let head = forward::response_head(
        &parts,
        body.is_end_stream(),
        req.method() == b"HEAD",
        &conn.limits,
    )
    .map_err(|e| {
        tracing::warn!("server {}: {e}", server.id);
        server.observe_response(Err(e.to_string()));
        Fail::Status(502)
    })?;
    t.response = Some(crate::clock::now() - t.start);
    t.status = Some(head.status);
    if (500..=504).contains(&head.status) && head.status != 501 {
        server.observe_response(Err(format!("HTTP status {}", head.status)));
    }
    let head = super::rules::apply_response(conn, req, head, rp.be, Some(server), rp.st)?;
    Ok((head, body))
}

/// What an HTTP/1 client's body upload ended with.
enum Upload {
    Done,
    /// The server answered before the body ended (`None`: it stopped taking
    /// the body; its answer is still to come).
    Early(Option<Result<http::Response<RecvStream>, ::h2::Error>>),
}

/// An HTTP/1 client: the body up (the server may answer early), then the
/// response down.
#[allow(clippy::too_many_arguments)]
async fn h1_client(
    io: &mut Io,
    rbuf: &mut BytesMut,
    req: &RequestHead,
    conn: &Conn<'_>,
    sent: Sent,
    server: &std::sync::Arc<Server>,
    server_idle: Duration,
    t: &mut Tally,
    rp: &ResPhase<'_>,
) -> Result<Next, Fail> {
    let Sent {
        response: mut respfut,
        body,
        lease: _lease,
        ..
    } = sent;
    let client_idle = conn.fe.conf.timeout_client;
    let mut body_cut = false;
    let mut early = None;
    if let Some(mut send) = body {
        match upload_h1(io, rbuf, req, conn, &mut send, &mut respfut, server_idle, t).await {
            Ok(Upload::Done) => {}
            Ok(Upload::Early(r)) => {
                body_cut = true;
                early = r;
            }
            Err(f) => return Err(f),
        }
    }
    let r = match early {
        Some(r) => r,
        None => match tokio::time::timeout(server_idle, &mut respfut).await {
            Ok(r) => r,
            Err(_) => {
                server.observe_response(Err("response timeout".into()));
                return Err(Fail::Status(504));
            }
        },
    };
    let (resp, mut recv) = response(r, req, conn, server, t, rp)?;
    let dechunk = req.minor_version == 0 && resp.body == BodyKind::Chunked;
    let client_keep = req.keep_alive && !dechunk && !body_cut && !conn.draining();
    let head = response_head(&resp, client_keep, req.minor_version == 1);
    let mut out = BytesMut::from(&head[..]);
    let chunked = resp.body == BodyKind::Chunked && !dechunk;
    if resp.body != BodyKind::None {
        // The head goes with the first body bytes when they are already
        // here; otherwise at once (a stream of events may be slow to start).
        if !data_ready(&mut recv) {
            io.write_all_idle(&out, client_idle).await?;
            t.bytes_out += out.len() as u64;
            out.clear();
        }
        loop {
            let d = match forward::next_data(&mut recv, server_idle).await {
                Ok(d) => d,
                Err(e) => return Err(cut(server, e, t)),
            };
            let Some(d) = d else { break };
            if d.is_empty() {
                continue;
            }
            if chunked {
                write_chunk_header(&mut out, d.len());
            }
            out.put_slice(&d);
            if chunked {
                out.put_slice(b"\r\n");
            }
            io.write_all_idle(&out, client_idle).await?;
            t.bytes_out += out.len() as u64;
            out.clear();
            forward::release(&mut recv, d.len());
        }
        if chunked {
            out.put_slice(LAST_CHUNK);
            match recv.trailers().await {
                Ok(Some(tr)) => out.put_slice(&forward::trailer_block(&tr)),
                Ok(None) => out.put_slice(b"\r\n"),
                Err(e) => return Err(cut(server, e.into(), t)),
            }
        }
    }
    if !out.is_empty() {
        io.write_all_idle(&out, client_idle).await?;
        t.bytes_out += out.len() as u64;
    }
    Ok(if client_keep {
        Next::KeepAlive
    } else if body_cut {
        Next::CloseUnread
    } else {
        Next::Close
    })
}

/// Whether body data (or its end) is already here: before anything is read
/// from it, a stream's used capacity is exactly its buffered DATA.
fn data_ready(recv: &mut RecvStream) -> bool {
    recv.is_end_stream() || recv.flow_control().used_capacity() > 0
}

/// The server cut the response: a 502 while nothing reached the client,
/// else a cut (the client must not take it for complete).
fn cut(server: &Server, e: forward::Error, t: &Tally) -> Fail {
    tracing::warn!("server {}: response body: {e}", server.id);
    server.observe_response(Err(format!("response body: {e}")));
    if t.bytes_out == 0 {
        Fail::Status(502)
    } else {
        Fail::Cut
    }
}

/// An HTTP/1 client's request body to the stream: raw under a
/// content-length, decoded from chunked (trailers kept); stops when the
/// server answers first.
#[allow(clippy::too_many_arguments)]
async fn upload_h1(
    io: &mut Io,
    rbuf: &mut BytesMut,
    req: &RequestHead,
    conn: &Conn<'_>,
    send: &mut SendStream<Bytes>,
    respfut: &mut ResponseFuture,
    server_idle: Duration,
    t: &mut Tally,
) -> Result<Upload, Fail> {
    let client_idle = conn.fe.conf.timeout_client;
    let max = conn.fe.conf.http.max_body.unwrap_or(u64::MAX);
    let mut left = match req.body {
        BodyKind::Length(n) => Some(n),
        _ => None,
    };
    let mut dec = ChunkedDecoder::new(16 << 10);
    let mut total = 0u64;
    loop {
        // The next piece of body: data, or the end with its trailers.
        let piece: Result<Option<Bytes>, Option<HeaderMap>> = loop {
            if let Some(n) = left.as_mut() {
                if *n == 0 {
                    break Err(None);
                }
                if !rbuf.is_empty() {
                    let k = (rbuf.len() as u64).min(*n) as usize;
                    *n -= k as u64;
                    break Ok(Some(rbuf.split_to(k).freeze()));
                }
            } else {
                match dec.decode(rbuf) {
                    Ok(Some(Chunk::Data(d))) => break Ok(Some(d)),
                    Ok(Some(Chunk::Trailers(raw))) => {
                        let tr = forward::trailer_map(&raw);
                        break Err((!tr.is_empty()).then_some(tr));
                    }
                    Ok(None) => {}
                    Err(_) => return Err(Fail::Status(400)),
                }
            }
            let deadline = crate::clock::now() + client_idle;
            tokio::select! {
                r = io.read_until(rbuf, deadline) => match r {
                    Ok(0) | Err(_) => return Err(Fail::Close),
                    Ok(_) => {}
                },
                r = &mut *respfut => return Ok(Upload::Early(Some(r))),
            }
        };
        match piece {
            Ok(Some(d)) => {
                total += d.len() as u64;
                if total > max {
                    return Err(Fail::Status(413));
                }
                t.bytes_in += d.len() as u64;
                tokio::select! {
                    r = forward::send_data(send, d, false, server_idle) => {
                        if let Err(e) = r {
                            tracing::debug!("request body to the server: {e}");
                            // The server stopped taking it: its answer tells why.
                            return Ok(Upload::Early(None));
                        }
                    }
                    r = &mut *respfut => return Ok(Upload::Early(Some(r))),
                }
            }
            Ok(None) => {}
            Err(trailers) => {
                if forward::finish(send, trailers).is_err() {
                    return Ok(Upload::Early(None));
                }
                return Ok(Upload::Done);
            }
        }
    }
}

/// What woke the HTTP/2 client's exchange loop.
enum Ev {
    /// The client reset its stream.
    Reset,
    Client(Option<Result<Bytes, ::h2::Error>>),
    Head(Result<http::Response<RecvStream>, ::h2::Error>),
    Data(Option<Result<Bytes, ::h2::Error>>),
    /// Capacity toward the server for the pending chunk.
    Cap(Option<Result<usize, ::h2::Error>>),
}

/// An HTTP/2 client: both bodies at once, in one loop (a gRPC stream's
/// messages go both ways while it lasts).
#[allow(clippy::too_many_arguments)]
async fn h2_client(
    stream: &mut H2Stream,
    req: &RequestHead,
    conn: &Conn<'_>,
    sent: Sent,
    server: &std::sync::Arc<Server>,
    server_idle: Duration,
    t: &mut Tally,
    rp: &ResPhase<'_>,
) -> Result<Next, Fail> {
    let Sent {
        response: mut respfut,
        body,
        lease: _lease,
        ..
    } = sent;
    let client_idle = conn.fe.conf.timeout_client;
    let max = conn.fe.conf.http.max_body.unwrap_or(u64::MAX);
    let mut send = body;
    let mut recv: Option<RecvStream> = None;
    let mut head_seen = false;
    let mut total = 0u64;
    let mut pending: Option<(Bytes, usize)> = None;
    // The client's body ended: its stream is not read again.
    let mut client_done = false;
    loop {
        // Once the server stops taking the body, the client's DATA is still
        // read and its credit returned, so the stream holds no window.
        let uploading = !client_done && pending.is_none();
        let wait = poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(Ev::Reset);
            }
            if let (Some(_), Some(s)) = (pending.as_ref(), send.as_mut()) {
                // Capacity already assigned raises no new poll_capacity event.
                if s.capacity() > 0 {
                    return Poll::Ready(Ev::Cap(Some(Ok(s.capacity()))));
                }
                if let Poll::Ready(c) = s.poll_capacity(cx) {
                    return Poll::Ready(Ev::Cap(c));
                }
            }
            if uploading {
                let chunk = std::pin::pin!(stream.body_chunk());
                if let Poll::Ready(c) = chunk.poll(cx) {
                    return Poll::Ready(Ev::Client(c));
                }
            }
            match recv.as_mut() {
                None if !head_seen => {
                    if let Poll::Ready(r) = Pin::new(&mut respfut).poll(cx) {
                        return Poll::Ready(Ev::Head(r));
                    }
                }
                Some(b) => {
                    if let Poll::Ready(d) = b.poll_data(cx) {
                        return Poll::Ready(Ev::Data(d));
                    }
                }
                None => {}
            }
            Poll::Pending
        });
        // Silence both ways for `timeout server` ends it (a gRPC stream
        // idle longer needs a longer timeout, as behind HAProxy).
        let ev = match tokio::time::timeout(server_idle.max(client_idle), wait).await {
            Ok(ev) => ev,
            Err(_) => {
                return Err(if head_seen {
                    Fail::Cut
                } else {
                    server.observe_response(Err("response timeout".into()));
                    Fail::Status(504)
                })
            }
        };
        match ev {
            // Dropping the server stream resets it (CANCEL): the server
            // stops working on it.
            Ev::Reset => return Err(Fail::Close),
            Ev::Client(Some(Ok(d))) => {
                let n = d.len();
                total += n as u64;
                if total > max {
                    return Err(if head_seen {
                        Fail::Cut
                    } else {
                        Fail::Status(413)
                    });
                }
                if let (Some(s), true) = (send.as_mut(), n > 0) {
                    s.reserve_capacity(n);
                    pending = Some((d, n));
                } else {
                    t.bytes_in += n as u64;
                    stream.release(n);
                }
            }
            Ev::Cap(c) => {
                let (Some(s), Some((mut d, n))) = (send.as_mut(), pending.take()) else {
                    continue;
                };
                match c {
                    Some(Ok(_)) => {
                        let cap = s.capacity().min(d.len());
                        let part = d.split_to(cap);
                        if s.send_data(part, false).is_err() {
                            send = None;
                        } else if !d.is_empty() {
                            s.reserve_capacity(d.len());
                            pending = Some((d, n));
                            continue;
                        }
                        // Credit back once the whole chunk went on.
                        t.bytes_in += n as u64;
                        stream.release(n);
                    }
                    // The server no longer takes the body: the chunk's credit goes back
                    // to the client, and so does any DATA still to come (read and dropped).
                    _ => {
                        send = None;
                        t.bytes_in += n as u64;
                        stream.release(n);
                    }
                }
            }
            Ev::Client(Some(Err(_))) => return Err(Fail::Close),
            Ev::Client(None) => {
                client_done = true;
                let trailers = stream.trailers().await.map_err(|_| Fail::Close)?;
                if let Some(mut s) = send.take() {
                    let _ = forward::finish(&mut s, trailers);
                }
            }
            Ev::Head(r) => {
                head_seen = true;
                let (resp, b) = response(r, req, conn, server, t, rp)?;
                let end = b.is_end_stream() || resp.body == BodyKind::None;
                stream.send_head(&resp, end).map_err(|_| Fail::Close)?;
                t.bytes_out += resp.buf.len() as u64;
                if end {
                    return Ok(Next::KeepAlive);
                }
                recv = Some(b);
            }
            Ev::Data(Some(Ok(d))) => {
                let n = d.len();
                if n > 0 {
                    stream
                        .send_data(d, false, client_idle)
                        .await
                        .map_err(|_| Fail::Close)?;
                    t.bytes_out += n as u64;
                }
                if let Some(b) = recv.as_mut() {
                    forward::release(b, n);
                }
            }
            Ev::Data(Some(Err(e))) => return Err(cut(server, e.into(), t)),
            Ev::Data(None) => {
                let Some(mut b) = recv.take() else {
                    return Ok(Next::KeepAlive);
                };
                let trailers = match b.trailers().await {
                    Ok(tr) => tr,
                    Err(e) => return Err(cut(server, e.into(), t)),
                };
                let raw = trailers.as_ref().map(forward::trailer_block);
                let raw = raw.as_deref().unwrap_or(b"");
                stream.send_trailers(raw).map_err(|_| Fail::Close)?;
                return Ok(Next::KeepAlive);
            }
        }
    }
}
