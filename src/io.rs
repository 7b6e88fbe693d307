//! A connection as the proxy sees it: plain TCP (fast path: poll_read / try_write on the
//! socket) or TLS toward a client or a server (through tokio-rustls).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Read buffers grow by this much when nearly full.
pub const READ_CHUNK: usize = 16 << 10;

/// Bounds of `Io::linger`: the whole of it, the longest silence, the most bytes dropped.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_IDLE: Duration = Duration::from_secs(1);
pub const LINGER_BYTES: usize = 8 << 20;

/// Most released read buffers a worker thread keeps for reuse (64 MiB of 16 KiB buffers:
/// memory those connections held a second before, kept for the next ones).
const SPARE_MAX: usize = 4096;

thread_local! {
    /// Read buffers given back by idle connections, handed to the next connection that
    /// needs one: released buffers go back to the allocator in 16 KiB holes among other
    /// allocations, which it reuses poorly (most of a connection's memory does not
    /// come back); a per-worker stack reuses them whole, as HAProxy's buffer pools do.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One thread's buffer counts. Each thread writes only its own (no cache line
/// shared between workers on the request path), with plain loads and stores
/// rather than locked read-modify-writes, since no other thread writes them; a
/// scrape sums them all.
#[derive(Default)]
struct BufferCounts {
    /// Buffers on this thread's spare stack.
    spare: AtomicUsize,
    /// Buffers `take_buffer` had to allocate (the spare stack was empty).
    allocated: AtomicU64,
}

static ALL_COUNTS: Mutex<Vec<Arc<BufferCounts>>> = Mutex::new(Vec::new());

thread_local! {
    static COUNTS: Arc<BufferCounts> = {
        let c = Arc::new(BufferCounts::default());
        ALL_COUNTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c.clone());
        c
    };
}

/// Over all threads: (buffers on spare stacks now, buffers allocated by
/// `take_buffer` so far). For `/metrics`.
pub fn buffer_counts() -> (usize, u64) {
    let all = ALL_COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter().fold((0, 0), |(s, a), c| {
        (
            s + c.spare.load(Ordering::Relaxed),
            a + c.allocated.load(Ordering::Relaxed),
        )
    })
}

/// An empty read buffer of at least `READ_CHUNK` bytes: a spare one if the worker has one.
pub fn take_buffer() -> BytesMut {
    let spare = SPARE.with(|s| s.borrow_mut().pop());
    COUNTS.with(|c| match spare {
        Some(b) => {
            let n = c.spare.load(Ordering::Relaxed);
            c.spare.store(n.saturating_sub(1), Ordering::Relaxed);
            b
        }
        None => {
            let n = c.allocated.load(Ordering::Relaxed);
            c.allocated.store(n + 1, Ordering::Relaxed);
            BytesMut::with_capacity(READ_CHUNK)
        }
    })
}

/// Room for the next read. A buffer that was read from is left with only the tail
/// of its allocation: once empty it is rewound to the whole of it, which is free
/// when nothing else refers to it. Otherwise a response landing on the last
/// kilobyte or so of the buffer takes two reads and goes out as two writes (two
/// TCP segments, two TLS records). A buffer with less than 1 KiB of room grows.
pub fn make_room(buf: &mut BytesMut) {
    if buf.is_empty() && buf.try_reclaim(READ_CHUNK) {
        return;
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
}

/// Gives `buf` back for reuse (its contents are discarded), leaving an empty,
/// unallocated buffer in its place. Only buffers of the standard size are kept, so
/// the spare stack stays within `SPARE_MAX` × `READ_CHUNK`: one that grew (a chunked
/// relay's 64 KiB batch, a large write copied for the ring) goes back to the
/// allocator.
pub fn give_buffer(buf: &mut BytesMut) {
    let mut b = std::mem::take(buf);
    b.clear();
    // Unique (no request or response bytes still refer to it): this reclaims the
    // whole allocation without copying or allocating.
    if !b.try_reclaim(READ_CHUNK) || b.capacity() > READ_CHUNK {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_MAX {
            s.push(b);
            COUNTS.with(|c| {
                let n = c.spare.load(Ordering::Relaxed);
                c.spare.store(n + 1, Ordering::Relaxed);
            });
        }
    });
}

/// A spare buffer that goes back to the worker's stack when dropped.
pub struct SpareBuffer(pub BytesMut);

impl SpareBuffer {
    pub fn take() -> SpareBuffer {
        SpareBuffer(take_buffer())
    }
}

impl std::ops::Deref for SpareBuffer {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.0
    }
}

impl std::ops::DerefMut for SpareBuffer {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }
}

impl Drop for SpareBuffer {
    fn drop(&mut self) {
        give_buffer(&mut self.0);
    }
}

