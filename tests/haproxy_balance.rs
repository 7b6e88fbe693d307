//! `balance uri|hdr(NAME)|url_param|first`, `hash-type consistent`, and
//! `cookie NAME prefix`, in HAProxy's syntax: which server each request
//! reaches, checked on lb and on HAProxy 2.6 with the same conf.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

use common::client::{Client, Resp};
use common::servers::{http_server, HttpServer};
use common::{eventually, haproxy, Lb};

fn conf(bind: &str, backend: &str, s: &[&HttpServer]) -> String {
    let mut c = format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n    default_backend b\n\
         backend b\n{backend}\n"
    );
    for (i, s) in s.iter().enumerate() {
        c.push_str(&format!(
            "    server s{} {} check inter 100ms fall 1 rise 1\n",
            i + 1,
            s.addr
        ));
    }
    c
}

fn get(addr: SocketAddr, target: &str, extra: &str) -> Resp {
    let mut c = Client::connect(addr);
    c.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes());
    c.read(false).expect("response")
}

fn server_of(addr: SocketAddr, target: &str, extra: &str) -> String {
    let r = get(addr, target, extra);
    assert_eq!(r.status, 200, "{target}");
    r.header("x-server").expect("x-server").to_string()
}

/// Starts HAProxy on `conf_of(bind)`, or `None` (skipped) when not installed.
fn with_haproxy(conf_of: impl Fn(&str) -> String) -> Option<(haproxy::Haproxy, SocketAddr)> {
    let port = haproxy::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let h = haproxy::start(&conf_of(&addr.to_string()), addr)?;
    Some((h, addr))
}

/// For each of 30 paths, the server it reaches; a deeper path under the same
/// two levels and another query reach the same one.
fn uri_map(addr: SocketAddr) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for i in 0..30 {
        let s = server_of(addr, &format!("/p{i}/x/y?q=1"), "");
        assert_eq!(
            server_of(addr, &format!("/p{i}/x/z/w?q=2"), ""),
            s,
            "depth 2"
        );
        m.insert(format!("/p{i}/x"), s);
    }
    m
}

#[test]
fn uri_hash_is_stable_and_consistent_moves_only_a_dead_servers_keys_as_haproxy() {
    let (a, b, mut c) = (http_server("a"), http_server("b"), http_server("c"));
    let be = "    balance uri depth 2\n    hash-type consistent";
    let lb = Lb::start(&conf("127.0.0.1:0", be, &[&a, &b, &c]), 1);
    let mut sides = vec![("lb", lb.addr("frontend", "f"))];
    let h = with_haproxy(|bind| conf(bind, be, &[&a, &b, &c]));
    if let Some((_, addr)) = &h {
        sides.push(("haproxy", *addr));
    }
    let before: Vec<_> = sides.iter().map(|(_, a)| uri_map(*a)).collect();
    for (m, (who, _)) in before.iter().zip(&sides) {
        let used: HashSet<_> = m.values().collect();
        assert_eq!(
            used.len(),
            3,
            "{who}: 30 paths spread over the 3 servers: {m:?}"
        );
    }
    c.kill();
    for ((who, addr), m) in sides.iter().zip(&before) {
        // Once c is seen down, c's paths move and the others stay.
        let gone: Vec<_> = m.iter().filter(|(_, s)| *s == "c").collect();
        eventually("c marked down", || {
            gone.iter()
                .all(|(p, _)| get(*addr, &format!("{p}/y"), "").status == 200)
                .then_some(())
        });
        for (p, s) in m {
            let now = server_of(*addr, &format!("{p}/y"), "");
            if s != "c" {
                assert_eq!(&now, s, "{who}: {p} moved though its server lives");
            } else {
                assert_ne!(now, "c", "{who}");
            }
        }
    }
}

