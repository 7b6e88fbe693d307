//! Writes of an HTTP/2 connection batched per turn of the worker: the h2
//! crate writes each response on its own (it flushes before it queues a frame
//! after a DATA payload), so responses ready in the same turn would leave in
//! as many writes. Here its writes and flushes only fill a buffer, and the
//! connection driver writes the buffer once per turn ([`Flusher`]), after the
//! connection was polled, as HAProxy sends once per loop.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this much waiting output, writes wait for the socket (back-pressure).
const LIMIT: usize = 256 << 10;

struct Shared<T> {
    io: T,
    out: BytesMut,
    /// A failed write, told to the next writer.
    failed: Option<io::ErrorKind>,
}

/// The socket as the h2 crate sees it.
pub struct Batched<T>(Arc<Mutex<Shared<T>>>);

/// The driver's handle: writes what is waiting.
pub struct Flusher<T>(Arc<Mutex<Shared<T>>>);

pub fn wrap<T>(io: T) -> (Batched<T>, Flusher<T>) {
    let shared = Arc::new(Mutex::new(Shared {
        io,
        out: BytesMut::new(),
        failed: None,
    }));
    (Batched(shared.clone()), Flusher(shared))
}

fn lock<T>(m: &Mutex<Shared<T>>) -> MutexGuard<'_, Shared<T>> {
    // One thread uses both handles; a panic elsewhere leaves no torn state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: AsyncWrite + Unpin> Shared<T> {
    /// Writes what waits until it is all written (then flushes the socket),
    /// or the socket is full (`Pending`, woken when it has room).
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(k) = self.failed {
            return Poll::Ready(Err(k.into()));
        }
        while !self.out.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return self.fail(io::ErrorKind::WriteZero),
                Poll::Ready(Ok(n)) => self.out.advance(n),
                Poll::Ready(Err(e)) => return self.fail(e.kind()),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Err(e)) => self.fail(e.kind()),
            r => r,
        }
    }

    fn fail(&mut self, k: io::ErrorKind) -> Poll<io::Result<()>> {
        self.failed = Some(k);
        self.out.clear();
        Poll::Ready(Err(k.into()))
    }

    /// Room for more output: below the limit, or drained down to it.
    fn room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(k) = self.failed {
            return Poll::Ready(Err(k.into()));
        }
        if self.out.len() < LIMIT {
            return Poll::Ready(Ok(()));
        }
        self.drain(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut sh = lock(&self.0);
        std::task::ready!(sh.room(cx))?;
        sh.out.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut sh = lock(&self.0);
        std::task::ready!(sh.room(cx))?;
        let mut n = 0;
        for b in bufs {
            sh.out.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// The driver writes once the connection was polled ([`Flusher`]).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).failed {
            Some(k) => Poll::Ready(Err(k.into())),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut sh = lock(&self.0);
        std::task::ready!(sh.drain(cx))?;
        Pin::new(&mut sh.io).poll_shutdown(cx)
    }
}

impl<T: AsyncWrite + Unpin> Flusher<T> {
    /// Writes what the connection buffered; see [`Shared::drain`].
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.0).drain(cx)
    }

    /// Whether output waits.
    pub fn pending(&self) -> bool {
        !lock(&self.0).out.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_leave_only_when_the_flusher_runs() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (mut w, f) = wrap(a);
        w.write_all(b"one ").await.unwrap();
        w.write_all(b"two").await.unwrap();
        w.flush().await.unwrap();
        assert!(f.pending());
        std::future::poll_fn(|cx| f.poll_flush(cx)).await.unwrap();
        assert!(!f.pending());
        drop(w);
        drop(f);
        let mut s = String::new();
        b.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "one two");
    }
}