pub enum Io {
    Plain(TcpStream),
    /// Plain TCP through the worker's io_uring (`crate::uring`), off epoll.
    Ring(crate::uring::Stream),
    /// We are the TLS server (a client connected to a `bind ... ssl`).
    TlsIn(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// We are the TLS client (`server ... ssl`).
    TlsOut(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    /// A plain socket as this worker carries it: on its io_uring when it has
    /// one, else on tokio's reactor.
    pub fn plain(sock: TcpStream) -> io::Result<Io> {
        if crate::uring::active() {
            crate::uring::Stream::from_tokio(sock).map(Io::Ring)
        } else {
            Ok(Io::Plain(sock))
        }
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> RawFd {
        match self {
            Io::Plain(s) => s.as_raw_fd(),
            Io::Ring(s) => s.fd(),
            Io::TlsIn(s) => s.get_ref().0.as_raw_fd(),
            Io::TlsOut(s) => s.get_ref().0.as_raw_fd(),
        }
    }

    /// Waits until the socket has bytes, EOF or an error (TLS: raw socket bytes).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.readable().await,
            Io::Ring(s) => s.readable().await,
            Io::TlsIn(s) => s.get_ref().0.readable().await,
            Io::TlsOut(s) => s.get_ref().0.readable().await,
        }
    }

    /// Waits until what was written is in the kernel's hands (a ring write
    /// returns once its send is queued): the error of a send that failed.
    /// Other sockets write synchronously: at once.
    pub async fn settle(&self) -> io::Result<()> {
        match self {
            Io::Ring(s) => s.settle().await,
            _ => Ok(()),
        }
    }

    /// Moves a ring socket onto tokio's reactor, for code that polls it
    /// (the TLS and splice tunnels), once its send in flight is over.
    pub async fn to_reactor(&mut self) -> io::Result<()> {
        if let Io::Ring(s) = self {
            *self = Io::Plain(s.to_tokio().await?);
        }
        Ok(())
    }

    /// Whether a TLS session holds decrypted bytes not read yet, which no socket
    /// readiness would announce (an error counts as yes: the next read reports
    /// it). Plain sockets: never.
    pub fn has_buffered_plaintext(&mut self) -> bool {
        let state = match self {
            Io::Plain(_) | Io::Ring(_) => return false,
            Io::TlsIn(s) => s.get_mut().1.process_new_packets(),
            Io::TlsOut(s) => s.get_mut().1.process_new_packets(),
        };
        state.map_or(true, |st| st.plaintext_bytes_to_read() > 0)
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Io::Plain(_) | Io::Ring(_))
    }

