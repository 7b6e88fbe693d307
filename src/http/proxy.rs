//! The proxy as an HTTP/1 service: each request of a client connection goes
//! through the pipeline (`super::pipeline`); the connection itself (deadlines,
//! keep-alive, drain, errors, close) is the driver's (`super::driver`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::io::Io;
use bytes::BytesMut;

use super::conn::{Conn, Fail, Next, Version};
use super::driver::{self, Cx, Outcome, Settings};
use super::head::RequestHead;
use super::pipeline::{exchange, exchange_h2, Tally};
use super::reply;
use crate::h2::stream::H2Stream;
use crate::snapshot::{FrontendRt, Live};

/// Where a connection finds its frontend again after a reload.
pub struct FrontendSource {
    pub rt: Arc<Live>,
    pub name: Arc<str>,
}

/// Serves one client connection until it closes, times out or breaks the protocol.
/// Each request uses the configuration current when it starts: after a reload
/// the frontend is looked up again (the connection closes if it was removed).
// These return the future of one connection rather than being `async fn`s
// themselves: each async layer keeps its own copy of its arguments for the
// connection's life, and every idle connection's task would carry them.
pub fn serve(
    client: Io,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    src: FrontendSource,
) -> impl Future<Output = ()> + Send {
    serve_with(client, peer, fe, Some(src))
}

/// Serves one client connection with `fe` for its whole life, reloads or not
/// (the fuzz harness drives the proxy this way).
pub fn serve_fixed(
    client: Io,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
) -> impl Future<Output = ()> + Send {
    serve_with(client, peer, fe, None)
}

fn serve_with(
    client: Io,
    peer: SocketAddr,
    fe: Arc<FrontendRt>,
    src: Option<FrontendSource>,
) -> impl Future<Output = ()> + Send {
    let mut svc = proxy(&client, peer, fe, src);
    async move {
        if let Some((client, read)) = driver::serve(client, peer, &mut svc).await {
            // Boxed, as the rarer path: an HTTP/1 connection's task stays small.
            Box::pin(crate::h2::server::serve(client, read, peer, &mut svc)).await;
        }
    }
}

/// Serves one HTTP/2 client connection (ALPN h2, `proto h2`, or the h2c
/// preface on a cleartext bind) through the HTTP/2 driver.
pub async fn serve_h2(client: Io, peer: SocketAddr, fe: Arc<FrontendRt>, src: FrontendSource) {
    let mut svc = proxy(&client, peer, fe, Some(src));
    crate::h2::server::serve(client, BytesMut::new(), peer, &mut svc).await;
}

fn proxy(client: &Io, peer: SocketAddr, fe: Arc<FrontendRt>, src: Option<FrontendSource>) -> Proxy {
    Proxy {
        _session: fe.stats.open(),
        generation: src
            .as_ref()
            .map_or(0, |s| s.rt.generation.load(Ordering::Acquire)),
        proto: if client.is_tls() { "https" } else { "http" },
        client_cert: crate::tls::client_cert(client),
        fe,
        src,
        peer,
    }
}

/// The proxy as an HTTP/1 service: each request goes through the pipeline.
struct Proxy {
    fe: Arc<FrontendRt>,
    /// Where to look `fe` up again after a reload (none: keep it).
    src: Option<FrontendSource>,
    /// The reload generation `fe` belongs to.
    generation: u64,
    peer: SocketAddr,
    /// "http" or "https", for X-Forwarded-Proto.
    proto: &'static str,
    /// The client's certificate, read once at the handshake.
    client_cert: Option<Arc<crate::conf::sample::ClientCert>>,
    _session: crate::stats::Session,
}

impl Proxy {
    fn conn(&self) -> Conn<'_> {
        Conn {
            fe: &self.fe,
            peer: self.peer,
            limits: self.fe.limits,
            proto: self.proto,
            version: Version::Http1,
            client_cert: self.client_cert.clone(),
        }
    }
}

impl driver::Service for Proxy {
    fn settings(&self) -> Settings {
        frontend_settings(&self.fe)
    }

    fn next_request(&mut self) -> bool {
        let Some(src) = &self.src else {
            return true;
        };
        let now = src.rt.generation.load(Ordering::Acquire);
        if now != self.generation {
            self.generation = now;
            match src.rt.snapshot.load().frontends.get(&*src.name) {
                Some(f) if f.conf.mode == crate::conf::Mode::Http => self.fe = f.clone(),
                _ => return false,
            }
        }
        true
    }

    fn idle_gauge(&self) -> Option<&prometheus::IntGauge> {
        Some(&self.fe.stats.idle)
    }

    fn h2c(&self) -> bool {
        true
    }

