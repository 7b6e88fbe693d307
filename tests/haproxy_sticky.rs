//! Cookie persistence (`cookie NAME insert indirect nocache`, server `cookie
//! VALUE`): a client that got the cookie stays on its server; when that
//! server dies it moves, and gets the new server's cookie. Compared with
//! HAProxy 2.6 on the same conf.

mod common;

use std::net::SocketAddr;

use common::client::{Client, Resp};
use common::servers::{http_server, HttpServer};
use common::{haproxy, Lb};

fn conf(bind: &str, a: &HttpServer, b: &HttpServer, c: &HttpServer) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n    default_backend web\n\
         backend web\n    balance roundrobin\n    cookie SERVERID insert indirect nocache httponly\n    option redispatch\n    retries 2\n\
         \x20   server s1 {} cookie one\n    server s2 {} cookie two\n    server s3 {} cookie three\n",
        a.addr, b.addr, c.addr
    )
}

fn get(addr: SocketAddr, cookie: Option<&str>) -> Resp {
    let mut c = Client::connect(addr);
    let ck = cookie.map_or(String::new(), |v| format!("Cookie: {v}\r\n"));
    c.send(format!("GET / HTTP/1.1\r\nHost: x\r\n{ck}\r\n").as_bytes());
    c.read(false).expect("response")
}

/// `SERVERID=two` from a `Set-Cookie: SERVERID=two; path=/; HttpOnly`.
fn cookie_of(r: &Resp) -> Option<String> {
    let v = r.header("set-cookie")?;
    Some(v.split(';').next()?.to_string())
}

/// Runs the scenario against `addr`: returns (first server, the servers a
/// client with its cookie reached, the server after its server died, the
/// new cookie). `kill` stops the server named.
fn scenario(addr: SocketAddr, kill: &mut dyn FnMut(&str)) -> (String, Vec<String>, String, String) {
    let r = get(addr, None);
    let first = r.header("x-server").unwrap().to_string();
    let ck = cookie_of(&r).expect("a Set-Cookie on the first response");
    // `nocache` marks only responses a cache could keep; this one it could not.
    assert_eq!(r.header("cache-control"), None);
    assert!(r.header("set-cookie").unwrap().contains("HttpOnly"));
    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = get(addr, Some(&format!("{ck}; other=1")));
        seen.push(r.header("x-server").unwrap().to_string());
        // The server does not see lb's cookie (indirect), only the client's own.
        let t = r.text().to_ascii_lowercase();
        assert!(
            t.contains("cookie: other=1\n") && !t.contains("serverid"),
            "{t}"
        );
        assert!(
            r.header("set-cookie").is_none(),
            "no new cookie while it holds"
        );
    }
    kill(&first);
    let r = common::eventually("a response from another server", || {
        let r = get(addr, Some(&ck));
        (r.status == 200).then_some(r)
    });
    let moved = r.header("x-server").unwrap().to_string();
    let new = cookie_of(&r).expect("a new Set-Cookie after the move");
    (first, seen, moved, new)
}

#[test]
fn cookie_insert_keeps_a_client_on_one_server_and_moves_it_when_it_dies() {
    let mut servers = [http_server("one"), http_server("two"), http_server("three")];
    let lb = Lb::start(
        &conf("127.0.0.1:0", &servers[0], &servers[1], &servers[2]),
        1,
    );
    let addr = lb.addr("frontend", "f");
    // Warm the round robin so the client does not land on the first server.
    get(addr, None);
    let (first, seen, moved, new) = scenario(addr, &mut |name| {
        let i = ["one", "two", "three"]
            .iter()
            .position(|n| *n == name)
            .unwrap();
        servers[i].kill();
    });
    assert!(seen.iter().all(|s| *s == first), "{first}: {seen:?}");
    assert_ne!(moved, first);
    assert_eq!(new, format!("SERVERID={moved}"));
}

#[test]
fn haproxy_keeps_and_moves_the_client_the_same_way() {
    let mut servers = [http_server("one"), http_server("two"), http_server("three")];
    let port = haproxy::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let text = conf(&addr.to_string(), &servers[0], &servers[1], &servers[2]);
    // lb accepts HAProxy's conf as it is.
    let (code, _, err, _, _) = common::check(&text);
    assert_eq!(code, 0, "{err}");
    let Some(_h) = haproxy::start(&text, addr) else {
        return;
    };
    get(addr, None);
    let (first, seen, moved, new) = scenario(addr, &mut |name| {
        let i = ["one", "two", "three"]
            .iter()
            .position(|n| *n == name)
            .unwrap();
        servers[i].kill();
    });
    assert!(seen.iter().all(|s| *s == first), "{first}: {seen:?}");
    assert_ne!(moved, first);
    assert_eq!(new, format!("SERVERID={moved}"));
}

/// Servers that speak HTTP/2 (`proto h2`) get the same response phase: the
/// persistence cookie is set and honoured, `http-response` rules apply.
/// The h2c servers are an lb frontend per test server.
#[test]
fn cookie_and_response_rules_with_http2_servers() {
    let (a, b) = (http_server("one"), http_server("two"));
    let inner = Lb::start(
        &format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend h2a\n    bind 127.0.0.1:0 proto h2\n    default_backend ba\n\
             frontend h2b\n    bind 127.0.0.1:0 proto h2\n    default_backend bb\n\
             backend ba\n    server s {}\nbackend bb\n    server s {}\n",
            a.addr, b.addr
        ),
        2,
    );
    let (ia, ib) = (inner.addr("frontend", "h2a"), inner.addr("frontend", "h2b"));
    let outer = Lb::start(
        &format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend f\n    bind 127.0.0.1:0\n    http-response set-header X-Resp h2\n    default_backend web\n\
             backend web\n    balance roundrobin\n    cookie SERVERID insert indirect nocache\n\
             \x20   server s1 {ia} proto h2 cookie one\n    server s2 {ib} proto h2 cookie two\n"
        ),
        1,
    );
    let addr = outer.addr("frontend", "f");
    let r = get(addr, None);
    assert_eq!(r.header("x-resp"), Some("h2"), "http-response rules ran");
    let first = r.header("x-server").unwrap().to_string();
    let ck = cookie_of(&r).expect("a Set-Cookie from an HTTP/2 server's response");
    assert_eq!(ck, format!("SERVERID={first}"));
    for _ in 0..6 {
        let r = get(addr, Some(&ck));
        assert_eq!(
            r.header("x-server"),
            Some(first.as_str()),
            "the cookie is honoured"
        );
        assert!(
            !r.text().to_ascii_lowercase().contains("serverid"),
            "indirect: the server does not see it"
        );
    }
}
