//! The admin listener: a tiny HTTP/1.1 router for /metrics, /stats, /api/stats and the runtime API, behind optional basic auth.
//!
//! - `metrics` Prometheus text exposition
//! - `stats`   the topology page and its JSON
//! - `api`     server state and weight changes, reload

pub mod api;
pub mod metrics;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};

use crate::control::Control;
use crate::http::driver::{self, Cx, Outcome, Service, Settings};
use crate::http::head::{BodyKind, HeadLimits, RequestHead};
use crate::io::Io;
use crate::kv::Kv;

/// A request head must arrive within this long, and a write must make progress
/// within it; admin clients are people and scrapers.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every admin request can see.
pub struct Admin {
    pub rt: Arc<Control>,
    pub kvs: Vec<Arc<Kv>>,
    /// `Basic <base64(user:password)>`, when `admin-auth` is set.
    auth: Option<String>,
    pub started: Instant,
}

impl Admin {
    pub fn new(rt: Arc<Control>, kvs: Vec<Arc<Kv>>, auth: Option<&str>) -> Admin {
        Admin {
            rt,
            kvs,
            auth: auth.map(|a| format!("Basic {}", base64(a.as_bytes()))),
            started: Instant::now(),
        }
    }
}

/// One response of the admin listener.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        let mut b: String = body.into();
        if !b.ends_with('\n') {
            b.push('\n');
        }
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: b.into_bytes(),
        }
    }

    pub fn json(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }
}

/// Binds the admin address and serves it on the current (control) runtime
/// until the process stops. Returns the bound address.
pub async fn start(addr: SocketAddr, admin: Arc<Admin>) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    let mut stop = admin.rt.stop.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = l.accept() => match r {
                    Ok((s, _)) => {
                        tokio::spawn(serve(s, admin.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        // Out of descriptors: let some close before trying again.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    });
    Ok(local)
}

/// One admin connection: one request, one response, close.
async fn serve(s: TcpStream, admin: Arc<Admin>) {
    let peer = match s.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    // On the control thread, which has no ring: tokio's reactor.
    driver::serve(Io::Plain(s), peer, &mut AdminConn { admin }).await;
}

/// The admin listener as an HTTP/1 service: one request per connection.
struct AdminConn {
    admin: Arc<Admin>,
}

impl Service for AdminConn {
    fn settings(&self) -> Settings {
        Settings {
            limits: HeadLimits {
                max_bytes: 16 << 10,
                max_headers: 64,
            },
            timeout_request: READ_TIMEOUT,
            timeout_keep_alive: READ_TIMEOUT,
            timeout_client: READ_TIMEOUT,
        }
    }

    fn error(&self, status: u16, _why: &dyn std::fmt::Display, out: &mut BytesMut) {
        let why = match status {
            408 => "request head not received in time",
            _ => "bad request",
        };
        frame(out, &Reply::text(status, why));
    }

    async fn handle(&mut self, cx: &mut Cx<'_>, req: RequestHead) -> Outcome {
        let reply = route(&self.admin, &req);
        frame(cx.out(), &reply);
        // A body is never read: unless all of it is here, the client may still be sending it.
        match req.body {
            BodyKind::None => Outcome::Close,
            BodyKind::Length(n) if cx.rbuf.len() as u64 >= n => Outcome::Close,
            _ => Outcome::CloseUnread,
        }
    }
}

/// Decides the response to one request.
pub fn route(admin: &Admin, req: &RequestHead) -> Reply {
    if let Some(want) = &admin.auth {
        let given = req.header("authorization").unwrap_or_default();
        if !constant_eq(given, want.as_bytes()) {
            return Reply::text(401, "authentication required");
        }
    }
    let method = req.method();
    let target = String::from_utf8_lossy(req.target());
    let path = target.split('?').next().unwrap_or_default();
    let get = method == b"GET" || method == b"HEAD";
    match path {
        "/metrics" if get => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(admin),
        },
        "/stats" if get => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: stats::PAGE.as_bytes().to_vec(),
        },
        "/stats;json" | "/api/stats" if get => Reply::json(stats::json(admin)),
        "/metrics" | "/stats" | "/stats;json" | "/api/stats" => {
            Reply::text(405, "method not allowed")
        }
        p if p.starts_with("/api/") => api::handle(admin, method, p),
        "/" if get => Reply::text(
            200,
            "lb admin: /metrics /stats /stats;json /api/stats /api/servers /api/vrrp POST /api/reload",
        ),
        _ => Reply::text(404, "not found"),
    }
}

/// Appends `r` as a complete response that closes the connection.
fn frame(out: &mut BytesMut, r: &Reply) {
    use std::fmt::Write;
    let reason = match r.status {
        401 => "Unauthorized",
        s => crate::http::reply::reason(s),
    };
    let _ = write!(
        out,
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status == 401 {
        out.extend_from_slice(b"WWW-Authenticate: Basic realm=\"lb admin\"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&r.body);
}

/// Compares without an early exit, so timing says nothing about the password.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (for the expected `Authorization` value).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"admin:s3cret"), "YWRtaW46czNjcmV0");
    }

    #[test]
    fn constant_eq_compares() {
        assert!(constant_eq(b"abc", b"abc"));
        assert!(!constant_eq(b"abc", b"abd"));
        assert!(!constant_eq(b"abc", b"ab"));
    }
}
