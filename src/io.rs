//! A connection as the proxy sees it: plain TCP (fast path: poll_read / try_write on the
//! socket) or TLS toward a client or a server (through tokio-rustls).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

// The buffers every connection reads into, where callers have always found them.
pub use crate::buffer::{
    buffer_counts, give_buffer, make_room, take_buffer, SpareBuffer, READ_CHUNK,
};

/// Bounds of `Io::linger`: the whole of it, the longest silence, the most bytes dropped.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_IDLE: Duration = Duration::from_secs(1);
pub const LINGER_BYTES: usize = 8 << 20;

pub enum Io {
    Plain(TcpStream),
    /// Plain TCP through the worker's io_uring (`crate::uring`), off epoll.
    Ring(crate::uring::Stream),
    /// We are the TLS server (a client connected to a `bind ... ssl`).
    TlsIn(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// We are the TLS client (`server ... ssl`).
    TlsOut(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// [`Io::ready_to_read`]'s future.
pub enum ReadyToRead<'a> {
    Tokio(&'a TcpStream),
    Ring(crate::uring::Readable),
}

impl std::future::Future for ReadyToRead<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadyToRead::Tokio(s) => s.poll_read_ready(cx),
            ReadyToRead::Ring(r) => Pin::new(r).poll(cx),
        }
    }
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
    /// Waits until the socket is readable, as a small plain future (no async
    /// state; tokio's sockets keep the waker in their registration): what a
    /// parked keep-alive connection holds while it waits.
    pub fn ready_to_read(&self) -> ReadyToRead<'_> {
        match self {
            Io::Plain(s) => ReadyToRead::Tokio(s),
            Io::Ring(s) => ReadyToRead::Ring(s.readable_op()),
            Io::TlsIn(s) => ReadyToRead::Tokio(s.get_ref().0),
            Io::TlsOut(s) => ReadyToRead::Tokio(s.get_ref().0),
        }
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.ready_to_read().await
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
