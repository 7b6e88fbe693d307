//! The request body on its way to the server: streamed from an HTTP/1 client
//! in full duplex (the server may answer before it ends), interim 1xx passed on.

use std::io;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::body::{write_chunk_header, Chunk, ChunkedDecoder, FLUSH_AT, LAST_CHUNK};
use super::conn::Conn;
use super::head::{self, BodyKind, RequestHead, ResponseHead};
use super::rewrite::response_head;
use crate::io::Io;

pub(crate) enum BodyError {
    /// The server spoke before the body ended with something other than an
    /// interim 1xx (an early 413 or 401, or a server that answers at the head),
    /// or stopped taking the body (closed or reset). What it sent, if anything,
    /// is read next as the response.
    EarlyResponse,
    Client,
    /// The body came too slowly (`timeout http-body`, `http-body-min-rate`): 408.
    Slow,
    /// The server accepted no body byte, or did not finish an interim head,
    /// within `timeout server`.
    ServerTimeout,
    TooLarge,
    Bad,
}

/// A failed write of the body to the server: the server may have answered
/// before it closed (an early 401 then a reset), so the response is read
/// rather than assumed lost.
pub(crate) fn server_write_failed(e: io::Error) -> BodyError {
    if e.kind() == io::ErrorKind::TimedOut {
        BodyError::ServerTimeout
    } else {
        BodyError::EarlyResponse
    }
}

/// The two ends of a request-body upload, and what is needed to pass the
/// server's interim responses to the client while it lasts.
pub(crate) struct Upload<'a, 'c> {
    pub client: &'a mut Io,
    pub server: &'a mut Io,
    /// The server-side read buffer: interim heads are taken off it, the rest
    /// stays for `read_response`.
    pub ubuf: &'a mut BytesMut,
    pub req: &'a RequestHead,
    pub conn: &'a Conn<'c>,
    pub server_timeout: Duration,
}

/// Streams the request body from the client to the server, and waits until
/// the last of it has gone (a ring write returns once queued): a server that
/// reset the connection under the body's last part then counts as having
/// answered early, as under any other part.
pub(crate) async fn send_body(
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
    let mut clock = BodyClock::new(fe.conf.http.body, fe.conf.timeout_client);
    let server_timeout = up.server_timeout;
    let max = fe.conf.http.max_body.unwrap_or(u64::MAX);
    match kind {
        BodyKind::None | BodyKind::UntilClose => Ok(()),
        BodyKind::Length(mut n) => {
            while n > 0 {
                if rbuf.is_empty() {
                    clock.more_body(up, rbuf, *sent).await?;
                }
                let k = (rbuf.len() as u64).min(n) as usize;
                let part = rbuf.split_to(k);
                up.server
                    .write_all_idle(&part, server_timeout)
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
                            up.server
                                .write_all_idle(&out, server_timeout)
                                .await
                                .map_err(server_write_failed)?;
                            out.clear();
                        }
                    }
                    Ok(Some(Chunk::Trailers(t))) => {
                        out.put_slice(LAST_CHUNK);
                        out.put_slice(&t);
                        return up
                            .server
                            .write_all_idle(&out, server_timeout)
                            .await
                            .map_err(server_write_failed);
                    }
                    Ok(None) => {
                        if !out.is_empty() {
                            up.server
                                .write_all_idle(&out, server_timeout)
                                .await
                                .map_err(server_write_failed)?;
                            out.clear();
                        }
                        clock.more_body(up, rbuf, *sent).await?;
                    }
                    Err(_) => return Err(BodyError::Bad),
                }
            }
        }
    }
}

/// The time a request body may take (`BodyRate`): only the time spent waiting
/// for the client counts, and every `min_rate` bytes received add a second.
struct BodyClock {
    rate: crate::conf::model::BodyRate,
    /// The idle limit of each read (`timeout client`).
    idle: Duration,
    /// Time spent waiting for the client so far.
    waited: Duration,
}

impl BodyClock {
    fn new(rate: crate::conf::model::BodyRate, idle: Duration) -> BodyClock {
        BodyClock {
            rate,
            idle,
            waited: Duration::ZERO,
        }
    }

    /// What is left of the allowance after `received` bytes; `None`: no limit.
    fn left(&self, received: u64) -> Option<Duration> {
        let base = self.rate.timeout?;
        let earned = match self.rate.min_rate {
            0 => Duration::ZERO,
            r => Duration::from_secs(received / r),
        };
        Some((base + earned).saturating_sub(self.waited))
    }

    /// `more_body` within the idle limit and what is left of the allowance.
    async fn more_body(
        &mut self,
        up: &mut Upload<'_, '_>,
        rbuf: &mut BytesMut,
        received: u64,
    ) -> Result<(), BodyError> {
        let start = Instant::now();
        let idle_end = crate::clock::now() + self.idle;
        let slow_end = self.left(received).map(|l| crate::clock::now() + l);
        let deadline = slow_end.map_or(idle_end, |s| s.min(idle_end));
        let r = more_body(up, rbuf, deadline).await;
        self.waited += start.elapsed();
        match r {
            Err(BodyError::Client)
                if slow_end.is_some_and(|s| s <= idle_end && Instant::now() >= s) =>
            {
                Err(BodyError::Slow)
            }
            r => r,
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
        match up.server.read_until(up.ubuf, deadline).await {
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

/// Passes an interim (1xx) response to an HTTP/1.1 client (an HTTP/1.0 one
/// cannot take it, so it is dropped).
pub(crate) async fn pass_interim(
    client: &mut Io,
    r: &ResponseHead,
    req: &RequestHead,
    conn: &Conn<'_>,
) -> io::Result<()> {
    if req.minor_version == 1 {
        let h = response_head(r, true, true);
        client
            .write_all_idle(&h, conn.fe.conf.timeout_client)
            .await?;
    }
    Ok(())
}
