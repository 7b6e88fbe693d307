//! The `app` section: the foobar JSON API against real kv processes — round trips, bad input, read-your-writes, replica and primary failure, kv timeouts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{Client, Resp};
use common::Lb;

/// kv primary, kv replica and one app, each in its own `lb` process so either kv can be killed.
struct Tier {
    primary: Lb,
    replica: Option<Lb>,
    app: Lb,
}

fn tier(app_extra: &str) -> Tier {
    let primary = Lb::start("kv p\n    bind 127.0.0.1:0\n", 1);
    let p = primary.addr("kv", "p");
    let replica = Lb::start(
        &format!("kv r\n    bind 127.0.0.1:0\n    replicaof {p}\n"),
        1,
    );
    let r = replica.addr("kv", "r");
    let app = Lb::start(
        &format!(
            "app a1\n    bind 127.0.0.1:0\n    kv-primary {p}\n    kv-replica {r}\n    timeout kv 500ms\n{app_extra}"
        ),
        1,
    );
    Tier {
        primary,
        replica: Some(replica),
        app,
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut c = Client::connect(addr);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    c.send(&raw);
    c.read(method == "HEAD").expect("a response")
}

/// `WAIT 1 5000` on the primary: returns once the replica has acknowledged every earlier write.
fn wait_replica(primary: SocketAddr) {
    let mut s = common::connect(primary);
    s.write_all(b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n5000\r\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert_eq!(line, ":1\r\n", "replica did not acknowledge");
}

impl Tier {
    fn addr(&self) -> SocketAddr {
        self.app.addr("app", "a1")
    }
}

#[test]
fn items_round_trip() {
    let t = tier("");
    let a = t.addr();
    let r = send(
        a,
        "PUT",
        "/api/items/greeting",
        &[],
        b"hello \"world\"\n\x01",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let off: u64 = r.header("x-write-offset").unwrap().parse().unwrap();
    assert!(r.text().contains(&format!("\"offset\":{off}")));
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("read_after={off}; Path=/; Max-Age=300; SameSite=Lax").as_str())
    );
    let off_s = off.to_string();
    let g = send(
        a,
        "GET",
        "/api/items/greeting",
        &[("X-Read-After", &off_s)],
        b"",
    );
    assert_eq!(g.status, 200);
    assert_eq!(g.header("content-type"), Some("application/json"));
    assert_eq!(
        g.text(),
        "{\"key\":\"greeting\",\"value\":\"hello \\\"world\\\"\\n\\u0001\"}\n"
    );
    // HEAD: same length, no body.
    let h = send(a, "HEAD", "/api/items/greeting", &[], b"");
    assert_eq!(
        h.header("content-length"),
        Some(g.body.len().to_string().as_str())
    );
    // Keys are percent-decoded; slashes inside keys are fine.
    let w = send(a, "PUT", "/api/items/a%20b/c", &[], b"v");
    let cookie = w
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let g = send(a, "GET", "/api/items/a%20b/c", &[("Cookie", &cookie)], b"");
    assert_eq!(g.text(), "{\"key\":\"a b/c\",\"value\":\"v\"}\n");
    // Delete, then it is gone.
    let d = send(a, "DELETE", "/api/items/greeting", &[], b"");
    assert_eq!(d.status, 200);
    let doff = d.header("x-write-offset").unwrap().to_string();
    assert!(doff.parse::<u64>().unwrap() > off);
    let g = send(
        a,
        "GET",
        "/api/items/greeting",
        &[("X-Read-After", &doff)],
        b"",
    );
    assert_eq!(g.status, 404);
    assert_eq!(g.text(), "{\"error\":\"no such key\"}\n");
    assert_eq!(
        send(a, "DELETE", "/api/items/greeting", &[], b"").status,
        404
    );
    // An empty value is a value.
    assert_eq!(send(a, "PUT", "/api/items/empty", &[], b"").status, 200);
    wait_replica(t.primary.addr("kv", "p"));
    assert_eq!(
        send(a, "GET", "/api/items/empty", &[], b"").text(),
        "{\"key\":\"empty\",\"value\":\"\"}\n"
    );
}

#[test]
fn listing_is_paginated() {
    let t = tier("");
    let a = t.addr();
    let mut c = Client::connect(a);
    for i in 0..25 {
        c.send(
            format!("PUT /api/items/k{i:02} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
                .as_bytes(),
        );
        assert_eq!(c.read(false).unwrap().status, 200);
    }
    wait_replica(t.primary.addr("kv", "p"));
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    for _ in 0..100 {
        let r = c.get(&format!("/api/items?count=10&cursor={cursor}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        let keys = text
            .split("\"keys\":[")
            .nth(1)
            .unwrap()
            .split(']')
            .next()
            .unwrap();
        seen.extend(
            keys.split(',')
                .filter(|k| !k.is_empty())
                .map(|k| k.trim_matches('"').to_string()),
        );
        let next = text
            .split("\"next\":")
            .nth(1)
            .unwrap()
            .trim_end()
            .trim_end_matches('}');
        if next == "null" {
            break;
        }
        cursor = next.trim_matches('"').to_string();
    }
    seen.sort();
    seen.dedup();
    let want: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn bad_input_gets_clear_statuses() {
    let t = tier("    max-value-bytes 1k\n    max-key-bytes 16\n");
    let a = t.addr();
    let long_key = format!("/api/items/{}", "k".repeat(17));
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        ("GET", "/api/items/", vec![], vec![], 200),
        ("GET", "/api/items/bad%zz", vec![], vec![], 400),
        ("GET", long_key.as_str(), vec![], vec![], 400),
        ("GET", "/api/items?count=0", vec![], vec![], 400),
        ("GET", "/api/items?count=5000", vec![], vec![], 400),
        ("GET", "/api/items?cursor=x", vec![], vec![], 400),
        (
            "GET",
            "/api/items/k",
            vec![("X-Read-After", "soon")],
            vec![],
            400,
        ),
        ("PUT", "/api/items/k", vec![], vec![b'x'; 2048], 413),
        ("POST", "/api/items/k", vec![], b"x".to_vec(), 405),
        ("PUT", "/api/whoami", vec![], vec![], 405),
        ("POST", "/api/items", vec![], vec![], 405),
        ("GET", "/api/nothing", vec![], vec![], 404),
        ("GET", "/", vec![], vec![], 404),
    ];
    for (m, p, h, body, status) in &cases {
        let r = send(a, m, p, h, body);
        assert_eq!(r.status, *status, "{m} {p}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{m} {p}"
        );
        if *status >= 400 {
            assert!(
                r.text().starts_with("{\"error\":\""),
                "{m} {p}: {}",
                r.text()
            );
        }
    }
    let r = send(a, "POST", "/api/items/k", &[], b"x");
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    // Chunked bodies are refused with 411, malformed heads with 400.
    let r = common::roundtrip(
        a,
        b"PUT /api/items/k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    );
    assert!(
        r.starts_with(b"HTTP/1.1 411 "),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = common::roundtrip(a, b"GET /api/whoami HTTP/1.1\r\nHost t\r\n\r\n");
    assert!(r.starts_with(b"HTTP/1.1 400 "));
    // Expect: 100-continue is answered before the body.
    let mut c = Client::connect(a);
    c.send(b"PUT /api/items/k HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(c.read(true).unwrap().status, 100);
    c.send(b"ok");
    assert_eq!(c.read(false).unwrap().status, 200);
}

#[test]
fn whoami_and_health() {
    let t = tier("");
    let a = t.addr();
    let r = send(
        a,
        "GET",
        "/api/whoami",
        &[("X-Forwarded-For", "203.0.113.9")],
        b"",
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with("{\"app\":\"a1\",\"pid\":"), "{text}");
    assert!(
        text.contains(&format!("\"pid\":{}", t.app.child.id())),
        "{text}"
    );
    assert!(text.contains("\"forwarded_for\":\"203.0.113.9\""), "{text}");
    assert_eq!(r.header("x-app"), Some("a1"));
    let h = send(a, "GET", "/healthz", &[], b"");
    assert_eq!(
        (h.status, h.text().as_str()),
        (200, "{\"status\":\"ok\",\"kv_primary\":\"up\"}\n")
    );
}

#[test]
fn read_your_writes_and_replica_fallback() {
    let mut t = tier("");
    let a = t.addr();
    let p = t.primary.addr("kv", "p");
    let w = send(a, "PUT", "/api/items/x", &[], b"1");
    let off: u64 = w.header("x-write-offset").unwrap().parse().unwrap();
    // A token far ahead of the replica: the primary answers, correctly.
    let ahead = (off + 1_000_000).to_string();
    let r = send(a, "GET", "/api/items/x", &[("X-Read-After", &ahead)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-kv-source"), Some("primary; replica behind"));
    // Once the replica has acknowledged, the same token is served by the replica.
    wait_replica(p);
    let tok = off.to_string();
    let r = send(a, "GET", "/api/items/x", &[("X-Read-After", &tok)], b"");
    assert_eq!(r.header("x-kv-source"), Some("replica"));
    assert_eq!(r.text(), "{\"key\":\"x\",\"value\":\"1\"}\n");
    // Replica down: reads fall back to the primary, writes are unaffected.
    drop(t.replica.take());
    let r = send(a, "GET", "/api/items/x", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-kv-source"),
        Some("primary; replica unreachable")
    );
    assert_eq!(send(a, "PUT", "/api/items/y", &[], b"2").status, 200);
    let l = send(a, "GET", "/api/items", &[], b"");
    assert_eq!(l.status, 200);
    assert!(l.text().contains("\"x\"") && l.text().contains("\"y\""));
}

#[test]
fn sigterm_closes_idle_connections_at_once() {
    // An app with the default 60 s keep-alive, and a drain limit beyond the test's waits.
    let mut t = tier("global\n    timeout drain 60s\n");
    let a = t.addr();
    let mut idle = Client::connect(a);
    idle.send(b"GET /api/items HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.read(false).expect("response").status, 200);
    t.app.signal(libc::SIGTERM);
    t.app.wait_log("draining");
    idle.expect_closed("an idle connection, by the drain");
    assert_eq!(t.app.wait_exit(), Some(0));
    t.app.wait_log("all connections finished");
}

#[test]
fn primary_down_gives_503_not_a_hang() {
    let mut t = tier("");
    let a = t.addr();
    assert_eq!(send(a, "PUT", "/api/items/x", &[], b"1").status, 200);
    wait_replica(t.primary.addr("kv", "p"));
    drop(std::mem::replace(
        &mut t.primary,
        Lb::start("kv spare\n    bind 127.0.0.1:0\n", 1),
    ));
    let r = send(a, "PUT", "/api/items/x", &[], b"2");
    assert_eq!(r.status, 503);
    assert!(
        r.text().starts_with("{\"error\":\"kv tier unavailable: "),
        "{}",
        r.text()
    );
    assert_eq!(send(a, "DELETE", "/api/items/x", &[], b"").status, 503);
    assert_eq!(send(a, "GET", "/healthz", &[], b"").status, 503);
    // Reads still work from the replica.
    let r = send(a, "GET", "/api/items/x", &[], b"");
    assert_eq!((r.status, r.header("x-kv-source")), (200, Some("replica")));
}

#[test]
fn a_silent_kv_times_out_with_503() {
    // Accepts connections and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = l.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            h2.lock().unwrap().push(s);
        }
    });
    let app = Lb::start(
        &format!("app a1\n    bind 127.0.0.1:0\n    kv-primary {silent}\n    timeout kv 200ms\n"),
        1,
    );
    let a = app.addr("app", "a1");
    let start = Instant::now();
    let r = send(a, "GET", "/api/items/x", &[], b"");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("did not answer in time"), "{}", r.text());
    assert_eq!(send(a, "GET", "/healthz", &[], b"").status, 503);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn reload_applies_a_changed_app_section() {
    let t = tier("    max-value-bytes 1k\n");
    let a = t.addr();
    let big = vec![b'x'; 2048];
    assert_eq!(send(a, "PUT", "/api/items/k", &[], &big).status, 413);
    let (p, r) = (
        t.primary.addr("kv", "p"),
        t.replica.as_ref().unwrap().addr("kv", "r"),
    );
    t.app.reload(&format!(
        "app a1\n    bind 127.0.0.1:0\n    kv-primary {p}\n    kv-replica {r}\n    timeout kv 500ms\n    max-value-bytes 4k\n"
    ));
    assert!(t.app.wait_log("reloaded:").contains("1 changes"));
    let put = send(a, "PUT", "/api/items/k", &[], &big);
    assert!(put.status == 200 || put.status == 201, "{}", put.status);
    // With the write's token: a read from the replica must not race the write.
    let cookie = put.header("set-cookie").unwrap_or_default();
    let token = cookie
        .strip_prefix("read_after=")
        .and_then(|c| c.split(';').next())
        .unwrap_or("0")
        .to_string();
    let got = send(a, "GET", "/api/items/k", &[("X-Read-After", &token)], b"");
    assert_eq!(got.status, 200, "{cookie}");
}

/// A 413 sent while the client is still writing a body over the limit: the
/// connection driver reads and drops the rest before closing (a lingering
/// close, as the proxy and `web` do), so the client writes it all and reads
/// the answer, not a reset.
#[test]
fn a_413_reaches_a_client_still_sending_its_body() {
    use std::io::Read;
    let t = tier("    max-value-bytes 1k\n");
    let mut c = Client::connect(t.addr());
    let len = 2usize << 20;
    c.send(
        format!("PUT /api/items/k HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    );
    let mut w = c.r.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&vec![b'u'; len]).is_ok());
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let end = c.r.read_to_end(&mut rest);
    assert!(matches!(end, Ok(0)), "after the answer: {end:?}");
    assert!(writer.join().unwrap(), "the upload was cut");
}

/// Pipelined requests, sent in one write, are answered in order; a malformed
/// one among them ends the connection with a 400 after the answers before it.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let t = tier("");
    let mut c = Client::connect(t.addr());
    c.send(b"PUT /api/items/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nv1GET /api/items/p HTTP/1.1\r\nHost: t\r\nX-Read-After: 999999999\r\n\r\nGET /api/whoami HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost t\r\n\r\n");
    let put = c.read(false).unwrap();
    assert!(put.status < 300, "{}", put.text());
    let get = c.read(false).unwrap();
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.text().contains("v1"), "{}", get.text());
    assert_eq!(c.read(false).unwrap().status, 200);
    assert_eq!(c.read(false).unwrap().status, 400);
    c.expect_closed("after a malformed head");
}
