//! Active health checks: a TCP connect, or an HTTP request with an expected status,
//! every `inter` (`fastinter` while a transition is under way, `downinter` while down).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Admin, Health, Server};
use crate::conf::tls::ServerTls;
use crate::conf::{Backend, GrpcCheck, HttpCheck, ServerConf};

/// Everything one server's check loop needs; a reload that changes it restarts the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckParams {
    pub inter: Duration,
    pub fastinter: Duration,
    pub downinter: Duration,
    pub timeout: Duration,
    pub http: Option<HttpCheck>,
    /// `option grpc-check`: see `grpc_check`.
    pub grpc: Option<GrpcCheck>,
    /// The server speaks HTTP/2 (`proto h2`): `http` checks go over it too.
    pub h2: bool,
    /// `check-ssl`: checks speak TLS (settings of `ssl`, and the host for SNI).
    pub tls: Option<(ServerTls, String)>,
    /// `option tcp-check` steps and where they go (`tcp_check`).
    pub tcp: Option<(Vec<crate::conf::TcpCheckStep>, std::net::SocketAddr)>,
    /// `send-proxy[-v2]`: checks open with a PROXY header too (v2 LOCAL, v1 UNKNOWN).
    pub preface: Vec<u8>,
}

impl CheckParams {
    pub fn of(b: &Backend, s: &ServerConf) -> CheckParams {
        let o = &s.opts;
        CheckParams {
            inter: o.inter,
            fastinter: o.fastinter.unwrap_or(o.inter),
            downinter: o.downinter.unwrap_or(o.inter),
            timeout: b.timeout_check.unwrap_or(o.inter),
            http: b.httpchk.clone(),
            grpc: b.grpc_check.clone(),
            h2: o.h2(),
            tls: if o.check_ssl {
                // An HTTP/1.1 check offers http/1.1, whatever the server's ALPN.
                o.tls.clone().map(|mut t| {
                    if b.httpchk.is_some() && !o.h2() {
                        t.alpn = vec![b"http/1.1".to_vec()];
                    }
                    (t, s.host.clone())
                })
            } else {
                None
            },
            tcp: super::tcp_check::params(b, s),
            preface: super::tcp_check::check_preface(s),
        }
    }
}

/// Checks `server` forever (the caller aborts the task when the server goes away).
pub async fn run(server: Arc<Server>, p: CheckParams) {
    loop {
        if server.admin() != Admin::Maint {
            let r = check_once(&server, &p).await;
            server.report(r);
        }
        let wait = if server.transitioning() {
            p.fastinter
        } else if server.health() == Health::Down {
            p.downinter
        } else {
            p.inter
        };
        tokio::time::sleep(wait).await;
    }
}

/// One check. `Err` carries the reason shown in the transition log.
pub async fn check_once(server: &Server, p: &CheckParams) -> Result<(), String> {
    if let Some((steps, addr)) = &p.tcp {
        return super::tcp_check::check(p, steps, *addr).await;
    }
    if let Some(g) = &p.grpc {
        return super::grpc_check::check(server, p, g).await;
    }
    if let (true, Some(h)) = (p.h2, &p.http) {
        return super::grpc_check::http_check(server, p, h).await;
    }
    let fut = async {
        // The same connect and TLS steps as traffic, bounded by the check's timeout.
        let connector = match &p.tls {
            None => None,
            Some((t, host)) => Some(crate::tls::connector(t, host)?),
        };
        let mut s = crate::connect::open(server.addr, connector.as_ref(), None, false).await?;
        let Some(h) = &p.http else {
            return Ok(());
        };
        let req = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lb-check\r\nConnection: close\r\n\r\n",
            h.method, h.uri, server.addr
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        s.flush().await.map_err(|e| format!("send failed: {e}"))?;
        // The status line is all we need.
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            match s.read(&mut buf[n..]).await {
                Ok(0) => return Err("connection closed before a status line".into()),
                Ok(k) => n += k,
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        let status = parse_status(&buf[..n]).ok_or("invalid HTTP response")?;
        judge_status(h, status)
    };
    match tokio::time::timeout(p.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {}ms", p.timeout.as_millis())),
    }
}

/// `HTTP/1.x NNN` -> NNN.
fn parse_status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    if rest.len() < 5 || rest[1] != b' ' {
        return None;
    }
    let d = &rest[2..5];
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(d).ok()?.parse().ok()
}

/// `option httpchk`'s verdict on a status: `http-check expect status N`, else
/// any 2xx or 3xx, whichever HTTP version brought it.
pub(crate) fn judge_status(h: &HttpCheck, status: u16) -> Result<(), String> {
    let ok = match h.expect_status {
        Some(want) => status == want,
        None => (200..400).contains(&status),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(parse_status(b"HTTP/2 200"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK"), None);
    }
}
