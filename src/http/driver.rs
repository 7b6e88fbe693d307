//! The HTTP/1.1 server connection driver, written once for every HTTP/1 service
//! (the proxy, `web`, `app`, `admin`): request heads under `timeout
//! http-request`, keep-alive under `timeout http-keep-alive`, idle buffers back
//! to the worker's spare stack, the drain (SIGTERM), 100-continue, error
//! replies, pipelined answers batched into one write, and the connection's end
//! (TLS close_notify, lingering close after an answer to an unread body).
//!
//! A service answers one parsed request at a time ([`Service::handle`]); what
//! surrounds the request is here. Generic over the service (no dynamic
//! dispatch). The request's future is boxed, one allocation per request, so
//! that an idle connection's task does not carry the exchange's state (several
//! KiB: memory per idle connection); so is the loop that reads requests (about
//! 1 KB), dropped while the connection is parked between requests.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::head::{self, HeadLimits, RequestHead};
use crate::io::Io;

/// While idle between requests, how often a connection looks at the drain flag.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Once the drain (SIGTERM) has begun, how long an idle keep-alive connection
/// still waits for a request its client may have sent as the drain began
/// (answered, with `Connection: close`) before it closes.
pub const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How long a TLS client connection's close_notify may wait for the socket.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// Answers queued in [`Cx::out`] (pipelined requests) are written once this
/// much waits, else when no further request is buffered.
const FLUSH_AT: usize = 128 << 10;

/// A service's limits, read before each request (a reload may change them).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub limits: HeadLimits,
    /// The whole head must arrive within this (from accept, or from the first byte
    /// of a later request).
    pub timeout_request: Duration,
    /// The wait for the first byte of the next request.
    pub timeout_keep_alive: Duration,
    /// A write that makes no progress for this long fails.
    pub timeout_client: Duration,
}

/// What the connection does after a service's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The answer is complete (sent or queued in `Cx::out`): read the next request.
    KeepAlive,
    /// Close (after TLS close_notify).
    Close,
    /// Close, though the client may still be sending the request's body:
    /// linger (`Io::linger`).
    CloseUnread,
    /// A response began but was cut: close, without the TLS close_notify that
    /// would mark a body ending at close as complete.
    Cut,
    /// Nothing of the answer was sent: answer with this status
    /// ([`Service::error`]) and close, lingering.
    Error(u16),
}

/// One HTTP/1 service: how it answers a request, and its connection settings.
pub trait Service: Send {
    fn settings(&self) -> Settings;

    /// Before each request head: false closes the connection (the proxy looks
    /// its frontend up again after a reload; gone, the connection ends).
    fn next_request(&mut self) -> bool {
        true
    }

    /// A gauge counting connections idle without buffers, if the service has one.
    fn idle_gauge(&self) -> Option<&prometheus::IntGauge> {
        None
    }

    /// A head refused before it was parsed (400, 408, 413, 431): still a
    /// response, for the service's metrics and access log (`<BADREQ>`).
    fn refused(&self, _status: u16, _bytes_in: usize) {}

    /// Appends the error answer for `status` (its connection's last) to `out`.
    fn error(&self, status: u16, _why: &dyn Display, out: &mut BytesMut) {
        out.extend_from_slice(&super::reply::error(status));
    }

    /// Whether the service also speaks HTTP/2: a connection that opens with
    /// its preface (h2c with prior knowledge, as HAProxy detects it on any
    /// HTTP bind) is then handed back by [`serve`] for the HTTP/2 driver.
    fn h2c(&self) -> bool {
        false
    }

    /// Answers one request. Bytes read after its head are in `cx.rbuf`.
    fn handle(&mut self, cx: &mut Cx<'_>, req: RequestHead)
        -> impl Future<Output = Outcome> + Send;
}

/// A request's connection, as its service sees it.
pub struct Cx<'a> {
    pub io: &'a mut Io,
    /// Bytes read after the request's head (its body, pipelined requests).
    pub rbuf: &'a mut BytesMut,
    ubuf: &'a mut BytesMut,
    out: &'a mut BytesMut,
    /// The connection's first request.
    pub first: bool,
    pub peer: SocketAddr,
    pub settings: Settings,
}

