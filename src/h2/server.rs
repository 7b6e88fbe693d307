//! The HTTP/2 connection driver toward clients (ALPN `h2`, `bind ... proto
//! h2`): the h2 handshake with the `tune.h2.*` limits, one task per stream
//! through the request pipeline, and the connection's life: idle timeout,
//! drain on SIGTERM (GOAWAY, streams in flight finish) and abuse (cut with
//! GOAWAY ENHANCE_YOUR_CALM, counted in `lb_h2_abuse_total`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::Reason;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::stream::{request_head, Glitches, H2Stream};
use crate::http::pipeline::{exchange_h2, Conn, Fail, Tally, Version};
use crate::http::proxy::FrontendSource;
use crate::io::Io;
use crate::snapshot::FrontendRt;

/// Serves one HTTP/2 client connection until it closes, idles out, drains or
/// is cut for abuse.
pub async fn serve(mut io: Io, peer: SocketAddr, fe: Arc<FrontendRt>, src: FrontendSource) {
    // h2 polls its socket: a ring socket moves to the reactor first.
    if let Err(e) = io.to_reactor().await {
        tracing::debug!("h2 connection from {peer}: {e}");
        return;
    }
    let _session = fe.stats.open();
    let proto = if io.is_tls() { "https" } else { "http" };
    // The socket itself rather than `Io`: h2 writes a frame buffer and a DATA
    // payload together only through vectored writes, which `Io` does not
    // forward (one write per response instead of two).
    match io {
        Io::Plain(s) => drive(s, proto, peer, fe, src).await,
        Io::TlsIn(s) => drive(s, proto, peer, fe, src).await,
        io => drive(io, proto, peer, fe, src).await,
    }
}

async fn drive<T>(
    io: T,
    proto: &'static str,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    src: FrontendSource,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tune, list_size) = {
        let snap = src.rt.snapshot.load();
        let g = &snap.conf.global;
        (g.h2, g.h2_max_header_list_size())
    };
    // The connection window stays RFC 9113's 65535: the h2 crate would widen
    // it with a WINDOW_UPDATE that may follow the SETTINGS ACK, which strict
    // clients (h2spec) take for the answer to their first request.
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(tune.max_concurrent_streams)
        .max_header_list_size(list_size)
        .initial_window_size(tune.initial_window_size)
        .max_pending_accept_reset_streams(tune.max_pending_resets)
        .max_local_error_reset_streams(Some(tune.max_error_resets));
    // The preface and SETTINGS are the first request's head: same deadline.
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(fe.conf.http.timeout_request, handshake).await {
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
    let mut streams: JoinSet<()> = JoinSet::new();
    let mut fe = fe;
    let mut generation = src.rt.generation.load(Ordering::Acquire);
    let mut idle_since = Some(Instant::now());
    // Once GOAWAY went: the connection must be gone by then.
    let mut closing: Option<Instant> = None;
    // Cut for abuse: counted once.
    let mut cut = false;
    loop {
        while streams.try_join_next().is_some() {}
        if streams.is_empty() && idle_since.is_none() {
            idle_since = Some(Instant::now());
        }
        let idle_end = idle_since.map(|t| t + fe.conf.http.timeout_keep_alive);
        let close_end = closing.or(idle_end);
        tokio::select! {
            r = conn.accept() => match r {
                None => break,
                Some(Err(e)) => {
                    if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) && e.is_library() {
                        crate::stats::h2_abuse(&fe.conf.name, "calm");
                        tracing::info!("frontend {}: h2 connection from {peer} cut: {e}", fe.conf.name);
                    } else {
                        tracing::debug!("h2 connection from {peer}: {e}");
                    }
                    break;
                }
                Some(Ok((req, respond))) => {
                    idle_since = None;
                    let now = src.rt.generation.load(Ordering::Acquire);
                    if now != generation {
                        // A reload: new streams use the new conf, or the
                        // connection winds down if the frontend is gone.
                        generation = now;
                        match src.rt.snapshot.load().frontends.get(&*src.name) {
                            Some(f) if f.conf.mode == crate::conf::Mode::Http => fe = f.clone(),
                            _ => {
                                conn.graceful_shutdown();
                                closing.get_or_insert(Instant::now() + fe.conf.timeout_client);
                            }
                        }
                    }
                    let (parts, body) = req.into_parts();
                    let end = body.is_end_stream();
                    let stream = H2Stream::new(body, respond).count_glitches(glitches.clone());
                    match request_head(&parts, end, &fe.limits) {
                        Err(status) => refuse(stream, status, &fe, peer, proto),
                        Ok(head) => {
                            let fe = fe.clone();
                            // The exchange's future is large: boxed once inside a
                            // small task rather than moved whole into it.
                            streams.spawn(async move {
                                Box::pin(exchange_h2(stream, head, &conn_of(&fe, peer, proto))).await;
                            });
                        }
                    }
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = sleep_until(close_end), if close_end.is_some() => {
                if closing.is_some() {
                    tracing::debug!("h2 connection from {peer}: closing took too long");
                    break;
                }
                // Idle past the keep-alive timeout: GOAWAY, then close.
                conn.graceful_shutdown();
                closing = Some(Instant::now() + fe.conf.timeout_client.min(CLOSE_WAIT));
            }
            _ = crate::shutdown::drain_started(), if closing.is_none() => {
                // In-flight streams finish; the drain's own timeout bounds them.
                conn.graceful_shutdown();
                closing = Some(Instant::now() + Duration::from_secs(3600));
            }
            _ = glitches.over.notified(), if !cut => {
                cut = true;
                crate::stats::h2_abuse(&fe.conf.name, "glitches");
                tracing::info!(
                    "frontend {}: h2 connection from {peer} cut: {} streams reset by the client before their answer",
                    fe.conf.name, glitches.count()
                );
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                streams.abort_all();
                closing = Some(Instant::now() + CLOSE_WAIT);
            }
        }
    }
    // Streams still running have no connection left to answer on.
    streams.abort_all();
}

fn conn_of<'a>(fe: &'a FrontendRt, peer: SocketAddr, proto: &'static str) -> Conn<'a> {
    Conn {
        fe,
        peer,
        limits: fe.limits,
        proto,
        version: Version::Http2,
    }
}

/// A request whose head could not be made (431, 400): answered on its stream,
/// counted and logged as `<BADREQ>` as an HTTP/1 one would be.
fn refuse(
    mut stream: H2Stream,
    status: u16,
    fe: &FrontendRt,
    peer: SocketAddr,
    proto: &'static str,
) {
    let body = crate::http::reply::error_body(status);
    let headers = [("content-type", "text/html"), ("cache-control", "no-cache")];
    let _ = stream.send_reply(status, &headers, body.as_bytes());
    Tally::unparsed(0).finish(&conn_of(fe, peer, proto), &Err(Fail::Status(status)));
}

/// How long a GOAWAY may take to go out before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
