//! The `app` section as an HTTP/1 service (`http::driver` runs the connection): read a request's body, answer it through `App::handle`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::net::TcpStream;

use super::{App, Response};
use crate::http::driver::{self, BodyError, Cx, Outcome, Service, Settings};
use crate::http::head::{BodyKind, RequestHead};
use crate::http::reply::reason;
use crate::io::Io;

/// Serves one client connection until it closes, times out or breaks the protocol.
pub async fn serve(sock: TcpStream, peer: SocketAddr, app: Arc<App>) {
    match Io::plain(sock) {
        Ok(io) => serve_io(io, peer, app).await,
        Err(e) => tracing::debug!("app connection from {peer}: {e}"),
    }
}

/// Serves one client connection, plain, on the ring or TLS, through the HTTP/1 driver.
pub async fn serve_io(io: Io, peer: SocketAddr, app: Arc<App>) {
    driver::serve(io, peer, &mut AppConn { app }).await;
}

/// The `app` section as an HTTP/1 service.
struct AppConn {
    app: Arc<App>,
}

impl Service for AppConn {
    fn settings(&self) -> Settings {
        let c = &self.app.conf;
        Settings {
            limits: self.app.limits,
            timeout_request: c.timeout_request,
            timeout_keep_alive: c.timeout_keep_alive,
            timeout_client: c.timeout_client,
        }
    }

    fn error(&self, status: u16, why: &dyn std::fmt::Display, out: &mut BytesMut) {
        let r = Response::error(status, &why.to_string());
        frame(out, &self.app, &r, false, false, 1);
    }

    async fn handle(&mut self, cx: &mut Cx<'_>, req: RequestHead) -> Outcome {
        let app = &*self.app;
        let c = &app.conf;
        let head_only = req.method() == b"HEAD";
        let minor = req.minor_version;
        let start = std::time::Instant::now();
        let endpoint = super::metrics::endpoint(req.path());
        let refuse = |cx: &mut Cx<'_>, status, msg: &str| {
            app.stats.answered(endpoint, status, start.elapsed());
            frame(
                cx.out(),
                app,
                &Response::error(status, msg),
                false,
                head_only,
                minor,
            );
            Outcome::CloseUnread
        };
        let body_len = match req.body {
            BodyKind::None => 0,
            BodyKind::Length(n) if n > c.max_value_bytes => {
                let msg = format!("body larger than {} bytes", c.max_value_bytes);
                return refuse(cx, 413, &msg);
            }
            BodyKind::Length(n) => n as usize,
            BodyKind::Chunked | BodyKind::UntilClose => {
                return refuse(cx, 411, "send the body with Content-Length");
            }
        };
        match cx.read_body(&req, body_len).await {
            Ok(()) => {}
            Err(BodyError::TimedOut) => {
                let e = BodyError::TimedOut.to_string();
                return refuse(cx, 408, &e);
            }
            Err(BodyError::Closed) => return Outcome::Close,
        }
        let body = cx.rbuf.split_to(body_len);
        let resp = app.handle(&req, &body, cx.peer).await;
        app.stats.answered(endpoint, resp.status, start.elapsed());
        // While draining, this answer is the connection's last.
        let keep = cx.keep_alive(&req);
        frame(cx.out(), app, &resp, keep, head_only, minor);
        if keep {
            Outcome::KeepAlive
        } else {
            Outcome::Close
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

/// Frames `r` onto the end of `w`.
fn frame(w: &mut BytesMut, app: &App, r: &Response, keep: bool, head_only: bool, minor: u8) {
    use std::fmt::Write;
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
