//! One HTTP/2 stream from a client, seen the way the request pipeline sees an
//! HTTP/1 exchange: a request head in lb's HTTP/1 form, body chunks whose
//! flow-control credit the caller returns once they went on, and a response
//! made from the server's HTTP/1 head, body and trailers.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use h2::Reason;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::head::{self, HeadLimits, RequestHead, ResponseHead};

/// Why response bytes could not go to the client.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("h2: {0}")]
    H2(#[from] h2::Error),
    #[error("the client's flow-control window stayed closed for {0:?}")]
    Stalled(Duration),
    #[error("the stream closed before the response ended")]
    Closed,
    #[error("no response head was sent")]
    NoHead,
}

/// The most DATA `send_data` queues without flow-control capacity, once per
/// response, right after its head.
const EAGER_DATA: usize = 16 << 10;

/// Connection-specific fields (RFC 9113 8.2.2): never on an HTTP/2 stream.
pub(crate) const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The request head as lb's HTTP/1 parser sees it: a synthesized HTTP/1.1
/// head (method, path from :path, Host from :authority (RFC 9113 8.3.1),
/// regular headers; `transfer-encoding: chunked` added when the stream does
/// not end with the headers and has no content-length; a Cookie split over
/// several fields joined with "; " (RFC 9113 8.2.3)), parsed with
/// `head::parse_request`, so ACLs, rules and the server-side head builder work
/// unchanged. `Err(status)` when it cannot be (too large: 431; invalid: 400).
pub fn request_head(
    parts: &http::request::Parts,
    end_of_stream: bool,
    limits: &HeadLimits,
) -> Result<RequestHead, u16> {
    let method = parts.method.as_str();
    let target = if parts.method == http::Method::CONNECT {
        parts.uri.authority().map(|a| a.as_str())
    } else {
        parts.uri.path_and_query().map(|p| p.as_str())
    };
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Err(400);
    };
    let mut b = BytesMut::with_capacity(256);
    b.put_slice(method.as_bytes());
    b.put_u8(b' ');
    b.put_slice(target.as_bytes());
    b.put_slice(b" HTTP/1.1\r\n");
    // :authority wins over a Host field (8.3.1: they must not differ).
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let Some(a) = authority {
        field(&mut b, b"host", a.as_bytes());
    }
    let mut cookie: Option<BytesMut> = None;
    let mut has_length = false;
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if CONNECTION_SPECIFIC.contains(&n) {
            // The h2 codec refuses these already; a malformed request anyway.
            return Err(400);
        }
        match n {
            "host" if authority.is_some() => continue,
            "cookie" => {
                let c = cookie.get_or_insert_with(BytesMut::new);
                if !c.is_empty() {
                    c.put_slice(b"; ");
                }
                c.put_slice(value.as_bytes());
                continue;
            }
            "content-length" => has_length = true,
            _ => {}
        }
        field(&mut b, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(c) = cookie {
        field(&mut b, b"cookie", &c);
    }
    if !end_of_stream && !has_length {
        field(&mut b, b"transfer-encoding", b"chunked");
    }
    b.put_slice(b"\r\n");
    if b.len() > limits.max_bytes {
        return Err(431);
    }
    match head::parse_request(&mut b, limits) {
        Ok(Some(h)) => Ok(h),
        Ok(None) => Err(400),
        Err(e) => Err(e.status()),
    }
}

fn field(b: &mut BytesMut, name: &[u8], value: &[u8]) {
    b.put_slice(name);
    b.put_slice(b": ");
    b.put_slice(value);
    b.put_slice(b"\r\n");
}

/// Streams of one connection the client reset before their answer
/// (`tune.h2.fe.glitches-threshold`): past the threshold the connection
/// driver cuts the connection (CVE-2023-44487, rapid reset).
#[derive(Debug)]
pub struct Glitches {
    count: AtomicU32,
    /// 0: no limit.
    threshold: u32,
    pub over: tokio::sync::Notify,
}