impl Cx<'_> {
    /// Answers not written yet; the driver writes them before it waits for the
    /// client (so pipelined answers leave together) or ends the connection.
    pub fn out(&mut self) -> &mut BytesMut {
        provide(self.out)
    }

    /// The client connection, the bytes read after the head, and a scratch
    /// buffer kept for the connection's life (the proxy reads its server's
    /// response into it): for the pipeline's exchange.
    pub fn parts(&mut self) -> (&mut Io, &mut BytesMut, &mut BytesMut) {
        provide(self.ubuf);
        (self.io, self.rbuf, self.ubuf)
    }

    /// Writes the queued answers.
    pub async fn flush(&mut self) -> io::Result<()> {
        flush(self.io, self.out, self.settings.timeout_client).await
    }

    /// Whether the connection may carry another request after this one: the
    /// client wants it and no drain (SIGTERM) has begun.
    pub fn keep_alive(&self, req: &RequestHead) -> bool {
        req.keep_alive && !crate::shutdown::draining()
    }

    /// Reads the request's body until `rbuf` holds `len` bytes, within
    /// `timeout http-request`. A client that expects `100 Continue` gets it
    /// first (queued answers go before it).
    pub async fn read_body(&mut self, req: &RequestHead, len: usize) -> Result<(), BodyError> {
        if self.rbuf.len() >= len {
            return Ok(());
        }
        if wants_continue(req, self.rbuf.len() as u64, len as u64) {
            self.out().extend_from_slice(CONTINUE);
            self.flush().await.map_err(|_| BodyError::Closed)?;
        }
        let deadline = crate::clock::now() + self.settings.timeout_request;
        while self.rbuf.len() < len {
            let missing = len - self.rbuf.len();
            if self.rbuf.capacity() - self.rbuf.len() < missing {
                self.rbuf.reserve(missing.min(1 << 20));
            }
            match self.io.read_until(self.rbuf, deadline).await {
                Ok(0) => return Err(BodyError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(BodyError::TimedOut),
                Err(_) => return Err(BodyError::Closed),
            }
        }
        Ok(())
    }
}

/// `HTTP/1.1 100 Continue`, the interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The 100-continue policy: an HTTP/1.1 client that sent `Expect: 100-continue`
/// and has sent less of its body (`buffered` of `len` bytes) than the service
/// needs gets `100 Continue` before the service waits for the rest.
pub fn wants_continue(req: &RequestHead, buffered: u64, len: u64) -> bool {
    req.expect_continue && req.minor_version == 1 && buffered < len
}

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body not received in time")]
    TimedOut,
    #[error("client closed before its request body ended")]
    Closed,
}

/// An empty buffer as it is: an unallocated one is taken from the worker's
/// spare stack first.
fn provide(buf: &mut BytesMut) -> &mut BytesMut {
    if buf.capacity() == 0 {
        *buf = crate::io::take_buffer();
    }
    buf
}

async fn flush(io: &mut Io, out: &mut BytesMut, idle: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = io.write_all_idle(out, idle).await;
    out.clear();
    r
}

/// How a connection ends.
enum End {
    Close,
    /// Closed after an answer while the client may still be sending (see `Io::linger`).
    Linger,
    /// A response was cut short (see `Outcome::Cut`).
    Cut,
    /// The connection opened with the HTTP/2 preface.
    H2,
    /// Idle between requests, its buffers released: [`park`] waits for the
    /// client's next byte, then `run` resumes.
    Park(Parked),
}

/// An idle keep-alive connection's wait, carried out of `run` and back.
#[derive(Clone, Copy)]
struct Parked {
    /// The keep-alive timeout, or the end of the drain's grace.
    deadline: Instant,
    /// Set once a drain is seen while idle: the end of its grace.
    grace: Option<Instant>,
}

