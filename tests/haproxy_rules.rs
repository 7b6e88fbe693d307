//! HAProxy header and request rules, in HAProxy's own syntax: what the server
//! receives and what the client gets, checked on both sides; the same conf
//! run by HAProxy 2.6 gives the same bytes.

mod common;

use common::client::{Client, Resp};
use common::servers::{http_server, HttpServer};
use common::{haproxy, Lb};

/// A conf with `rules` in the frontend, on `bind`.
fn conf(bind: &str, rules: &str, s: &HttpServer) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n{rules}\n    default_backend b\n\
         backend b\n    server s1 {}\n",
        s.addr
    )
}

/// What the test server saw, one `name: value` per line (it echoes the head).
fn seen(r: &Resp) -> String {
    r.text().to_ascii_lowercase()
}

fn get(addr: std::net::SocketAddr, raw: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(raw.as_bytes());
    c.read(false).expect("response")
}

const RULES: &str = "    acl api path_beg /api
    http-request set-header X-Client %[src]
    http-request set-header X-Api yes if api
    http-request add-header X-Added one
    http-request add-header X-Added two if { hdr(host) -i -m beg www. }
    http-request del-header X-Secret
    http-request set-header X-Host %[req.hdr(host),lower]
    http-request set-header X-Not-Tls 1 if !{ ssl_fc }
    http-response set-header Strict-Transport-Security \"max-age=63072000\"
    http-response del-header X-Server-Secret
    http-after-response set-header X-After done";

#[test]
fn set_header_reaches_the_server_and_hsts_the_client() {
    let s = http_server("a");
    let lb = Lb::start(&conf("127.0.0.1:0", RULES, &s), 1);
    let req =
        "GET /api/x HTTP/1.1\r\nHost: WWW.Example.com\r\nX-Secret: s3\r\nX-Client: forged\r\n\r\n";
    let r = get(lb.addr("frontend", "f"), req);
    assert_eq!(r.status, 200);
    let t = seen(&r);
    assert!(t.contains("x-client: 127.0.0.1\n"), "{t}");
    assert!(!t.contains("forged"), "set-header replaces: {t}");
    assert!(t.contains("x-api: yes\n"), "{t}");
    assert!(
        t.contains("x-added: one\n") && t.contains("x-added: two\n"),
        "{t}"
    );
    assert!(!t.contains("x-secret"), "{t}");
    assert!(t.contains("x-host: www.example.com\n"), "{t}");
    assert!(t.contains("x-not-tls: 1\n"), "{t}");
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(r.header("x-after"), Some("done"));
    // The condition that does not hold leaves the header out.
    let first = t;
    let r2 = get(
        lb.addr("frontend", "f"),
        "GET /web HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
    let t = seen(&r2);
    assert!(!t.contains("x-api") && !t.contains("x-added: two"), "{t}");

    // HAProxy, same rules, same request: the server sees the same headers.
    let port = haproxy::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&addr.to_string(), RULES, &s), addr) else {
        return;
    };
    let hr = get(addr, req);
    let ht = seen(&hr);
    for line in [
        "x-client: 127.0.0.1",
        "x-api: yes",
        "x-added: one",
        "x-added: two",
        "x-host: www.example.com",
        "x-not-tls: 1",
    ] {
        assert!(ht.contains(line), "haproxy: {line} missing in {ht}");
        assert!(first.contains(line), "lb: {line} missing in {first}");
    }
    assert!(!ht.contains("x-secret"), "{ht}");
    assert_eq!(
        hr.header("strict-transport-security"),
        r.header("strict-transport-security")
    );
    assert_eq!(hr.header("x-after"), Some("done"));
}

#[test]
fn return_deny_redirect_and_set_path() {
    let s = http_server("a");
    let rules = "    http-request return status 200 content-type text/plain string \"pong\\n\" if { path /ping }
    http-request deny deny_status 451 if { path_end .php }
    http-request redirect location https://example.com/new code 301 if { path /old }
    http-request redirect prefix /v2 code 308 if { path_beg /v1/ }
    http-request set-path /internal%[path] if { path_beg /pub }
    http-request set-var(txn.who) req.hdr(x-user)
    http-request set-header X-Who %[var(txn.who)] if { var(txn.who) -m found }
    monitor-uri /healthz";
    let lb = Lb::start(&conf("127.0.0.1:0", rules, &s), 1);
    let a = lb.addr("frontend", "f");
    let r = get(a, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "pong\n"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(get(a, "GET /x.php HTTP/1.1\r\nHost: x\r\n\r\n").status, 451);
    let r = get(a, "GET /old HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://example.com/new"))
    );
    let r = get(a, "GET /v1/a?b=c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("/v2/v1/a?b=c"))
    );
    let r = get(
        a,
        "GET /pub/f?q=1 HTTP/1.1\r\nHost: x\r\nX-User: ann\r\n\r\n",
    );
    let t = seen(&r);
    assert!(t.starts_with("a get /internal/pub/f?q=1"), "{t}");
    assert!(t.contains("x-who: ann\n"), "{t}");
    let r = get(a, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    // Keep-alive survives an answer lb made itself.
    let mut c = Client::connect(a);
    assert_eq!(c.get("/ping").status, 200);
    assert_eq!(c.get("/ping").status, 200);
}

