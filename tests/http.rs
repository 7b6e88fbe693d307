//! HTTP mode end to end: routing, keep-alive, framing, headers, pooling, errors.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use common::client::Client;
use common::servers::{self, http_server, HttpServer};
use common::Lb;

fn conf(extra_fe: &str, extra_be: &str, servers: &[&HttpServer]) -> String {
    let mut c = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\n{extra_fe}\nbackend b\n{extra_be}\n"
    );
    for (i, s) in servers.iter().enumerate() {
        c.push_str(&format!("    server s{i} {}\n", s.addr));
    }
    c
}

fn start(extra_fe: &str, extra_be: &str, servers: &[&HttpServer]) -> Lb {
    Lb::start(&conf(extra_fe, extra_be, servers), 1)
}

#[test]
fn round_robin_per_request_on_one_connection() {
    let (a, b) = (http_server("a"), http_server("b"));
    let lb = start("", "", &[&a, &b]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    let names: Vec<String> = (0..4)
        .map(|_| c.get("/").header("x-server").unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "a", "b"]);
}

#[test]
fn forwardfor_appends_and_sets_proto() {
    let a = http_server("a");
    let lb = start("    option forwardfor", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: gopher\r\n\r\n");
    let t = c.read(false).unwrap().text();
    assert!(t.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\n"), "{t}");
    assert!(t.contains("x-forwarded-proto: http\n"), "{t}");
    assert!(!t.contains("gopher"), "{t}");
    assert!(!t.contains("via:"), "{t}");
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n");
    let t = c.read(false).unwrap().text();
    assert!(t.contains("x-kept: yes"), "{t}");
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te:",
        "connection: keep-alive",
    ] {
        assert!(!t.contains(gone), "{gone} forwarded: {t}");
    }
}

#[test]
fn connection_close_and_http10() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let fe = lb.addr("frontend", "f");
    let mut c = Client::connect(fe);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
    // HTTP/1.0 is not persistent by default...
    let mut c = Client::connect(fe);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 200);
    assert!(c.is_closed());
    // ...unless it asks.
    let mut c = Client::connect(fe);
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        c.read(false).unwrap().header("connection"),
        Some("keep-alive")
    );
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 200);
}

#[test]
fn pipelined_requests_answered_in_order() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n");
    for p in ["/one", "/two", "/three"] {
        let t = c.read(false).unwrap().text();
        assert!(t.starts_with(&format!("a GET {p}\n")), "{t}");
    }
}

#[test]
fn request_bodies_stream_through() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    let body = vec![b'q'; 3 << 20];
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.read(false).unwrap();
    assert_eq!(r.body.len(), body.len());
    // Chunked, re-framed by lb; the server decodes it.
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n");
    assert_eq!(c.read(false).unwrap().text(), "Wikipedia");
    // Expect: 100-continue gets an interim 100 before we send the body.
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 100);
    c.send(b"hello");
    assert_eq!(c.read(false).unwrap().text(), "hello");
}

#[test]
fn response_framings() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let fe = lb.addr("frontend", "f");
    let mut c = Client::connect(fe);
    let r = c.get("/chunked");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "hello, world");
    let r = c.get("/big/1000000");
    assert_eq!(r.body.len(), 1_000_000);
    // No body for HEAD, 204, 304, whatever the server claims.
    c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.read(true).unwrap();
    assert!(r.header("content-length").is_some());
    for code in [204, 304] {
        let r = c.get(&format!("/status/{code}"));
        assert_eq!(r.status, code);
    }
    // Still in sync after all that:
    assert_eq!(c.get("/x").status, 200);
    // A body delimited by close ends the client connection too.
    let r = c.get("/close");
    assert_eq!(r.text(), "until the end");
    assert_eq!(r.header("connection"), Some("close"));
    // HTTP/1.0 client, chunked response: raw body, then close.
    let mut c = Client::connect(fe);
    c.send(b"GET /chunked HTTP/1.0\r\n\r\n");
    let r = c.read(false).unwrap();
    assert!(r.header("transfer-encoding").is_none());
    assert_eq!(r.text(), "hello, world");
}

#[test]
fn upstream_connections_are_pooled() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let fe = lb.addr("frontend", "f");
    for _ in 0..10 {
        let mut c = Client::connect(fe);
        for _ in 0..5 {
            assert_eq!(c.get("/").status, 200);
        }
    }
    assert_eq!(a.requests.load(Ordering::SeqCst), 50);
    // 10 client connections, 50 requests: the server saw far fewer connections.
    let conns = a.conns.load(Ordering::SeqCst);
    assert!(conns <= 4, "server saw {conns} connections");
}