/// The start of HTTP/2's connection preface (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Serves one client connection with `svc` until it closes, times out or
/// breaks the protocol. A connection that opened with the HTTP/2 preface
/// (when the service speaks it) comes back with the bytes read so far.
///
/// Not an `async fn`: that would keep a second copy of its arguments in every
/// connection's task.
#[allow(clippy::manual_async_fn)]
pub fn serve<S: Service>(
    mut io: Io,
    peer: SocketAddr,
    svc: &mut S,
) -> impl Future<Output = Option<(Io, BytesMut)>> + Send + '_ {
    async move {
        let mut bufs = Buffers {
            rbuf: crate::io::take_buffer(),
            ubuf: BytesMut::new(),
            out: BytesMut::new(),
        };
        // `run`, the connection's state between reads (about 1 KB), is boxed and
        // dropped while the connection is parked: an idle connection's task holds
        // only the socket, the service and the wait for the next byte.
        let mut resume = None;
        let end = loop {
            match Box::pin(run(&mut io, peer, svc, &mut bufs, resume.take())).await {
                End::Park(p) => match park(&io, p, svc.idle_gauge()).await {
                    Some(p) => {
                        bufs.rbuf = crate::io::take_buffer();
                        resume = Some(p);
                    }
                    None => break End::Close,
                },
                end => break end,
            }
        };
        if let End::H2 = end {
            let read = std::mem::take(&mut bufs.rbuf);
            bufs.release();
            return Some((io, read));
        }
        bufs.release();
        match end {
            // Boxed, as the rest of the connection's last steps: an idle
            // connection's task is sized by its largest state.
            End::Linger => Box::pin(io.linger()).await,
            End::Close if io.is_tls() => {
                // TLS close_notify: without it a client cannot tell a response that
                // ends at close from a cut one. Bounded: the client may not read it.
                let wait = svc.settings().timeout_client.min(CLOSE_NOTIFY_WAIT);
                let close = tokio::time::timeout(wait, tokio::io::AsyncWriteExt::shutdown(&mut io));
                let _ = Box::pin(close).await;
            }
            End::Close | End::Cut | End::H2 | End::Park(_) => {}
        }
        None
    }
}

/// A connection's buffers: requests read, the service's scratch, answers queued.
struct Buffers {
    rbuf: BytesMut,
    ubuf: BytesMut,
    out: BytesMut,
}

impl Buffers {
    /// Gives every buffer back to the worker's spare stack (`io::give_buffer`).
    fn release(&mut self) {
        for b in [&mut self.rbuf, &mut self.ubuf, &mut self.out] {
            if b.capacity() > 0 {
                crate::io::give_buffer(b);
            }
        }
    }
}

