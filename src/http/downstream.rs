//! The client side of one exchange, whichever protocol brought the request:
//! where the pipeline reads the request body from and writes answers to.

use std::io;
use std::time::Duration;

use bytes::BytesMut;

use super::conn::Conn;
use super::head::{self, RequestHead, ResponseHead};
use super::reply;
use super::rewrite::redirect_head;
use super::upload::pass_interim;
use crate::h2::stream::H2Stream;
use crate::io::Io;

/// The client end of an exchange.
pub enum Downstream<'a> {
    /// An HTTP/1 connection; bytes read past the request head wait in `rbuf`.
    H1 {
        io: &'a mut Io,
        rbuf: &'a mut BytesMut,
    },
    /// An HTTP/2 stream.
    H2(&'a mut H2Stream),
}

/// A response lb makes itself, before any server is involved.
pub enum Answer {
    /// An error page (`reply::error`) with extra header lines (`Name: value`).
    Error { status: u16, extra: Vec<String> },
    /// A redirect to `location`, with no body.
    Redirect { code: u16, location: Vec<u8> },
    /// A whole response a rule made (`http-request return`, `monitor-uri`).
    Full {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Error { status, .. } => *status,
            Answer::Redirect { code, .. } => *code,
            Answer::Full { status, .. } => *status,
        }
    }
}

impl Downstream<'_> {
    /// Bytes of the request body already read with the head.
    pub fn buffered(&self) -> usize {
        match self {
            Downstream::H1 { rbuf, .. } => rbuf.len(),
            Downstream::H2(_) => 0,
        }
    }

    /// Sends an answer lb made; returns the bytes written.
    pub async fn answer(&mut self, a: &Answer, idle: Duration) -> io::Result<u64> {
        match self {
            Downstream::H1 { io, .. } => {
                let bytes = match a {
                    Answer::Error { status, extra } => {
                        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                        reply::error_with(*status, &extra).to_vec()
                    }
                    Answer::Redirect { code, location } => redirect_head(*code, location).to_vec(),
                    Answer::Full {
                        status,
                        headers,
                        body,
                    } => {
                        let mut b = format!("HTTP/1.1 {status} {}\r\n", reply::reason(*status))
                            .into_bytes();
                        for (n, v) in headers {
                            b.extend_from_slice(n.as_bytes());
                            b.extend_from_slice(b": ");
                            b.extend_from_slice(v);
                            b.extend_from_slice(b"\r\n");
                        }
                        b.extend_from_slice(
                            format!("content-length: {}\r\n\r\n", body.len()).as_bytes(),
                        );
                        b.extend_from_slice(body);
                        b
                    }
                };
                io.write_all_idle(&bytes, idle).await?;
                Ok(bytes.len() as u64)
            }
            Downstream::H2(s) => {
                let sent = match a {
                    Answer::Error { status, extra } => {
                        let body = reply::error_body(*status);
                        let mut headers =
                            vec![("content-type", "text/html"), ("cache-control", "no-cache")];
                        let extra: Vec<(&str, &str)> = extra
                            .iter()
                            .filter_map(|h| h.split_once(':'))
                            .map(|(n, v)| (n, v.trim()))
                            .collect();
                        headers.extend(extra);
                        s.send_reply(*status, &headers, body.as_bytes())
                            .map(|_| body.len())
                    }
                    Answer::Redirect { code, location } => {
                        let loc = String::from_utf8_lossy(location);
                        let headers = [("location", &*loc), ("cache-control", "no-cache")];
                        s.send_reply(*code, &headers, b"").map(|_| loc.len())
                    }
                    Answer::Full {
                        status,
                        headers,
                        body,
                    } => {
                        let hs: Vec<(String, String)> = headers
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.to_ascii_lowercase(),
                                    String::from_utf8_lossy(v).into_owned(),
                                )
                            })
                            .collect();
                        let hs: Vec<(&str, &str)> =
                            hs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                        s.send_reply(*status, &hs, body).map(|_| body.len())
                    }
                };
                sent.map(|n| n as u64).map_err(io::Error::other)
            }
        }
    }

    /// `100 Continue` to a client that waits for it before sending its body.
    pub async fn send_continue(&mut self, req: &RequestHead, idle: Duration) -> io::Result<()> {
        match self {
            Downstream::H1 { io, .. } if req.minor_version == 1 => {
                io.write_all_idle(b"HTTP/1.1 100 Continue\r\n\r\n", idle)
                    .await
            }
            Downstream::H2(s) => {
                let mut b = bytes::BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
                match head::parse_response_for(&mut b, &head::HeadLimits::default(), b"POST") {
                    Ok(Some(r)) => s.send_head(&r, false).map_err(io::Error::other),
                    _ => Ok(()),
                }
            }
            Downstream::H1 { .. } => Ok(()),
        }
    }

    /// Passes a server's interim (1xx) response on, where the client can take one.
    pub async fn interim(
        &mut self,
        r: &ResponseHead,
        req: &RequestHead,
        conn: &Conn<'_>,
    ) -> io::Result<()> {
        match self {
            Downstream::H1 { io, .. } => pass_interim(io, r, req, conn).await,
            Downstream::H2(s) => s.send_head(r, false).map_err(io::Error::other),
        }
    }
}
