//! TCP mode: connect to a server with retries, then move bytes both ways with splice(2).

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::balance::{InFlight, Pool};
use crate::stats::{BackendStats, FrontendStats};

/// How a connection to a backend server is made.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPolicy {
    pub retries: u32,
    pub timeout_connect: Duration,
    /// Under `balance source`, a retry may leave the hashed server.
    pub redispatch: bool,
}

/// Connects to a server of `pool`; a failed attempt moves on to a server not
/// tried yet, at most `retries` extra times. `None` when no server accepted
/// (or none is up). Failures feed passive health checks (`observe`).
pub async fn connect(
    pool: &Pool,
    client: Option<std::net::IpAddr>,
    policy: ConnectPolicy,
    stats: &BackendStats,
) -> Option<(TcpStream, InFlight)> {
    let mut tried: Vec<Arc<crate::balance::Server>> = Vec::new();
    for attempt in 0..=policy.retries {
        let ctx = crate::balance::PickCtx {
            client,
            tried: &tried,
            redispatch: policy.redispatch,
        };
        let server = pool.pick_with(&ctx)?.clone();
        if attempt > 0 {
            stats.retries.inc();
            if !tried.iter().any(|s| Arc::ptr_eq(s, &server)) {
                stats.redispatches.inc();
            }
        }
        match connect_one(&server, policy.timeout_connect).await {
            Ok(s) => return Some((s, server.enter())),
            Err(reason) => {
                tracing::debug!(
                    "connect to {} ({}) failed: {reason}",
                    server.id,
                    server.addr
                );
                server.connect_errors.fetch_add(1, Ordering::Relaxed);
                server.observe_connect(Err(reason));
            }
        }
        tried.push(server);
    }
    None
}

/// One connect attempt with its timeout; `Err` is a reason for logs and checks.
pub async fn connect_one(
    server: &crate::balance::Server,
    limit: Duration,
) -> Result<TcpStream, String> {
    match tokio::time::timeout(limit, TcpStream::connect(server.addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err("connect refused".into()),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err("connect timeout".into()),
    }
}

/// TLS to a server over a connected socket, within `limit`; `Err` is a reason.
pub async fn tls_handshake(
    c: &crate::tls::Connector,
    sock: TcpStream,
    limit: Duration,
) -> Result<crate::io::Io, String> {
    let connector = tokio_rustls::TlsConnector::from(c.config.clone());
    match tokio::time::timeout(limit, connector.connect(c.name.clone(), sock)).await {
        Ok(Ok(t)) => Ok(crate::io::Io::TlsOut(Box::new(t))),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err("TLS handshake timeout".into()),
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
pub async fn tunnel(client: &TcpStream, server: &TcpStream, idle: Idle) -> io::Result<Moved> {
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
    let mut spare = crate::io::SpareBuffer::take();
    let buf = &mut spare.0;
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = loop {
            match crate::io::try_read_drain(src, buf) {
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

/// Where a TCP session is counted.
#[derive(Debug, Clone)]
pub struct Observe {
    pub frontend: Arc<FrontendStats>,
    pub backend: Arc<BackendStats>,
}

/// Serves one accepted TCP-mode connection end to end.
pub async fn serve(
    client: TcpStream,
    peer: std::net::SocketAddr,
    pool: Arc<Pool>,
    policy: ConnectPolicy,
    idle: Idle,
    obs: Observe,
) {
    let _session = obs.frontend.open();
    let start = Instant::now();
    let connected = connect(&pool, Some(peer.ip()), policy, &obs.backend).await;
    let tc = start.elapsed();
    let Some((server, guard)) = connected else {
        tracing::debug!("no server accepted the connection from {peer}; closing it");
        log_session(&obs, peer, start, None, Moved::default());
        return;
    };
    guard.0.stats.connect.observe(tc.as_secs_f64());
    let moved = tunnel(&client, &server, idle).await;
    log_session(
        &obs,
        peer,
        start,
        Some((&guard, tc)),
        moved.as_ref().copied().unwrap_or_default(),
    );
    match moved {
        Ok(m) => tracing::debug!(
            "tcp session to {} ended: {} bytes up, {} down",
            guard.0.id,
            m.to_server,
            m.to_client
        ),
        Err(e) => tracing::debug!("tcp session to {} aborted: {e}", guard.0.id),
    }
}

/// Counts a finished TCP session and writes its access log line.
fn log_session(
    obs: &Observe,
    peer: std::net::SocketAddr,
    start: Instant,
    server: Option<(&InFlight, Duration)>,
    m: Moved,
) {
    let took = start.elapsed();
    obs.frontend
        .traffic
        .record(None, m.to_server, m.to_client, took);
    if let Some((g, _)) = server {
        g.0.stats
            .traffic
            .record(None, m.to_server, m.to_client, took);
    }
    if let Some(log) = crate::accesslog::get() {
        log.log(crate::accesslog::Record {
            time: std::time::SystemTime::now() - took,
            client: peer,
            frontend: obs.frontend.name.clone(),
            backend: Some(obs.backend.name.clone()),
            server: server.map(|(g, _)| g.0.stats.name.clone()),
            tc: server.map_or(-1, |(_, tc)| tc.as_millis() as i64),
            tr: -1,
            ta: took.as_millis() as u64,
            status: None,
            bytes_out: m.to_client,
            bytes_in: m.to_server,
            request: None,
        });
    }
}

/// TCP mode when TLS is on either side: terminate or originate TLS, then tunnel.
pub async fn serve_io(
    mut client: crate::io::Io,
    peer: std::net::SocketAddr,
    be: &crate::snapshot::BackendRt,
    timeout_client: Duration,
    frontend: &Arc<FrontendStats>,
) {
    let obs = Observe {
        frontend: frontend.clone(),
        backend: be.stats.clone(),
    };
    let _session = frontend.open();
    let start = Instant::now();
    let mut tried: Vec<Arc<crate::balance::Server>> = Vec::new();
    for attempt in 0..=be.conf.retries {
        let ctx = crate::balance::PickCtx {
            client: Some(peer.ip()),
            tried: &tried,
            redispatch: be.conf.redispatch,
        };
        let Some(server) = be.pool.pick_with(&ctx).cloned() else {
            break;
        };
        if attempt > 0 {
            be.stats.retries.inc();
            if !tried.iter().any(|s| Arc::ptr_eq(s, &server)) {
                be.stats.redispatches.inc();
            }
        }
        let connected = match connect_one(&server, be.conf.timeout_connect).await {
            Ok(sock) => match be.connector(&server) {
                None => Ok(crate::io::Io::Plain(sock)),
                Some(c) => tls_handshake(c, sock, be.conf.timeout_connect).await,
            },
            Err(e) => Err(e),
        };
        match connected {
            Ok(mut up) => {
                let guard = server.enter();
                let tc = start.elapsed();
                server.stats.connect.observe(tc.as_secs_f64());
                let idle = Idle {
                    client: timeout_client,
                    server: be.conf.timeout_server,
                };
                let moved = match crate::io::tunnel(&mut client, &mut up, idle).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!("tcp session to {} aborted: {e}", server.id);
                        Moved::default()
                    }
                };
                log_session(&obs, peer, start, Some((&guard, tc)), moved);
                return;
            }
            Err(reason) => {
                server.connect_errors.fetch_add(1, Ordering::Relaxed);
                server.observe_connect(Err(reason));
                tried.push(server);
            }
        }
    }
    log_session(&obs, peer, start, None, Moved::default());
}
