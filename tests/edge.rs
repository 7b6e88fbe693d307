//! Edge defenses end to end: source filtering (v4/v6, list files and their reload), per-address limits, slow clients.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::client::Client;
use common::servers::{http_server, HttpServer};
use common::{Lb, WAIT};

/// Connects to `to` from the loopback address `from` (bind before connect).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let ip: IpAddr = from.parse().unwrap();
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    s.connect_timeout(&to.into(), WAIT).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

fn client_from(from: &str, to: SocketAddr) -> Client {
    Client {
        r: std::io::BufReader::new(connect_from(from, to)),
    }
}

/// Sends one GET from `from`; the status, or `None` when lb closed the connection without a response.
fn get_from(from: &str, to: SocketAddr, path: &str) -> Option<common::client::Resp> {
    let mut c = client_from(from, to);
    // A connection closed at accept may reset the write: that is a refusal too.
    if c.r
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .is_err()
    {
        return None;
    }
    c.read(false)
}

/// True when lb closes a fresh connection from `from` without sending a byte.
fn closed_at_accept(from: &str, to: SocketAddr) -> bool {
    let mut s = connect_from(from, to);
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn backend(name: &str, server: &HttpServer) -> String {
    format!("backend {name}\n    server s {}\n", server.addr)
}

const DEFAULTS: &str =
    "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n";

#[test]
fn source_filtering_v4_v6_and_list_reload() {
    let a = http_server("a");
    let dir = common::TempDir::new("edge-lists");
    let list = dir.path().join("deny.lst");
    std::fs::write(&list, "# abusers\n127.0.0.3\n127.0.0.16/30 # a range\n").unwrap();
    let conf = format!(
        "{DEFAULTS}frontend f4\n    bind 127.0.0.1:0\n    acl listed src -f {}\n    tcp-request connection reject if {{ src 127.0.0.2 }}\n    http-request deny if listed\n    http-request deny deny_status 451 if {{ path_beg /secret }}\n    default_backend b\n\
         frontend f6\n    bind [::1]:0\n    tcp-request connection reject if {{ src ::1/128 }}\n    default_backend b\n\
         frontend f6ok\n    bind [::1]:0\n    acl far src 2001:db8::/32 10.0.0.0/8\n    http-request deny if far\n    default_backend b\n{}",
        list.display(),
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 3);
    let f4 = lb.addr("frontend", "f4");
    let f6 = lb.addr("frontend", "f6");
    let f6ok = lb.addr("frontend", "f6ok");

    assert_eq!(get_from("127.0.0.1", f4, "/").unwrap().status, 200);
    assert_eq!(a.requests.load(Ordering::SeqCst), 1);
    // tcp-request reject: closed before any byte, nothing reaches the server
    assert!(closed_at_accept("127.0.0.2", f4));
    assert!(get_from("127.0.0.2", f4, "/").is_none());
    // listed in the file (host and range): 403, not forwarded
    for ip in ["127.0.0.3", "127.0.0.17", "127.0.0.19"] {
        let r = get_from(ip, f4, "/").unwrap();
        assert_eq!(r.status, 403, "{ip}");
    }
    assert_eq!(get_from("127.0.0.20", f4, "/").unwrap().status, 200);
    assert_eq!(get_from("127.0.0.1", f4, "/secret/x").unwrap().status, 451);
    // IPv6: rejected at accept on f6, allowed on f6ok (not in its networks)
    assert!(closed_at_accept("::1", f6));
    assert!(get_from("::1", f6, "/").is_none());
    assert_eq!(get_from("::1", f6ok, "/").unwrap().status, 200);
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        3,
        "denied requests never reach the server"
    );

    // the list file changes; SIGHUP re-reads it
    std::fs::write(&list, "127.0.0.4\n").unwrap();
    lb.reload(&conf);
    lb.wait_log("reloaded:");
    assert_eq!(get_from("127.0.0.3", f4, "/").unwrap().status, 200);
    assert_eq!(get_from("127.0.0.4", f4, "/").unwrap().status, 403);
    assert_eq!(get_from("127.0.0.17", f4, "/").unwrap().status, 200);
    // a broken list keeps the running configuration
    std::fs::write(&list, "127.0.0.5\nnot-an-address\n").unwrap();
    lb.reload(&conf);
    lb.wait_log("reload failed:");
    assert_eq!(get_from("127.0.0.4", f4, "/").unwrap().status, 403);
    assert_eq!(get_from("127.0.0.5", f4, "/").unwrap().status, 200);
}

