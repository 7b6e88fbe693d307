//! The pipeline's send and relay phases for a client on an HTTP/2 stream: the
//! request body from DATA frames to an HTTP/1.1 server (raw under a
//! content-length, else chunked, trailers kept), the response's body back as
//! DATA with flow control, trailers as HTTP/2 trailers. A client that resets
//! its stream ends the exchange at once; the server connection is then dropped,
//! not pooled.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};

use super::body::{write_chunk_header, Chunk, ChunkedDecoder, FLUSH_AT, LAST_CHUNK};
use super::head::{BodyKind, ResponseHead};
use super::relay::Cut;
use super::upload::{server_write_failed, BodyError};
use crate::h2::stream::H2Stream;
use crate::io::Io;

/// A server read that gives way to a client reset of the stream.
pub(crate) async fn server_read(
    stream: &mut H2Stream,
    sock: &mut Io,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Option<io::Result<usize>> {
    tokio::select! {
        r = sock.read_until(buf, deadline) => Some(r),
        _ = stream.reset() => None,
    }
}

/// Streams the request body to the server. `kind` is what the synthesized
/// head told the server: `Length` (sent raw) or `Chunked` (re-framed).
pub(crate) async fn send_body(
    stream: &mut H2Stream,
    server: &mut Io,
    kind: BodyKind,
    max: u64,
    timeout: Duration,
    sent: &mut u64,
) -> Result<(), BodyError> {
    let chunked = match kind {
        BodyKind::None | BodyKind::UntilClose => return Ok(()),
        BodyKind::Length(_) => false,
        BodyKind::Chunked => true,
    };
    let mut total = 0u64;
    let mut out = BytesMut::new();
    loop {
        let data = tokio::select! {
            d = stream.body_chunk() => d,
            // The server spoke (an early answer, or closed): stop the upload,
            // what it sent is read as the response.
            _ = spoke(server) => return Err(BodyError::EarlyResponse),
        };
        match data {
            Some(Ok(d)) => {
                let n = d.len();
                total += n as u64;
                if total > max {
                    return Err(BodyError::TooLarge);
                }
                if chunked {
                    if n > 0 {
                        write_chunk_header(&mut out, n);
                        out.put_slice(&d);
                        out.put_slice(b"\r\n");
                    }
                } else {
                    out.put_slice(&d);
                }
                server
                    .write_all_idle(&out, timeout)
                    .await
                    .map_err(server_write_failed)?;
                out.clear();
                *sent += n as u64;
                // Credit back only once the bytes went on: a slow server slows the client.
                stream.release(n);
            }
            Some(Err(_)) => return Err(BodyError::Client),
            None => break,
        }
    }
    if chunked {
        out.put_slice(LAST_CHUNK);
        match stream.trailers().await {
            Ok(Some(t)) => {
                for (name, value) in &t {
                    out.put_slice(name.as_str().as_bytes());
                    out.put_slice(b": ");
                    out.put_slice(value.as_bytes());
                    out.put_slice(b"\r\n");
                }
            }
            Ok(None) => {}
            Err(_) => return Err(BodyError::Client),
        }
        out.put_slice(b"\r\n");
        server
            .write_all_idle(&out, timeout)
            .await
            .map_err(server_write_failed)?;
    }
    server.settle().await.map_err(server_write_failed)
}

/// Resolves when a server sent bytes during the upload: plain sockets only
/// (behind TLS a server may send session tickets at any time, so there only
/// the response itself tells). A peek, not readiness, which tokio may cache.
async fn spoke(server: &Io) {
    match server {
        Io::Plain(s) => {
            let mut probe = [0u8; 1];
            let _ = s.peek(&mut probe).await;
        }
        Io::Ring(s) => {
            let _ = s.readable().await;
        }
        _ => std::future::pending().await,
    }
}

/// Sends the response head and streams its body to the client's stream.
/// Returns true when the body ended cleanly by its framing (the server
/// connection is reusable).
pub(crate) async fn relay_response(
    stream: &mut H2Stream,
    sock: &mut Io,
    ubuf: &mut BytesMut,
    resp: &ResponseHead,
    client_timeout: Duration,
    server_timeout: Duration,
    sent: &mut u64,
) -> Result<bool, Cut> {
    let head_only = resp.body == BodyKind::None || resp.body == BodyKind::Length(0);
    stream.send_head(resp, head_only).map_err(|_| Cut::Client)?;
    // An HTTP/2 head has no fixed size: count what HTTP/1 would have sent.
    *sent += resp.buf.len() as u64;
    if head_only {
        return Ok(true);
    }
    let data = |b: BytesMut| b.freeze();
    match resp.body {
        BodyKind::None => Ok(true),
        BodyKind::Length(mut n) => loop {
            let k = (ubuf.len() as u64).min(n) as usize;
            if k > 0 {
                n -= k as u64;
                *sent += k as u64;
                let part = data(ubuf.split_to(k));
                send(stream, part, n == 0, client_timeout).await?;
            }
            if n == 0 {
                return Ok(true);
            }
            read_body(stream, sock, ubuf, server_timeout).await?;
        },
        BodyKind::UntilClose => loop {
            if !ubuf.is_empty() {
                *sent += ubuf.len() as u64;
                let part = data(ubuf.split());
                send(stream, part, false, client_timeout).await?;
            }
            let deadline = crate::clock::now() + server_timeout;
            match server_read(stream, sock, ubuf, deadline).await {
                None => return Err(Cut::Client),
                Some(Ok(0)) => {
                    send(stream, bytes::Bytes::new(), true, client_timeout).await?;
                    return Ok(false);
                }
                Some(r) => super::relay::body_read(r)?,
            }
        },
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(16 << 10);
            let mut out = BytesMut::new();
            loop {
                match dec.decode(ubuf) {
                    Ok(Some(Chunk::Data(d))) => {
                        out.put_slice(&d);
                        if out.len() >= FLUSH_AT {
                            *sent += out.len() as u64;
                            send(stream, data(out.split()), false, client_timeout).await?;
                        }
                    }
                    Ok(Some(Chunk::Trailers(t))) => {
                        if !out.is_empty() {
                            *sent += out.len() as u64;
                            send(stream, data(out.split()), false, client_timeout).await?;
                        }
                        *sent += t.len() as u64;
                        stream.send_trailers(&t).map_err(|_| Cut::Client)?;
                        return Ok(true);
                    }
                    Ok(None) => {
                        if !out.is_empty() {
                            *sent += out.len() as u64;
                            send(stream, data(out.split()), false, client_timeout).await?;
                        }
                        read_body(stream, sock, ubuf, server_timeout).await?;
                    }
                    Err(e) => {
                        return Err(Cut::Server(format!("invalid response: chunked body: {e}")))
                    }
                }
            }
        }
    }
}

