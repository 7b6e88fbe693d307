//! The byte tunnel between two connections (TCP mode, and HTTP after a 101):
//! splice(2) between two plain sockets, a userspace copy when TLS is on either
//! side; both directions end on their own (half-close), and the session ends
//! when neither side moved a byte for its idle timeout.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::buffer::{SpareBuffer, READ_CHUNK};
use crate::io::{try_read_drain, Io};

/// Moves bytes both ways until both directions end. Two plain sockets use the
/// splice tunnel; with TLS on either side, bytes go through userspace with the
/// same idle rule (the session ends when neither side moved a byte for `idle`).
/// `a` is the client side, `b` the server side; returns the bytes moved each way.
pub async fn tunnel(a: &mut Io, b: &mut Io, idle: Idle) -> io::Result<Moved> {
    a.to_reactor().await?;
    b.to_reactor().await?;
    if let (Io::Plain(x), Io::Plain(y)) = (&*a, &*b) {
        return sockets(x, y, idle).await;
    }
    let limit = idle.client.max(idle.server);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let last = std::sync::Mutex::new(Instant::now());
    let (to_server, to_client) = tokio::try_join!(
        copy_idle(&mut ar, &mut bw, limit, &last),
        copy_idle(&mut br, &mut aw, limit, &last)
    )?;
    Ok(Moved {
        to_server,
        to_client,
    })
}

/// One direction of `tunnel` for TLS: copy until EOF, then half-close.
async fn copy_idle<R, W>(
    r: &mut R,
    w: &mut W,
    limit: Duration,
    last: &std::sync::Mutex<Instant>,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let since = || last.lock().map(|t| t.elapsed()).unwrap_or_default();
    let mut total = 0u64;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let left = limit.checked_sub(since()).unwrap_or_default();
        let n = match tokio::time::timeout(left, r.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) if since() >= limit => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))
            }
            Err(_) => continue,
        };
        // Writes are bounded too: a peer that stops reading must not hold the
        // task once the other direction has ended (nothing then times it out).
        if n == 0 {
            let _ = tokio::time::timeout(limit, w.shutdown()).await;
            return Ok(total);
        }
        let write = async {
            w.write_all(&buf[..n]).await?;
            w.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
        }
        total += n as u64;
        if let Ok(mut t) = last.lock() {
            *t = Instant::now();
        }
    }
}

/// Idle timeouts of the two sides; activity on either side keeps both alive,
/// as HAProxy does in TCP mode.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    pub client: Duration,
    pub server: Duration,
}

/// Bytes moved in each direction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub to_server: u64,
    pub to_client: u64,
}

/// Shuttles bytes between client and server until both directions end.
/// A FIN one way is passed on as a half-close; the other way keeps flowing.
pub async fn sockets(client: &TcpStream, server: &TcpStream, idle: Idle) -> io::Result<Moved> {
    let activity = Activity::new();
    let up = one_way(client, server, idle.client, idle.server, &activity);
    let down = one_way(server, client, idle.server, idle.client, &activity);
    let (to_server, to_client) = tokio::try_join!(up, down)?;
    Ok(Moved {
        to_server,
        to_client,
    })
}

/// Last time either direction moved a byte, in ms since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Time left before `limit` of inactivity is reached; `None` once reached.
    fn remaining(&self, limit: Duration) -> Option<Duration> {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let idle = self.start.elapsed().saturating_sub(last);
        limit.checked_sub(idle).filter(|d| !d.is_zero())
    }
}

/// Waits for `interest` on `s`, failing once both sides were idle for `limit`.
async fn ready(
    s: &TcpStream,
    interest: Interest,
    limit: Duration,
    act: &Activity,
) -> io::Result<()> {
    loop {
        let Some(left) = act.remaining(limit) else {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
        };
        if let Ok(r) = tokio::time::timeout(left, s.ready(interest)).await {
            r?;
            return Ok(());
        }
    }
}

/// Reads below this size are copied through a small buffer; a read that fills
/// it means data is streaming, and the direction switches to splice(2). Short
/// exchanges never pay for creating a pipe (HAProxy's `splice-auto` idea).
const COPY_BUF: usize = 16 << 10;

async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    src_idle: Duration,
    dst_idle: Duration,
    act: &Activity,
) -> io::Result<u64> {
    // A worker's spare buffer, not an array: inline, the two directions' buffers
    // made every task that can tunnel 32 KiB larger, HTTP connections included
    // (an upgrade tunnels).
    let mut spare = SpareBuffer::take();
    let buf = &mut spare.0;
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = loop {
            match try_read_drain(src, buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready(src, Interest::READABLE, src_idle, act).await?
                }
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
            return Ok(total);
        }
        act.touch();
        let mut off = 0;
        while off < n {
            match dst.try_write(&buf[off..n]) {
                Ok(m) => {
                    off += m;
                    total += m as u64;
                    act.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready(dst, Interest::WRITABLE, dst_idle, act).await?
                }
                Err(e) => return Err(e),
            }
        }
        #[cfg(target_os = "linux")]
        if n >= COPY_BUF {
            return splice_way(src, dst, src_idle, dst_idle, act)
                .await
                .map(|m| m + total);
        }
    }
}

#[cfg(target_os = "linux")]
async fn splice_way(
    src: &TcpStream,
    dst: &TcpStream,
    src_idle: Duration,
    dst_idle: Duration,
    act: &Activity,
) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let pipe = Pipe::new()?;
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut total = 0u64;
    loop {
        // Fill the pipe only when it is empty: then EAGAIN can only mean "socket
        // empty", never "pipe full", and clearing read readiness is always right.
        let n = loop {
            match src.try_io(Interest::READABLE, || splice(src_fd, pipe.w, pipe.cap)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready(src, Interest::READABLE, src_idle, act).await?;
                }
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
            return Ok(total);
        }
        act.touch();
        let mut in_pipe = n;
        while in_pipe > 0 {
            match dst.try_io(Interest::WRITABLE, || splice(pipe.r, dst_fd, in_pipe)) {
                Ok(m) => {
                    in_pipe -= m;
                    total += m as u64;
                    act.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready(dst, Interest::WRITABLE, dst_idle, act).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A kernel pipe used as splice's in-between buffer.
#[cfg(target_os = "linux")]
struct Pipe {
    r: i32,
    w: i32,
    cap: usize,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// Bigger pipes mean fewer syscalls per byte; the kernel may refuse, then we keep 64 KiB.
    const WANT: i32 = 1 << 20;

    fn new() -> io::Result<Pipe> {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid array of two ints, as pipe2 requires.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fds[1] is the pipe we just created.
        let got = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, Self::WANT) };
        let cap = if got > 0 { got as usize } else { 1 << 16 };
        Ok(Pipe {
            r: fds[0],
            w: fds[1],
            cap,
        })
    }
}

#[cfg(target_os = "linux")]
impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: we own both descriptors and close each once.
        unsafe {
            libc::close(self.r);
            libc::close(self.w);
        }
    }
}

#[cfg(target_os = "linux")]
fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on descriptors owned by the caller; null offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