impl Glitches {
    pub fn new(threshold: u32) -> Glitches {
        Glitches {
            count: AtomicU32::new(0),
            threshold,
            over: tokio::sync::Notify::new(),
        }
    }

    fn hit(&self) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.threshold > 0 && n >= self.threshold {
            self.over.notify_one();
        }
    }

    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

/// One client stream: its request body and trailers in, its response out.
pub struct H2Stream {
    recv: h2::RecvStream,
    respond: h2::server::SendResponse<Bytes>,
    /// Once a response head went with a body to follow.
    send: Option<h2::SendStream<Bytes>>,
    /// The response ended (or lb reset the stream): whatever happens next is
    /// not the client's doing.
    done: bool,
    /// No DATA sent yet since the head (see `send_data`).
    first_data: bool,
    glitches: Option<Arc<Glitches>>,
}

impl H2Stream {
    pub fn new(recv: h2::RecvStream, respond: h2::server::SendResponse<Bytes>) -> H2Stream {
        H2Stream {
            recv,
            respond,
            send: None,
            done: false,
            first_data: false,
            glitches: None,
        }
    }

    /// Counts this stream in `g` if the client resets it before its answer ends.
    pub fn count_glitches(mut self, g: Arc<Glitches>) -> H2Stream {
        self.glitches = Some(g);
        self
    }

    /// The next DATA of the request body; `None` at its end. Flow-control
    /// capacity is NOT released here...
    pub async fn body_chunk(&mut self) -> Option<Result<Bytes, h2::Error>> {
        self.recv.data().await
    }

    /// ...but by the caller once the bytes went on to the server (so a slow
    /// server slows the client).
    pub fn release(&mut self, n: usize) {
        // Fails only on a stream already gone, whose window no longer matters.
        let _ = self.recv.flow_control().release_capacity(n);
    }

    /// The request's trailers, after its body (`None`: there were none).
    pub async fn trailers(&mut self) -> Result<Option<HeaderMap>, h2::Error> {
        self.recv.trailers().await
    }

    /// The request body has ended (END_STREAM seen).
    pub fn body_done(&self) -> bool {
        self.recv.is_end_stream()
    }

