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
        Expect::MysqlPacket(_) | Expect::PgsqlAuth => false,
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
        Expect::MysqlPacket(1) => "MySQL greeting".into(),
        Expect::MysqlPacket(_) => "MySQL login answer".into(),
        Expect::PgsqlAuth => "PostgreSQL Authentication".into(),
    }
}

/// The verdict of a protocol-aware expect (`mysql-check`, `pgsql-check`) on
/// the reply so far: `None` while it needs more bytes.
fn custom(buf: &[u8], what: &Expect) -> Option<Result<(), String>> {
    match what {
        Expect::MysqlPacket(n) => {
            // Packets: 3-byte little-endian length, sequence id, payload.
            let mut at = 0usize;
            for i in 1..=*n {
                let h = buf.get(at..at + 4)?;
                let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                let payload = buf.get(at + 4..at + 4 + len)?;
                if i == *n {
                    if payload.first() == Some(&0xff) {
                        let code = payload
                            .get(1..3)
                            .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
                        let msg = String::from_utf8_lossy(payload.get(3..).unwrap_or_default());
                        return Some(Err(format!("MySQL error {code}: {}", msg.escape_debug())));
                    }
                    return Some(Ok(()));
                }
                at += 4 + len;
            }
            Some(Ok(()))
        }
        Expect::PgsqlAuth => {
            if buf.len() < 5 {
                return None;
            }
            if buf[0] == b'E' {
                let msg = buf
                    .get(5..)
                    .unwrap_or_default()
                    .split(|b| *b == 0)
                    .find(|f| f.first() == Some(&b'M'));
                let msg = msg
                    .map(|m| String::from_utf8_lossy(&m[1..]).into_owned())
                    .unwrap_or_default();
                return Some(Err(format!("PostgreSQL error: {}", msg.escape_debug())));
            }
            // HAProxy's `rbinary ^52000000[A-Z0-9]{2}000000(00|02|03|04|05|06|07|09|0A)`:
            // an Authentication message of any method; the password is not tried.
            let h = buf.get(..9)?;
            let auth = [h[0], h[1], h[2], h[3], h[5], h[6], h[7]] == [b'R', 0, 0, 0, 0, 0, 0]
                && matches!(h[8], 0 | 2..=7 | 9 | 10);
            if auth {
                Some(Ok(()))
            } else {
                Some(Err("not a PostgreSQL Authentication message".into()))
            }
        }
        _ => None,
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
    let is_custom = matches!(what, Expect::MysqlPacket(_) | Expect::PgsqlAuth);
    loop {
        if is_custom {
            if let Some(r) = custom(buf, what) {
                return r;
            }
        } else if matches(buf, what) {
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