/// Serves requests until the connection ends or parks. `resume`: it was
/// parked (so this is not its first request) and its client sent a byte.
async fn run<S: Service>(
    io: &mut Io,
    peer: SocketAddr,
    svc: &mut S,
    b: &mut Buffers,
    mut resume: Option<Parked>,
) -> End {
    let mut first = resume.is_none();
    loop {
        if !svc.next_request() {
            let _ = Box::pin(flush(io, &mut b.out, svc.settings().timeout_client)).await;
            return End::Close;
        }
        let settings = svc.settings();
        let req = match read_head(io, b, &settings, first, resume.take()).await {
            Ok(Read::Request(r)) => r,
            Ok(Read::Gone) => return End::Close,
            Ok(Read::Park(p)) => return End::Park(p),
            Err(_) if first && svc.h2c() && b.rbuf.starts_with(H2_PREFACE) => return End::H2,
            Err(Refused { status, why }) => {
                svc.refused(status, b.rbuf.len());
                svc.error(status, &why, provide(&mut b.out));
                return Box::pin(answer_error(io, &mut b.out, &settings)).await;
            }
        };
        let mut cx = Cx {
            io,
            rbuf: &mut b.rbuf,
            ubuf: &mut b.ubuf,
            out: &mut b.out,
            first,
            peer,
            settings,
        };
        // Boxed: the exchange's state (several KiB) is allocated while a
        // request is under way only, not held by every idle connection's task.
        let outcome = Box::pin(svc.handle(&mut cx, req)).await;
        let idle = settings.timeout_client;
        match outcome {
            Outcome::KeepAlive => {
                first = false;
                if b.out.len() >= FLUSH_AT && Box::pin(flush(io, &mut b.out, idle)).await.is_err() {
                    return End::Close;
                }
            }
            Outcome::Close => {
                return match Box::pin(flush(io, &mut b.out, idle)).await {
                    // Draining, a client may have sent its next request before
                    // it saw `Connection: close`: a plain close would reset the
                    // connection and could destroy the answer just sent.
                    Ok(()) if crate::shutdown::draining() => End::Linger,
                    Ok(()) => End::Close,
                    Err(_) => End::Cut,
                };
            }
            Outcome::CloseUnread => {
                return match Box::pin(flush(io, &mut b.out, idle)).await {
                    Ok(()) => End::Linger,
                    Err(_) => End::Cut,
                };
            }
            Outcome::Cut => return End::Cut,
            Outcome::Error(status) => {
                svc.error(status, &super::reply::reason(status), provide(&mut b.out));
                return Box::pin(answer_error(io, &mut b.out, &settings)).await;
            }
        }
    }
}

/// Writes an error answer queued in `out` (after the answers before it), the
/// connection's last. It may come before the request's body was read: the
/// connection then lingers.
async fn answer_error(io: &mut Io, out: &mut BytesMut, settings: &Settings) -> End {
    match flush(io, out, settings.timeout_client).await {
        Ok(()) => End::Linger,
        Err(_) => End::Close,
    }
}

/// A request head refused: the status to answer, and why (for services that say).
struct Refused {
    status: u16,
    why: RefusedWhy,
}

enum RefusedWhy {
    Head(head::HeadError),
    Late,
}

impl Display for RefusedWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusedWhy::Head(e) => e.fmt(f),
            RefusedWhy::Late => f.write_str("request head not received in time"),
        }
    }
}

/// What `read_head` read.
enum Read {
    Request(RequestHead),
    /// The client closed or stayed idle past the keep-alive timeout (or the
    /// drain's grace): close silently.
    Gone,
    /// Idle, buffers released: park.
    Park(Parked),
}