    /// Response head from the server's parsed HTTP/1 head: status, headers
    /// minus connection-specific ones (RFC 9113 8.2.2: Connection, Keep-Alive,
    /// Proxy-Connection, Transfer-Encoding, Upgrade, and those named in
    /// Connection), names lowercased. `end`: no body follows. An interim 1xx
    /// (not 101) goes as an informational head; the final one is still to come.
    pub fn send_head(&mut self, resp: &ResponseHead, end: bool) -> Result<(), h2::Error> {
        let mut r = http::Response::new(());
        *r.status_mut() = status(resp.status);
        let h = r.headers_mut();
        h.reserve(resp.headers.len());
        for f in &resp.headers {
            let name = resp.slice(f.name);
            if f.hop_by_hop
                || CONNECTION_SPECIFIC
                    .iter()
                    .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
            {
                continue;
            }
            // Values share the head's buffer: no copy, no allocation.
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(resp.buf.slice(f.value.range())),
            ) else {
                continue;
            };
            h.append(n, v);
        }
        if (100..200).contains(&resp.status) && resp.status != 101 {
            return self.respond.send_informational(r);
        }
        self.respond_with(r, end)
    }

    fn respond_with(&mut self, r: http::Response<()>, end: bool) -> Result<(), h2::Error> {
        let s = self.respond.send_response(r, end)?;
        if end {
            self.done = true;
        } else {
            self.send = Some(s);
            self.first_data = true;
        }
        Ok(())
    }

    /// A response lb itself makes (errors, 429, redirects): status, extra
    /// headers, body.
    pub fn send_reply(
        &mut self,
        status_code: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), h2::Error> {
        let mut r = http::Response::new(());
        *r.status_mut() = status(status_code);
        let h = r.headers_mut();
        for (n, v) in headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                if !CONNECTION_SPECIFIC.contains(&n.as_str()) {
                    h.append(n, v);
                }
            }
        }
        if !body.is_empty() && !h.contains_key(http::header::CONTENT_LENGTH) {
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        self.respond_with(r, body.is_empty())?;
        if let Some(mut s) = self.send.take() {
            // Small and lb's own: buffered by h2 beyond the window, no wait.
            s.send_data(Bytes::copy_from_slice(body), true)?;
            self.done = true;
        }
        Ok(())
    }

    /// Sends DATA, waiting for flow-control capacity, at most `idle` without
    /// progress (then `Err`). `end` ends the stream.
    pub async fn send_data(
        &mut self,
        mut data: Bytes,
        end: bool,
        idle: Duration,
    ) -> Result<(), SendError> {
        let s = self.send.as_mut().ok_or(SendError::NoHead)?;
        // The first small DATA after the head goes without waiting for
        // capacity: h2 queues it (bounded: one chunk) and sends it within the
        // client's window, with the head in one write. Waiting would let the
        // connection flush the head alone first: two writes per response.
        if std::mem::take(&mut self.first_data) && data.len() <= EAGER_DATA {
            s.send_data(data, end)?;
            if end {
                self.done = true;
            }
            return Ok(());
        }
        let mut sent_end = false;
        while !data.is_empty() {
            s.reserve_capacity(data.len());
            let mut cap = s.capacity();
            while cap == 0 {
                let wait = poll_fn(|cx| s.poll_capacity(cx));
                match tokio::time::timeout(idle, wait).await {
                    Err(_) => return Err(SendError::Stalled(idle)),
                    Ok(None) => return Err(SendError::Closed),
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(Some(Ok(_))) => cap = s.capacity(),
                }
            }
            let chunk = data.split_to(cap.min(data.len()));
            sent_end = end && data.is_empty();
            s.send_data(chunk, sent_end)?;
        }
        if end && !sent_end {
            s.send_data(Bytes::new(), true)?;
        }
        if end {
            self.done = true;
        }
        Ok(())
    }

    /// Trailers from an HTTP/1 chunked trailer block (raw `name: value\r\n`
    /// lines); ends the stream. An empty block ends it with an empty DATA.
    pub fn send_trailers(&mut self, raw: &[u8]) -> Result<(), SendError> {
        let s = self.send.as_mut().ok_or(SendError::NoHead)?;
        let mut map = HeaderMap::new();
        for line in raw.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(i) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let v = line[i + 1..].trim_ascii();
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&line[..i]),
                HeaderValue::from_bytes(v),
            ) else {
                continue;
            };
            if !CONNECTION_SPECIFIC.contains(&n.as_str()) {
                map.append(n, v);
            }
        }
        if map.is_empty() {
            s.send_data(Bytes::new(), true)?;
        } else {
            s.send_trailers(map)?;
        }
        self.done = true;
        Ok(())
    }

    /// Ready once the client reset the stream (its request is cancelled: the
    /// caller frees the server connection); a broken connection counts as a
    /// reset with its reason.
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        let r = match &mut self.send {
            Some(s) => s.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        };
        r.map(|r| match r {
            Ok(reason) => reason,
            Err(e) => e.reason().unwrap_or(Reason::CANCEL),
        })
    }

    /// Resolves once the client reset the stream, for `select!`ing against a
    /// server read.
    pub async fn reset(&mut self) -> Reason {
        poll_fn(|cx| self.poll_reset(cx)).await
    }

    /// RST_STREAM from our side.
    pub fn cancel(&mut self, reason: Reason) {
        // After a client reset this only ends our side: still the client's doing.
        if !self.reset_by_client() {
            self.done = true;
        }
        match &mut self.send {
            Some(s) => s.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }
}

impl H2Stream {
    /// The client reset the stream (checked without waiting; a broken
    /// connection is not a reset).
    fn reset_by_client(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let r = match &mut self.send {
            Some(s) => s.poll_reset(&mut cx),
            None => self.respond.poll_reset(&mut cx),
        };
        matches!(r, Poll::Ready(Ok(_)))
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        // Reset by the client before its answer ended: a glitch.
        if self.glitches.is_some() && !self.done && self.reset_by_client() {
            if let Some(g) = &self.glitches {
                g.hit();
            }
        }
    }
}

