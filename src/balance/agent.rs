//! `agent-check`: beside its health checks, a server is asked by a small TCP
//! agent (`agent-port`, every `agent-inter`, sending `agent-send`) for one
//! line of words that set its state and weight, as in HAProxy: `up`,
//! `down`/`failed`/`stopped` (optionally `#reason`), `ready`, `drain`,
//! `maint`, `NN%` (of the configured weight), `maxconn:N` (ignored: lb's
//! maxconn is conf). An agent that cannot be reached changes nothing: the
//! regular check tests the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Admin, Server};
use crate::conf::ServerConf;

/// Longest agent reply read: one short line.
const MAX_REPLY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentParams {
    pub addr: SocketAddr,
    pub inter: Duration,
    pub send: Vec<u8>,
    /// The configured weight, which `NN%` is a share of.
    pub weight: u32,
    pub timeout: Duration,
}

impl AgentParams {
    pub fn of(s: &ServerConf) -> Option<AgentParams> {
        let a = s.opts.hap.agent.as_ref().filter(|a| a.enabled)?;
        let mut addr = s.addr;
        addr.set_port(a.port?);
        if let Some(ip) = a.addr {
            addr.set_ip(ip);
        }
        let inter = a.inter.unwrap_or(s.opts.inter);
        Some(AgentParams {
            addr,
            inter,
            send: a.send.clone(),
            weight: s.opts.weight,
            // As HAProxy: the agent's answer is awaited up to its interval.
            timeout: inter,
        })
    }
}

/// Asks the agent forever.
pub async fn run(server: &Arc<Server>, p: &AgentParams) {
    loop {
        match tokio::time::timeout(p.timeout, ask(p)).await {
            Ok(Ok(reply)) => apply(server, p, &reply),
            Ok(Err(e)) => tracing::debug!("agent of server {}: {e}", server.id),
            Err(_) => tracing::debug!("agent of server {}: no reply in time", server.id),
        }
        tokio::time::sleep(p.inter).await;
    }
}

async fn ask(p: &AgentParams) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(p.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !p.send.is_empty() {
        s.write_all(&p.send)
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < MAX_REPLY {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// Applies one reply's words, in order.
pub fn apply(server: &Server, p: &AgentParams, reply: &str) {
    // Text after '#' is the reason of a `down`.
    let (words, reason) = match reply.split_once('#') {
        Some((w, r)) => (w, r.trim()),
        None => (reply, ""),
    };
    for w in words
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        let w = w.to_ascii_lowercase();
        match w.as_str() {
            "up" => server.agent_health(true, "agent says up"),
            "down" | "failed" | "stopped" => {
                let why = if reason.is_empty() {
                    format!("agent says {w}")
                } else {
                    format!("agent says {w}: {reason}")
                };
                server.agent_health(false, &why)
            }
            "ready" => server.set_admin_by(Admin::Ready, "set by the agent"),
            "drain" => server.set_admin_by(Admin::Drain, "set by the agent"),
            "maint" => server.set_admin_by(Admin::Maint, "set by the agent"),
            w if w.starts_with("maxconn:") => {}
            w => match w.strip_suffix('%').and_then(|n| n.parse::<u64>().ok()) {
                // HAProxy caps an agent's weight at 256% of the configured one.
                Some(pct) => {
                    let pct = pct.min(256);
                    let to = (u64::from(p.weight) * pct / 100).min(u64::from(u32::MAX)) as u32;
                    server.set_weight(to);
                }
                None => tracing::debug!("agent of server {}: unknown word '{w}'", server.id),
            },
        }
    }
}