/// Reads one request head; `Err`: answer with its status and close.
///
/// Queued answers are written before the wait for more bytes. A keep-alive
/// connection idle for DRAIN_POLL gives its buffers (`rbuf`, `ubuf`, `out`: 16
/// KiB each when allocated) to the worker's spare stack (`io::give_buffer`) and
/// parks: it waits for the client's next byte without them ([`park`]). A TLS
/// connection does so only when rustls holds no decrypted bytes, which no
/// socket readiness would announce. `resume`: the wait a parked connection
/// was in.
async fn read_head(
    io: &mut Io,
    b: &mut Buffers,
    set: &Settings,
    first: bool,
    resume: Option<Parked>,
) -> Result<Read, Refused> {
    // Between requests the keep-alive timeout waits for the first byte; from
    // then on (or from accept, for the first request) the whole head must
    // arrive within timeout http-request.
    let mut started = first || !b.rbuf.is_empty();
    let Parked {
        mut deadline,
        mut grace,
    } = resume.unwrap_or_else(|| Parked {
        deadline: crate::clock::now()
            + if started {
                set.timeout_request
            } else {
                set.timeout_keep_alive
            },
        grace: None,
    });
    loop {
        if !b.rbuf.is_empty() {
            if !started {
                started = true;
                deadline = crate::clock::now() + set.timeout_request;
            }
            match head::parse_request(&mut b.rbuf, &set.limits) {
                Ok(Some(r)) => return Ok(Read::Request(r)),
                Ok(None) => {}
                // A split h2c preface waits for the rest of its line.
                Err(_)
                    if first
                        && b.rbuf.len() < H2_PREFACE.len()
                        && H2_PREFACE.starts_with(&b.rbuf) => {}
                Err(e) => {
                    return Err(Refused {
                        status: e.status(),
                        why: RefusedWhy::Head(e),
                    })
                }
            }
        }
        // Pipelined answers leave together, before the wait for more requests.
        if flush(io, &mut b.out, set.timeout_client).await.is_err() {
            return Ok(Read::Gone);
        }
        let read = if started {
            io.read_until(&mut b.rbuf, deadline).await
        } else {
            // Idle between requests: a drain (SIGTERM) closes the connection
            // within DRAIN_POLL + DRAIN_GRACE rather than at the keep-alive
            // timeout (see `park`).
            let Some(step) = idle_step(io, &mut deadline, &mut grace) else {
                return Ok(Read::Gone);
            };
            match io.read_until(&mut b.rbuf, step).await {
                // The real clock: this poll's reading may predate the timeout.
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && (Instant::now() < deadline || grace.is_some()) =>
                {
                    if b.rbuf.is_empty() && !io.has_buffered_plaintext() {
                        b.release();
                        return Ok(Read::Park(Parked { deadline, grace }));
                    }
                    continue;
                }
                r => r,
            }
        };
        match read {
            Ok(0) => return Ok(Read::Gone),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return if started {
                    Err(Refused {
                        status: 408,
                        why: RefusedWhy::Late,
                    })
                } else {
                    Ok(Read::Gone)
                };
            }
            Err(_) => return Ok(Read::Gone),
        }
    }
}

/// An idle connection's next wait: until the returned instant, or None to
/// close. A drain (SIGTERM) shortens the deadline to DRAIN_GRACE from when it
/// is seen (a flag polled by the idle timer costs nothing per request; a
/// waiter on a shared channel would take a lock on every request). Not at
/// once: the client may have sent its next request already (still in the
/// kernel, or on the wire), and it is answered. When the grace is over, a last
/// look for bytes that arrived meanwhile.
fn idle_step(io: &Io, deadline: &mut Instant, grace: &mut Option<Instant>) -> Option<Instant> {
    if grace.is_none() && crate::shutdown::draining() {
        let end = crate::clock::now() + DRAIN_GRACE;
        *grace = Some(end);
        *deadline = (*deadline).min(end);
    }
    if grace.is_some() && Instant::now() >= *deadline {
        if !pending(io) {
            return None;
        }
        *deadline = crate::clock::now() + DRAIN_POLL;
    }
    Some((*deadline).min(crate::clock::now() + DRAIN_POLL))
}

/// A parked connection's wait for its client's next byte, in the connection's
/// task itself (small: no buffers, no request state, a timer and a readiness
/// wait). Some: bytes came, resume reading with this wait's deadline; None:
/// close. Not an `async fn`, which would keep `p` twice.
#[allow(clippy::manual_async_fn)]
fn park<'a>(
    io: &'a Io,
    mut p: Parked,
    idle: Option<&'a prometheus::IntGauge>,
) -> impl Future<Output = Option<Parked>> + Send + 'a {
    async move {
        let _idle = idle.map(IdleGauge::enter);
        loop {
            let step = idle_step(io, &mut p.deadline, &mut p.grace)?;
            match tokio::time::timeout_at(step.into(), io.ready_to_read()).await {
                Ok(Ok(())) => return Some(p),
                Ok(Err(_)) => return None,
                // Past the grace, `idle_step` has the last word.
                Err(_) if Instant::now() < p.deadline || p.grace.is_some() => {}
                Err(_) => return None,
            }
        }
    }
}

/// Whether the client's socket holds bytes not read yet (peeked, so a TLS
/// record stays whole).
fn pending(io: &Io) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: recv on a descriptor the connection owns into a 1-byte stack buffer.
    let n = unsafe {
        libc::recv(
            io.fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
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