    /// Reads what is available into `buf` (growing it), waiting until `deadline`.
    /// `Ok(0)` is EOF; a missed deadline is `TimedOut`.
    pub async fn read_until(&mut self, buf: &mut BytesMut, deadline: Instant) -> io::Result<usize> {
        make_room(buf);
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "read timeout");
        match self {
            Io::Plain(s) => read_until(s, buf, deadline).await,
            Io::Ring(s) => s.read_until(buf, deadline).await,
            _ => match tokio::time::timeout_at(deadline.into(), self.read_buf(buf)).await {
                Ok(r) => r,
                Err(_) => Err(timed_out()),
            },
        }
    }

    /// Writes all of `data`, failing if the peer accepts nothing for `idle`.
    pub async fn write_all_idle(&mut self, data: &[u8], idle: Duration) -> io::Result<()> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "write timeout");
        match self {
            Io::Plain(s) => write_all(s, data, idle).await,
            Io::Ring(s) => s.write_all(data, idle).await,
            _ => {
                let fut = async {
                    self.write_all(data).await?;
                    self.flush().await
                };
                match tokio::time::timeout(idle.max(Duration::from_millis(1)), fut).await {
                    Ok(r) => r,
                    Err(_) => Err(timed_out()),
                }
            }
        }
    }

    /// Closes a client connection that may still be sending (a request body
    /// lb did not read: a 413, a deny, an early answer), as nginx's
    /// `lingering_close` does. Closing a socket with unread bytes makes the
    /// kernel send a reset, and a client still writing then gets "connection
    /// reset" and may never read the response. Instead: half-close (after TLS
    /// close_notify), then read and drop what arrives until the client closes,
    /// is silent for `LINGER_IDLE`, has sent `LINGER_BYTES`, or `LINGER_TIME`
    /// has passed.
    pub async fn linger(&mut self) {
        let shut = match self {
            Io::Ring(s) => s.shutdown_write().await,
            _ => match tokio::time::timeout(LINGER_IDLE, AsyncWriteExt::shutdown(self)).await {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        if shut.is_err() {
            return;
        }
        let end = crate::clock::now() + LINGER_TIME;
        let mut buf = take_buffer();
        let mut dropped = 0usize;
        while dropped < LINGER_BYTES {
            let deadline = end.min(crate::clock::now() + LINGER_IDLE);
            match self.read_until(&mut buf, deadline).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
            buf.clear();
        }
        give_buffer(&mut buf);
    }

    /// An idle pooled connection is reusable: nothing to read and not closed.
    /// Peeks without consuming (so TLS records stay intact) and without
    /// touching the reactor's readiness.
    pub fn idle_and_open(&self) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: recv on a descriptor we own into a 1-byte stack buffer.
        let n = unsafe {
            libc::recv(
                self.fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

/// Reads what is available on a plain socket into `buf` (growing it), waiting
/// until `deadline`. Goes through `AsyncRead::poll_read` rather than `try_read`:
/// a read that does not fill the buffer drained the socket, and poll_read then
/// clears the reactor's readiness, so the next read waits for epoll's edge instead
/// of spending a `recv` on EAGAIN (nearly two per proxied request otherwise).
/// `Ok(0)` is EOF; a missed deadline is `TimedOut`.
pub async fn read_until(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> io::Result<usize> {
    make_room(buf);
    match tokio::time::timeout_at(deadline.into(), s.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "read timeout")),
    }
}

/// `read_until` for a server's next request: while `buf` holds none of it yet,
/// the start of the drain (SIGTERM) ends the read as at EOF, so an idle
/// keep-alive connection closes then rather than at its timeout. Bytes that
/// arrive first are read as usual, and a request begun is read to its end.
pub async fn read_unless_draining(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> io::Result<usize> {
    if !buf.is_empty() {
        return read_until(s, buf, deadline).await;
    }
    if crate::shutdown::draining() {
        return Ok(0);
    }
    tokio::select! {
        biased;
        r = read_until(s, buf, deadline) => r,
        _ = crate::shutdown::drain_started() => Ok(0),
    }
}

/// `try_read_buf` on a shared socket that, like tokio's own `poll_read`, clears read
/// readiness after a short read: the read drained the socket, so the next one waits
/// for epoll's edge instead of spending a `recv` on EAGAIN. (Readiness can only be
/// cleared by returning WouldBlock from `try_io`; tokio then clears it with the tick
/// taken before the `recv`, so an event that arrived since is kept.)
pub fn try_read_drain(s: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut short = None;
    let r = s.try_io(Interest::READABLE, || match s.try_read_buf(buf) {
        Ok(n) if n > 0 && n < room => {
            short = Some(n);
            Err(io::ErrorKind::WouldBlock.into())
        }
        r => r,
    });
    short.map_or(r, Ok)
}

/// Writes all of `data` to a plain socket, failing if the peer accepts nothing for `idle`.
pub async fn write_all(s: &TcpStream, mut data: &[u8], idle: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match s.try_write(data) {
            Ok(n) => {
                data = &data[n..];
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tokio::time::timeout(idle, s.ready(Interest::WRITABLE)).await {
            Ok(r) => {
                r?;
            }
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
        }
    }
    Ok(())
}

/// Ring sockets are read and written through their own futures; the poll-based
/// users (the tunnels) call `Io::to_reactor` first.
fn not_polled() -> io::Error {
    io::Error::other("io_uring socket polled as AsyncRead/AsyncWrite")
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Ring(_) => Poll::Ready(Err(not_polled())),
            Io::TlsIn(s) => Pin::new(s).poll_read(cx, buf),
            Io::TlsOut(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, data),
            Io::Ring(_) => Poll::Ready(Err(not_polled())),
            Io::TlsIn(s) => Pin::new(s).poll_write(cx, data),
            Io::TlsOut(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Ring(_) => Poll::Ready(Err(not_polled())),
            Io::TlsIn(s) => Pin::new(s).poll_flush(cx),
            Io::TlsOut(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Ring(_) => Poll::Ready(Err(not_polled())),
            Io::TlsIn(s) => Pin::new(s).poll_shutdown(cx),
            Io::TlsOut(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    /// An emptied buffer gets its whole allocation back, in place: the next
    /// response is read whole, not cut at the end of the allocation.
    #[test]
    fn an_emptied_buffer_is_rewound_in_place() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let start = buf.as_ptr();
        buf.put_bytes(b'x', READ_CHUNK - 1100);
        buf.advance(READ_CHUNK - 1100);
        assert_eq!(buf.capacity(), 1100);
        make_room(&mut buf);
        assert_eq!(buf.capacity(), READ_CHUNK);
        assert_eq!(buf.as_ptr(), start, "rewound, not reallocated");
    }

    /// A buffer that grew is freed, not kept: the spare stack holds standard
    /// buffers only.
    #[test]
    fn grown_buffers_are_not_kept_as_spares() {
        SPARE.with(|s| s.borrow_mut().clear());
        let mut big = BytesMut::with_capacity(READ_CHUNK);
        big.put_bytes(b'x', 100 << 10);
        give_buffer(&mut big);
        assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
        let mut std = take_buffer();
        std.put_bytes(b'x', 1000);
        give_buffer(&mut std);
        assert_eq!(SPARE.with(|s| s.borrow().len()), 1);
        assert_eq!(take_buffer().capacity(), READ_CHUNK);
    }

    /// While a head split off the buffer is still alive, rewinding would
    /// overwrite it: the buffer keeps its tail, and grows only when less than
    /// 1 KiB is left.
    #[test]
    fn a_buffer_still_shared_is_not_rewound() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.put_bytes(b'x', READ_CHUNK - 1100);
        let head = buf.split().freeze();
        make_room(&mut buf);
        assert_eq!(buf.capacity(), 1100);
        assert!(head.iter().all(|&b| b == b'x'));
        buf.put_bytes(b'y', 200);
        buf.advance(200);
        make_room(&mut buf);
        assert!(buf.capacity() >= READ_CHUNK);
        assert!(head.iter().all(|&b| b == b'x'));
    }
}
