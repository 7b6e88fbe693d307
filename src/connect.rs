//! A connection to one address: the TCP connect, then the TLS handshake
//! through a connector when the server speaks TLS. The dialer's last step,
//! and all of a health check's connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::io::Io;
use crate::tls::Connector;

/// Connects to `addr` and, with a connector, does the TLS handshake; each
/// step within `limit` (`None`: the caller bounds the whole). `ring`: a plain
/// connection goes through the worker's io_uring when it has one (`Io::plain`). `Err` is a reason for logs and health checks.
pub async fn open(
    addr: SocketAddr,
    tls: Option<&Connector>,
    limit: Option<Duration>,
    ring: bool,
) -> Result<Io, String> {
    open_with(addr, tls, limit, ring, &[]).await
}

/// `open`, writing `preface` (a PROXY protocol header) first, before TLS.
pub async fn open_with(
    addr: SocketAddr,
    tls: Option<&Connector>,
    limit: Option<Duration>,
    ring: bool,
    preface: &[u8],
) -> Result<Io, String> {
    let sock = within(limit, connect(addr))
        .await
        .unwrap_or_else(|| Err("connect timeout".into()))?;
    if !preface.is_empty() {
        use tokio::io::AsyncWriteExt;
        let mut sock = sock;
        within(limit, sock.write_all(preface))
            .await
            .unwrap_or_else(|| Err(std::io::ErrorKind::TimedOut.into()))
            .map_err(|e| format!("PROXY header not sent: {e}"))?;
        return finish(sock, tls, limit, ring).await;
    }
    finish(sock, tls, limit, ring).await
}

async fn finish(
    sock: TcpStream,
    tls: Option<&Connector>,
    limit: Option<Duration>,
    ring: bool,
) -> Result<Io, String> {
    match tls {
        None if ring => Io::plain(sock).map_err(|e| e.to_string()),
        None => Ok(Io::Plain(sock)),
        Some(c) => within(limit, handshake(c, sock))
            .await
            .unwrap_or_else(|| Err("TLS handshake timeout".into())),
    }
}

/// `fut` within `limit`; `None` once it ran out.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(l) => tokio::time::timeout(l, fut).await.ok(),
        None => Some(fut.await),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    match TcpStream::connect(addr).await {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connect refused".into())
        }
        // Out of descriptors or buffers here: not the server's fault.
        Err(e) if crate::fdlimit::is_local_shortage(&e) => {
            Err(format!("{}: {e}", crate::fdlimit::LOCAL))
        }
        Err(e) => Err(format!("connect failed: {e}")),
    }
}

async fn handshake(c: &Connector, sock: TcpStream) -> Result<Io, String> {
    let connector = tokio_rustls::TlsConnector::from(c.config.clone());
    match connector.connect(c.name.clone(), sock).await {
        Ok(t) => Ok(Io::TlsOut(Box::new(t))),
        Err(e) => Err(format!("TLS handshake failed: {e}")),
    }
}
