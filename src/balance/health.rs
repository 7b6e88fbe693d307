//! Active health checks: a TCP connect, or an HTTP request with an expected status,
//! every `inter` (`fastinter` while a transition is under way, `downinter` while down).
//!
//! Spread, as HAProxy spreads them: each server's first check comes at a random
//! offset (within `inter`, or sooner when there are few checks), every wait
//! after it varies by up to `spread-checks` percent, and at most
//! `tune.max-checks-per-thread` checks are in flight at once (the others wait
//! their turn, not counted against their timeout). Ten thousand servers
//! checked at the same instant would overflow the listen backlog of the host
//! they share, and be marked DOWN for it. A check that fails for want of local
//! descriptors (EMFILE) says nothing about its server and is not counted.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

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
    /// `check`: active checks run (a server may have only an agent).
    pub active: bool,
    /// `agent-check`: see `agent`.
    pub agent: Option<super::agent::AgentParams>,
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
            active: o.check,
            agent: super::agent::AgentParams::of(s),
        }
    }
}

/// The first checks spread over at most this much per check loop (and at most
/// `inter`): one server is checked at once, ten thousand over their `inter`.
const START_STEP: Duration = Duration::from_millis(1);

/// `spread-checks`: percent of random variation of each wait.
static SPREAD: AtomicU32 = AtomicU32::new(0);
/// Check loops alive (for the start offsets).
static LOOPS: AtomicUsize = AtomicUsize::new(0);
/// Permits for checks in flight, `MAX_CHECKS` of them.
static SLOTS: Semaphore = Semaphore::const_new(0);
static MAX_CHECKS: AtomicUsize = AtomicUsize::new(0);

/// Checks that failed for want of local resources: one log line a few seconds.
static SHORTAGE_LOG: crate::fdlimit::RateLimitedLog =
    crate::fdlimit::RateLimitedLog::new(Duration::from_secs(5));

/// Applies the global check settings (`spread-checks` percent, at most 50 as in
/// HAProxy; `tune.max-checks-per-thread`, 0 for no limit), at start and on reload.
pub fn tune(spread_percent: u32, max_checks: usize) {
    SPREAD.store(spread_percent.min(50), Ordering::Relaxed);
    // "No limit": more than any process has descriptors for.
    let to = if max_checks == 0 { 1 << 24 } else { max_checks };
    let from = MAX_CHECKS.swap(to, Ordering::Relaxed);
    if to > from {
        SLOTS.add_permits(to - from);
    } else if to < from {
        // Taken back as checks end.
        let n = (from - to) as u32;
        tokio::spawn(async move {
            if let Ok(p) = SLOTS.acquire_many(n).await {
                p.forget();
            }
        });
    }
}

/// `base` varied by up to `percent` either way.
fn jitter(base: Duration, percent: u32) -> Duration {
    if percent == 0 {
        return base;
    }
    let span = base.as_nanos() as u64 * u64::from(percent) / 100;
    if span == 0 {
        return base;
    }
    let r = super::random() % (2 * span + 1);
    (base + Duration::from_nanos(r)).saturating_sub(Duration::from_nanos(span))
}

/// A random wait before a loop's first check: within `inter`, and within
/// `START_STEP` per loop alive, so that a handful start at once.
fn start_offset(inter: Duration, loops: usize) -> Duration {
    let horizon = inter.min(START_STEP * loops.min(u32::MAX as usize) as u32);
    let nanos = horizon.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(super::random() % nanos)
}

/// Counts a check loop alive.
struct Alive;

impl Alive {
    fn enter() -> Alive {
        LOOPS.fetch_add(1, Ordering::Relaxed);
        Alive
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        LOOPS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Checks `server` forever (the caller aborts the task when the server goes away),
/// and asks its agent beside, in the same task so that one abort ends both.
pub async fn run(server: Arc<Server>, p: CheckParams) {
    let agent = async {
        if let Some(a) = &p.agent {
            super::agent::run(&server, a).await;
        }
    };
    let active = async {
        if p.active {
            run_active(server.clone(), p.clone()).await;
        }
    };
    tokio::join!(agent, active);
}

async fn run_active(server: Arc<Server>, p: CheckParams) {
    let _alive = Alive::enter();
    if MAX_CHECKS.load(Ordering::Relaxed) == 0 {
        tune(
            SPREAD.load(Ordering::Relaxed),
            crate::conf::model::DEFAULT_MAX_CHECKS,
        );
    }
    // Loops started together are all counted by their first poll.
    tokio::time::sleep(start_offset(p.inter, LOOPS.load(Ordering::Relaxed))).await;
    loop {
        if server.admin() != Admin::Maint {
            let r = {
                let _slot = SLOTS.acquire().await;
                check_once(&server, &p).await
            };
            match r {
                Err(reason) if crate::fdlimit::is_local_reason(&reason) => {
                    if let Some(n) = SHORTAGE_LOG.hit() {
                        tracing::warn!(
                            "check of server {} not counted: {reason} ({n} since the last such line)",
                            server.id
                        );
                    }
                }
                r => server.report(r),
            }
        }
        let wait = if server.transitioning() {
            p.fastinter
        } else if server.health() == Health::Down {
            p.downinter
        } else {
            p.inter
        };
        tokio::time::sleep(jitter(wait, SPREAD.load(Ordering::Relaxed))).await;
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
    fn waits_vary_within_the_spread() {
        let base = Duration::from_millis(1000);
        assert_eq!(jitter(base, 0), base);
        for _ in 0..1000 {
            let w = jitter(base, 10);
            assert!(w >= Duration::from_millis(900) && w <= Duration::from_millis(1100));
        }
    }

    #[test]
    fn first_checks_spread_over_inter_when_many() {
        let inter = Duration::from_secs(2);
        assert!(start_offset(inter, 1) < Duration::from_millis(1));
        let offs: Vec<_> = (0..1000).map(|_| start_offset(inter, 10_000)).collect();
        assert!(offs.iter().all(|o| *o < inter));
        // Spread over the whole interval, not bunched at its start.
        assert!(offs.iter().any(|o| *o > Duration::from_millis(1500)));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 x"), Some(503));
        assert_eq!(parse_status(b"HTTP/2 200"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK"), None);
    }
}