#[test]
fn hdr_and_url_param_hash_and_fall_back_to_round_robin_as_haproxy() {
    let (a, b, c) = (http_server("a"), http_server("b"), http_server("c"));
    for (be, with, without) in [
        (
            "    balance hdr(X-User)",
            (|i: usize| ("/".to_string(), format!("X-User: user{i}\r\n")))
                as fn(usize) -> (String, String),
            ("/".to_string(), String::new()),
        ),
        (
            "    balance url_param id",
            |i: usize| (format!("/a?x=1&id=user{i}"), String::new()),
            ("/a?x=1".to_string(), String::new()),
        ),
    ] {
        let lb = Lb::start(&conf("127.0.0.1:0", be, &[&a, &b, &c]), 1);
        let mut sides = vec![lb.addr("frontend", "f")];
        let h = with_haproxy(|bind| conf(bind, be, &[&a, &b, &c]));
        if let Some((_, addr)) = &h {
            sides.push(*addr);
        }
        for addr in sides {
            let mut used = HashSet::new();
            for i in 0..20 {
                let (t, x) = with(i);
                let s = server_of(addr, &t, &x);
                for _ in 0..3 {
                    assert_eq!(server_of(addr, &t, &x), s, "{be}: {t} {x}");
                }
                used.insert(s);
            }
            assert!(used.len() >= 2, "{be}: keys spread: {used:?}");
            // Nothing to hash: round robin over all three.
            let rr: HashSet<_> = (0..6)
                .map(|_| server_of(addr, &without.0, &without.1))
                .collect();
            assert_eq!(rr.len(), 3, "{be}: without a key, round robin: {rr:?}");
        }
    }
}

#[test]
fn first_fills_the_first_server_then_the_next_as_haproxy() {
    let (mut a, b, c) = (http_server("a"), http_server("b"), http_server("c"));
    let be = "    balance first";
    let lb = Lb::start(&conf("127.0.0.1:0", be, &[&a, &b, &c]), 1);
    let mut sides = vec![lb.addr("frontend", "f")];
    let h = with_haproxy(|bind| conf(bind, be, &[&a, &b, &c]));
    if let Some((_, addr)) = &h {
        sides.push(*addr);
    }
    for addr in &sides {
        for _ in 0..5 {
            assert_eq!(server_of(*addr, "/", ""), "a");
        }
    }
    a.kill();
    for addr in &sides {
        eventually("a marked down", || {
            let r = get(*addr, "/", "");
            (r.status == 200 && r.header("x-server") == Some("b")).then_some(())
        });
        for _ in 0..5 {
            assert_eq!(server_of(*addr, "/", ""), "b");
        }
    }
}

/// A server that sets `JSESSIONID=NAME-1` on /login and says which cookie it saw.
fn cookie_server(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut cookie = "-".to_string();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("Cookie: ").or(h.strip_prefix("cookie: ")) {
                            cookie = v.to_string();
                        }
                    }
                    let set = if path == "/login" {
                        format!("Set-Cookie: JSESSIONID={name}-1; path=/\r\n")
                    } else {
                        String::new()
                    };
                    let out = format!(
                        "HTTP/1.1 200 OK\r\nx-server: {name}\r\nx-seen-cookie: {cookie}\r\n{set}Content-Length: 0\r\n\r\n"
                    );
                    if w.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn cookie_prefix_keeps_the_client_and_hides_the_prefix_as_haproxy() {
    let (a, b) = (cookie_server("a"), cookie_server("b"));
    let conf = |bind: &str| {
        format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend f\n    bind {bind}\n    default_backend b\n\
             backend b\n    balance roundrobin\n    cookie JSESSIONID prefix\n\
             \x20   server s1 {a} cookie s1\n    server s2 {b} cookie s2\n"
        )
    };
    let lb = Lb::start(&conf("127.0.0.1:0"), 1);
    let mut sides = vec![lb.addr("frontend", "f")];
    let h = with_haproxy(|bind| conf(bind));
    if let Some((_, addr)) = &h {
        sides.push(*addr);
    }
    for addr in sides {
        let r = get(addr, "/login", "");
        let srv = r.header("x-server").unwrap().to_string();
        let sid = if srv == "a" { "s1" } else { "s2" };
        let set = r.header("set-cookie").unwrap().to_string();
        assert_eq!(set, format!("JSESSIONID={sid}~{srv}-1; path=/"));
        let ck = set.split(';').next().unwrap().to_string();
        for _ in 0..4 {
            let r = get(addr, "/", &format!("Cookie: a=1; {ck}\r\n"));
            assert_eq!(r.header("x-server"), Some(srv.as_str()));
            assert_eq!(
                r.header("x-seen-cookie"),
                Some(format!("a=1; JSESSIONID={srv}-1").as_str()),
                "the server sees its own value"
            );
        }
    }
}