/// `compression` for an HTTP/2 client: sends `head` (the compressed
/// response's, from `compress::plan`) and the server's body, read by its own
/// framing (`body`), compressed; each server read is sync-flushed as one DATA
/// frame so the client decodes as the body streams. True when the server's
/// body ended cleanly by its framing.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay_compressed(
    stream: &mut H2Stream,
    sock: &mut Io,
    ubuf: &mut BytesMut,
    body: BodyKind,
    head: &ResponseHead,
    algo: crate::conf::haproxy_comp::Algo,
    client_timeout: Duration,
    server_timeout: Duration,
    sent: &mut u64,
) -> Result<bool, Cut> {
    stream.send_head(head, false).map_err(|_| Cut::Client)?;
    *sent += head.buf.len() as u64;
    let mut enc = super::compress::Encoder::new(algo);
    let broken = |_| Cut::Server("compression failed".into());
    match body {
        BodyKind::Length(mut n) => loop {
            let k = (ubuf.len() as u64).min(n) as usize;
            if k > 0 {
                enc.write(&ubuf[..k]).map_err(broken)?;
                ubuf.advance(k);
                n -= k as u64;
            }
            if n == 0 {
                let tail = bytes::Bytes::from(enc.finish().map_err(broken)?);
                *sent += tail.len() as u64;
                send(stream, tail, true, client_timeout).await?;
                return Ok(true);
            }
            let part = enc.flush().map_err(broken)?;
            if !part.is_empty() {
                *sent += part.len() as u64;
                send(stream, part.into(), false, client_timeout).await?;
            }
            read_body(stream, sock, ubuf, server_timeout).await?;
        },
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(16 << 10);
            loop {
                match dec.decode(ubuf) {
                    Ok(Some(Chunk::Data(d))) => enc.write(&d).map_err(broken)?,
                    Ok(Some(Chunk::Trailers(t))) => {
                        let tail = bytes::Bytes::from(enc.finish().map_err(broken)?);
                        *sent += tail.len() as u64;
                        // Trailers end the stream; without any, the last DATA does.
                        let bare = t.len() <= 2;
                        send(stream, tail, bare, client_timeout).await?;
                        if !bare {
                            *sent += t.len() as u64;
                            stream.send_trailers(&t).map_err(|_| Cut::Client)?;
                        }
                        return Ok(true);
                    }
                    Ok(None) => {
                        let part = enc.flush().map_err(broken)?;
                        if !part.is_empty() {
                            *sent += part.len() as u64;
                            send(stream, part.into(), false, client_timeout).await?;
                        }
                        read_body(stream, sock, ubuf, server_timeout).await?;
                    }
                    Err(e) => {
                        return Err(Cut::Server(format!("invalid response: chunked body: {e}")))
                    }
                }
            }
        }
        // `compress::plan` compresses only bodies with a length or chunked framing.
        BodyKind::None | BodyKind::UntilClose => {
            Err(Cut::Server("compression without framing".into()))
        }
    }
}

async fn send(
    stream: &mut H2Stream,
    data: bytes::Bytes,
    end: bool,
    idle: Duration,
) -> Result<(), Cut> {
    stream
        .send_data(data, end, idle)
        .await
        .map_err(|_| Cut::Client)
}

/// Reads more of a response body that must bring some.
async fn read_body(
    stream: &mut H2Stream,
    sock: &mut Io,
    ubuf: &mut BytesMut,
    timeout: Duration,
) -> Result<(), Cut> {
    match server_read(stream, sock, ubuf, crate::clock::now() + timeout).await {
        None => Err(Cut::Client),
        Some(r) => super::relay::body_read(r),
    }
}
