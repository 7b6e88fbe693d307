//! HAProxy server options the dialer honours: `send-proxy`/`send-proxy-v2`
//! (a PROXY header before the connection's bytes), `maxconn` (a full
//! server is skipped) and the queue when every server is full (`timeout
//! queue`, `maxqueue`).

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
        .is_some_and(|max| server.inflight.load(std::sync::atomic::Ordering::SeqCst) >= max)
}

/// The server gets a PROXY header (its connections serve one client only).
pub fn sends_proxy(
    be: &crate::snapshot::BackendRt,
    server: &std::sync::Arc<crate::balance::Server>,
) -> bool {
    server_conf(be, server).is_some_and(|sc| sc.opts.hap.send_proxy > 0)
}

/// HAProxy's queue: every server the request could go to is at its
/// `maxconn`; wait until one of them frees a slot (true) or `deadline`
/// passes, or the queue is at its `maxqueue` bound (false: 503).
pub async fn wait_for_slot(
    be: &crate::snapshot::BackendRt,
    servers: &[std::sync::Arc<crate::balance::Server>],
    deadline: tokio::time::Instant,
) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    // `maxqueue N` on servers: the backend's queue holds their sum (unset or
    // 0 on every server: unbounded, as HAProxy; the frontend's maxconn bounds it).
    let limit: usize = servers
        .iter()
        .filter_map(|s| server_conf(be, s).and_then(|c| c.opts.hap.maxqueue))
        .sum();
    let waiting = servers
        .iter()
        .map(|s| s.queued.load(SeqCst))
        .max()
        .unwrap_or(0);
    if limit > 0 && waiting >= limit {
        return false;
    }
    struct Waiting<'a>(&'a [std::sync::Arc<crate::balance::Server>]);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            for s in self.0 {
                s.queued.fetch_sub(1, SeqCst);
            }
        }
    }
    for s in servers {
        s.queued.fetch_add(1, SeqCst);
    }
    let _w = Waiting(servers);
    let mut slots: Vec<_> = servers
        .iter()
        .map(|s| Box::pin(s.slot.notified()))
        .collect();
    for n in &mut slots {
        n.as_mut().enable();
    }
    // A slot freed between the pick and now.
    if servers.iter().any(|s| !server_full(be, s)) {
        return true;
    }
    tokio::time::timeout_at(deadline, futures_util::future::select_all(slots))
        .await
        .is_ok()
}

/// `timeout queue`, else `timeout connect` (HAProxy's default).
pub fn queue_timeout(be: &crate::snapshot::BackendRt) -> std::time::Duration {
    be.conf.hap.timeout_queue.unwrap_or(be.conf.timeout_connect)
}
