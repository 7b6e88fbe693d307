//! The `web` section as an HTTP/1 service (`http::driver` runs the connection: deadlines, keep-alive, drain, pipelined answers in one write): static files, `/healthz`, app prefixes proxied.

use crate::http::driver::{self, Outcome, Service, Settings};
use crate::io::Io;
use std::cell::Cell;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::files::{self, Range};
use super::Web;
use crate::http::head::{BodyKind, RequestHead, TargetForm};
use crate::http::reply::reason;

/// Files up to this size are read into the response buffer and leave in the
/// head's write; larger ones go out with sendfile(2), never through user space.
const SMALL_FILE: u64 = 64 << 10;

/// Buffers kept for the connection's life, so a request allocates nothing.
pub(super) struct Scratch {
    rel: Vec<u8>,
    tag: Vec<u8>,
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch {
            rel: Vec::with_capacity(256),
            tag: Vec::with_capacity(48),
        }
    }
}

/// What is left to do after the head of a response is in the output.
pub(super) enum After {
    /// Nothing: the response is complete in the output.
    Done,
    /// Send `len` bytes of the file from `offset` once the output is flushed.
    SendFile { file: File, offset: u64, len: u64 },
}

/// Serves one client connection until it closes, times out or breaks the protocol.
pub async fn serve(sock: TcpStream, peer: SocketAddr, web: Arc<Web>) {
    let _open = web.stats.open(sock.local_addr().ok());
    match Io::plain(sock) {
        Ok(io) => serve_io(io, peer, web).await,
        Err(e) => tracing::debug!("web connection from {peer}: {e}"),
    }
}

/// Serves one client connection, plain, on the ring or TLS, through the HTTP/1 driver.
pub async fn serve_io(io: Io, peer: SocketAddr, web: Arc<Web>) {
    let mut conn = WebConn {
        web,
        s: Scratch::new(),
    };
    if let Some((io, read)) = driver::serve(io, peer, &mut conn).await {
        let mut h2 = super::h2::WebH2(conn.web);
        crate::h2::server::serve(io, read, peer, &mut h2).await;
    }
}

/// The `web` section as an HTTP/1 service.
struct WebConn {
    web: Arc<Web>,
    s: Scratch,
}

impl Service for WebConn {
    fn settings(&self) -> Settings {
        let c = &self.web.conf;
        Settings {
            limits: self.web.limits,
            timeout_request: c.timeout_request,
            timeout_keep_alive: c.timeout_keep_alive,
            timeout_client: c.timeout_client,
        }
    }

    fn error(&self, status: u16, _why: &dyn std::fmt::Display, out: &mut BytesMut) {
        error_page(&self.web, out, &Cx::CLOSE, status, &[]);
    }

    fn h2c(&self) -> bool {
        true
    }

    async fn handle(&mut self, cx: &mut driver::Cx<'_>, req: RequestHead) -> Outcome {
        let web = &*self.web;
        if let Some(fe) = web.route(req.path()) {
            return crate::http::proxy::forward(cx, req, fe).await;
        }
        // A body on a static request: skip it when it is already here, else close after answering.
        // While draining, this answer is the connection's last.
        let mut keep = cx.keep_alive(&req);
        let mut unread = false;
        match req.body {
            BodyKind::None => {}
            BodyKind::Length(n) if (cx.rbuf.len() as u64) >= n => cx.rbuf.advance(n as usize),
            _ => (keep, unread) = (false, true),
        }
        let start = crate::clock::now();
        let at = cx.out().len();
        let after = respond(web, &req, keep, cx.out(), &mut self.s);
        let status = status_at(cx.out(), at);
        let mut bytes_out = (cx.out().len() - at) as u64;
        if let After::SendFile { file, offset, len } = after {
            let _held = web.stats.file_opened();
            if cx.flush().await.is_err()
                || send_file(cx.io, &file, offset, len, web.conf.timeout_client)
                    .await
                    .is_err()
            {
                web.stats
                    .answered(status, req.buf.len() as u64, bytes_out, start);
                return Outcome::Cut;
            }
            bytes_out += len;
        }
        web.stats
            .answered(status, req.buf.len() as u64, bytes_out, start);
        match (keep, unread) {
            (true, _) => Outcome::KeepAlive,
            (false, false) => Outcome::Close,
            (false, true) => Outcome::CloseUnread,
        }
    }
}

