//! One client connection of an `app` server: read a request and its body, answer it through `App::handle`, repeat while keep-alive holds.

use crate::io::{read_unless_draining, read_until, write_all};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use tokio::net::TcpStream;

use super::{App, Response};
use crate::http::head::{self, BodyKind};
use crate::http::reply::reason;

const READ_CHUNK: usize = 16 << 10;

/// Serves one client connection until it closes, times out or breaks the protocol.
pub async fn serve(mut sock: TcpStream, peer: SocketAddr, app: Arc<App>) {
    let limits = app.limits;
    let c = &app.conf;
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut first = true;
    loop {
        // The head: keep-alive timeout until its first byte, then timeout http-request.
        let mut since = (first || !rbuf.is_empty()).then(Instant::now);
        let req = loop {
            match head::parse_request(&mut rbuf, &limits) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => {
                    let r = Response::error(e.status(), &e.to_string());
                    frame(&mut wbuf, &app, &r, false, false, 1);
                    let _ = write_all(&sock, &wbuf, c.timeout_client).await;
                    return;
                }
            }
            let deadline = match since {
                Some(t) => t + c.timeout_request,
                None => Instant::now() + c.timeout_keep_alive,
            };
            match read_unless_draining(&mut sock, &mut rbuf, deadline).await {
                Ok(0) => return,
                Ok(_) => {
                    since.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut && since.is_some() => {
                    let r = Response::error(408, "request head not received in time");
                    frame(&mut wbuf, &app, &r, false, false, 1);
                    let _ = write_all(&sock, &wbuf, c.timeout_client).await;
                    return;
                }
                Err(_) => return,
            }
        };
        first = false;
        let head_only = req.method() == b"HEAD";
        let body_len = match req.body {
            BodyKind::None => 0,
            BodyKind::Length(n) if n > c.max_value_bytes => {
                let r = Response::error(
                    413,
                    &format!("body larger than {} bytes", c.max_value_bytes),
                );
                frame(&mut wbuf, &app, &r, false, head_only, req.minor_version);
                let _ = write_all(&sock, &wbuf, c.timeout_client).await;
                return;
            }
            BodyKind::Length(n) => n as usize,
            BodyKind::Chunked | BodyKind::UntilClose => {
                let r = Response::error(411, "send the body with Content-Length");
                frame(&mut wbuf, &app, &r, false, head_only, req.minor_version);
                let _ = write_all(&sock, &wbuf, c.timeout_client).await;
                return;
            }
        };
        if rbuf.len() < body_len
            && req.expect_continue
            && req.minor_version == 1
            && write_all(&sock, b"HTTP/1.1 100 Continue\r\n\r\n", c.timeout_client)
                .await
                .is_err()
        {
            return;
        }
        let deadline = Instant::now() + c.timeout_request;
        while rbuf.len() < body_len {
            if rbuf.capacity() - rbuf.len() < body_len - rbuf.len() {
                rbuf.reserve((body_len - rbuf.len()).min(1 << 20));
            }
            match read_until(&mut sock, &mut rbuf, deadline).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let r = Response::error(408, "request body not received in time");
                    frame(&mut wbuf, &app, &r, false, head_only, req.minor_version);
                    let _ = write_all(&sock, &wbuf, c.timeout_client).await;
                    return;
                }
                Err(_) => return,
            }
        }
        let body = rbuf.split_to(body_len);
        let resp = app.handle(&req, &body, peer).await;
        // While draining, this answer is the connection's last.
        let keep = req.keep_alive && !crate::shutdown::draining();
        frame(&mut wbuf, &app, &resp, keep, head_only, req.minor_version);
        if write_all(&sock, &wbuf, c.timeout_client).await.is_err() || !keep {
            return;
        }
    }
}

fn status_reason(status: u16) -> &'static str {
    match status {
        411 => "Length Required",
        507 => "Insufficient Storage",
        s => reason(s),
    }
}

/// Frames `r` into `w` (cleared first).
fn frame(w: &mut BytesMut, app: &App, r: &Response, keep: bool, head_only: bool, minor: u8) {
    use std::fmt::Write;
    w.clear();
    let _ = write!(
        w,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-app: {}\r\n",
        r.status,
        status_reason(r.status),
        r.body.len(),
        app.conf.name
    );
    for (k, v) in &r.headers {
        let _ = write!(w, "{k}: {v}\r\n");
    }
    if !keep {
        w.put_slice(b"connection: close\r\n");
    } else if minor == 0 {
        w.put_slice(b"connection: keep-alive\r\n");
    }
    w.put_slice(b"\r\n");
    if !head_only {
        w.put_slice(r.body.as_bytes());
    }
}
