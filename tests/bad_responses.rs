//! A server's response that breaks HTTP/1.1: a 502 while nothing of it has
//! reached the client, a close once it has; logged with why. A 101 only
//! answers an upgrade the client asked for.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use common::client::Client;
use common::{Lb, WAIT};

/// A raw HTTP server: for each request head read on a connection, `answer`
/// gets the head and the stream and writes what it likes. Returns its address
/// and the number of connections accepted.
fn raw_server(
    answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(WAIT)).unwrap();
                while let Some(head) = common::read_head(&mut s) {
                    answer(&head, &mut s);
                }
            });
        }
    });
    (addr, conns)
}

/// A raw server that answers each request head with the answer of the first
/// prefix the head starts with, and nothing when none fits.
fn canned_server(answers: &'static [(&'static str, &'static str)]) -> SocketAddr {
    raw_server(move |head, s| {
        if let Some((_, a)) = answers.iter().find(|(p, _)| head.starts_with(p)) {
            let _ = s.write_all(a.as_bytes());
        }
    })
    .0
}

/// Whether the peer closes `s` (EOF or reset) within `WAIT`.
fn closes(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn start_lb(server: SocketAddr) -> Lb {
    Lb::start(
        &format!(
            "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s {server}\n"
        ),
        1,
    )
}

/// Writes `answer` (a 101), then echoes what comes: the tunnel of an upgrade
/// that goes ahead.
fn answer_then_echo(s: &mut TcpStream, answer: &[u8]) {
    s.write_all(answer).unwrap();
    let mut b = [0u8; 64];
    while let Ok(n @ 1..) = s.read(&mut b) {
        if s.write_all(&b[..n]).is_err() {
            break;
        }
    }
}

const SWITCH: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";

#[test]
fn a_101_the_client_did_not_ask_for_is_a_502() {
    // Each request of the test gets a 101; lb reports whether it then closed
    // the server connection.
    let (closed_tx, closed) = mpsc::channel();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    let (srv, conns) = raw_server(move |_, s| {
        s.write_all(SWITCH).unwrap();
        let _ = closed_tx.lock().unwrap().send(closes(s));
    });
    let lb = start_lb(srv);
    let addr = lb.addr("frontend", "f");
    for (i, req) in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ]
    .iter()
    .enumerate()
    {
        let mut c = Client::connect(addr);
        c.send(req.as_bytes());
        let r = c.read(false).expect("a response");
        assert_eq!(r.status, 502, "{req:?}");
        c.expect_closed("after the 502");
        assert_eq!(
            closed.recv_timeout(WAIT),
            Ok(true),
            "server side of {req:?}"
        );
        // Not pooled: every request needed a new server connection.
        assert_eq!(conns.load(Ordering::SeqCst), i + 1);
    }
    lb.wait_log_count("invalid response: unsolicited 101", 5);
}

#[test]
fn a_101_must_switch_to_a_protocol_the_client_offered() {
    let (srv, _) = raw_server(|head, s| {
        let answer: &[u8] = if head.starts_with("GET /h2c") {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
        } else if head.starts_with("GET /none") {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n"
        } else {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: WebSocket\r\n\r\n"
        };
        answer_then_echo(s, answer);
    });
    let lb = start_lb(srv);
    let addr = lb.addr("frontend", "f");
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
    };
    // Protocol names compare without case: the last one goes ahead.
    for (path, refused) in [
        ("/h2c", Some("101 to a protocol the client did not offer")),
        ("/none", Some("101 without Upgrade")),
        ("/ws", None),
    ] {
        let mut c = Client::connect(addr);
        c.send(upgrade(path).as_bytes());
        let status = c.read(false).expect("a response").status;
        if let Some(why) = refused {
            assert_eq!(status, 502, "{path}");
            c.expect_closed(path);
            lb.wait_log(why);
            continue;
        }
        assert_eq!(status, 101);
        c.assert_echo(b"ping");
    }
}

