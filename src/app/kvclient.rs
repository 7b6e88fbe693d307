//! A small pooled RESP2 client for the kv tier: pipelined commands, one deadline per call, idle connections kept per worker thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Why a kv call failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("cannot reach kv {addr}: {err}")]
    Unreachable { addr: SocketAddr, err: io::Error },
    #[error("kv {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("kv {addr} sent an invalid reply: {why}")]
    Protocol { addr: SocketAddr, why: &'static str },
    #[error(
        "no kv primary known for '{0}' (the sentinels do not answer, or a failover is in progress)"
    )]
    NoPrimary(String),
}

/// Most nested arrays in a reply, and the largest bulk accepted.
const MAX_DEPTH: usize = 4;
const MAX_BULK: usize = 1 << 30;

/// Parses one reply from the front of `buf`: `Ok(None)` = incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, &'static str> {
    parse_at(buf, 0, 0)
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn int(s: &[u8]) -> Result<i64, &'static str> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad integer")
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, &'static str> {
    if at >= buf.len() {
        return Ok(None);
    }
    let Some(end) = line_end(buf, at + 1) else {
        return if buf.len() - at > 64 << 10 {
            Err("line too long")
        } else {
            Ok(None)
        };
    };
    let line = &buf[at + 1..end];
    let next = end + 2;
    Ok(Some(match buf[at] {
        b'+' => (Reply::Status(line.to_vec()), next),
        b'-' => (
            Reply::Error(String::from_utf8_lossy(line).into_owned()),
            next,
        ),
        b':' => (Reply::Int(int(line)?), next),
        b'$' => {
            let n = int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = n as usize;
            if n > MAX_BULK {
                return Err("bulk too large");
            }
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err("bulk not followed by CRLF");
            }
            (
                Reply::Bulk(Some(buf[next..next + n].to_vec())),
                next + n + 2,
            )
        }
        b'*' => {
            let n = int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if depth >= MAX_DEPTH {
                return Err("arrays nested too deep");
            }
            let mut items = Vec::new();
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((r, p)) => {
                        items.push(r);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            (Reply::Array(Some(items)), pos)
        }
        _ => return Err("unknown reply type"),
    }))
}

