//! Stick tables and rate limits in HAProxy's syntax: `stick-table ... store
//! http_req_rate(10s)`, `http-request track-sc0 src`, an `sc_http_req_rate`
//! acl, `http-request deny deny_status 429`. The requests past the threshold
//! are denied, the same ones as HAProxy 2.6 denies on the same conf.

mod common;

use std::net::SocketAddr;

use common::client::Client;
use common::servers::{http_server, HttpServer};
use common::{haproxy, Lb};

fn conf(bind: &str, s: &HttpServer) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n\
         \x20   stick-table type ip size 100k expire 30s store http_req_rate(10s),gpc0\n\
         \x20   http-request track-sc0 src\n\
         \x20   acl too_fast sc_http_req_rate(0) gt 5\n\
         \x20   http-request deny deny_status 429 if too_fast\n\
         \x20   http-request set-header X-Rate %[sc_http_req_rate(0)]\n\
         \x20   default_backend b\n\
         backend b\n    server s1 {}\n",
        s.addr
    )
}

/// The statuses of `n` requests on one keep-alive connection (a new one after a 429).
fn statuses(addr: SocketAddr, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut c = Client::connect(addr);
    for _ in 0..n {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = match c.read(false) {
            Some(r) => r,
            None => {
                c = Client::connect(addr);
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                c.read(false).expect("response")
            }
        };
        out.push(r.status);
        if r.status != 200 {
            c = Client::connect(addr);
        }
    }
    out
}

#[test]
fn rate_limit_answers_429_past_its_threshold_as_haproxy() {
    let s = http_server("a");
    let lb = Lb::start(&conf("127.0.0.1:0", &s), 1);
    let addr = lb.addr("frontend", "f");
    let got = statuses(addr, 8);
    // The 6th request makes the rate 6 > 5.
    assert_eq!(got, [200, 200, 200, 200, 200, 429, 429, 429]);
    // The server saw the rate as tracked with each request.
    let mut c = Client::connect(addr);
    let r = c.get("/");
    assert_eq!(r.status, 429);

    let port = haproxy::free_port();
    let haddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&haddr.to_string(), &s), haddr) else {
        return;
    };
    assert_eq!(statuses(haddr, 8), got, "HAProxy denies the same requests");
}

#[test]
fn the_rate_reaches_the_server_and_src_fetches_read_a_named_table() {
    let s = http_server("a");
    let text = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind 127.0.0.1:0\n\
         \x20   http-request track-sc1 src table per_ip\n\
         \x20   http-request set-header X-Rate %[sc1_http_req_rate]\n\
         \x20   http-request set-header X-Src-Rate %[src_http_req_rate(per_ip)]\n\
         \x20   http-request deny deny_status 429 if {{ src_http_req_rate(per_ip) ge 4 }}\n\
         \x20   default_backend b\n\
         backend per_ip\n    stick-table type ip size 1k expire 10s store http_req_rate(10s)\n\
         backend b\n    server s1 {}\n",
        s.addr
    );
    let lb = Lb::start(&text, 1);
    let mut c = Client::connect(lb.addr("frontend", "f"));
    for i in 1..=3 {
        let r = c.get("/");
        assert_eq!(r.status, 200);
        let t = r.text().to_ascii_lowercase();
        assert!(t.contains(&format!("x-rate: {i}\n")), "{t}");
        assert!(t.contains(&format!("x-src-rate: {i}\n")), "{t}");
    }
    assert_eq!(c.get("/").status, 429);
}

#[test]
fn check_refuses_what_a_table_does_not_store() {
    let (code, _, err, _, _) = common::check(
        "frontend f\n    mode http\n    bind 127.0.0.1:0\n    stick-table type ip size 1k store conn_cur\n    http-request track-sc0 src\n    http-request deny if { sc0_http_req_rate gt 10 }\n    stick-table type ip\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(":6: the stick-table of this section (line 4) does not store 'http_req_rate'"),
        "{err}"
    );
    assert!(
        err.contains(":7: 'stick-table': 'stick-table' needs 'size N'"),
        "{err}"
    );
}
