//! The PROXY protocol (haproxy.org/download/2.6/doc/proxy-protocol.txt):
//! the header `send-proxy`/`send-proxy-v2` servers get before any byte of
//! the connection, and the one an `accept-proxy` bind reads from its clients
//! (v1 text or v2 binary) to learn the real client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature: 12 bytes no HTTP or TLS stream starts with.
pub const V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Both addresses in one family: an IPv4 address facing IPv6 is written mapped.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

/// `PROXY TCP4 SRC DST SPORT DPORT\r\n`.
pub fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// The binary v2 header: PROXY command over TCP, the two addresses and ports.
pub fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = V2_SIG.to_vec();
    out.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // TCP over IPv4
            out.extend(12u16.to_be_bytes());
            out.extend(s.octets());
            out.extend(d.octets());
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V6(x) => x,
                IpAddr::V4(x) => x.to_ipv6_mapped(),
            };
            out.push(0x21); // TCP over IPv6
            out.extend(36u16.to_be_bytes());
            out.extend(six(s).octets());
            out.extend(six(d).octets());
        }
    }
    out.extend(src.port().to_be_bytes());
    out.extend(dst.port().to_be_bytes());
    out
}

/// `accept-proxy` on the bind a connection came in on (`bind`: its address
/// and which of the binds on that address): the client's address and the one
/// it reached, as its PROXY header names them. `None` closes the connection:
/// a bind with `accept-proxy` refuses one without a valid header.
pub async fn accepted(
    fe: &crate::conf::Frontend,
    bind: (SocketAddr, usize),
    sock: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(SocketAddr, SocketAddr)> {
    let b = fe.binds.iter().filter(|b| b.addr == bind.0).nth(bind.1)?;
    if !b.hap.accept_proxy {
        return Some((peer, local));
    }
    // Boxed: only `accept-proxy` binds read a header, and every connection's
    // task would otherwise be sized for this read.
    match Box::pin(read(sock, fe.http.timeout_handshake)).await {
        Ok(Some(addrs)) => Some(addrs),
        Ok(None) => Some((peer, local)),
        Err(e) => {
            tracing::debug!("frontend {}: connection from {peer} closed: {e}", fe.name);
            None
        }
    }
}

/// Why a client's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum BadHeader {
    #[error("no PROXY header")]
    Missing,
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
    #[error("PROXY header not received in time")]
    Timeout,
    #[error("connection closed before the PROXY header")]
    Closed,
}

/// What a header says: the client's address and the address it reached;
/// `None` for `LOCAL`/`UNKNOWN` (the connection's own addresses stand).
pub type Addresses = Option<(SocketAddr, SocketAddr)>;

/// Reads a v1 or v2 header from the front of `sock`, byte-exact (nothing
/// past it is consumed), within `limit`.
pub async fn read(sock: &mut TcpStream, limit: Duration) -> Result<Addresses, BadHeader> {
    tokio::time::timeout(limit, read_inner(sock))
        .await
        .unwrap_or(Err(BadHeader::Timeout))
}

async fn read_inner(sock: &mut TcpStream) -> Result<Addresses, BadHeader> {
    let mut first = [0u8; 16];
    peek_exact(sock, &mut first).await?;
    if first[..12] == V2_SIG {
        let len = u16::from_be_bytes([first[14], first[15]]) as usize;
        let mut all = vec![0u8; 16 + len];
        sock.read_exact(&mut all)
            .await
            .map_err(|_| BadHeader::Closed)?;
        return parse_v2(&all);
    }
    if !first.starts_with(b"PROXY ") {
        return Err(BadHeader::Missing);
    }
    // v1: at most 107 bytes, ending in CRLF.
    let mut line = Vec::with_capacity(108);
    let mut b = [0u8; 1];
    while line.len() < 107 {
        sock.read_exact(&mut b)
            .await
            .map_err(|_| BadHeader::Closed)?;
        line.push(b[0]);
        if line.ends_with(b"\r\n") {
            return parse_v1(&line[..line.len() - 2]);
        }
    }
    Err(BadHeader::Invalid("v1 line longer than 107 bytes"))
}

