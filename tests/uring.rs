//! The io_uring data path (`tune.io-uring`, on by default) against the epoll
//! one: both in use when asked for, both proxying the same way, and the ring's
//! own edges (a send that cannot complete, a timeout that cancels a read).
//! The rest of the suite runs on the ring wherever the kernel allows it.

mod common;

use std::io::{Read, Write};
use std::time::Instant;

use common::client::Client;
use common::servers::http_server;
use common::{Lb, WAIT};

fn labelled_metric(lb: &Lb, name: &str, label: &str) -> f64 {
    let text = Client::connect(lb.addr("admin", "admin"))
        .get("/metrics")
        .text();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .and_then(|l| l.rsplit_once(' '))
        .unwrap_or_else(|| panic!("no {name} {label} in\n{text}"))
        .1
        .parse()
        .unwrap()
}

fn conf(tune: &str, backend: std::net::SocketAddr, fe_extra: &str) -> String {
    format!(
        "global\n    nbthread 2\n    admin 127.0.0.1:0\n{tune}\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n\
         frontend f\n    bind 127.0.0.1:0\n{fe_extra}    default_backend b\n\
         backend b\n    server s {backend}\n"
    )
}

/// `lb_io_uring_workers{path,mode,reason}`: its rows for this process.
fn data_paths(lb: &Lb) -> Vec<String> {
    let text = Client::connect(lb.addr("admin", "admin"))
        .get("/metrics")
        .text();
    text.lines()
        .filter(|l| l.starts_with("lb_io_uring_workers{"))
        .map(String::from)
        .collect()
}

/// `lb_io_uring_workers` says which data path runs, and why: every worker on
/// a proven ring where the kernel allows io_uring, none with `tune.io-uring off`.
#[test]
fn workers_use_the_ring_unless_turned_off() {
    let a = http_server("a");
    let on = Lb::start(&conf("", a.addr, ""), 2);
    let expected = match lb::uring::probe() {
        Ok(()) => r#"lb_io_uring_workers{mode="signal",path="io_uring",reason="proven"} 2"#,
        Err(e) => {
            eprintln!("io_uring not permitted here ({e}): lb must fall back to epoll");
            r#"lb_io_uring_workers{mode="none",path="epoll",reason="unsupported"} 2"#
        }
    };
    assert_eq!(data_paths(&on), [expected]);
    assert_eq!(
        Client::connect(on.addr("frontend", "f")).get("/").status,
        200
    );

    if lb::uring::probe().is_ok() {
        // Asked for, `defer-taskrun` runs if its proof finds it prompt (not on
        // every kernel: on 6.18 it completes reads 20-30 ms late, and lb then
        // uses epoll); either way sequential requests do not wait.
        let defer = Lb::start(&conf("    tune.io-uring defer-taskrun\n", a.addr, ""), 2);
        let paths = data_paths(&defer);
        let proven = r#"lb_io_uring_workers{mode="defer-taskrun",path="io_uring",reason="proven"}"#;
        let failed = r#"lb_io_uring_workers{mode="none",path="epoll",reason="proof-failed"}"#;
        assert!(
            !paths.is_empty()
                && paths
                    .iter()
                    .all(|l| l.starts_with(proven) || l.starts_with(failed)),
            "{paths:?}"
        );
        sequential_keep_alive(defer.addr("frontend", "f"), 200);
    }

    let off = Lb::start(&conf("    tune.io-uring off\n", a.addr, ""), 2);
    assert_eq!(
        data_paths(&off),
        [r#"lb_io_uring_workers{mode="none",path="epoll",reason="off"} 2"#]
    );
    assert_eq!(
        Client::connect(off.addr("frontend", "f")).get("/").status,
        200
    );
}

/// Sends `n` requests one after the other on one kept-alive connection, each
/// once the previous answer is in, as a browser or `wrk -c1` does: every
/// request's read is already waiting in lb when it arrives. The bound is far
/// above what a healthy machine needs (milliseconds) and far below what a
/// ring whose wake-ups stall costs (tens of ms per request: 6 s for 200).
pub fn sequential_keep_alive(f: std::net::SocketAddr, n: usize) {
    let mut c = Client::connect(f);
    let t = Instant::now();
    for i in 0..n {
        let r = c.get("/");
        assert_eq!(r.status, 200, "request {i}");
    }
    let took = t.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "{n} sequential keep-alive requests took {took:?}"
    );
}

/// The default conf's data path answers sequential keep-alive requests
/// without waiting.
#[test]
fn sequential_keep_alive_requests_do_not_wait() {
    let a = http_server("a");
    let lb = Lb::start(&conf("", a.addr, ""), 2);
    sequential_keep_alive(lb.addr("frontend", "f"), 200);
}

