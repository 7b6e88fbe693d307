//! The HTTP/2 connection driver toward clients (ALPN `h2`, `bind ... proto
//! h2`): the h2 handshake with the `tune.h2.*` limits, one task per stream
//! through the request pipeline, and the connection's life: idle timeout,
//! drain on SIGTERM (GOAWAY, streams in flight finish) and abuse (cut with
//! GOAWAY ENHANCE_YOUR_CALM, counted in `lb_h2_abuse_total`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::Reason;
use tokio::time::Instant;

use super::rewind::Rewind;
use super::stream::{request_head, Glitches, H2Stream};
use crate::conf::H2Tune;
use crate::http::head::{HeadLimits, RequestHead};
use crate::io::Io;

/// A service's HTTP/2 settings, read before each stream (a reload may change them).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub tune: H2Tune,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: u32,
    /// Each stream's head, as the HTTP/1 parser bounds it.
    pub limits: HeadLimits,
    /// The preface and SETTINGS must come within this (a first request's head).
    pub timeout_request: Duration,
    /// A connection without streams for this long gets GOAWAY.
    pub timeout_keep_alive: Duration,
    pub timeout_client: Duration,
}

/// One HTTP/2 service: what answers each stream of a connection (the proxy's
/// pipeline, or `web`), and its limits. The connection itself is the driver's.
pub trait Service: Send {
    fn settings(&self) -> Settings;

    /// Its name, for logs and `lb_h2_abuse_total`.
    fn name(&self) -> &str;

    /// Before each new stream: false winds the connection down (GOAWAY; the
    /// proxy's frontend was removed by a reload).
    fn next_stream(&mut self) -> bool {
        true
    }

