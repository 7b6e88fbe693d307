//! What one exchange did, counted in metrics and written to the access log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, Fail, Next, Version};
use super::head::RequestHead;
use super::reply;
use crate::balance::Server;

/// What one exchange did, for metrics and the access log.
pub(crate) struct Tally {
    pub start: Instant,
    pub backend: Option<Arc<crate::stats::BackendStats>>,
    pub server: Option<Arc<crate::stats::ServerStats>>,
    /// Connect time of a new server connection; `None` when reused or none.
    pub connect: Option<Duration>,
    /// Time to the response head.
    pub response: Option<Duration>,
    pub status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The request line, kept only when an access log is on.
    pub request: Option<String>,
}

impl Tally {
    /// A request on a connection speaking `version`: its request line is
    /// logged as HAProxy logs it (`GET / HTTP/1.1`, `GET / HTTP/2.0`).
    pub(crate) fn start(req: &RequestHead, version: Version) -> Tally {
        Tally::new(req.buf.len(), || {
            let v = match version {
                Version::Http1 if req.minor_version == 0 => "HTTP/1.0",
                Version::Http1 => "HTTP/1.1",
                Version::Http2 => "HTTP/2.0",
            };
            format!(
                "{} {} {v}",
                String::from_utf8_lossy(req.method()),
                String::from_utf8_lossy(req.target()),
            )
        })
    }

    /// A request whose head was refused (`bytes_in` of it read), as HAProxy logs
    /// one: no backend, the request line `<BADREQ>`.
    pub(crate) fn unparsed(bytes_in: usize) -> Tally {
        Tally::new(bytes_in, || "<BADREQ>".to_string())
    }

    /// The request line is formatted only when an access log is on.
    fn new(bytes_in: usize, request: impl FnOnce() -> String) -> Tally {
        Tally {
            start: crate::clock::now(),
            backend: None,
            server: None,
            connect: None,
            response: None,
            status: None,
            bytes_in: bytes_in as u64,
            bytes_out: 0,
            request: crate::accesslog::get().map(|_| request()),
        }
    }

    /// A server connection is ready: a pooled one (`reused`) or a new one.
    pub(crate) fn connected(&mut self, server: &Server, reused: bool) {
        self.server = Some(server.stats.clone());
        self.connect = if reused {
            None
        } else {
            let took = crate::clock::now() - self.start;
            server.stats.connect.observe(took.as_secs_f64());
            Some(took)
        };
    }

    pub(crate) fn finish(mut self, conn: &Conn<'_>, r: &Result<Next, Fail>) {
        if let Err(Fail::Status(s)) = r {
            // The caller writes this error response next.
            self.status = Some(*s);
            self.bytes_out += reply::error(*s).len() as u64;
        }
        let took = crate::clock::now() - self.start;
        let fe = &conn.fe.stats;
        match conn.version {
            Version::Http1 => fe.requests_h1.inc(),
            Version::Http2 => fe.requests_h2.inc(),
        }
        fe.traffic
            .record(self.status, self.bytes_in, self.bytes_out, took);
        if let Some(s) = &self.server {
            s.traffic
                .record(self.status, self.bytes_in, self.bytes_out, took);
        }
        if let Some(log) = crate::accesslog::get() {
            let ms = |d: Option<Duration>| d.map_or(-1, |d| d.as_millis() as i64);
            log.log(crate::accesslog::Record {
                time: std::time::SystemTime::now() - took,
                client: conn.peer,
                frontend: fe.name.clone(),
                backend: self.backend.map(|b| b.name.clone()),
                server: self.server.map(|s| s.name.clone()),
                tc: ms(self.connect),
                tr: ms(self.response),
                ta: took.as_millis() as u64,
                status: self.status,
                bytes_out: self.bytes_out,
                bytes_in: self.bytes_in,
                request: self.request,
            });
        }
    }
}
