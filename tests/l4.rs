//! TCP mode end to end: round robin, retry past a dead server, half-close, big transfers, drain.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;

use common::{connect, servers, Lb};

fn tcp_conf(servers: &[(String, std::net::SocketAddr)], extra: &str) -> String {
    let mut c = format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n{extra}\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n"
    );
    for (n, a) in servers {
        c.push_str(&format!("    server {n} {a}\n"));
    }
    c
}

fn greeting(addr: std::net::SocketAddr) -> String {
    let s = connect(addr);
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn round_robin_across_three_servers() {
    let srv: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), servers::tagged_echo(n)))
        .collect();
    let lb = Lb::start(&tcp_conf(&srv, ""), 1);
    let fe = lb.addr("frontend", "f");
    let got: Vec<String> = (0..6).map(|_| greeting(fe)).collect();
    assert_eq!(got, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn dead_server_is_skipped_by_retry() {
    let srv = vec![
        ("a".to_string(), servers::tagged_echo("a")),
        ("dead".to_string(), servers::dead_addr()),
        ("c".to_string(), servers::tagged_echo("c")),
    ];
    let lb = Lb::start(&tcp_conf(&srv, "    retries 2"), 1);
    let fe = lb.addr("frontend", "f");
    for _ in 0..6 {
        let g = greeting(fe);
        assert!(g == "a" || g == "c", "got {g}");
    }
}

#[test]
fn no_server_accepts_closes_client() {
    let srv = vec![("dead".to_string(), servers::dead_addr())];
    let lb = Lb::start(&tcp_conf(&srv, "    retries 1"), 1);
    let mut s = connect(lb.addr("frontend", "f"));
    let mut buf = [0u8; 16];
    // Closed without a byte (EOF or reset, never a hang).
    match s.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

#[test]
fn half_close_keeps_the_other_direction() {
    // The server echoes until our FIN, then sends its own: all our bytes must
    // come back after we half-closed.
    let srv = vec![("e".to_string(), servers::echo_server())];
    let lb = Lb::start(&tcp_conf(&srv, ""), 1);
    let mut s = connect(lb.addr("frontend", "f"));
    let payload = vec![b'x'; 300_000];
    let mut w = s.try_clone().unwrap();
    let p2 = payload.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&p2).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload);
}

#[test]
fn large_transfer_is_byte_exact() {
    let srv = vec![("e".to_string(), servers::echo_server())];
    let lb = Lb::start(&tcp_conf(&srv, ""), 1);
    let mut s = connect(lb.addr("frontend", "f"));
    const SIZE: usize = 64 << 20;
    // A pattern that catches reordering and offsets, not just lengths.
    let data: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut w = s.try_clone().unwrap();
    let d2 = data.clone();
    let writer = std::thread::spawn(move || {
        for chunk in d2.chunks(1 << 20) {
            w.write_all(chunk).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(SIZE);
    s.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), SIZE);
    assert!(back == data, "payload differs");
}

#[test]
fn maxconn_queues_instead_of_dropping() {
    let srv = vec![("a".to_string(), servers::tagged_echo("a"))];
    let lb = Lb::start(&tcp_conf(&srv, "    maxconn 1"), 1);
    let fe = lb.addr("frontend", "f");
    let first = connect(fe);
    let mut line = String::new();
    let mut r1 = BufReader::new(first.try_clone().unwrap());
    r1.read_line(&mut line).unwrap();
    assert_eq!(line, "a\n");
    // The second connection completes the TCP handshake (kernel backlog) but is
    // not served until the first ends.
    let second = connect(fe);
    second
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut r2 = BufReader::new(second.try_clone().unwrap());
    let mut l2 = String::new();
    assert!(
        r2.read_line(&mut l2).is_err(),
        "served beyond maxconn: {l2:?}"
    );
    first.shutdown(Shutdown::Both).unwrap();
    drop(r1);
    drop(first);
    second.set_read_timeout(Some(common::WAIT)).unwrap();
    r2.read_line(&mut l2).unwrap();
    assert_eq!(l2, "a\n");
}

#[test]
fn sigterm_lets_open_transfer_finish() {
    let srv = vec![("e".to_string(), servers::echo_server())];
    let mut lb = Lb::start(&tcp_conf(&srv, ""), 1);
    let fe = lb.addr("frontend", "f");
    let mut s = connect(fe);
    s.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).unwrap();
    lb.signal(libc::SIGTERM);
    lb.wait_log("draining");
    // New connections are refused once draining...
    let refused = (0..200).any(|_| {
        let r = std::net::TcpStream::connect(fe).is_err();
        if !r {
            std::thread::yield_now();
        }
        r
    });
    assert!(refused, "listener still accepting after SIGTERM");
    // ...while the open one still works both ways.
    s.write_all(b"after").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"after");
    assert_eq!(lb.wait_exit(), Some(0));
}