/// A ring whose wake-ups never come (the test hook leaves its eventfd out)
/// fails its proof at start: the worker falls back to epoll (not to
/// `defer-taskrun`, which can pass its proof and still stall), says why in the
/// log and the metric, and serves without stalling. The same for
/// `tune.io-uring defer-taskrun`.
#[test]
fn a_ring_that_fails_its_proof_is_not_used() {
    if lb::uring::probe().is_err() {
        eprintln!("io_uring not permitted here: nothing to prove");
        return;
    }
    let a = http_server("a");
    let start = |global: &str, broken: &str| {
        let (dir, path) = common::write_conf(&conf(global, a.addr, ""));
        Lb::start_path(dir, path, 2, &[("LB_TEST_URING_NO_EVENTFD", broken)])
    };

    let lb = start("", "signal");
    lb.wait_log("io_uring (signal) failed its proof");
    lb.wait_log("data path: 2 epoll (proof-failed)");
    assert_eq!(
        data_paths(&lb),
        [r#"lb_io_uring_workers{mode="none",path="epoll",reason="proof-failed"} 2"#]
    );
    sequential_keep_alive(lb.addr("frontend", "f"), 200);

    let lb = start("    tune.io-uring defer-taskrun\n", "all");
    lb.wait_log("io_uring (defer-taskrun) failed its proof");
    lb.wait_log("data path: 2 epoll (proof-failed)");
    assert_eq!(
        data_paths(&lb),
        [r#"lb_io_uring_workers{mode="none",path="epoll",reason="proof-failed"} 2"#]
    );
    sequential_keep_alive(lb.addr("frontend", "f"), 200);
}

/// The same exchanges give the same bytes on both paths: keep-alive, pipelining,
/// a chunked body each way, a large response, an upgrade to a tunnel.
#[test]
fn both_paths_proxy_the_same() {
    let a = http_server("a");
    let mut seen = Vec::new();
    for tune in ["", "    tune.io-uring off\n"] {
        let lb = Lb::start(&conf(tune, a.addr, ""), 2);
        let f = lb.addr("frontend", "f");
        let mut out = Vec::new();

        let mut c = Client::connect(f);
        for _ in 0..3 {
            let r = c.get("/");
            out.push(format!("{} {:?}", r.status, r.header("x-server")));
        }
        // Pipelined: three requests in one write, answered in order.
        c.send(b"GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/203 HTTP/1.1\r\nHost: t\r\n\r\n");
        for _ in 0..3 {
            out.push(c.read(false).unwrap().status.to_string());
        }
        // A chunked request body, echoed; a chunked response.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        out.push(c.read(false).unwrap().text());
        out.push(c.get("/chunked").text());
        // 3 MB through one connection (many ring sends and reads).
        let big = c.get("/big/3000000");
        out.push(format!("{} {}", big.status, big.body.len()));
        assert!(big.body.iter().all(|&b| b == b'z'));

        // Upgrade: the connection becomes a tunnel (the ring socket moves to epoll).
        let mut s = common::connect(f);
        let head = common::websocket_upgrade(&mut s, "t");
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        s.write_all(b"ping through the tunnel").unwrap();
        let mut echo = [0u8; 23];
        s.read_exact(&mut echo).unwrap();
        out.push(String::from_utf8_lossy(&echo).into_owned());
        seen.push(out);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0][3..6], ["201", "202", "203"]);
    assert_eq!(seen[0][6], "hello world");
    assert_eq!(seen[0][8], "200 3000000");
}

/// A client that stops reading a large response: the ring send that cannot
/// complete arms its idle timer, and after `timeout client` lb gives up on the
/// connection (it neither hangs nor keeps the session).
#[test]
fn a_send_the_client_never_reads_times_out() {
    let a = http_server("a");
    let conf = conf("", a.addr, "    timeout client 300ms\n");
    let lb = Lb::start(&conf, 2);
    let f = lb.addr("frontend", "f");
    let fe = r#"frontend="f""#;
    let mut s = common::connect(f);
    s.write_all(b"GET /big/50000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Not reading: lb fills the socket buffers, then its send waits.
    common::eventually("lb to take the session", || {
        (labelled_metric(&lb, "lb_frontend_current_sessions", fe) == 1.0).then_some(())
    });
    let t = Instant::now();
    common::eventually("lb to drop the stalled session", || {
        (labelled_metric(&lb, "lb_frontend_current_sessions", fe) == 0.0).then_some(())
    });
    assert!(t.elapsed() < WAIT);
    // What was already in the socket buffers arrives, then EOF or a reset:
    // far less than the 50 MB body.
    let mut got = 0usize;
    let mut b = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 50_000_000, "{got}");
}

/// `timeout http-request` cancels a ring read that is waiting (the slowloris
/// guard), and the client gets its 408.
#[test]
fn a_waiting_read_is_cancelled_by_its_timeout() {
    let a = http_server("a");
    let conf = conf("", a.addr, "    timeout http-request 200ms\n");
    let lb = Lb::start(&conf, 2);
    let mut s = common::connect(lb.addr("frontend", "f"));
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The worker is fine afterwards.
    assert_eq!(
        Client::connect(lb.addr("frontend", "f")).get("/").status,
        200
    );
}
