//! The `web` section's answer to one HTTP/2 stream: app prefixes through the
//! request pipeline, static answers made by the same `respond` as HTTP/1
//! (its head parsed back into lb's response form) and sent as HEADERS and
//! DATA, files read a buffer at a time under the stream's flow control.

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::BytesMut;

use super::server::{respond, After, Scratch};
use super::Web;
use crate::conf::H2Tune;
use crate::h2::server::Settings;
use crate::h2::stream::H2Stream;
use crate::http::head::{self, RequestHead};
use crate::http::pipeline::{exchange_h2, Conn, Version};

/// File bytes sent per DATA write.
const CHUNK: usize = 64 << 10;

/// `web` as an HTTP/2 service (h2c with prior knowledge: its binds are
/// cleartext): the connection is the HTTP/2 driver's, each stream answered by
/// [`answer`].
pub struct WebH2(pub Arc<Web>);

impl crate::h2::server::Service for WebH2 {
    fn settings(&self) -> Settings {
        let c = &self.0.conf;
        Settings {
            tune: H2Tune::default(),
            max_header_list_size: self.0.limits.max_bytes as u32,
            limits: self.0.limits,
            timeout_request: c.timeout_request,
            timeout_keep_alive: c.timeout_keep_alive,
            timeout_client: c.timeout_client,
        }
    }

    fn name(&self) -> &str {
        &self.0.conf.name
    }

    fn refuse(&self, mut stream: H2Stream, status: u16, _peer: SocketAddr, _proto: &'static str) {
        let body = crate::http::reply::error_body(status);
        let headers = [("content-type", "text/html")];
        let _ = stream.send_reply(status, &headers, body.as_bytes());
    }

    fn stream(
        &self,
        stream: H2Stream,
        head: RequestHead,
        peer: SocketAddr,
        _proto: &'static str,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let web = self.0.clone();
        async move { Box::pin(answer(web, stream, head, peer)).await }
    }
}

/// Answers one stream of a client connection to `web`.
pub async fn answer(web: Arc<Web>, mut stream: H2Stream, req: RequestHead, peer: SocketAddr) {
    if let Some(fe) = web.route(req.path()) {
        let conn = Conn {
            fe,
            peer,
            limits: fe.limits,
            proto: "http",
            version: Version::Http2,
            client_cert: None,
        };
        exchange_h2(stream, req, &conn).await;
        return;
    }
    let start = crate::clock::now();
    let mut w = BytesMut::with_capacity(1024);
    let after = respond(&web, &req, true, &mut w, &mut Scratch::new());
    let status = super::server::status_at(&w, 0);
    let bytes_in = req.buf.len() as u64;
    // Counted when the stream ends, however it ends.
    let mut tally = Tally {
        web: &web,
        status,
        bytes_in,
        bytes_out: 0,
        start,
    };
    // The head `respond` wrote for HTTP/1, read back: the h2 stream drops
    // what HTTP/2 does not carry (connection fields) and frames the rest.
    let resp = match head::parse_response_for(&mut w, &web.limits, req.method()) {
        Ok(Some(r)) => r,
        _ => return stream.cancel(h2::Reason::INTERNAL_ERROR),
    };
    tally.bytes_out = w.len() as u64;
    let file = match after {
        After::Done => None,
        After::SendFile { file, offset, len } => Some((file, offset, len)),
    };
    let idle = web.conf.timeout_client;
    if stream
        .send_head(&resp, w.is_empty() && file.is_none())
        .is_err()
    {
        return;
    }
    if !w.is_empty()
        && stream
            .send_data(w.freeze(), file.is_none(), idle)
            .await
            .is_err()
    {
        return;
    }
    let Some((file, mut offset, mut len)) = file else {
        return;
    };
    let _held = web.stats.file_opened();
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    while len > 0 {
        let want = (len as usize).min(buf.len());
        let n = match file.read_at(&mut buf[..want], offset) {
            Ok(0) | Err(_) => return stream.cancel(h2::Reason::INTERNAL_ERROR),
            Ok(n) => n,
        };
        offset += n as u64;
        len -= n as u64;
        tally.bytes_out += n as u64;
        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
        if stream.send_data(data, len == 0, idle).await.is_err() {
            return;
        }
    }
}

/// A static answer on a stream, counted when it is dropped (sent or cut).
struct Tally<'a> {
    web: &'a Web,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    start: std::time::Instant,
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.web
            .stats
            .answered(self.status, self.bytes_in, self.bytes_out, self.start);
    }
}
