//! Listening sockets (socket2, SO_REUSEPORT shared by this process alone, backlog), accept loops and maxconn permits.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Kernel accept backlog; connections beyond maxconn wait here.
pub const BACKLOG: i32 = 4096;

/// Binds one listening socket. `reuseport` lets each worker own a socket on the
/// same address so the kernel spreads connections without a shared accept lock.
pub fn bind(addr: SocketAddr, reuseport: bool) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    freebind(&s, addr)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// `n` sockets on one address (port 0 resolved by the first bind), one per
/// worker, each holding the address in this process's record until dropped.
///
/// SO_REUSEPORT even with one worker: a reload may open the same address for a
/// renamed frontend before the old socket closes. But any process of the same
/// user may join a SO_REUSEPORT group, and the kernel would then split the
/// connections (and a kv's data) between the two silently. So unless this
/// process already holds the address, a probe socket without SO_REUSEPORT
/// binds it first: it fails while anyone else listens there, reuseport or
/// not. (Two processes starting within the same instant could both pass the
/// probe; a start after a running lb cannot.) Port 0 needs no probe: the
/// kernel picks a port that no socket uses, SO_REUSEPORT or not.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<(SocketAddr, Vec<Bound>)> {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if addr.port() != 0 && !held.keys().any(|h| overlaps(*h, addr)) {
        probe(addr)?;
    }
    let first = bind(addr, true)?;
    let real = first.local_addr()?;
    let mut socks = vec![first];
    for _ in 1..n {
        socks.push(bind(real, true)?);
    }
    *held.entry(real).or_default() += socks.len();
    let out = socks
        .into_iter()
        .map(|sock| Bound {
            sock,
            held: Held(real),
        })
        .collect();
    Ok((real, out))
}

/// Virtual (VRRP) addresses: bound with IP_FREEBIND, so that a backup listens
/// on an address before it holds it. Set by the runtime from the conf.
static FREEBIND: std::sync::Mutex<Vec<std::net::IpAddr>> = std::sync::Mutex::new(Vec::new());

pub fn set_freebind(ips: Vec<std::net::IpAddr>) {
    *FREEBIND
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = ips;
}

fn freebind(s: &Socket, addr: SocketAddr) -> io::Result<()> {
    let ips = FREEBIND
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if ips.contains(&addr.ip()) {
        s.set_freebind(true)?;
    }
    Ok(())
}

/// Addresses this process listens on, with their number of sockets.
static HELD: std::sync::Mutex<BTreeMap<SocketAddr, usize>> = std::sync::Mutex::new(BTreeMap::new());

/// Whether a listener on `a` keeps a socket without SO_REUSEPORT off `b`:
/// the same port and family, and the same IP or a wildcard on either side
/// (IPv6 sockets are v6-only here).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Binds `addr` without SO_REUSEPORT and lets it go: EADDRINUSE means another
/// process listens there. SO_REUSEADDR so that connections of a previous run
/// in TIME_WAIT do not count.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    freebind(&s, addr)?;
    match s.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(in_use()),
        r => r,
    }
}

/// The error of an address some other process listens on.
pub fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "already in use by another process",
    )
}

/// A listening socket of this process; the address stays in the process's
/// record while any of its sockets lives.
pub struct Bound {
    pub sock: std::net::TcpListener,
    held: Held,
}

struct Held(SocketAddr);

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = HELD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.0);
            }
        }
    }
}

/// Permits that bound concurrent connections (global and per listener owner).
#[derive(Clone, Debug)]
pub struct Limits(pub Vec<Arc<Semaphore>>);

impl Limits {
    /// Waits for one permit of each limit: while waiting, new connections stay
    /// in the kernel backlog instead of being accepted and dropped.
    pub async fn acquire(&self) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::with_capacity(self.0.len());
        // Narrowest limit first, so we never sit on a global permit while blocked.
        for s in self.0.iter().rev() {
            match s.clone().acquire_owned().await {
                Ok(p) => permits.push(p),
                // A closed semaphore means "unlimited"; never happens in practice.
                Err(_) => continue,
            }
        }
        permits
    }
}

/// Accepts connections until `stop` flips, handing each to `serve` with its permits.
///
/// Order matters with one SO_REUSEPORT socket per worker: wait until *this*
/// socket has a pending connection, then wait for a permit, then accept. Taking
/// the permit first could park it on an empty socket while the connection
/// waits in another worker's queue.
pub async fn accept_loop<F, Fut>(
    listener: Bound,
    limits: Limits,
    stops: [watch::Receiver<bool>; 2],
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Vec<OwnedSemaphorePermit>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Bound {
        sock: listener,
        held: _held,
    } = listener;
    // SAFETY: the TcpListener owns its descriptor and the AsyncFd owns the
    // listener, so the fd stays open and unchanged for the AsyncFd's lifetime.
    let listener = match unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) } {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot register listener: {}", e.into_parts().1);
            return;
        }
    };
    let [mut stop, mut stop_all] = stops;
    loop {
        if *stop.borrow() || *stop_all.borrow() {
            return;
        }
        let mut ready = tokio::select! {
            _ = stop.changed() => continue,
            _ = stop_all.changed() => continue,
            r = listener.readable() => match r {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!("listener failed: {e}");
                    return;
                }
            },
        };
        let permits = tokio::select! {
            _ = stop.changed() => continue,
            _ = stop_all.changed() => continue,
            p = limits.acquire() => p,
        };
        let accepted = match ready.try_io(|l| accept(l.get_ref())) {
            Ok(r) => r,
            // Spurious readiness: nothing pending after all; permits go back.
            Err(_would_block) => continue,
        };
        match accepted {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(crate::clock::Fresh(serve(sock, peer, permits)));
            }
            Err(e) => {
                // EMFILE and friends: the connection stays in the backlog and
                // accepting pauses briefly instead of spinning; one log line
                // every few seconds for the whole process, not one per try.
                if let Some(n) = ACCEPT_LOG.hit() {
                    tracing::warn!(
                        "accept failed: {e} ({n} since the last such line); pausing accepts for {}ms",
                        ACCEPT_PAUSE.as_millis()
                    );
                }
                drop(permits);
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// How long an accept loop rests after a failed accept (out of descriptors):
/// existing connections finish and free some meanwhile.
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Failed accepts, all listeners together: one line every few seconds.
static ACCEPT_LOG: crate::fdlimit::RateLimitedLog =
    crate::fdlimit::RateLimitedLog::new(std::time::Duration::from_secs(5));

/// accept4 with non-blocking and close-on-exec set in the same call.
fn accept(l: &std::net::TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    #[cfg(target_os = "linux")]
    let (s, peer) = socket2::SockRef::from(l).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    #[cfg(not(target_os = "linux"))]
    let (s, peer) = {
        let (s, p) = socket2::SockRef::from(l).accept()?;
        s.set_nonblocking(true)?;
        (s, p)
    };
    let peer = peer
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a non-IP socket"))?;
    let std: std::net::TcpStream = s.into();
    Ok((TcpStream::from_std(std)?, peer))
}
