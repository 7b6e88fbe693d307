//! Small backend servers for tests, each on 127.0.0.1:0 in its own thread.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// A TCP server that greets each connection with `name\n`, then echoes bytes
/// until the client half-closes, then closes.
pub fn tagged_echo(name: &str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let name = name.to_string();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let name = name.clone();
            thread::spawn(move || {
                let _ = s.write_all(format!("{name}\n").as_bytes());
                echo(&mut s);
            });
        }
    });
    addr
}

/// A plain echo server.
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || echo(&mut s));
        }
    });
    addr
}

fn echo(s: &mut TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// An address nothing listens on (bound then closed), so connects are refused.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A small HTTP/1.1 origin server for tests (thread per connection, keep-alive).
///
/// Paths: `/echo` returns the request body; `/chunked` answers chunked;
/// `/close` answers without a length and closes; `/status/N` answers status N;
/// `/big/N` sends N bytes; `/slow/MS` waits MS ms before answering;
/// `/ws` with `Upgrade` answers 101 and then echoes bytes. Anything else
/// answers `NAME METHOD TARGET` and the request headers, one per line.
pub struct HttpServer {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub conns: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Requests answered so far.
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections that have ended (EOF or error from the client side).
    pub closed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    acceptor: Option<thread::JoinHandle<()>>,
}

pub fn http_server(name: &str) -> HttpServer {
    http_server_at("127.0.0.1:0".parse().unwrap(), name)
}

/// An HTTP test server on a given address (e.g. to restart a killed one).
pub fn http_server_at(addr: SocketAddr, name: &str) -> HttpServer {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let l = TcpListener::bind(addr).unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    let (c2, r2, st2, ss2, cl2) = (
        conns.clone(),
        requests.clone(),
        stopped.clone(),
        streams.clone(),
        closed.clone(),
    );
    let name = name.to_string();
    let acceptor = thread::spawn(move || {
        for s in l.incoming() {
            if st2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(s) = s else { continue };
            c2.fetch_add(1, Ordering::SeqCst);
            if let Ok(c) = s.try_clone() {
                ss2.lock().unwrap().push(c);
            }
            let (name, r2, cl2) = (name.clone(), r2.clone(), cl2.clone());
            thread::spawn(move || {
                let closer = s.try_clone();
                let _ = serve_http(s, &name, &r2);
                cl2.fetch_add(1, Ordering::SeqCst);
                // The clone kept for kill() would keep the socket open: close for real.
                if let Ok(c) = closer {
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }
            });
        }
    });
    HttpServer {
        addr,
        conns,
        requests,
        closed,
        stopped,
        streams,
        acceptor: Some(acceptor),
    }
}

impl HttpServer {
    /// Stops like a killed process: the port refuses connections and every
    /// open connection is cut. Returns once the port is closed.
    pub fn kill(&mut self) {
        use std::sync::atomic::Ordering;
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag and drops the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.kill();
        }
    }
}

fn serve_http(
    mut s: TcpStream,
    name: &str,
    count: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read a head.
        let (method, target, headers, used) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                    headers,
                    n,
                );
            }
            let mut tmp = [0u8; 65536];
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        buf.drain(..used);
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        // Read the body.
        let mut body = Vec::new();
        if let Some(cl) = get("content-length") {
            let n: usize = cl.trim().parse().unwrap_or(0);
            while buf.len() < n {
                let mut tmp = [0u8; 65536];
                let k = s.read(&mut tmp)?;
                if k == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&tmp[..k]);
            }
            body = buf.drain(..n).collect();
        } else if get("transfer-encoding").is_some() {
            loop {
                let line_end = loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    let mut tmp = [0u8; 65536];
                    let k = s.read(&mut tmp)?;
                    if k == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&tmp[..k]);
                };
                let size_str = String::from_utf8_lossy(&buf[..line_end]).to_string();
                let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                buf.drain(..line_end + 2);
                while buf.len() < size + 2 {
                    let mut tmp = [0u8; 65536];
                    let k = s.read(&mut tmp)?;
                    if k == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&tmp[..k]);
                }
                if size == 0 {
                    // Trailer lines (dropped), then the final CRLF.
                    loop {
                        let Some(i) = buf.windows(2).position(|w| w == b"\r\n") else {
                            let mut tmp = [0u8; 65536];
                            let k = s.read(&mut tmp)?;
                            if k == 0 {
                                return Ok(());
                            }
                            buf.extend_from_slice(&tmp[..k]);
                            continue;
                        };
                        buf.drain(..i + 2);
                        if i == 0 {
                            break;
                        }
                    }
                    break;
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
            }
        }
        count.fetch_add(1, Ordering::SeqCst);
        let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let conn_hdr = if close { "connection: close\r\n" } else { "" };
        if target == "/echo" {
            s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nx-server: {name}\r\ncontent-length: {}\r\n{conn_hdr}\r\n",
                    body.len()
                )
                .as_bytes(),
            )?;
            s.write_all(&body)?;
        } else if target == "/chunked" {
            s.write_all(format!("HTTP/1.1 200 OK\r\nx-server: {name}\r\ntransfer-encoding: chunked\r\n{conn_hdr}\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n").as_bytes())?;
        } else if target == "/once" {
            // Answers as if keep-alive, then closes: a pooled connection that
            // the proxy will find dead on its next use.
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce")?;
            return Ok(());
        } else if target == "/close" {
            s.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")?;
            return Ok(());
        } else if let Some(code) = target.strip_prefix("/status/") {
            let code: u16 = code.parse().unwrap_or(500);
            let body_allowed = !(code == 204 || code == 304 || (100..200).contains(&code));
            if body_allowed {
                s.write_all(
                    format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n{conn_hdr}\r\nok")
                        .as_bytes(),
                )?;
            } else {
                // Deliberately claims a length: the proxy must not wait for a body.
                s.write_all(format!("HTTP/1.1 {code} X\r\n{conn_hdr}\r\n").as_bytes())?;
            }
        } else if let Some(n) = target.strip_prefix("/big/") {
            let n: usize = n.parse().unwrap_or(0);
            s.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n{conn_hdr}\r\n").as_bytes(),
            )?;
            let chunk = vec![b'z'; 65536];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                s.write_all(&chunk[..k])?;
                left -= k;
            }
        } else if let Some(ms) = target.strip_prefix("/slow/") {
            thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
            s.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n{conn_hdr}\r\nslow").as_bytes(),
            )?;
        } else if target == "/ws" && get("upgrade").is_some() {
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")?;
            if !buf.is_empty() {
                s.write_all(&buf)?;
            }
            echo(&mut s);
            return Ok(());
        } else {
            let mut text = format!("{name} {method} {target}\n");
            for (k, v) in &headers {
                text.push_str(&format!("{}: {v}\n", k.to_ascii_lowercase()));
            }
            let head_only = method == "HEAD";
            // One write, so a kill never lands between head and body.
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nx-server: {name}\r\ncontent-length: {}\r\n{conn_hdr}\r\n",
                text.len()
            );
            if !head_only {
                out.push_str(&text);
            }
            s.write_all(out.as_bytes())?;
        }
        if close {
            return Ok(());
        }
    }
}