#[test]
fn a_burst_of_server_connections_stays_pooled_for_the_next_burst() {
    // 100 requests at once, each held 800 ms by the server, need 100 server
    // connections; the next burst must find them all in the pool (with the old
    // default bound of 64, 36 were closed and reopened on every burst).
    const N: usize = 100;
    let a = http_server("a");
    let lb = Lb::start(
        &format!("global\n    nbthread 1\n{}", conf("", "", &[&a])),
        1,
    );
    let fe = lb.addr("frontend", "f");
    let mut clients: Vec<Client> = (0..N).map(|_| Client::connect(fe)).collect();
    let burst = |clients: &mut Vec<Client>| {
        for c in clients.iter_mut() {
            c.send(b"GET /slow/800 HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        for c in clients.iter_mut() {
            assert_eq!(c.read(false).unwrap().status, 200);
        }
    };
    burst(&mut clients);
    let first = a.conns.load(Ordering::SeqCst);
    assert!(
        first > 80,
        "the first burst was not concurrent: {first} connections"
    );
    burst(&mut clients);
    let second = a.conns.load(Ordering::SeqCst);
    // A response can reach its client just before lb pools its connection.
    assert!(
        second <= first + 3,
        "{first} connections after the first burst, {second} after the second"
    );
}

#[test]
fn http_reuse_never_uses_one_connection_per_request() {
    let a = http_server("a");
    let lb = start("", "    http-reuse never", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    for _ in 0..5 {
        assert_eq!(c.get("/").status, 200);
    }
    assert_eq!(a.conns.load(Ordering::SeqCst), 5);
}

#[test]
fn acl_routes_to_backends() {
    let (web, api) = (http_server("web"), http_server("api"));
    let c = format!(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    acl is_api path_beg /api/\n    acl is_admin hdr(host) -i admin.example\n    use_backend api if is_api || is_admin\n    default_backend web\nbackend web\n    server w {}\nbackend api\n    server a {}\n",
        web.addr, api.addr
    );
    let lb = Lb::start(&c, 1);
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/api/x").header("x-server"), Some("api"));
    assert_eq!(cl.get("/index.html").header("x-server"), Some("web"));
    cl.send(b"GET / HTTP/1.1\r\nHost: ADMIN.example:8080\r\n\r\n");
    assert_eq!(cl.read(false).unwrap().header("x-server"), Some("api"));
}

#[test]
fn websocket_upgrade_becomes_a_tunnel() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let r = c.read(true).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    c.assert_echo(b"raw bytes both ways");
}

#[test]
fn smuggling_attempts_get_400_and_close() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let fe = lb.addr("frontend", "f");
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for raw in cases {
        let mut c = Client::connect(fe);
        c.send(raw);
        let r = c
            .read(false)
            .unwrap_or_else(|| panic!("no reply to {:?}", String::from_utf8_lossy(raw)));
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert!(c.is_closed());
    }
    // Nothing but the last (bad chunk size after a valid head) may have reached the server.
    assert!(a.requests.load(Ordering::SeqCst) == 0);
}

#[test]
fn oversized_heads_get_431() {
    let a = http_server("a");
    let lb = Lb::start(
        &format!(
            "global\n    tune.bufsize 2k\n    tune.http.maxhdr 10\n{}",
            conf("", "", &[&a])
        ),
        1,
    );
    let fe = lb.addr("frontend", "f");
    let mut c = Client::connect(fe);
    c.send(
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(3000)
        )
        .as_bytes(),
    );
    assert_eq!(c.read(false).unwrap().status, 431);
    let mut c = Client::connect(fe);
    let many: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
    c.send(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes());
    assert_eq!(c.read(false).unwrap().status, 431);
}

#[test]
fn slow_head_gets_408() {
    let a = http_server("a");
    let lb = start("    timeout http-request 300ms", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
    // The reply comes when the timeout fires; the read blocks until then.
    assert_eq!(c.read(false).unwrap().status, 408);
    assert!(c.is_closed());
}

#[test]
fn body_limit_gets_413() {
    let a = http_server("a");
    let lb = start("    max-body-size 1k", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 413);
}

#[test]
fn server_errors_map_to_502_503_504() {
    // 503: nothing accepts.
    let dead = servers::dead_addr();
    let c = format!("defaults\n    mode http\n    retries 1\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server d {dead}\n");
    let lb = Lb::start(&c, 1);
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/").status, 503);
    // 502: garbage instead of a response.
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_addr = junk.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in junk.incoming() {
            let Ok(mut s) = s else { continue };
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"SMTP READY\r\n\r\n");
        }
    });
    let c = format!("defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server j {junk_addr}\n");
    let lb = Lb::start(&c, 1);
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/").status, 502);
    // 504: the server is too slow.
    let a = http_server("a");
    let lb = start("", "    timeout server 200ms", &[&a]);
    let mut cl = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(cl.get("/slow/3000").status, 504);
}

