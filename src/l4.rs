//! TCP mode: a connection to a server through the dialer, then bytes both
//! ways through the tunnel (splice(2) between plain sockets), counted and logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balance::InFlight;
use crate::dial::{dial, Dial};
use crate::io::Io;
use crate::snapshot::BackendRt;
use crate::stats::{BackendStats, FrontendStats};
use crate::tunnel::{Idle, Moved};

/// Where a TCP session is counted.
#[derive(Debug, Clone)]
pub struct Observe {
    pub frontend: Arc<FrontendStats>,
    pub backend: Arc<BackendStats>,
}

/// Serves one accepted TCP-mode connection end to end: plain or TLS on
/// either side (TLS terminated or originated here).
pub async fn serve(
    mut client: Io,
    (peer, local): (std::net::SocketAddr, std::net::SocketAddr),
    be: &BackendRt,
    timeout_client: Duration,
    frontend: &Arc<FrontendStats>,
) {
    let obs = Observe {
        frontend: frontend.clone(),
        backend: be.stats.clone(),
    };
    let _session = frontend.open();
    let start = Instant::now();
    let want = Dial {
        be,
        client: Some(peer.ip()),
        tried: &[],
        // Two plain epoll sockets splice.
        ring: false,
        host: None,
        reuse: None,
        prefer: None,
        proxy: Some((peer, local)),
        hash: None,
    };
    let Some(mut up) = dial(&want, &mut 0).await else {
        tracing::debug!("no server accepted the connection from {peer}; closing it");
        log_session(&obs, peer, start, None, Moved::default());
        return;
    };
    let tc = start.elapsed();
    up.server.0.stats.connect.observe(tc.as_secs_f64());
    let idle = Idle {
        client: timeout_client,
        server: be.conf.timeout_server,
    };
    let moved = match crate::tunnel::tunnel(&mut client, &mut up.sock, idle).await {
        Ok(m) => {
            tracing::debug!(
                "tcp session to {} ended: {} bytes up, {} down",
                up.server.0.id,
                m.to_server,
                m.to_client
            );
            m
        }
        Err(e) => {
            tracing::debug!("tcp session to {} aborted: {e}", up.server.0.id);
            Moved::default()
        }
    };
    log_session(&obs, peer, start, Some((&up.server, tc)), moved);
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
