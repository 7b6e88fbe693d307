//! The response body on its way to an HTTP/1 client: by its length, chunked
//! (re-framed, or undone for an HTTP/1.0 client), or until the server closes.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};

use super::body::{write_chunk_header, Chunk, ChunkedDecoder, FLUSH_AT, LAST_CHUNK};
use super::conn::Conn;
use super::head::{BodyKind, ResponseHead};
use crate::io::{Io, SpareBuffer};

/// Sends the response head and streams its body to the client. Returns true
/// when the body ended cleanly by its framing (the server connection is reusable).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay_response(
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
            client.write_all_idle(&head, client_timeout).await?;
            *sent += head.len() as u64;
            Ok(true)
        }
        BodyKind::Length(mut n) => {
            // Head and the already-read start of the body in one write.
            let k = (ubuf.len() as u64).min(n) as usize;
            head.put_slice(&ubuf[..k]);
            ubuf.advance(k);
            n -= k as u64;
            client.write_all_idle(&head, client_timeout).await?;
            *sent += head.len() as u64;
            while n > 0 {
                body_read(
                    sock.read_until(ubuf, crate::clock::now() + server_timeout)
                        .await,
                )?;
                let k = (ubuf.len() as u64).min(n) as usize;
                let part = ubuf.split_to(k);
                client.write_all_idle(&part, client_timeout).await?;
                *sent += part.len() as u64;
                n -= k as u64;
            }
            Ok(true)
        }
        BodyKind::UntilClose => {
            client.write_all_idle(&head, client_timeout).await?;
            *sent += head.len() as u64;
            if !ubuf.is_empty() {
                client.write_all_idle(ubuf, client_timeout).await?;
                *sent += ubuf.len() as u64;
                ubuf.clear();
            }
            loop {
                match sock
                    .read_until(ubuf, crate::clock::now() + server_timeout)
                    .await
                {
                    Ok(0) => return Ok(false),
                    r => body_read(r)?,
                }
                client.write_all_idle(ubuf, client_timeout).await?;
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
                            client.write_all_idle(&out, client_timeout).await?;
                            *sent += out.len() as u64;
                            out.clear();
                        }
                    }
                    Ok(Some(Chunk::Trailers(t))) => {
                        if !dechunk {
                            out.put_slice(LAST_CHUNK);
                            out.put_slice(&t);
                        }
                        client.write_all_idle(&out, client_timeout).await?;
                        *sent += out.len() as u64;
                        return Ok(true);
                    }
                    Ok(None) => {
                        if !out.is_empty() {
                            client.write_all_idle(&out, client_timeout).await?;
                            *sent += out.len() as u64;
                            out.clear();
                        }
                        body_read(
                            sock.read_until(ubuf, crate::clock::now() + server_timeout)
                                .await,
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
pub(crate) enum Cut {
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
pub(crate) fn body_read(r: io::Result<usize>) -> Result<(), Cut> {
    match r {
        Ok(0) => Err(Cut::Server("response body cut short".into())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            Err(Cut::Server("response body timeout".into()))
        }
        Err(e) => Err(Cut::Server(format!("response body: {e}"))),
    }
}
