//! Request bodies the server or lb answers before they end: early answers,
//! interim responses during the upload, and the lingering close that lets a
//! client still sending read its answer. Each case runs on both data paths
//! (io_uring and epoll).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use common::client::Client;
use common::Lb;

const PATHS: [&str; 2] = ["on", "off"];

fn start(uring: &str, fe_extra: &str, be_timeout: &str, server: SocketAddr) -> Lb {
    Lb::start(
        &format!(
            "global\n    tune.io-uring {uring}\ndefaults\n    mode http\n    timeout client 10s\n    timeout server {be_timeout}\nfrontend f\n    bind 127.0.0.1:0\n{fe_extra}    default_backend b\nbackend b\n    server s {server}\n"
        ),
        1,
    )
}

/// A backend that runs `f` on each connection, in its own thread.
fn backend(f: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let f = f.clone();
            thread::spawn(move || f(s));
        }
    });
    addr
}

/// Reads a request or response head, byte by byte (nothing after it is consumed).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

/// Opens a connection to `lb`, sends a `METHOD /up` head announcing `len`
/// body bytes, and starts writing them (`upload`).
fn begin_upload(lb: &Lb, method: &str, len: usize) -> (Client, thread::JoinHandle<bool>) {
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(format!("{method} /up HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").as_bytes());
    let writer = upload(&c, len);
    (c, writer)
}

/// Writes `len` body bytes from another thread; returns whether all were taken.
fn upload(c: &Client, len: usize) -> thread::JoinHandle<bool> {
    let mut w = c.r.get_ref().try_clone().unwrap();
    thread::spawn(move || {
        let chunk = vec![b'u'; 64 << 10];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).is_err() {
                return false;
            }
            left -= n;
        }
        true
    })
}

/// A 413 for a body over `max-body-size`, sent while the client is still
/// writing the body: lb reads and drops the rest instead of resetting the
/// connection, so every byte is taken and the answer ends with a clean FIN.
/// (Closing with unread bytes made the kernel send a reset: the client's
/// writes failed and its read after the answer got "connection reset".)
#[test]
fn a_413_reaches_a_client_still_sending_its_body() {
    let server = backend(|mut s| {
        read_head(&mut s);
    });
    for uring in PATHS {
        let lb = start(uring, "    max-body-size 1k\n", "10s", server);
        let (mut c, writer) = begin_upload(&lb, "POST", 2 << 20);
        let r = c.read(false).expect("an answer");
        assert_eq!(r.status, 413, "{uring}");
        let mut rest = Vec::new();
        let end = c.r.read_to_end(&mut rest);
        assert!(matches!(end, Ok(0)), "{uring}: after the answer {end:?}");
        assert!(writer.join().unwrap(), "{uring}: the upload was cut");
    }
}

/// A server that sends an interim response (103 Early Hints) before reading
/// the body: the 103 goes to the client, the upload goes on, and the final
/// response follows on a connection that stays open. (It used to be taken for
/// an early final answer: the upload stopped and the client got 504.)
#[test]
fn an_interim_response_during_the_upload_is_passed_on() {
    let server = backend(|mut s| loop {
        let head = read_head(&mut s);
        if head.is_empty() {
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n");
        let mut body = vec![0u8; content_length(&head)];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let text = format!("got {}", body.len());
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
            .as_bytes(),
        );
    });
    for uring in PATHS {
        let lb = start(uring, "", "2s", server);
        let mut c = Client::connect(lb.addr("frontend", "f"));
        let len = 300_000;
        for _ in 0..2 {
            c.send(
                format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
            );
            // The 103 arrives while lb waits for the first body byte.
            let hints = c.read(false).expect("the 103");
            assert_eq!(hints.status, 103, "{uring}");
            assert_eq!(hints.header("link"), Some("</a.css>; rel=preload"));
            assert!(upload(&c, len).join().unwrap());
            let r = c.read(false).expect("the final answer");
            assert_eq!((r.status, r.text()), (200, format!("got {len}")), "{uring}");
        }
    }
}

/// A server that answers at the head and closes without reading the body
/// (an early 401): the client gets the 401, not a 502, whether lb sees the
/// answer first or a failed write of the body (the server's reset).
#[test]
fn an_early_answer_then_a_reset_reaches_the_client() {
    let server = backend(|mut s| {
        // A small window, so lb can never have passed the whole body on
        // before the reset (loopback buffers grow to tens of MiB): the body
        // always ends unread, and the answer must close.
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(64 << 10);
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope");
        // Unread body bytes: closing sends a reset.
        drop(s);
    });
    for uring in PATHS {
        let lb = start(uring, "", "10s", server);
        for _ in 0..5 {
            let (mut c, writer) = begin_upload(&lb, "PUT", 16 << 20);
            let r = c.read(false).expect("an answer");
            assert_eq!((r.status, r.text()), (401, "nope".to_string()), "{uring}");
            assert_eq!(r.header("connection"), Some("close"), "{uring}");
            drop(c);
            let _ = writer.join();
        }
    }
}

/// A server that stops reading the body: after `timeout server` with no body
/// byte taken, the client gets 504 (it was a 502, as for a broken server).
#[test]
fn a_server_that_stops_reading_the_body_gets_504() {
    let server = backend(|mut s| {
        read_head(&mut s);
        // Hold the connection open, reading nothing (bounded: the test's wait).
        thread::park_timeout(common::WAIT);
        drop(s);
    });
    for uring in PATHS {
        let lb = start(uring, "", "500ms", server);
        let (mut c, _writer) = begin_upload(&lb, "PUT", 256 << 20);
        let r = c.read(false).expect("an answer");
        assert_eq!(r.status, 504, "{uring}");
    }
}