fn status(code: u16) -> http::StatusCode {
    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    fn get(uri: &str) -> http::request::Builder {
        http::Request::builder().method("GET").uri(uri)
    }

    #[test]
    fn host_from_authority() {
        let p = parts(
            get("https://www.example.com/a/b?c=1")
                .header("host", "other.example")
                .header("accept", "*/*")
                .body(())
                .unwrap(),
        );
        let h = request_head(&p, true, &HeadLimits::default()).unwrap();
        assert_eq!(h.method(), b"GET");
        assert_eq!(h.target(), b"/a/b?c=1");
        assert_eq!(h.header("host"), Some(&b"www.example.com"[..]));
        assert_eq!(h.header_values("host").count(), 1);
        assert_eq!(h.header("accept"), Some(&b"*/*"[..]));
        assert_eq!(h.body, head::BodyKind::None);
        assert_eq!(h.minor_version, 1);
        // Without :authority the Host field stays.
        let p = parts(get("/x").header("host", "h.example").body(()).unwrap());
        let h = request_head(&p, true, &HeadLimits::default()).unwrap();
        assert_eq!(h.header("host"), Some(&b"h.example"[..]));
    }

    #[test]
    fn cookies_joined() {
        let p = parts(
            get("https://a.example/")
                .header("cookie", "a=1")
                .header("x", "y")
                .header("cookie", "b=2")
                .header("cookie", "c=3")
                .body(())
                .unwrap(),
        );
        let h = request_head(&p, true, &HeadLimits::default()).unwrap();
        assert_eq!(
            h.header_values("cookie").collect::<Vec<_>>(),
            [&b"a=1; b=2; c=3"[..]]
        );
    }

    #[test]
    fn body_marked_chunked_without_length() {
        let post = || {
            http::Request::builder()
                .method("POST")
                .uri("https://a.example/up")
        };
        let h = request_head(
            &parts(post().body(()).unwrap()),
            false,
            &HeadLimits::default(),
        )
        .unwrap();
        assert_eq!(h.body, head::BodyKind::Chunked);
        let p = parts(post().header("content-length", "5").body(()).unwrap());
        let h = request_head(&p, false, &HeadLimits::default()).unwrap();
        assert_eq!(h.body, head::BodyKind::Length(5));
        assert!(h.header("transfer-encoding").is_none());
        // Ended with the headers: no body.
        let h = request_head(
            &parts(post().body(()).unwrap()),
            true,
            &HeadLimits::default(),
        )
        .unwrap();
        assert_eq!(h.body, head::BodyKind::None);
    }

    #[test]
    fn too_large_is_431_invalid_is_400() {
        let limits = HeadLimits {
            max_bytes: 1024,
            max_headers: 10,
        };
        let big = "v".repeat(2000);
        let p = parts(get("https://a.example/").header("x", big).body(()).unwrap());
        assert_eq!(request_head(&p, true, &limits).unwrap_err(), 431);
        let mut b = get("https://a.example/");
        for i in 0..20 {
            b = b.header(format!("x-{i}"), "1");
        }
        assert_eq!(
            request_head(&parts(b.body(()).unwrap()), true, &limits).unwrap_err(),
            431
        );
        let p = parts(
            get("https://a.example/")
                .header("upgrade", "websocket")
                .body(())
                .unwrap(),
        );
        assert_eq!(request_head(&p, true, &limits).unwrap_err(), 400);
        // Two different lengths: the HTTP/1 parser's refusal stands.
        let p = parts(
            http::Request::builder()
                .method("POST")
                .uri("https://a.example/")
                .header("content-length", "1")
                .header("content-length", "2")
                .body(())
                .unwrap(),
        );
        assert_eq!(request_head(&p, false, &limits).unwrap_err(), 400);
    }
}
