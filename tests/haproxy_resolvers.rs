//! `resolvers` + `server-template` / `server ... resolvers`: servers follow
//! a DNS server's answers at run time (A and SRV records), without a reload.
//! The DNS server is a small one inside the test, on 127.0.0.1:0; the same
//! conf run by HAProxy 2.6 follows the same answers.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use common::client::Client;
use common::servers::{http_server, http_server_at, HttpServer};
use common::{eventually, haproxy, Lb};

/// What the test DNS server answers: A records of `web.test`, and SRV
/// records of `_web._tcp.test` (each `srvN.test` port, with its A record
/// 127.0.0.1 in the additional section).
#[derive(Default)]
struct Zone {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<std::net::Ipv6Addr>,
    srv: Vec<u16>,
}

fn dns(zone: Arc<Mutex<Zone>>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = q.queries().first().cloned() else {
                continue;
            };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_desired(q.recursion_desired())
                .set_recursion_available(true)
                .add_query(query.clone());
            let asked = query.name().to_ascii().to_ascii_lowercase();
            let asked = asked.trim_end_matches('.');
            let z = zone.lock().unwrap();
            let name = query.name().clone();
            match (asked, query.query_type()) {
                ("web.test", RecordType::A) => {
                    for ip in &z.a {
                        r.add_answer(Record::from_rdata(name.clone(), 1, RData::A(A(*ip))));
                    }
                }
                ("web.test", RecordType::AAAA) => {
                    for ip in &z.aaaa {
                        r.add_answer(Record::from_rdata(name.clone(), 1, RData::AAAA(AAAA(*ip))));
                    }
                }
                ("web.test", _) => {}
                ("_web._tcp.test", RecordType::SRV) => {
                    for (i, port) in z.srv.iter().enumerate() {
                        let target = Name::from_ascii(format!("srv{i}.test.")).unwrap();
                        r.add_answer(Record::from_rdata(
                            name.clone(),
                            1,
                            RData::SRV(SRV::new(0, 10, *port, target.clone())),
                        ));
                        r.add_additional(Record::from_rdata(
                            target,
                            1,
                            RData::A(A(Ipv4Addr::LOCALHOST)),
                        ));
                    }
                }
                (n, RecordType::A) if n.starts_with("srv") && n.ends_with(".test") => {
                    r.add_answer(Record::from_rdata(
                        name,
                        1,
                        RData::A(A(Ipv4Addr::LOCALHOST)),
                    ));
                }
                _ => {
                    r.set_response_code(ResponseCode::NXDomain);
                }
            }
            drop(z);
            if let Ok(b) = r.to_vec() {
                let _ = sock.send_to(&b, peer);
            }
        }
    });
    addr
}

fn conf(bind: &str, ns: SocketAddr, servers: &str) -> String {
    format!(
        "resolvers test\n    nameserver ns1 {ns}\n    hold valid 100ms\n    timeout resolve 100ms\n    timeout retry 200ms\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n    default_backend b\n\
         backend b\n{servers}\n"
    )
}

/// The servers 10 requests reach (503s count as "-").
fn reached(addr: SocketAddr) -> HashSet<String> {
    (0..10)
        .map(|_| {
            let mut c = Client::connect(addr);
            let r = c.get("/");
            r.header("x-server").unwrap_or("-").to_string()
        })
        .collect()
}

fn until(addr: SocketAddr, what: &str, want: &[&str]) {
    let want: HashSet<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(what, || (reached(addr) == want).then_some(()));
}

/// Two servers on 127.0.0.2 and 127.0.0.3, same port (A records carry no port).
fn pair() -> (HttpServer, HttpServer, u16) {
    let a = http_server_at("127.0.0.2:0".parse().unwrap(), "a");
    let port = a.addr.port();
    let b = http_server_at(format!("127.0.0.3:{port}").parse().unwrap(), "b");
    (a, b, port)
}