#[test]
fn concurrent_connection_limit_per_address() {
    let a = http_server("a");
    let conf = format!(
        "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    limit conn 2\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 1);
    let f = lb.addr("frontend", "f");
    let mut c1 = client_from("127.0.0.5", f);
    let mut c2 = client_from("127.0.0.5", f);
    assert_eq!(c1.get("/").status, 200);
    assert_eq!(c2.get("/").status, 200);
    assert!(
        closed_at_accept("127.0.0.5", f),
        "third connection is closed"
    );
    // other addresses are not affected
    assert_eq!(get_from("127.0.0.6", f, "/").unwrap().status, 200);
    drop(c1);
    common::eventually("a slot frees up when a connection closes", || {
        get_from("127.0.0.5", f, "/")
            .is_some_and(|r| r.status == 200)
            .then_some(())
    });
    assert_eq!(c2.get("/").status, 200);
}

#[test]
fn new_connection_rate_limit_per_address() {
    let a = http_server("a");
    let conf = format!(
        "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    limit rate 5/s\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 1);
    let f = lb.addr("frontend", "f");
    let ok = (0..20)
        .filter(|_| get_from("127.0.0.7", f, "/").is_some())
        .count();
    // 5 per second; a window boundary during the burst may let a few more through
    assert!((5..=12).contains(&ok), "{ok} of 20 served");
    assert_eq!(get_from("127.0.0.8", f, "/").unwrap().status, 200);
    // the rate decays: the address is served again
    common::eventually("the rate limit lets a connection through again", || {
        get_from("127.0.0.7", f, "/").map(|_| ())
    });
}

#[test]
fn request_rate_limit_answers_429_with_retry_after() {
    let a = http_server("a");
    let conf = format!(
        "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    limit http-req-rate 5/s\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 1);
    let f = lb.addr("frontend", "f");
    let mut c = client_from("127.0.0.9", f);
    let mut ok = 0;
    let limited = loop {
        let r = c.get("/");
        if r.status == 200 {
            ok += 1;
            assert!(ok <= 12, "never limited");
            continue;
        }
        break r;
    };
    assert!(ok >= 5, "{ok}");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert!(c.is_closed());
    let before = a.requests.load(Ordering::SeqCst);
    assert_eq!(before, ok);
    // another address is not limited; the limited one recovers once the rate decays
    assert_eq!(get_from("127.0.0.10", f, "/").unwrap().status, 200);
    common::eventually("the limited address recovers", || {
        get_from("127.0.0.9", f, "/")
            .is_some_and(|r| r.status == 200)
            .then_some(())
    });
}

#[test]
fn limits_survive_a_reload_and_are_checked_by_lb_check() {
    let a = http_server("a");
    let conf = |extra: &str| {
        format!(
            "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    limit conn 1\n{extra}    default_backend b\n{}",
            backend("b", &a)
        )
    };
    let lb = Lb::start(&conf(""), 1);
    let f = lb.addr("frontend", "f");
    let mut held = client_from("127.0.0.11", f);
    assert_eq!(held.get("/").status, 200);
    lb.reload(&conf("    timeout http-request 5s\n"));
    lb.wait_log("reloaded:");
    // the table (and the held connection's slot) carried over
    assert!(closed_at_accept("127.0.0.11", f));
    assert_eq!(held.get("/").status, 200);

    let (code, _, err, _, _dir) = common::check(
        "frontend f\n    mode tcp\n    bind 127.0.0.1:0\n    limit http-req-rate 5/s\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains("needs 'mode http'"), "{err}");
    let (code, _, err, _, _dir) = common::check(
        "frontend f\n    bind 127.0.0.1:0\n    acl p path /x\n    tcp-request connection reject if p\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(":4: 'tcp-request connection': acl 'p' looks at the request"),
        "{err}"
    );
    let (code, _, err, _, _dir) =
        common::check("frontend f\n    bind 127.0.0.1:0\n    limit rate 5\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(":3: 'limit': expected a rate like '100/s', got '5'"),
        "{err}"
    );
    let (code, _, err, _, _dir) =
        common::check("frontend f\n    bind 127.0.0.1:0\n    limit cnn 5\n");
    assert_eq!(code, 1);
    assert!(err.contains("did you mean 'conn'"), "{err}");
}

#[test]
fn slow_header_is_cut_at_timeout_http_request() {
    let a = http_server("a");
    let conf = format!(
        "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    timeout http-request 2s\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 1);
    let mut s = common::connect(lb.addr("frontend", "f"));
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let start = Instant::now();
    let req = b"GET / HTTP/1.1\r\nHost: slowloris\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut got = Vec::new();
    // one byte per second (the read timeout paces it), until lb answers
    for &byte in req.iter().cycle().take(60) {
        if s.write_all(&[byte]).is_err() {
            break;
        }
        let mut b = [0u8; 512];
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&b[..n]);
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let took = start.elapsed();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(a.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn idle_keep_alive_is_closed_at_timeout_http_keep_alive() {
    let a = http_server("a");
    let conf = format!(
        "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    timeout http-keep-alive 500ms\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 1);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    assert_eq!(c.get("/").status, 200);
    let idle = Instant::now();
    assert!(c.is_closed());
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Raises the open-file soft limit as far as the hard limit allows; returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Slow clients this process and lb (which inherits the limit) can both hold.
fn slow_client_count(want: usize) -> usize {
    let nofile = raise_nofile() as usize;
    let n = want.min(nofile.saturating_sub(200));
    if n < want {
        eprintln!("NOTICE: open-file limit {nofile}: testing {n} slow clients instead of {want}");
    }
    n
}

#[test]
fn a_thousand_slow_clients_do_not_slow_a_normal_one() {
    let n = slow_client_count(1000);
    let a = http_server("a");
    let conf = format!(
        "{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    timeout http-request 8s\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 1);
    let f = lb.addr("frontend", "f");
    // the same normal client alone first: the machine's own noise, measured side by side
    let alone = normal_client_p99(f);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..n)
        .map(|i| {
            // spread over source addresses, as a botnet would
            let from = format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250);
            let mut s = connect_from(&from, f);
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let with_slow = normal_client_p99(f);
    eprintln!("normal client p99: alone {alone:?}, with {n} slow clients {with_slow:?}");
    // The bar is 50 ms; what the slow clients add is compared with the same client alone,
    // so a loaded test machine does not count against lb.
    assert!(
        with_slow < Duration::from_millis(50) + alone,
        "p99 {with_slow:?} with slow clients, {alone:?} alone"
    );
    // the slow clients were all still held open while the normal client was measured
    for s in &slow {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let still = matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(
            still,
            "a slow client was answered before the measurement ended"
        );
        s.set_nonblocking(false).unwrap();
    }
    // every slow client is cut at timeout http-request with a 408, in bounded time
    for s in &mut slow {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.requests.load(Ordering::SeqCst), 400);
}

/// p99 latency of 200 requests of a normal client, alternating a kept-alive connection and
/// fresh connections.
fn normal_client_p99(f: SocketAddr) -> Duration {
    let mut lat = Vec::new();
    let mut keep = Client::connect(f);
    for i in 0..200 {
        let t = Instant::now();
        let r = if i % 2 == 0 {
            keep.get("/")
        } else {
            Client::connect(f).get("/")
        };
        lat.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    lat.sort();
    lat[lat.len() * 99 / 100]
}

/// Idle keep-alive connections (one request done) give their read buffers
/// back after a second; the worker keeps a short stack of them (64) for the
/// next connections and gives the rest back to the allocator, so that a
/// burst's buffers are not kept forever; connections mid-head keep theirs.
/// (RSS per connection, against HAProxy: `benches/memory.sh`.)
#[test]
fn idle_connections_hand_their_read_buffers_back() {
    let n = slow_client_count(3000) / 3; // three sets of connections
    let a = http_server("a");
    let conf = format!(
        "global\n    nbthread 1\n    admin 127.0.0.1:0\n{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    timeout http-request 30s\n    timeout http-keep-alive 30s\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 2);
    let f = lb.addr("frontend", "f");
    let fe = r#"frontend="f""#;
    let spare = || metric(&lb, "lb_spare_buffers", &[]);
    let allocated = || metric(&lb, "lb_buffers_allocated_total", &[]);
    let mut idle = Vec::new();
    for _ in 0..n {
        let mut c = Client::connect(f);
        assert_eq!(c.get("/").status, 200);
        idle.push(c);
    }
    let mut active = Vec::new();
    for _ in 0..n {
        let mut s = common::connect(f);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        active.push(s);
    }
    // After a second without a request the idle connections (not the active
    // ones, mid-head) release their buffers.
    common::eventually("idle connections release their buffers", || {
        (metric(&lb, "lb_frontend_idle_sessions", &[fe]) == n as f64).then_some(())
    });
    // Unused for a second, the stacks shed down to at most 64 per thread
    // (the worker's, the admin's).
    let kept = common::eventually("the spare stacks shed what was not used", || {
        let kept = spare();
        (1.0..=128.0).contains(&kept).then_some(kept)
    });
    // The next connections take the spare ones first.
    let before = allocated();
    for _ in 0..n {
        let mut c = Client::connect(f);
        assert_eq!(c.get("/").status, 200);
        idle.push(c);
    }
    let more = allocated() - before;
    assert!(
        more <= 3.0 * n as f64 - kept,
        "{more} buffers allocated for {n} new connections"
    );
    common::eventually("and the new ones release theirs", || {
        (metric(&lb, "lb_frontend_idle_sessions", &[fe]) == 2.0 * n as f64).then_some(())
    });
    // an idle connection that released its buffers serves its next request as before
    assert_eq!(idle[0].get("/").status, 200);
    drop(active);
}

#[test]
fn tcp_mode_frontends_filter_and_limit_too() {
    let echo = common::servers::echo_server();
    let conf = format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\nfrontend t\n    bind 127.0.0.1:0\n    acl banned src 127.0.0.12\n    tcp-request connection reject if banned\n    limit conn 1\n    default_backend e\nbackend e\n    server s {echo}\n"
    );
    let lb = Lb::start(&conf, 1);
    let t = lb.addr("frontend", "t");
    assert!(closed_at_accept("127.0.0.12", t));
    let mut held = connect_from("127.0.0.13", t);
    held.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    held.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    assert!(closed_at_accept("127.0.0.13", t), "limit conn 1");
    let mut other = connect_from("127.0.0.14", t);
    other.write_all(b"pong").unwrap();
    other.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"pong");
}

/// The value of the one `/metrics` series named `name` whose labels include all of `labels`.
fn metric(lb: &Lb, name: &str, labels: &[&str]) -> f64 {
    let text = Client::connect(lb.addr("admin", "admin"))
        .get("/metrics")
        .text();
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && labels.iter().all(|x| l.contains(x))
        })
        .collect();
    assert_eq!(hits.len(), 1, "{name} {labels:?} in\n{text}");
    hits[0].rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[test]
fn refusals_are_counted_in_metrics_by_reason() {
    let a = http_server("a");
    let conf = format!(
        "global\n    admin 127.0.0.1:0\n{DEFAULTS}frontend f\n    bind 127.0.0.1:0\n    tcp-request connection reject if {{ src 127.0.0.20 }}\n    limit conn 1\n    limit http-req-rate 3/s\n    acl secret path_beg /secret\n    http-request deny if secret\n    default_backend b\n{}",
        backend("b", &a)
    );
    let lb = Lb::start(&conf, 2); // the frontend and the admin listener
    let f = lb.addr("frontend", "f");
    let conns = "lb_frontend_denied_connections_total";
    let reqs = "lb_frontend_denied_requests_total";
    let fe = r#"frontend="f""#;
    for reason in ["rule", "limit_conn", "limit_rate"] {
        assert_eq!(
            metric(&lb, conns, &[fe, &format!(r#"reason="{reason}""#)]),
            0.0
        );
    }
    let four = r#"code="4xx""#;
    let responses = "lb_frontend_http_responses_total";
    assert_eq!(metric(&lb, responses, &[fe, four]), 0.0);

    assert!(closed_at_accept("127.0.0.20", f));
    let mut held = client_from("127.0.0.21", f);
    assert_eq!(held.get("/").status, 200);
    assert!(closed_at_accept("127.0.0.21", f));
    assert_eq!(get_from("127.0.0.22", f, "/secret/x").unwrap().status, 403);
    let mut c = client_from("127.0.0.23", f);
    let limited = (0..20).map(|_| c.get("/").status).find(|&s| s != 200);
    assert_eq!(limited, Some(429));

    assert_eq!(metric(&lb, conns, &[fe, r#"reason="rule""#]), 1.0);
    assert_eq!(metric(&lb, conns, &[fe, r#"reason="limit_conn""#]), 1.0);
    assert_eq!(metric(&lb, conns, &[fe, r#"reason="limit_rate""#]), 0.0);
    assert_eq!(metric(&lb, reqs, &[fe, r#"reason="rule""#]), 1.0);
    assert_eq!(
        metric(&lb, reqs, &[fe, r#"reason="limit_http_req_rate""#]),
        1.0
    );
    // the 403 and the 429 are responses too
    common::eventually("the 403 and the 429 counted", || {
        (metric(&lb, responses, &[fe, four]) == 2.0).then_some(())
    });
}
