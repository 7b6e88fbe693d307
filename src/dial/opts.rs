//! HAProxy server options the dialer honours: `send-proxy`/`send-proxy-v2`
//! (a PROXY header before the connection's bytes) and `maxconn` (a full
//! server is skipped).

use std::net::SocketAddr;

/// The header a server of `be` wants before the connection's bytes
/// (`send-proxy`, `send-proxy-v2`); empty for the others, or without addresses.
pub fn preface(
    be: &crate::snapshot::BackendRt,
    server: &std::sync::Arc<crate::balance::Server>,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> Vec<u8> {
    let Some(sc) = server_conf(be, server) else {
        return Vec::new();
    };
    match (sc.opts.hap.send_proxy, addrs) {
        (1, Some((s, d))) => crate::proxy_proto::v1(s, d),
        (2, Some((s, d))) => crate::proxy_proto::v2(s, d),
        // A check, or a caller without addresses: v2 LOCAL, v1 UNKNOWN.
        (1, None) => b"PROXY UNKNOWN\r\n".to_vec(),
        (2, None) => {
            let mut h = crate::proxy_proto::V2_SIG.to_vec();
            h.extend([0x20, 0x00, 0x00, 0x00]);
            h
        }
        _ => Vec::new(),
    }
}

/// The conf of `server` in `be` (same order as the pool).
pub fn server_conf<'a>(
    be: &'a crate::snapshot::BackendRt,
    server: &std::sync::Arc<crate::balance::Server>,
) -> Option<&'a crate::conf::ServerConf> {
    let i = be
        .pool
        .servers
        .iter()
        .position(|s| std::sync::Arc::ptr_eq(s, server))?;
    be.conf.servers.get(i)
}

/// The server has `maxconn N` and N requests or connections in flight.
pub fn server_full(
    be: &crate::snapshot::BackendRt,
    server: &std::sync::Arc<crate::balance::Server>,
) -> bool {
    server_conf(be, server)
        .and_then(|sc| sc.opts.hap.maxconn)
        .is_some_and(|max| server.inflight.load(std::sync::atomic::Ordering::Relaxed) >= max)
}

/// The server gets a PROXY header (its connections serve one client only).
pub fn sends_proxy(
    be: &crate::snapshot::BackendRt,
    server: &std::sync::Arc<crate::balance::Server>,
) -> bool {
    server_conf(be, server).is_some_and(|sc| sc.opts.hap.send_proxy > 0)
}