#[test]
fn behind_real_nginx_when_installed() {
    let Some(nginx) = common::nginx::Nginx::start() else {
        eprintln!("nginx not installed: skipping");
        return;
    };
    let lb = Lb::start(
        &format!("defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server n {}\n", nginx.addr),
        1,
    );
    let mut c = Client::connect(lb.addr("frontend", "f"));
    for _ in 0..3 {
        let r = c.get("/hello.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello from nginx\n");
        assert!(r.header("server").unwrap_or("").starts_with("nginx"));
    }
    assert_eq!(c.get("/missing").status, 404);
}

#[test]
fn dead_pooled_connection_is_retried_with_the_body() {
    let a = http_server("a");
    let lb = start("", "", &[&a]);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    for i in 0..5 {
        // The server closes after this answer; lb pooled the connection.
        assert_eq!(c.get("/once").text(), "once");
        // An idempotent request with a buffered body goes out on that dead
        // connection first, then is replayed whole on a fresh one.
        let body = format!("payload-{i}");
        c.send(
            format!(
                "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read(false).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), body);
    }
}

#[test]
fn sigterm_closes_idle_keepalive_and_finishes_requests_in_flight() {
    let a = http_server("a");
    // Keep-alive and drain limits far beyond the test's waits: only a prompt
    // close of idle connections lets lb exit in time.
    let mut lb = Lb::start(
        &format!(
            "global\n    timeout drain 60s\n{}",
            conf("    timeout http-keep-alive 60s", "", &[&a])
        ),
        1,
    );
    let fe = lb.addr("frontend", "f");
    let mut idle = Client::connect(fe);
    assert_eq!(idle.get("/").status, 200);
    let mut busy = Client::connect(fe);
    busy.send(b"GET /slow/1500 HTTP/1.1\r\nHost: x\r\n\r\n");
    // The slow request has reached the server before the signal.
    let deadline = std::time::Instant::now() + common::WAIT;
    while a.requests.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    lb.signal(libc::SIGTERM);
    lb.wait_log("draining");
    // The idle connection is closed at once (EOF, not a read timeout).
    idle.expect_closed("an idle connection, by the drain");
    // The request in flight completes, as the connection's last.
    let r = busy.read(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(lb.wait_exit(), Some(0));
}

#[test]
fn sigterm_closes_pooled_server_connections_at_once() {
    let a = http_server("a");
    // A purge delay far beyond the test's waits: only the drain closes them.
    let mut lb = Lb::start(
        &format!(
            "global\n    timeout drain 60s\n{}",
            conf("", "    default-server pool-purge-delay 60s", &[&a])
        ),
        1,
    );
    let fe = lb.addr("frontend", "f");
    // Two requests at once: two server connections, both pooled afterwards.
    let mut c1 = Client::connect(fe);
    let mut c2 = Client::connect(fe);
    for c in [&mut c1, &mut c2] {
        c.send(b"GET /slow/200 HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    for c in [&mut c1, &mut c2] {
        assert_eq!(c.read(false).expect("response").status, 200);
    }
    drop((c1, c2));
    assert_eq!(a.conns.load(Ordering::SeqCst), 2);
    // A long request holds the drain open and uses at most one of them.
    let mut busy = Client::connect(fe);
    busy.send(b"GET /slow/5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    common::eventually("the slow request at the server", || {
        (a.requests.load(Ordering::SeqCst) >= 3).then_some(())
    });
    assert_eq!(a.closed.load(Ordering::SeqCst), 0);
    lb.signal(libc::SIGTERM);
    lb.wait_log("draining");
    // The idle pooled connection is closed while the slow answer is still due.
    common::eventually("an idle server connection closed", || {
        (a.closed.load(Ordering::SeqCst) >= 1).then_some(())
    });
    let sock = busy.r.get_ref();
    sock.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        sock.peek(&mut b).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the slow response came before the pooled connection was closed"
    );
    sock.set_nonblocking(false).unwrap();
    let r = busy.read(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(lb.wait_exit(), Some(0));
}

#[test]
fn a_reload_that_only_moves_lines_changes_nothing() {
    let a = http_server("a");
    let c = conf(
        "    acl api path_beg /api/\n    use_backend b if api\n",
        "",
        &[&a],
    );
    let lb = Lb::start(&c, 1);
    lb.reload(&format!("# a comment on top\n\n{c}"));
    assert!(lb.wait_log("reloaded:").contains("0 changes"));
    lb.reload(&c.replace(&a.addr.to_string(), &format!("{} weight 2", a.addr)));
    assert!(lb.wait_log("reloaded:").contains("1 changes"));
}