/// Follows the answers: a only, a and b, then b only.
fn follow(addr: SocketAddr, zone: &Mutex<Zone>) {
    zone.lock().unwrap().a = vec![Ipv4Addr::new(127, 0, 0, 2)];
    until(addr, "servers from the first answer", &["a"]);
    zone.lock().unwrap().a = vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    until(addr, "a server added by DNS", &["a", "b"]);
    zone.lock().unwrap().a = vec![Ipv4Addr::new(127, 0, 0, 3)];
    until(addr, "a server removed by DNS", &["b"]);
}

#[test]
fn server_template_follows_a_records_as_haproxy() {
    let (_a, _b, port) = pair();
    let zone = Arc::new(Mutex::new(Zone::default()));
    let ns = dns(zone.clone());
    let servers =
        format!("    server-template web 3 web.test:{port} resolvers test init-addr none");
    let lb = Lb::start(&conf("127.0.0.1:0", ns, &servers), 1);
    let addr = lb.addr("frontend", "f");
    // No answer yet (the name does not exist): no server, 503.
    until(addr, "503 before any answer", &["-"]);
    follow(addr, &zone);

    zone.lock().unwrap().a.clear();
    let port_h = haproxy::free_port();
    let h: SocketAddr = format!("127.0.0.1:{port_h}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&h.to_string(), ns, &servers), h) else {
        return;
    };
    follow(h, &zone);
}

#[test]
fn a_server_named_by_dns_and_srv_records() {
    let (_a, _b, port) = pair();
    let zone = Arc::new(Mutex::new(Zone::default()));
    let ns = dns(zone.clone());
    // One server line with `resolvers`: the first address of the answer.
    let servers = format!("    server web web.test:{port} resolvers test");
    let lb = Lb::start(&conf("127.0.0.1:0", ns, &servers), 1);
    let addr = lb.addr("frontend", "f");
    zone.lock().unwrap().a = vec![Ipv4Addr::new(127, 0, 0, 3)];
    until(addr, "the server at its DNS address", &["b"]);
    drop(lb);

    // `resolve-prefer ipv6`: AAAA records first, A when there are none.
    if let Ok(l) = std::net::TcpListener::bind("[::1]:0") {
        drop(l);
        let v6 = http_server_at("[::1]:0".parse().unwrap(), "v6");
        let servers = format!(
            "    server web web.test:{} resolvers test resolve-prefer ipv6",
            v6.addr.port()
        );
        let lb = Lb::start(&conf("127.0.0.1:0", ns, &servers), 1);
        zone.lock().unwrap().aaaa = vec![std::net::Ipv6Addr::LOCALHOST];
        until(
            lb.addr("frontend", "f"),
            "the server at its AAAA address",
            &["v6"],
        );
    } else {
        eprintln!("no IPv6 loopback: skipping the AAAA case");
    }

    // SRV: the records give the ports.
    let (s0, s1) = (http_server("s0"), http_server("s1"));
    zone.lock().unwrap().srv = vec![s0.addr.port()];
    let servers = "    server-template srv 4 _web._tcp.test resolvers test";
    let lb = Lb::start(&conf("127.0.0.1:0", ns, servers), 1);
    let addr = lb.addr("frontend", "f");
    until(addr, "the SRV record's server", &["s0"]);
    zone.lock().unwrap().srv = vec![s0.addr.port(), s1.addr.port()];
    until(addr, "a second SRV record", &["s0", "s1"]);
}

#[test]
fn check_reports_missing_resolvers() {
    let (code, _o, err, _p, _d) = common::check(
        "defaults\n    mode http\nbackend b\n    server-template w 2 web.test:80 resolvers nope\n    server x web.test:80 resolvers nope2 resolve-prefer ipv6\nresolvers r\n    nameserver a 127.0.0.1:53\n    parse-resolv-conf\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains(":4:") && err.contains("resolvers nope"),
        "{err}"
    );
    assert!(
        err.contains(":5:") && err.contains("resolvers nope2"),
        "{err}"
    );
    assert!(
        err.contains(":8:") && err.contains("parse-resolv-conf"),
        "{err}"
    );
}