#[test]
fn a_101_reads_upgrade_and_connection_over_every_field_line() {
    let (srv, _) = raw_server(|head, s| {
        let answer: &[u8] = if head.starts_with("GET /split ") {
            // The server sees the client's whole offer, both lines of it.
            assert!(head.contains("\r\nUpgrade: h2c\r\n"), "{head}");
            assert!(head.contains("\r\nUpgrade: websocket\r\n"), "{head}");
            SWITCH
        } else {
            // The first line names what the client offered, the second not.
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n"
        };
        answer_then_echo(s, answer);
    });
    let lb = start_lb(srv);
    let addr = lb.addr("frontend", "f");

    // RFC 9110 5.3: two Upgrade lines are one list, "h2c, websocket"; so are
    // the two Connection lines. The server's websocket was offered.
    let mut c = Client::connect(addr);
    c.send(
        b"GET /split HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nUpgrade: h2c\r\n\
          Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    c.assert_echo(b"ping");

    // The server's second Upgrade line switches to h2c, which was not offered.
    let mut c = Client::connect(addr);
    c.send(b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(c.read(false).expect("a response").status, 502);
    c.expect_closed("after the 502");
    lb.wait_log("invalid response: 101 to a protocol the client did not offer");
}

#[test]
fn a_bad_chunk_before_anything_was_relayed_is_a_502() {
    let (srv, _) = raw_server(|_, s| {
        s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .unwrap();
    });
    let lb = start_lb(srv);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read(false).expect("a 502, not a bare close");
    assert_eq!(r.status, 502);
    c.expect_closed("after the 502");
    lb.wait_log("invalid response: chunked body: malformed chunk size");
}

#[test]
fn a_bad_chunk_after_the_response_began_closes_the_client() {
    let (go_tx, go) = mpsc::channel::<()>();
    let go = std::sync::Mutex::new(go);
    let (srv, _) = raw_server(move |_, s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .unwrap();
        // The bad chunk once the client has the first one; the server then
        // stays open, so only lb can end the client's wait.
        let _ = go.lock().unwrap().recv_timeout(WAIT);
        s.write_all(b"zz\r\n").unwrap();
        closes(s);
    });
    let lb = start_lb(srv);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"hello\r\n") {
        c.r.read_exact(&mut b).unwrap();
        got.push(b[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    go_tx.send(()).unwrap();
    c.expect_closed("after a bad chunk mid-response");
    lb.wait_log("invalid response: chunked body: malformed chunk size");
}

#[test]
fn a_transfer_encoding_not_ending_in_chunked_is_read_until_close() {
    let (srv, _) = raw_server(|_, s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nnot really gzip")
            .unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    let lb = start_lb(srv);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("gzip"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.text(), "not really gzip");
}

#[test]
fn an_http10_client_gets_no_transfer_coding() {
    // By request line; lb reads none of the bodies that run until close.
    let srv = canned_server(&[
        (
            "GET /gzip ",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nnot really gzip",
        ),
        (
            "GET /gzip-chunked ",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "GET /gzip-lines ",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        ),
        (
            "HEAD ",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "GET /chunked ",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ]);
    let lb = start_lb(srv);
    let addr = lb.addr("frontend", "f");

    // A coding other than chunked cannot be told to an HTTP/1.0 client
    // (RFC 9112 6.1), and stripped it would pass coded bytes as the content.
    for (i, path) in ["/gzip", "/gzip-chunked", "/gzip-lines"].iter().enumerate() {
        let mut c = Client::connect(addr);
        c.send(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        assert_eq!(c.read(false).expect("a response").status, 502, "{path}");
        c.expect_closed(path);
        lb.wait_log_count(
            "invalid response: transfer coding an HTTP/1.0 client cannot receive",
            i + 1,
        );
    }

    // Only chunked: undone, with no Transfer-Encoding left, body or not.
    let mut c = Client::connect(addr);
    c.send(b"GET /chunked HTTP/1.0\r\n\r\n");
    let r = c.read(false).expect("a response");
    assert_eq!((r.status, r.header("transfer-encoding")), (200, None));
    assert_eq!(r.text(), "hello");
    let mut c = Client::connect(addr);
    c.send(b"HEAD /chunked HTTP/1.0\r\n\r\n");
    let r = c.read(true).expect("a response");
    assert_eq!((r.status, r.header("transfer-encoding")), (200, None));
    c.expect_closed("HTTP/1.0 without keep-alive");

    // An HTTP/1.1 client still gets the coding (and, to read the re-framed
    // body to its end, asks for the close).
    let mut c = Client::connect(addr);
    c.send(b"GET /gzip-chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("gzip, chunked"));
}

#[test]
fn broken_framing_is_a_502_logged_with_why() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "/te-cl",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Content-Length with Transfer-Encoding",
        ),
        (
            "/cl-cl",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "differing Content-Length values",
        ),
        (
            "/cl-bad",
            "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
            "malformed Content-Length",
        ),
        (
            "/status",
            "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            "invalid response: ",
        ),
        (
            "/te-twice",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            "chunked applied twice",
        ),
    ];
    let answers: Vec<(String, String)> = cases
        .iter()
        .map(|(p, a, _)| (format!("GET {p} "), a.to_string()))
        .collect();
    let (srv, _) = raw_server(move |head, s| {
        if let Some((_, a)) = answers.iter().find(|(p, _)| head.starts_with(p.as_str())) {
            let _ = s.write_all(a.as_bytes());
        }
    });
    let lb = start_lb(srv);
    let addr = lb.addr("frontend", "f");
    for (i, (path, _, why)) in cases.iter().enumerate() {
        let mut c = Client::connect(addr);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(c.read(false).expect("a response").status, 502, "{path}");
        c.expect_closed(path);
        lb.wait_log_count(why, 1);
        lb.wait_log_count("invalid response: ", i + 1);
    }
}

#[test]
fn a_204_that_announces_a_body_does_not_leave_it_for_the_next_request() {
    // The first connection answers a 204 saying Content-Length: 45, and sends
    // those 45 bytes (a whole response) only once the client has the 204.
    let (sent_tx, sent) = mpsc::channel::<()>();
    let (got_tx, got) = mpsc::channel::<()>();
    let (sent_tx, got) = (std::sync::Mutex::new(sent_tx), std::sync::Mutex::new(got));
    let (srv, conns) = raw_server(move |head, s| {
        if head.starts_with("GET /first ") {
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 45\r\n\r\n")
                .unwrap();
            let _ = got.lock().unwrap().recv_timeout(WAIT);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle")
                .unwrap();
            let _ = sent_tx.lock().unwrap().send(());
        } else if head.starts_with("GET /second ") {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
                .unwrap();
        }
    });
    let lb = start_lb(srv);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    let r = c.get("/first");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    got_tx.send(()).unwrap();
    sent.recv_timeout(WAIT).unwrap();
    let r = c.get("/second");
    assert_eq!((r.status, r.text().as_str()), (200, "good"));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
