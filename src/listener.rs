//! Listening sockets (socket2, SO_REUSEPORT, backlog), accept loops and maxconn permits.

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
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// `n` sockets on one address (port 0 resolved by the first bind), one per worker.
pub fn bind_group(
    addr: SocketAddr,
    n: usize,
) -> io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    // SO_REUSEPORT even with one worker: a reload may open the same address
    // for a renamed frontend before the old socket closes.
    let first = bind(addr, true)?;
    let real = first.local_addr()?;
    let mut out = vec![first];
    for _ in 1..n {
        out.push(bind(real, true)?);
    }
    Ok((real, out))
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
    listener: std::net::TcpListener,
    limits: Limits,
    stops: [watch::Receiver<bool>; 2],
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Vec<OwnedSemaphorePermit>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
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
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                drop(permits);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

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