    fn error(&self, status: u16, _why: &dyn std::fmt::Display, out: &mut bytes::BytesMut) {
        match super::errorfile::find(&self.fe, status) {
            Some(raw) => out.extend_from_slice(raw),
            None => out.extend_from_slice(&reply::error(status)),
        }
    }

    fn refused(&self, status: u16, bytes_in: usize) {
        // A request refused before it was parsed (400, 408, 413, 431) is
        // still a response: counted, and logged as `<BADREQ>`.
        Tally::unparsed(bytes_in).finish(&self.conn(), &Err(Fail::Status(status)));
    }

    async fn handle(&mut self, cx: &mut Cx<'_>, req: RequestHead) -> Outcome {
        let first = cx.first;
        let conn = self.conn();
        let (client, rbuf, ubuf) = cx.parts();
        outcome(exchange(client, rbuf, ubuf, req, &conn, first).await)
    }
}

/// The proxy as an HTTP/2 service: each stream goes through the pipeline,
/// with the frontend current when it starts.
impl crate::h2::server::Service for Proxy {
    fn settings(&self) -> crate::h2::server::Settings {
        let (tune, max_header_list_size) = match &self.src {
            Some(src) => {
                let g = &src.rt.snapshot.load().conf.global;
                (g.h2, g.h2_max_header_list_size())
            }
            None => (
                crate::conf::H2Tune::default(),
                self.fe.limits.max_bytes as u32,
            ),
        };
        let fe = &self.fe;
        crate::h2::server::Settings {
            tune,
            max_header_list_size,
            limits: fe.limits,
            timeout_request: fe.conf.http.timeout_request,
            timeout_keep_alive: fe.conf.http.timeout_keep_alive,
            timeout_client: fe.conf.timeout_client,
        }
    }

    fn name(&self) -> &str {
        &self.fe.conf.name
    }

    fn next_stream(&mut self) -> bool {
        driver::Service::next_request(self)
    }

    fn refuse(&self, mut stream: H2Stream, status: u16, _peer: SocketAddr, _proto: &'static str) {
        let body = reply::error_body(status);
        let headers = [("content-type", "text/html"), ("cache-control", "no-cache")];
        let _ = stream.send_reply(status, &headers, body.as_bytes());
        let conn = Conn {
            version: Version::Http2,
            ..self.conn()
        };
        Tally::unparsed(0).finish(&conn, &Err(Fail::Status(status)));
    }

    fn stream(
        &self,
        stream: H2Stream,
        head: RequestHead,
        peer: SocketAddr,
        proto: &'static str,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let fe = self.fe.clone();
        let client_cert = self.client_cert.clone();
        async move {
            let conn = Conn {
                fe: &fe,
                peer,
                limits: fe.limits,
                proto,
                version: Version::Http2,
                client_cert,
            };
            exchange_h2(stream, head, &conn).await;
        }
    }
}

/// A frontend's connection settings for the HTTP/1 driver.
fn frontend_settings(fe: &FrontendRt) -> Settings {
    Settings {
        limits: fe.limits,
        timeout_request: fe.conf.http.timeout_request,
        timeout_keep_alive: fe.conf.http.timeout_keep_alive,
        timeout_client: fe.conf.timeout_client,
    }
}

/// What the driver does after an exchange.
fn outcome(r: Result<Next, Fail>) -> Outcome {
    match r {
        Ok(Next::KeepAlive) => Outcome::KeepAlive,
        Ok(Next::Close) | Err(Fail::Close) => Outcome::Close,
        Ok(Next::CloseUnread) => Outcome::CloseUnread,
        Err(Fail::Status(s)) => Outcome::Error(s),
        Err(Fail::Cut) => Outcome::Cut,
    }
}

/// Forwards one already-parsed request through `fe`'s routing to a server and
/// relays the response, for embedded servers that handle some paths
/// themselves (the `web` section sends its app paths here). Answers queued in
/// `cx` go first. An error is the proxy's page (`reply::error`, as counted and
/// logged for `fe`), not the embedding service's.
pub async fn forward(cx: &mut Cx<'_>, req: RequestHead, fe: &FrontendRt) -> Outcome {
    if cx.flush().await.is_err() {
        return Outcome::Close;
    }
    let (first, peer) = (cx.first, cx.peer);
    let (client, rbuf, ubuf) = cx.parts();
    let conn = Conn {
        fe,
        peer,
        limits: fe.limits,
        proto: if client.is_tls() { "https" } else { "http" },
        version: Version::Http1,
        client_cert: crate::tls::client_cert(client),
    };
    match exchange(client, rbuf, ubuf, req, &conn, first).await {
        Err(Fail::Status(s)) => {
            cx.out().extend_from_slice(&reply::error(s));
            Outcome::CloseUnread
        }
        r => outcome(r),
    }
}