/// The status code of the HTTP/1 response head `respond` wrote at `at` in `w`
/// (`HTTP/1.1 NNN ...`); 0 if there is none.
pub(super) fn status_at(w: &[u8], at: usize) -> u16 {
    w.get(at + 9..at + 12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

thread_local! {
    static DATE: Cell<(i64, [u8; files::HTTP_DATE_LEN])> = const { Cell::new((-1, [0; files::HTTP_DATE_LEN])) };
}

/// Today's `Date` value, formatted once a second per thread.
fn date_now() -> [u8; files::HTTP_DATE_LEN] {
    let now = files::unix_secs(SystemTime::now());
    DATE.with(|c| {
        let (t, d) = c.get();
        if t == now {
            return d;
        }
        let d = files::http_date(now);
        c.set((now, d));
        d
    })
}

fn put_u64(w: &mut BytesMut, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.put_slice(&tmp[i..]);
}

/// Status line and the headers every response has.
fn start(web: &Web, w: &mut BytesMut, status: u16, keep: bool, minor: u8) {
    w.put_slice(b"HTTP/1.1 ");
    put_u64(w, status as u64);
    w.put_u8(b' ');
    w.put_slice(reason_of(status).as_bytes());
    w.put_slice(b"\r\ndate: ");
    w.put_slice(&date_now());
    w.put_slice(b"\r\n");
    w.put_slice(&web.common);
    if !keep {
        w.put_slice(b"connection: close\r\n");
    } else if minor == 0 {
        w.put_slice(b"connection: keep-alive\r\n");
    }
}

fn reason_of(status: u16) -> &'static str {
    match status {
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        _ => reason(status),
    }
}

/// How a response must be framed for its request.
struct Cx {
    keep: bool,
    minor: u8,
    /// HEAD: headers only.
    head: bool,
}

impl Cx {
    /// For errors before a request could be read: close after answering.
    const CLOSE: Cx = Cx {
        keep: false,
        minor: 1,
        head: false,
    };
}

/// A small HTML error page (the connection stays open when `cx.keep`).
fn error_page(web: &Web, w: &mut BytesMut, cx: &Cx, status: u16, extra: &[&str]) {
    start(web, w, status, cx.keep, cx.minor);
    let why = reason_of(status);
    // `<html><head><title>NNN why</title></head><body><h1>NNN why</h1></body></html>\n`
    let body_len = 72 + 2 * why.len();
    w.put_slice(b"content-type: text/html; charset=utf-8\r\ncontent-length: ");
    put_u64(w, body_len as u64);
    w.put_slice(b"\r\n");
    for h in extra {
        w.put_slice(h.as_bytes());
        w.put_slice(b"\r\n");
    }
    w.put_slice(b"\r\n");
    if cx.head {
        return;
    }
    let before = w.len();
    w.put_slice(b"<html><head><title>");
    put_u64(w, status as u64);
    w.put_u8(b' ');
    w.put_slice(why.as_bytes());
    w.put_slice(b"</title></head><body><h1>");
    put_u64(w, status as u64);
    w.put_u8(b' ');
    w.put_slice(why.as_bytes());
    w.put_slice(b"</h1></body></html>\n");
    debug_assert_eq!(w.len() - before, body_len);
}

/// Writes the response to one static request into `w`.
pub(super) fn respond(
    web: &Web,
    req: &RequestHead,
    keep: bool,
    w: &mut BytesMut,
    s: &mut Scratch,
) -> After {
    let minor = req.minor_version;
    let head_only = req.method() == b"HEAD";
    let cx = Cx {
        keep,
        minor,
        head: head_only,
    };
    match req.method() {
        b"GET" | b"HEAD" => {}
        _ => {
            error_page(web, w, &cx, 405, &["allow: GET, HEAD"]);
            return After::Done;
        }
    };
    if !matches!(req.form, TargetForm::Origin | TargetForm::Absolute) {
        error_page(web, w, &cx, 400, &[]);
        return After::Done;
    }
    let path = req.path();
    if path == b"/healthz" {
        start(web, w, 200, keep, minor);
        w.put_slice(
            b"content-type: text/plain; charset=utf-8\r\ncache-control: no-cache\r\ncontent-length: 3\r\n\r\n",
        );
        if !head_only {
            w.put_slice(b"ok\n");
        }
        return After::Done;
    }
    let trailing_slash = match files::resolve(path, &mut s.rel) {
        Ok(t) => t,
        Err(e) => {
            error_page(web, w, &cx, e.status(), &[]);
            return After::Done;
        }
    };
    s.rel.push(0);
    let (mut file, mut meta) = match open(web, &s.rel) {
        Ok(x) => x,
        Err(status) => {
            error_page(web, w, &cx, status, &[]);
            return After::Done;
        }
    };
    if meta.is_dir() {
        if !trailing_slash {
            // As nginx: send the browser to `dir/`, so the index's relative links work.
            let target = req.target();
            let q = target
                .iter()
                .position(|&b| b == b'?')
                .unwrap_or(target.len());
            let raw_path = match req.form {
                TargetForm::Origin => &target[..q],
                _ => path,
            };
            let mut loc = Vec::with_capacity(raw_path.len() + 12 + target.len() - q);
            loc.extend_from_slice(b"location: ");
            loc.extend_from_slice(raw_path);
            loc.push(b'/');
            if let TargetForm::Origin = req.form {
                loc.extend_from_slice(&target[q..]);
            }
            let loc = String::from_utf8_lossy(&loc).into_owned();
            error_page(web, w, &cx, 301, &[&loc]);
            return After::Done;
        }
        s.rel.pop();
        if !s.rel.is_empty() {
            s.rel.push(b'/');
        }
        s.rel.extend_from_slice(web.conf.index.as_bytes());
        s.rel.push(0);
        match open(web, &s.rel) {
            Ok((f, m)) if m.is_file() => (file, meta) = (f, m),
            Ok(_) | Err(404) => {
                error_page(web, w, &cx, 404, &[]);
                return After::Done;
            }
            Err(status) => {
                error_page(web, w, &cx, status, &[]);
                return After::Done;
            }
        }
    } else if trailing_slash {
        // `file.txt/` names a directory that does not exist.
        error_page(web, w, &cx, 404, &[]);
        return After::Done;
    } else if !meta.is_file() {
        // FIFOs, sockets, devices: never read from the event loop.
        error_page(web, w, &cx, 403, &[]);
        return After::Done;
    }
    s.rel.pop();
    let size = meta.size();
    let mtime = meta.mtime();
    files::etag(mtime, size, &mut s.tag);

    // Preconditions, in RFC 9110 section 13.2.2 order.
    if let Some(v) = req.header("if-match") {
        if !files::etag_matches(v, &s.tag, false) {
            error_page(web, w, &cx, 412, &[]);
            return After::Done;
        }
    } else if let Some(t) = req
        .header("if-unmodified-since")
        .and_then(files::parse_http_date)
    {
        if mtime > t {
            error_page(web, w, &cx, 412, &[]);
            return After::Done;
        }
    }
    let not_modified = match req.header("if-none-match") {
        Some(v) => files::etag_matches(v, &s.tag, true),
        None => req
            .header("if-modified-since")
            .and_then(files::parse_http_date)
            .is_some_and(|t| mtime <= t),
    };
    let last_modified = files::http_date(mtime);
    if not_modified {
        start(web, w, 304, keep, minor);
        validators(web, w, &last_modified, &s.tag);
        w.put_slice(b"\r\n");
        return After::Done;
    }

    let mut range = match req.header("range") {
        Some(r) if !head_only => files::range(r, size),
        _ => Range::Full,
    };
    if range != Range::Full {
        // If-Range: the range applies only to the representation the client has.
        if let Some(v) = req.header("if-range") {
            let same = if v.starts_with(b"\"") {
                v == &s.tag[..]
            } else {
                v == &last_modified[..]
            };
            if !same {
                range = Range::Full;
            }
        }
    }
    let (status, offset, len) = match range {
        Range::Full => (200, 0, size),
        Range::Part { start, end } => (206, start, end - start + 1),
        Range::Unsatisfiable => {
            let cr = format!("content-range: bytes */{size}");
            error_page(web, w, &cx, 416, &[&cr]);
            return After::Done;
        }
    };
    start(web, w, status, keep, minor);
    w.put_slice(b"content-type: ");
    w.put_slice(files::mime(&s.rel).as_bytes());
    w.put_slice(b"\r\ncontent-length: ");
    put_u64(w, len);
    w.put_slice(b"\r\n");
    if status == 206 {
        w.put_slice(b"content-range: bytes ");
        put_u64(w, offset);
        w.put_u8(b'-');
        put_u64(w, offset + len - 1);
        w.put_u8(b'/');
        put_u64(w, size);
        w.put_slice(b"\r\n");
    }
    w.put_slice(b"accept-ranges: bytes\r\n");
    validators(web, w, &last_modified, &s.tag);
    w.put_slice(b"\r\n");
    if head_only || len == 0 {
        return After::Done;
    }
    if len > SMALL_FILE {
        return After::SendFile { file, offset, len };
    }
    let at = w.len();
    w.resize(at + len as usize, 0);
    match file.read_exact_at(&mut w[at..], offset) {
        Ok(()) => After::Done,
        Err(_) => {
            // The file shrank under us: the promised length cannot be sent.
            w.truncate(at);
            After::SendFile { file, offset, len }
        }
    }
}

fn validators(web: &Web, w: &mut BytesMut, last_modified: &[u8], tag: &[u8]) {
    w.put_slice(b"last-modified: ");
    w.put_slice(last_modified);
    w.put_slice(b"\r\netag: ");
    w.put_slice(tag);
    w.put_slice(b"\r\n");
    w.put_slice(&web.cache_line);
}

/// Opens a NUL-terminated relative path beneath the root; the error is the status to answer.
fn open(web: &Web, rel: &[u8]) -> Result<(File, std::fs::Metadata), u16> {
    let c = CStr::from_bytes_with_nul(rel).map_err(|_| 400u16)?;
    let f = web.open(c).map_err(|e| match e.raw_os_error() {
        // EXDEV: the path would leave the root; ELOOP: a symlink we refuse to follow.
        Some(libc::EXDEV) | Some(libc::ELOOP) | Some(libc::EACCES) | Some(libc::EPERM) => 403u16,
        _ => 404u16,
    })?;
    let m = f.metadata().map_err(|_| 404u16)?;
    Ok((f, m))
}

/// Sends `len` bytes of `file` from `offset`. Plain sockets (epoll or ring):
/// sendfile(2), the kernel copies and user space never sees the bytes. TLS:
/// read and encrypted in user space, a buffer at a time.
async fn send_file(
    io: &mut Io,
    file: &File,
    offset: u64,
    len: u64,
    idle: Duration,
) -> io::Result<()> {
    match io {
        Io::Plain(s) => {
            sendfile_loop(
                s.as_raw_fd(),
                file,
                offset,
                len,
                idle,
                |f| s.try_io(Interest::WRITABLE, f),
                || async { s.ready(Interest::WRITABLE).await.map(|_| ()) },
            )
            .await
        }
        Io::Ring(s) => {
            // The ring's last send goes first.
            s.settle().await?;
            sendfile_loop(s.fd(), file, offset, len, idle, |f| f(), || s.writable()).await
        }
        _ => copy_file(io, file, offset, len, idle).await,
    }
}

/// sendfile(2) until `len` bytes are sent: `attempt` runs one call (tokio's
/// `try_io` clears a plain socket's readiness when it would block), `writable`
/// waits for room.
async fn sendfile_loop<A, W, WF>(
    out_fd: RawFd,
    file: &File,
    offset: u64,
    len: u64,
    idle: Duration,
    attempt: A,
    writable: W,
) -> io::Result<()>
where
    A: Fn(&mut dyn FnMut() -> io::Result<u64>) -> io::Result<u64>,
    W: Fn() -> WF,
    WF: std::future::Future<Output = io::Result<()>>,
{
    let mut off = offset as libc::off_t;
    let mut left = len;
    let in_fd = file.as_raw_fd();
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        let r = attempt(&mut || {
            // SAFETY: both descriptors are open for the call; `off` is a valid pointer.
            let n = unsafe { libc::sendfile(out_fd, in_fd, &mut off, chunk) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match r {
            // The file shrank: the promised length cannot be kept; close.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(idle, writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The file through user space, for TLS: a buffer at a time.
async fn copy_file(
    io: &mut Io,
    file: &File,
    offset: u64,
    len: u64,
    idle: Duration,
) -> io::Result<()> {
    let mut buf = crate::io::SpareBuffer::take();
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let n = ((end - at) as usize).min(crate::io::READ_CHUNK);
        buf.clear();
        buf.resize(n, 0);
        match file.read_at(&mut buf[..n], at)? {
            // The file shrank: the promised length cannot be kept; close.
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            got => {
                io.write_all_idle(&buf[..got], idle).await?;
                at += got as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_back_from_the_head() {
        assert_eq!(status_at(b"xxHTTP/1.1 404 Not Found\r\n", 2), 404);
        assert_eq!(status_at(b"HTTP/1.1 2", 0), 0);
    }

    #[test]
    fn numbers_format() {
        let mut w = BytesMut::new();
        for n in [0u64, 7, 10, 1024, u64::MAX] {
            w.clear();
            put_u64(&mut w, n);
            assert_eq!(&w[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn date_is_cached_and_well_formed() {
        let a = date_now();
        assert!(files::parse_http_date(&a).is_some());
        let b = date_now();
        assert!(files::parse_http_date(&b).unwrap() >= files::parse_http_date(&a).unwrap());
    }
}
