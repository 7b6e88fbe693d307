//! The PROXY protocol: a `send-proxy-v2` (and `send-proxy`) server receives a
//! valid header naming the client, in HTTP and TCP mode, byte for byte what
//! HAProxy 2.6 sends but for the ports; an `accept-proxy` bind takes the
//! client's address from a v1 or v2 header and refuses a connection without one.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::client::Client;
use common::servers::http_server;
use common::{haproxy, Lb, WAIT};

const SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// A server that reads a PROXY header (v2 if `v2`, else a v1 line), sends
/// it on `tx`, then answers an HTTP request (HTTP mode) or echoes (TCP mode).
fn proxied_server(v2: bool, http: bool) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut h = Vec::new();
                if v2 {
                    let mut first = [0u8; 16];
                    if s.read_exact(&mut first).is_err() {
                        return;
                    }
                    let len = u16::from_be_bytes([first[14], first[15]]) as usize;
                    let mut rest = vec![0u8; len];
                    if s.read_exact(&mut rest).is_err() {
                        return;
                    }
                    h.extend_from_slice(&first);
                    h.extend_from_slice(&rest);
                } else {
                    let mut b = [0u8; 1];
                    while !h.ends_with(b"\r\n") && s.read_exact(&mut b).is_ok() {
                        h.push(b[0]);
                    }
                }
                let _ = tx.send(h);
                let mut buf = [0u8; 4096];
                if http {
                    let mut req = Vec::new();
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                } else {
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn conf(bind: &str, mode: &str, server: SocketAddr, opt: &str) -> String {
    format!(
        "defaults\n    mode {mode}\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n    default_backend b\n\
         backend b\n    server s1 {server} {opt}\n"
    )
}

/// Sends one exchange through `front` and returns (the header the server
/// got, the client's own address).
fn through(front: SocketAddr, http: bool, rx: &mpsc::Receiver<Vec<u8>>) -> (Vec<u8>, SocketAddr) {
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let me = c.local_addr().unwrap();
    if http {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    } else {
        c.write_all(b"ping").unwrap();
    }
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    assert!(n > 0);
    // Skip headers of other connections (a readiness probe in TCP mode).
    loop {
        let h = rx.recv_timeout(WAIT).expect("a PROXY header");
        let port = if h.starts_with(&SIG) && h.len() >= 26 {
            u16::from_be_bytes([h[24], h[25]])
        } else {
            let line = String::from_utf8_lossy(&h).into_owned();
            line.split(' ')
                .nth(4)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        if port == me.port() {
            return (h, me);
        }
    }
}

/// Checks a v2 header against the client and frontend addresses.
fn assert_v2(h: &[u8], client: SocketAddr, front: SocketAddr) {
    assert_eq!(h.len(), 28, "{h:02x?}");
    assert_eq!(h[..12], SIG);
    assert_eq!(h[12], 0x21, "version 2, PROXY");
    assert_eq!(h[13], 0x11, "TCP over IPv4");
    assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
    assert_eq!(h[16..20], [127, 0, 0, 1]);
    assert_eq!(h[20..24], [127, 0, 0, 1]);
    assert_eq!(
        u16::from_be_bytes([h[24], h[25]]),
        client.port(),
        "source port"
    );
    assert_eq!(
        u16::from_be_bytes([h[26], h[27]]),
        front.port(),
        "destination port"
    );
}

#[test]
fn send_proxy_v2_server_gets_a_valid_header_in_http_and_tcp_mode_as_haproxy() {
    for (mode, http) in [("http", true), ("tcp", false)] {
        let (srv, rx) = proxied_server(true, http);
        let lb = Lb::start(&conf("127.0.0.1:0", mode, srv, "send-proxy-v2"), 1);
        let front = lb.addr("frontend", "f");
        let (h, me) = through(front, http, &rx);
        assert_v2(&h, me, front);
        // A second client on a new connection: its own header, never a reused one.
        let (h2, me2) = through(front, http, &rx);
        assert_v2(&h2, me2, front);

        let port = haproxy::free_port();
        let haddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let Some(_h) = haproxy::start(&conf(&haddr.to_string(), mode, srv, "send-proxy-v2"), haddr)
        else {
            return;
        };
        let (hh, hme) = through(haddr, http, &rx);
        assert_v2(&hh, hme, haddr);
        // Byte for byte the same but for the two ports.
        assert_eq!(hh[..24], h[..24], "mode {mode}");
    }
}

#[test]
fn send_proxy_v1_line() {
    let (srv, rx) = proxied_server(false, true);
    let lb = Lb::start(&conf("127.0.0.1:0", "http", srv, "send-proxy"), 1);
    let front = lb.addr("frontend", "f");
    let (h, me) = through(front, true, &rx);
    assert_eq!(
        String::from_utf8(h).unwrap(),
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            me.port(),
            front.port()
        )
    );
}

#[test]
fn accept_proxy_takes_the_client_from_the_header_and_refuses_without_one() {
    let s = http_server("a");
    let text = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind 127.0.0.1:0 accept-proxy\n    option forwardfor\n\
         \x20   http-request set-header X-Src %[src]:%[src_port]\n\
         \x20   http-request deny deny_status 403 if {{ src 198.51.100.0/24 }}\n\
         \x20   default_backend b\n\
         backend b\n    server s1 {}\n",
        s.addr
    );
    let lb = Lb::start(&text, 1);
    let a = lb.addr("frontend", "f");
    // v1
    let mut c = Client::connect(a);
    c.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let t = c.read(false).unwrap().text().to_ascii_lowercase();
    assert!(t.contains("x-forwarded-for: 203.0.113.7\n"), "{t}");
    assert!(t.contains("x-src: 203.0.113.7:40000\n"), "{t}");
    // v2, and acls see the address it names.
    let mut h = SIG.to_vec();
    h.extend([
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x9c, 0x40, 0, 80,
    ]);
    let mut c = Client::connect(a);
    c.send(&h);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 403);
    // No header: closed without an answer.
    let mut c = Client::connect(a);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    c.r.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.expect_closed("a bind with accept-proxy refuses a connection without a header");
}