/// Appends one command as a RESP array of bulk strings.
pub fn encode(out: &mut BytesMut, args: &[&[u8]]) {
    out.put_u8(b'*');
    out.put_slice(args.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for a in args {
        out.put_u8(b'$');
        out.put_slice(a.len().to_string().as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

thread_local! {
    // Per worker thread, like the HTTP upstream pool: a socket belongs to its reactor.
    static POOL: RefCell<HashMap<SocketAddr, Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

/// A client for one kv server.
#[derive(Debug, Clone)]
pub struct KvClient {
    pub addr: SocketAddr,
    /// Bound on a whole call, connect included.
    pub timeout: Duration,
    /// Idle connections kept per worker thread.
    pub pool: usize,
}

impl KvClient {
    /// Sends the commands pipelined and returns their replies, in order.
    /// A pooled connection the server had closed is replaced once.
    pub async fn call(&self, cmds: &[&[&[u8]]]) -> Result<Vec<Reply>, KvError> {
        let deadline = Instant::now() + self.timeout;
        let mut out = BytesMut::with_capacity(256);
        for c in cmds {
            encode(&mut out, c);
        }
        let pooled = POOL.with(|p| p.borrow_mut().get_mut(&self.addr).and_then(Vec::pop));
        if let Some(sock) = pooled {
            match self.exchange(sock, &out, cmds.len(), deadline).await {
                Ok(r) => return Ok(r),
                // Nothing came back on a reused connection: it was stale, try a fresh one.
                Err(Attempt::Stale) => {}
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        let sock =
            match tokio::time::timeout_at(deadline.into(), TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(err)) => {
                    return Err(KvError::Unreachable {
                        addr: self.addr,
                        err,
                    })
                }
                Err(_) => return Err(KvError::Timeout(self.addr)),
            };
        let _ = sock.set_nodelay(true);
        match self.exchange(sock, &out, cmds.len(), deadline).await {
            Ok(r) => Ok(r),
            Err(Attempt::Stale) => Err(KvError::Unreachable {
                addr: self.addr,
                err: io::ErrorKind::UnexpectedEof.into(),
            }),
            Err(Attempt::Failed(e)) => Err(e),
        }
    }

    async fn exchange(
        &self,
        sock: TcpStream,
        out: &[u8],
        n: usize,
        deadline: Instant,
    ) -> Result<Vec<Reply>, Attempt> {
        let addr = self.addr;
        let timed = |e: io::Error| {
            if e.kind() == io::ErrorKind::TimedOut {
                Attempt::Failed(KvError::Timeout(addr))
            } else {
                Attempt::Stale
            }
        };
        let mut data = out;
        while !data.is_empty() {
            match sock.try_write(data) {
                Ok(k) => data = &data[k..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(&sock, Interest::WRITABLE, deadline)
                        .await
                        .map_err(timed)?
                }
                Err(_) => return Err(Attempt::Stale),
            }
        }
        let mut buf = BytesMut::with_capacity(4096);
        let mut replies = Vec::with_capacity(n);
        let mut got_any = false;
        while replies.len() < n {
            match parse_reply(&buf) {
                Ok(Some((r, used))) => {
                    buf.advance(used);
                    replies.push(r);
                    continue;
                }
                Ok(None) => {}
                Err(why) => return Err(Attempt::Failed(KvError::Protocol { addr, why })),
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(16 << 10);
            }
            match sock.try_read_buf(&mut buf) {
                Ok(0) => {
                    return Err(if got_any {
                        Attempt::Failed(KvError::Unreachable {
                            addr,
                            err: io::ErrorKind::UnexpectedEof.into(),
                        })
                    } else {
                        Attempt::Stale
                    })
                }
                Ok(_) => got_any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(&sock, Interest::READABLE, deadline)
                        .await
                        .map_err(timed)?
                }
                Err(err) if got_any => {
                    return Err(Attempt::Failed(KvError::Unreachable { addr, err }))
                }
                Err(_) => return Err(Attempt::Stale),
            }
        }
        if buf.is_empty() {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                let v = p.entry(addr).or_default();
                if v.len() < self.pool {
                    v.push(sock);
                }
            });
        }
        Ok(replies)
    }
}

/// How one attempt on one connection ended.
enum Attempt {
    /// The connection was dead before any reply byte: safe to retry on a new one.
    Stale,
    Failed(KvError),
}

async fn wait(sock: &TcpStream, i: Interest, deadline: Instant) -> io::Result<()> {
    match tokio::time::timeout_at(deadline.into(), sock.ready(i)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "kv timeout")),
    }
}

/// One long-lived connection (a sentinel's link, a pub/sub subscription): commands
/// one at a time, or replies pushed by the server, each read under a deadline.
#[derive(Debug)]
pub struct Conn {
    sock: TcpStream,
    buf: BytesMut,
    pub addr: SocketAddr,
}

impl Conn {
    /// Connects, then `AUTH` when a password is given (an error reply fails the open).
    pub async fn open(
        addr: SocketAddr,
        auth: Option<&str>,
        timeout: Duration,
    ) -> Result<Conn, KvError> {
        let sock = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(err)) => return Err(KvError::Unreachable { addr, err }),
            Err(_) => return Err(KvError::Timeout(addr)),
        };
        let _ = sock.set_nodelay(true);
        let mut c = Conn {
            sock,
            buf: BytesMut::with_capacity(4096),
            addr,
        };
        if let Some(pass) = auth {
            if let Reply::Error(_) = c.call(&[b"AUTH", pass.as_bytes()], timeout).await? {
                return Err(KvError::Protocol {
                    addr,
                    why: "AUTH refused",
                });
            }
        }
        Ok(c)
    }

    /// Our end's address (what a sentinel announces when bound to a wildcard).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sock.local_addr().ok()
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Reply, KvError> {
        self.send(args, timeout).await?;
        self.read(timeout).await
    }

    pub async fn send(&mut self, args: &[&[u8]], timeout: Duration) -> Result<(), KvError> {
        use tokio::io::AsyncWriteExt;
        let mut out = BytesMut::with_capacity(64);
        encode(&mut out, args);
        let addr = self.addr;
        match tokio::time::timeout(timeout, self.sock.write_all(&out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(KvError::Unreachable { addr, err }),
            Err(_) => Err(KvError::Timeout(addr)),
        }
    }

    /// The next reply (or pushed message).
    pub async fn read(&mut self, timeout: Duration) -> Result<Reply, KvError> {
        use tokio::io::AsyncReadExt;
        let addr = self.addr;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((r, used))) => {
                    self.buf.advance(used);
                    return Ok(r);
                }
                Ok(None) => {}
                Err(why) => return Err(KvError::Protocol { addr, why }),
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(16 << 10);
            }
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => {
                    return Err(KvError::Unreachable {
                        addr,
                        err: io::ErrorKind::UnexpectedEof.into(),
                    })
                }
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(KvError::Unreachable { addr, err }),
                Err(_) => return Err(KvError::Timeout(addr)),
            }
        }
    }
}

/// A bulk or status reply as text (`None` for any other kind).
pub fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(Some(b)) | Reply::Status(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// A field of an `INFO` reply (`name:value` lines).
pub fn info_field<'a>(info: &'a [u8], name: &str) -> Option<&'a [u8]> {
    info.split(|&b| b == b'\n').find_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let rest = l.strip_prefix(name.as_bytes())?;
        rest.strip_prefix(b":")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let p = |s: &[u8]| parse_reply(s).unwrap();
        assert_eq!(p(b"+OK\r\n"), Some((Reply::Status(b"OK".to_vec()), 5)));
        assert_eq!(p(b":42\r\n"), Some((Reply::Int(42), 5)));
        assert_eq!(p(b"$-1\r\n"), Some((Reply::Bulk(None), 5)));
        assert_eq!(
            p(b"$3\r\nabc\r\n+x"),
            Some((Reply::Bulk(Some(b"abc".to_vec())), 9))
        );
        assert_eq!(p(b"$3\r\nab"), None);
        assert_eq!(p(b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n").unwrap().1, 22);
        assert_eq!(p(b"*2\r\n$1\r\n0\r\n"), None);
        assert_eq!(
            p(b"-ERR nope\r\n"),
            Some((Reply::Error("ERR nope".into()), 11))
        );
        assert!(parse_reply(b"?\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcXY").is_err());
        assert!(parse_reply(b":x\r\n").is_err());
        assert!(parse_reply(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
    }

    #[test]
    fn encode_and_info() {
        let mut b = BytesMut::new();
        encode(&mut b, &[b"SET", b"k", b"v v"]);
        assert_eq!(&b[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv v\r\n");
        let info = b"# Replication\r\nrole:slave\r\nslave_repl_offset:77\r\n";
        assert_eq!(info_field(info, "slave_repl_offset"), Some(&b"77"[..]));
        assert_eq!(info_field(info, "role"), Some(&b"slave"[..]));
        assert_eq!(info_field(info, "master_repl_offset"), None);
    }
}