#[test]
fn check_reports_every_error_with_its_line() {
    let (code, _out, err, _, _) = common::check(
        "frontend f\n    mode http\n    bind 127.0.0.1:0\n    http-request set-headr X y\n    http-request deny if { path_bg /x }\n    http-response set-path /x\n    acl a sc_http_req_rate(0) gt 10\n    http-request deny if a\n",
    );
    assert_eq!(code, 1);
    assert!(err.contains(":4: 'http-request': unknown action 'set-headr' for 'http-request' (did you mean 'set-header'?)"), "{err}");
    assert!(
        err.contains(":5: 'http-request': unknown acl criterion 'path_bg'"),
        "{err}"
    );
    assert!(
        err.contains(":6: 'http-response': unknown action 'set-path'"),
        "{err}"
    );
    // An sc fetch without a stick table in the section is fine at parse time
    // (the table may come from track-sc's 'table'), so no error on line 7.
    assert!(!err.contains(":7:"), "{err}");
}

#[test]
fn use_backend_sees_every_fetch_and_the_rules_state() {
    let (a, b) = (http_server("a"), http_server("b"));
    let text = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind 127.0.0.1:0\n\
         \x20   http-request set-var(txn.tier) req.hdr(x-tier),lower\n\
         \x20   use_backend bb if METH_POST\n\
         \x20   use_backend bb if {{ req.hdr_cnt(x-a) gt 1 }}\n\
         \x20   use_backend bb if {{ var(txn.tier) -m str gold }}\n\
         \x20   use_backend bb if {{ url_beg /b/ }} || {{ path_reg ^/re/[0-9]+$ }}\n\
         \x20   default_backend ba\n\
         backend ba\n    server a {}\nbackend bb\n    server b {}\n",
        a.addr, b.addr
    );
    let lb = Lb::start(&text, 1);
    let at = lb.addr("frontend", "f");
    let who = |raw: &str| get(at, raw).header("x-server").unwrap().to_string();
    assert_eq!(who("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "a");
    assert_eq!(
        who("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        "b"
    );
    assert_eq!(
        who("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\n"),
        "b"
    );
    assert_eq!(
        who("GET / HTTP/1.1\r\nHost: x\r\nX-Tier: GOLD\r\n\r\n"),
        "b"
    );
    assert_eq!(who("GET /b/x HTTP/1.1\r\nHost: x\r\n\r\n"), "b");
    assert_eq!(who("GET /re/42 HTTP/1.1\r\nHost: x\r\n\r\n"), "b");
    assert_eq!(who("GET /re/4x HTTP/1.1\r\nHost: x\r\n\r\n"), "a");
}

/// `use_backend %[...]`: the backend's name computed per request from a map,
/// as Kubernetes and Consul confs route by Host; a name that is no backend
/// goes to default_backend (no later rule is looked at), and `use_backend NAME`
/// without a condition always applies. HAProxy 2.6 routes the same requests
/// the same way.
#[test]
fn dynamic_use_backend_routes_by_map() {
    let (a, b, c) = (http_server("a"), http_server("b"), http_server("c"));
    let dir = common::TempDir::new("dynmap");
    let map = dir.path().join("hosts.map");
    std::fs::write(
        &map,
        "# host backend\napi.example.com bb\nweb.example.com nowhere\n",
    )
    .unwrap();
    let text = |bind: &str| {
        format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend f\n    bind {bind}\n\
             \x20   use_backend %[req.hdr(host),lower,map({})] if {{ req.hdr(host) -m found }}\n\
             \x20   use_backend bc\n\
             \x20   default_backend ba\n\
             backend ba\n    server a {}\nbackend bb\n    server b {}\nbackend bc\n    server c {}\n",
            map.display(),
            a.addr,
            b.addr,
            c.addr
        )
    };
    let lb = Lb::start(&text("127.0.0.1:0"), 1);
    let cases = [
        ("Host: API.example.com\r\n", "b"),
        // In the map, but no such backend: the default, not `bc`.
        ("Host: web.example.com\r\n", "a"),
        // Not in the map: an empty name, the default too.
        ("Host: other.example.com\r\n", "a"),
        // No Host (HTTP/1.0): the dynamic rule's condition fails, `bc` applies.
        ("", "c"),
    ];
    let route = |at: std::net::SocketAddr, host: &str| {
        let version = if host.is_empty() { "1.0" } else { "1.1" };
        get(at, &format!("GET / HTTP/{version}\r\n{host}\r\n"))
            .header("x-server")
            .unwrap_or("none")
            .to_string()
    };
    for (host, want) in cases {
        assert_eq!(route(lb.addr("frontend", "f"), host), want, "lb, {host:?}");
    }
    let port = haproxy::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&text(&addr.to_string()), addr) else {
        return;
    };
    for (host, want) in cases {
        assert_eq!(route(addr, host), want, "haproxy, {host:?}");
    }
}