    /// A stream whose head could not be made (431, 400): answer and count it.
    fn refuse(&self, stream: H2Stream, status: u16, peer: SocketAddr, proto: &'static str);

    /// The task that answers one stream.
    fn stream(
        &self,
        stream: H2Stream,
        head: RequestHead,
        peer: SocketAddr,
        proto: &'static str,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Serves one HTTP/2 client connection until it closes, idles out, drains or
/// is cut for abuse. `read`: bytes already read from it (the HTTP/1 driver
/// saw the h2c preface), served first.
pub async fn serve<S: Service>(mut io: Io, read: BytesMut, peer: SocketAddr, svc: &mut S) {
    // h2 polls its socket: a ring socket moves to the reactor first.
    if let Err(e) = io.to_reactor().await {
        tracing::debug!("h2 connection from {peer}: {e}");
        return;
    }
    let proto = if io.is_tls() { "https" } else { "http" };
    // The socket itself rather than `Io`: h2 writes a frame buffer and a DATA
    // payload together only through vectored writes, which `Io` does not
    // forward (one write per response instead of two).
    match io {
        Io::Plain(s) => drive(Rewind::new(read, s), proto, peer, svc).await,
        Io::TlsIn(s) => drive(Rewind::new(read, s), proto, peer, svc).await,
        io => drive(Rewind::new(read, io), proto, peer, svc).await,
    }
}

async fn drive<T, S>(io: T, proto: &'static str, peer: SocketAddr, svc: &mut S)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: Service,
{
    let mut set = svc.settings();
    // The connection window is every stream's window together: a stream
    // whose server is slow to take its body (credit is returned only as bytes
    // go on) must not stall the other streams' uploads.
    let tune = set.tune;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(tune.max_concurrent_streams)
        .max_header_list_size(set.max_header_list_size)
        .initial_window_size(tune.initial_window_size)
        .initial_connection_window_size(
            tune.initial_window_size
                .saturating_mul(tune.max_concurrent_streams.max(1))
                .min((1 << 31) - 1),
        )
        .max_pending_accept_reset_streams(tune.max_pending_resets)
        .max_local_error_reset_streams(Some(tune.max_error_resets));
    // Writes leave once per turn of the worker, after the connection was polled.
    let (io, flusher) = super::batch::wrap(io);
    // The preface and SETTINGS are the first request's head: same deadline.
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(set.timeout_request, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!("h2 handshake from {peer} failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("h2 handshake from {peer} timed out");
            return;
        }
    };
    let glitches = Arc::new(Glitches::new(tune.glitches_threshold));
    // Streams run inside this connection's task rather than as tasks of their
    // own: no task to allocate and schedule per stream, and what they write
    // during one poll leaves with the connection's next flush.
    let mut streams = FuturesUnordered::new();
    let mut idle_since = Some(Instant::now());
    // Once GOAWAY went: the connection must be gone by then.
    let mut closing: Option<Instant> = None;
    // Cut for abuse: counted once.
    let mut cut = false;
    // The futures below live across turns of the loop rather than being made
    // anew in each: a timer entry, and a waiter on the process-wide drain
    // signal, registered and removed per event were a measurable share of a
    // stream's cost. The timer is lazy: it is moved later only when it fires
    // before the deadline it stands for.
    let timer = tokio::time::sleep(set.timeout_keep_alive);
    let drain = crate::shutdown::drain_started();
    let calm = glitches.over.notified();
    tokio::pin!(timer, drain, calm);
    loop {
        if streams.is_empty() && idle_since.is_none() {
            idle_since = Some(Instant::now());
        }
        let idle_end = idle_since.map(|t| t + set.timeout_keep_alive);
        let close_end = closing.or(idle_end);
        if let Some(t) = close_end {
            if t < timer.deadline() {
                timer.as_mut().reset(t);
            }
        }
        tokio::select! {
            biased;
            r = conn.accept() => match r {
                None => break,
                Some(Err(e)) => {
                    if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) && e.is_library() {
                        crate::stats::h2_abuse(svc.name(), "calm");
                        tracing::info!("{}: h2 connection from {peer} cut: {e}", svc.name());
                    } else {
                        tracing::debug!("h2 connection from {peer}: {e}");
                    }
                    break;
                }
                Some(Ok((req, respond))) => {
                    idle_since = None;
                    if svc.next_stream() {
                        set = svc.settings();
                    } else if closing.is_none() {
                        // Gone by a reload: this stream is still answered
                        // with the settings it had, then the connection winds
                        // down. Streams in flight finish under their own
                        // timeouts (a long download is not cut at `timeout client`).
                        conn.graceful_shutdown();
                        closing = Some(Instant::now() + WIND_DOWN);
                    }
                    let (parts, body) = req.into_parts();
                    let end = body.is_end_stream();
                    let stream = H2Stream::new(body, respond).count_glitches(glitches.clone());
                    match request_head(&parts, end, &set.limits) {
                        Err(status) => svc.refuse(stream, status, peer, proto),
                        Ok(head) => {
                            streams.push(svc.stream(stream, head, peer, proto));
                        }
                    }
                }
            },
            Some(()) = streams.next(), if !streams.is_empty() => {}
            _ = &mut timer, if close_end.is_some() => {
                let due = close_end.unwrap_or_else(Instant::now);
                if Instant::now() < due {
                    timer.as_mut().reset(due);
                    continue;
                }
                if closing.is_some() {
                    tracing::debug!("h2 connection from {peer}: closing took too long");
                    break;
                }
                // Idle past the keep-alive timeout: GOAWAY, then close.
                conn.graceful_shutdown();
                closing = Some(Instant::now() + set.timeout_client.min(CLOSE_WAIT));
            }
            _ = &mut drain, if closing.is_none() => {
                // In-flight streams finish; the drain's own timeout bounds them.
                conn.graceful_shutdown();
                closing = Some(Instant::now() + WIND_DOWN);
            }
            _ = &mut calm, if !cut => {
                cut = true;
                crate::stats::h2_abuse(svc.name(), "glitches");
                tracing::info!(
                    "{}: h2 connection from {peer} cut: {} streams reset by the client before their answer",
                    svc.name(), glitches.count()
                );
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                streams.clear();
                closing = Some(Instant::now() + CLOSE_WAIT);
            }
            // Last, after the connection was polled: what it wrote leaves in one write.
            r = flush(&flusher) => {
                if let Err(e) = r {
                    tracing::debug!("h2 connection from {peer}: {e}");
                    break;
                }
            }
        }
    }
    // Streams still running have no connection left to answer on.
    streams.clear();
    // A GOAWAY (or the last frames) may still wait.
    let last = std::future::poll_fn(|cx| flusher.poll_flush(cx));
    let _ = tokio::time::timeout(CLOSE_WAIT, last).await;
}

/// Resolves only on a write error: writes what waits, then waits for more
/// (woken with the connection's task, or when the socket has room).
async fn flush<T: tokio::io::AsyncWrite + Unpin>(
    f: &super::batch::Flusher<T>,
) -> std::io::Result<()> {
    std::future::poll_fn(|cx| match f.poll_flush(cx) {
        std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
        _ => std::task::Poll::Pending,
    })
    .await
}

/// After a graceful GOAWAY with streams in flight, the bound on the
/// connection's life; each stream has its own idle timeouts well below it.
const WIND_DOWN: Duration = Duration::from_secs(3600);

/// How long a GOAWAY may take to go out before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
