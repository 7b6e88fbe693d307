//! `option tcp-check` (and `option redis-check`, `option ssl-hello-chk`, which
//! are canned sequences of it): a connection, then `send` and `expect` steps
//! in order; the server is up when every step passes within the check's
//! timeout. The classic use: only the Redis node whose `INFO replication`
//! says `role:master` takes traffic.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::health::CheckParams;
use crate::conf::{Expect, TcpCheckStep};

/// Most bytes an `expect` looks at: a reply larger than this that has not
/// matched yet fails, rather than growing the buffer.
const MAX_EXPECT: usize = 64 << 10;

/// One check: the steps against `addr` (the server's, or `port`/`addr`).
pub async fn check(
    p: &CheckParams,
    steps: &[TcpCheckStep],
    addr: SocketAddr,
) -> Result<(), String> {
    // The step under way, for the message when the check times out.
    let at = std::sync::atomic::AtomicUsize::new(0);
    let fut = async {
        let connector = match &p.tls {
            None => None,
            Some((t, host)) => Some(crate::tls::connector(t, host)?),
        };
        // A sequence starts connected (an explicit first `connect` may move the port).
        let mut target = addr;
        if let Some(TcpCheckStep::Connect { port: Some(port) }) = steps.first() {
            target.set_port(*port);
        }
        let mut s =
            crate::connect::open_with(target, connector.as_ref(), None, false, &p.preface).await?;
        let mut buf: Vec<u8> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            at.store(i, std::sync::atomic::Ordering::Relaxed);
            match step {
                TcpCheckStep::Connect { port } => {
                    if i == 0 {
                        continue;
                    }
                    let mut t = addr;
                    if let Some(port) = port {
                        t.set_port(*port);
                    }
                    s = crate::connect::open_with(t, connector.as_ref(), None, false, &p.preface)
                        .await?;
                    buf.clear();
                }
                TcpCheckStep::Send(data) => {
                    s.write_all(data)
                        .await
                        .map_err(|e| format!("step {}: send failed: {e}", i + 1))?;
                    s.flush()
                        .await
                        .map_err(|e| format!("step {}: send failed: {e}", i + 1))?;
                    // What came before the request is not its answer.
                    buf.clear();
                }
                TcpCheckStep::Expect { negate, what } => {
                    expect(&mut s, &mut buf, *negate, what)
                        .await
                        .map_err(|e| format!("step {}: {e}", i + 1))?;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(p.timeout, fut).await {
        Ok(r) => r,
        Err(_) => {
            let i = at.load(std::sync::atomic::Ordering::Relaxed);
            let what = match steps.get(i) {
                Some(TcpCheckStep::Expect { what, .. }) => format!(" (expect {})", describe(what)),
                _ => String::new(),
            };
            Err(format!(
                "timeout after {}ms at step {}{what}",
                p.timeout.as_millis(),
                i + 1
            ))
        }
    }
}

fn matches(buf: &[u8], what: &Expect) -> bool {
    match what {
        Expect::String(s) | Expect::Binary(s) => {
            s.is_empty() || buf.windows(s.len()).any(|w| w == &s[..])
        }
        Expect::Rstring(r) => r.is_match(buf),
    }
}

fn describe(what: &Expect) -> String {
    match what {
        Expect::String(s) => format!("string '{}'", String::from_utf8_lossy(s)),
        Expect::Binary(b) => format!(
            "binary {}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
        Expect::Rstring(r) => format!("rstring '{}'", r.as_str()),
    }
}

/// Reads until `what` is in the reply (or, negated, until the reply ends
/// without it). As HAProxy, a reply that has not matched yet waits for more
/// until the check's timeout or the connection's end.
async fn expect(
    s: &mut crate::io::Io,
    buf: &mut Vec<u8>,
    negate: bool,
    what: &Expect,
) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    loop {
        if matches(buf, what) {
            return if negate {
                Err(format!("reply matched '! {}'", describe(what)))
            } else {
                Ok(())
            };
        }
        if buf.len() >= MAX_EXPECT {
            return Err(format!(
                "no {} in the first {MAX_EXPECT} bytes",
                describe(what)
            ));
        }
        match s.read(&mut chunk).await {
            Ok(0) if negate => return Ok(()),
            Ok(0) => {
                return Err(format!(
                    "connection closed without {} (got '{}')",
                    describe(what),
                    String::from_utf8_lossy(&buf[..buf.len().min(64)]).escape_debug()
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// The steps of `b` for server `s`, and the address checks go to (`addr`, `port`).
pub fn params(
    b: &crate::conf::Backend,
    s: &crate::conf::ServerConf,
) -> Option<(Vec<TcpCheckStep>, SocketAddr)> {
    let steps = b.hap.tcp_check.clone()?;
    let h = &s.opts.hap;
    let mut addr = s.addr;
    if let Some(ip) = h.check_addr {
        addr.set_ip(ip);
    }
    if let Some(port) = h.check_port {
        addr.set_port(port);
    }
    Some((steps, addr))
}

/// The PROXY header a `send-proxy` server's checks open with: no client to name.
pub fn check_preface(s: &crate::conf::ServerConf) -> Vec<u8> {
    match s.opts.hap.send_proxy {
        1 => b"PROXY UNKNOWN\r\n".to_vec(),
        2 => {
            let mut h = crate::proxy_proto::V2_SIG.to_vec();
            h.extend([0x20, 0x00, 0x00, 0x00]);
            h
        }
        _ => Vec::new(),
    }
}