async fn peek_exact(sock: &mut TcpStream, buf: &mut [u8]) -> Result<(), BadHeader> {
    loop {
        let n = sock.peek(buf).await.map_err(|_| BadHeader::Closed)?;
        if n == 0 {
            return Err(BadHeader::Closed);
        }
        if n >= buf.len() {
            return Ok(());
        }
        // A short header (v1 for a short address) may be all there is.
        if buf[..n].starts_with(b"PROXY ") && buf[..n].windows(2).any(|w| w == b"\r\n") {
            return Ok(());
        }
        if !V2_SIG.starts_with(&buf[..n.min(12)]) && !b"PROXY ".starts_with(&buf[..n.min(6)]) {
            return Err(BadHeader::Missing);
        }
        sock.readable().await.map_err(|_| BadHeader::Closed)?;
        tokio::task::yield_now().await;
    }
}

/// `PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT` (without CRLF).
pub fn parse_v1(line: &[u8]) -> Result<Addresses, BadHeader> {
    let bad = BadHeader::Invalid;
    let s = std::str::from_utf8(line).map_err(|_| bad("v1 not ASCII"))?;
    let w: Vec<&str> = s.split(' ').collect();
    match w.get(1).copied() {
        Some("UNKNOWN") => return Ok(None),
        Some("TCP4") | Some("TCP6") => {}
        _ => return Err(bad("v1 family")),
    }
    if w.len() != 6 {
        return Err(bad("v1 fields"));
    }
    let ip = |x: &str| x.parse::<IpAddr>().map_err(|_| bad("v1 address"));
    let port = |x: &str| x.parse::<u16>().map_err(|_| bad("v1 port"));
    let (si, di) = (ip(w[2])?, ip(w[3])?);
    if (w[1] == "TCP4") != (si.is_ipv4() && di.is_ipv4()) {
        return Err(bad("v1 address family"));
    }
    Ok(Some((
        SocketAddr::new(si, port(w[4])?),
        SocketAddr::new(di, port(w[5])?),
    )))
}

/// A whole v2 header (signature included).
pub fn parse_v2(h: &[u8]) -> Result<Addresses, BadHeader> {
    let bad = BadHeader::Invalid;
    if h.len() < 16 || h[..12] != V2_SIG {
        return Err(bad("v2 signature"));
    }
    if h[12] >> 4 != 2 {
        return Err(bad("v2 version"));
    }
    let body = &h[16..];
    match h[12] & 0x0f {
        0 => return Ok(None), // LOCAL: a health check of the sender.
        1 => {}
        _ => return Err(bad("v2 command")),
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match h[13] {
        0x11 | 0x12 if body.len() >= 12 => {
            let s = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let d = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            Ok(Some((
                SocketAddr::new(s.into(), port(&body[8..])),
                SocketAddr::new(d.into(), port(&body[10..])),
            )))
        }
        0x21 | 0x22 if body.len() >= 36 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[..16]);
            d.copy_from_slice(&body[16..32]);
            Ok(Some((
                SocketAddr::new(Ipv6Addr::from(s).into(), port(&body[32..])),
                SocketAddr::new(Ipv6Addr::from(d).into(), port(&body[34..])),
            )))
        }
        0x00 => Ok(None),
        _ => Err(bad("v2 family or length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let d: SocketAddr = "198.51.100.2:443".parse().unwrap();
        assert_eq!(v1(s, d), b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\r\n");
        let h = v2(s, d);
        assert_eq!(h.len(), 28);
        assert_eq!(parse_v2(&h).unwrap(), Some((s, d)));
        let line = v1(s, d);
        assert_eq!(parse_v1(&line[..line.len() - 2]).unwrap(), Some((s, d)));
        let s6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let h = v2(s6, d);
        assert_eq!(h[13], 0x21);
        assert!(parse_v1(b"PROXY TCP4 1.2.3.4").is_err());
        assert!(parse_v1(b"PROXY TCP4 ::1 ::1 1 2").is_err());
        assert_eq!(parse_v1(b"PROXY UNKNOWN").unwrap(), None);
    }
}
