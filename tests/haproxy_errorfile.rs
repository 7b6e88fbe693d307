//! `errorfile CODE FILE` and `http-errors` + `errorfiles`: an error lb
//! answers itself goes out as the file's HTTP response, as HAProxy 2.6 does.

mod common;

use std::net::SocketAddr;

use common::client::{Client, Resp};
use common::servers::dead_addr;
use common::{haproxy, write_conf, Lb};

const F503: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nX-Errorfile: down\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n<h1>down for maintenance</h1>\n";
const F403: &str = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Errorfile: site\r\nConnection: close\r\n\r\nnot for you\n";

fn conf(bind: &str, dir: &std::path::Path) -> String {
    format!(
        "http-errors site\n    errorfile 403 {d}/403.http\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         \x20   errorfile 503 {d}/503.http\n\
         frontend f\n    bind {bind}\n    errorfiles site\n    http-request deny if {{ path /forbidden }}\n    default_backend b\n\
         backend b\n    server s1 {}\n",
        dead_addr(),
        d = dir.display()
    )
}

fn get(addr: SocketAddr, path: &str) -> (Resp, Vec<u8>) {
    let raw = common::roundtrip(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    (c.read(false).expect("response"), raw)
}

#[test]
fn errors_lb_answers_are_the_files_as_haproxy() {
    let (dir, path) = write_conf("");
    std::fs::write(dir.path().join("503.http"), F503).unwrap();
    std::fs::write(dir.path().join("403.http"), F403).unwrap();
    std::fs::write(&path, conf("127.0.0.1:0", dir.path())).unwrap();
    let hconf_dir = dir.path().to_path_buf();
    let lb = Lb::start_path(dir, path, 1, &[]);
    let a = lb.addr("frontend", "f");
    let (r, raw) = get(a, "/");
    assert_eq!(raw, F503.as_bytes(), "the file, byte for byte");
    assert_eq!((r.status, r.header("x-errorfile")), (503, Some("down")));
    let (r, raw) = get(a, "/forbidden");
    assert_eq!(raw, F403.as_bytes());
    assert_eq!(r.text(), "not for you\n");
    // An HTTP/2 client (h2c with prior knowledge) gets the file's status,
    // headers and body.
    let (st, tag, body) = h2_get(a, "/");
    assert_eq!((st, tag.as_deref()), (503, Some("down")));
    assert_eq!(body, b"<h1>down for maintenance</h1>\n");

    let port = haproxy::free_port();
    let h: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&h.to_string(), &hconf_dir), h) else {
        return;
    };
    for (p, st, tag, body) in [
        ("/", 503, "down", "<h1>down for maintenance</h1>\n"),
        ("/forbidden", 403, "site", "not for you\n"),
    ] {
        let (r, _) = get(h, p);
        assert_eq!(
            (r.status, r.header("x-errorfile")),
            (st, Some(tag)),
            "haproxy {p}"
        );
        assert_eq!(r.text(), body, "haproxy {p}");
    }
}

#[test]
fn check_refuses_bad_errorfiles() {
    let (code, _o, err, _p, _d) = common::check(
        "defaults\n    mode http\n    errorfile 999 /nonexistent\n    errorfile 503 /nonexistent\nfrontend f\n    bind 127.0.0.1:0\n    errorfiles nosuch\n    default_backend b\nbackend b\n    errorfile 503 /x\n    server s 127.0.0.1:1\n",
    );
    assert_ne!(code, 0);
    for (line, what) in [
        (3, "999"),
        (4, "/nonexistent"),
        (7, "nosuch"),
        (10, "backend"),
    ] {
        assert!(
            err.contains(&format!(":{line}:")) && err.contains(what),
            "line {line}: {err}"
        );
    }
}

/// GET over h2c: (status, X-Errorfile, body).
fn h2_get(addr: SocketAddr, path: &str) -> (u16, Option<String>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let f = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let req = http::Request::get(format!("http://x{path}"))
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            let st = resp.status().as_u16();
            let tag = resp
                .headers()
                .get("x-errorfile")
                .map(|v| v.to_str().unwrap().to_string());
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                let _ = body.flow_control().release_capacity(d.len());
                out.extend_from_slice(&d);
            }
            (st, tag, out)
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), f)
            .await
            .expect("h2 exchange in time")
    })
}
