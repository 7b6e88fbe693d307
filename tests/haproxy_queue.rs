//! `maxconn` on servers with `timeout queue`: when every server is full a
//! request waits for a slot, and gets 503 once `timeout queue` passes, as
//! HAProxy 2.6 does with the same conf.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::client::{Client, Resp};
use common::{eventually, haproxy, Lb};

/// A server whose `/hold` answers only when the test says; it counts the
/// requests it is holding.
struct Gate {
    addr: SocketAddr,
    holding: Arc<AtomicUsize>,
    release: mpsc::Sender<()>,
}

fn gate() -> Gate {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let holding = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(Mutex::new(rx));
    let h = holding.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let (h, rx) = (h.clone(), rx.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    loop {
                        let mut x = String::new();
                        if r.read_line(&mut x).unwrap_or(0) == 0 || x == "\r\n" {
                            break;
                        }
                    }
                    if path == "/hold" {
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
                        h.fetch_sub(1, Ordering::SeqCst);
                    }
                    let out = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                        path.len()
                    );
                    if w.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Gate {
        addr,
        holding,
        release: tx,
    }
}

fn conf(bind: &str, srv: SocketAddr, queue: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n    timeout queue {queue}\n\
         frontend f\n    bind {bind}\n    default_backend b\n\
         backend b\n    server s1 {srv} maxconn 1\n"
    )
}

fn send(addr: SocketAddr, path: &str) -> Client {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    c
}

fn read(c: &mut Client) -> Resp {
    c.read(false).expect("response")
}

/// One side: a held request fills the server; a second one waits in the
/// queue and is served once the first ends (long `timeout queue`); with a
/// short one it gets 503 while the server stays full.
fn scenario(addr: SocketAddr, g: &Gate, short: bool) {
    let mut a = send(addr, "/hold");
    eventually("the server holds a request", || {
        (g.holding.load(Ordering::SeqCst) == 1).then_some(())
    });
    let mut b = send(addr, "/next");
    if short {
        let r = read(&mut b);
        assert_eq!(r.status, 503, "queue timeout");
        assert_eq!(
            g.holding.load(Ordering::SeqCst),
            1,
            "503 came while the server was full"
        );
        g.release.send(()).unwrap();
        assert_eq!(read(&mut a).status, 200);
    } else {
        // The waiting request never reached the server while it was full.
        g.release.send(()).unwrap();
        let ra = read(&mut a);
        assert_eq!((ra.status, ra.text().as_str()), (200, "/hold"));
        let rb = read(&mut b);
        assert_eq!((rb.status, rb.text().as_str()), (200, "/next"));
    }
}

#[test]
fn a_full_server_queues_then_503_after_timeout_queue_as_haproxy() {
    for (queue, short) in [("5s", false), ("200ms", true)] {
        let g = gate();
        let lb = Lb::start(&conf("127.0.0.1:0", g.addr, queue), 1);
        scenario(lb.addr("frontend", "f"), &g, short);
        let port = haproxy::free_port();
        let h: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let Some(_h) = haproxy::start(&conf(&h.to_string(), g.addr, queue), h) else {
            continue;
        };
        scenario(h, &g, short);
    }
}
