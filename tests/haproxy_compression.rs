//! `compression algo|type|offload` in HAProxy's syntax: what the client gets
//! (coding, Vary, ETag, the body once decoded) and what the server sees
//! (Accept-Encoding under `offload`); the same conf run by HAProxy 2.6
//! makes the same choices.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use common::client::{Client, Resp};
use common::{haproxy, Lb};

/// A page worth compressing.
fn page() -> Vec<u8> {
    (0..400)
        .map(|i| format!("<p>line {i} of a page that compresses well</p>\n"))
        .collect::<String>()
        .into_bytes()
}

/// A server answering by path; each response says which Accept-Encoding it
/// saw in `X-Seen-AE`. `/stream` sends one chunk, waits for `go`, then the rest.
fn server(go: mpsc::Receiver<()>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let go = std::sync::Arc::new(std::sync::Mutex::new(go));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let go = go.clone();
            std::thread::spawn(move || serve(s, &go));
        }
    });
    addr
}

fn serve(s: std::net::TcpStream, go: &std::sync::Mutex<mpsc::Receiver<()>>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut ae = "-".to_string();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("accept-encoding") {
                    ae = v.trim().to_string();
                }
            }
        }
        let body = page();
        let fixed = |extra: &str, status: &str, body: &[u8]| {
            let mut out = format!(
                "HTTP/1.1 {status}\r\nX-Seen-AE: {ae}\r\n{extra}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if method != "HEAD" {
                out.extend_from_slice(body);
            }
            out
        };
        let out = match path.as_str() {
            "/text" => fixed(
                "Content-Type: text/html; charset=utf-8\r\nETag: \"v1\"\r\n",
                "200 OK",
                &body,
            ),
            "/image" => fixed("Content-Type: image/png\r\n", "200 OK", &body),
            "/encoded" => fixed(
                "Content-Type: text/html\r\nContent-Encoding: br\r\n",
                "200 OK",
                &body,
            ),
            "/no-transform" => fixed(
                "Content-Type: text/html\r\nCache-Control: public, no-transform\r\n",
                "200 OK",
                &body,
            ),
            "/partial" => fixed(
                "Content-Type: text/html\r\nContent-Range: bytes 0-99/5000\r\n",
                "206 Partial Content",
                &body[..100],
            ),
            "/missing" => fixed("Content-Type: text/html\r\n", "404 Not Found", &body),
            "/stream" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Seen-AE: {ae}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                let one = b"part one;";
                let msg = format!("{head}{:x}\r\n", one.len());
                let _ = w.write_all(msg.as_bytes());
                let _ = w.write_all(one);
                let _ = w.write_all(b"\r\n");
                let _ = w.flush();
                // The client must have decoded part one before the rest comes.
                let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(10));
                let two = b"part two.";
                let _ = w.write_all(format!("{:x}\r\n", two.len()).as_bytes());
                let _ = w.write_all(two);
                let _ = w.write_all(b"\r\n0\r\n\r\n");
                continue;
            }
            _ => fixed("Content-Type: text/plain\r\n", "200 OK", b"?"),
        };
        if w.write_all(&out).is_err() {
            return;
        }
    }
}

fn conf(bind: &str, srv: SocketAddr, extra: &str) -> String {
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind}\n    default_backend b\n\
         backend b\n    compression algo gzip deflate\n    compression type text/html text/plain\n{extra}    server s1 {srv}\n"
    )
}

fn get(addr: SocketAddr, method: &str, path: &str, ae: Option<&str>) -> Resp {
    let mut c = Client::connect(addr);
    let ae = ae.map_or(String::new(), |v| format!("Accept-Encoding: {v}\r\n"));
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{ae}\r\n").as_bytes());
    c.read(method == "HEAD").expect("response")
}

fn decode(r: &Resp) -> Vec<u8> {
    let mut out = Vec::new();
    match r.header("content-encoding") {
        Some("gzip") => flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .map(|_| ())
            .expect("gzip body"),
        Some("deflate") => flate2::read::ZlibDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .map(|_| ())
            .expect("zlib body"),
        _ => out = r.body.clone(),
    }
    out
}

/// What a client sees for one case: (case, coding, Vary, ETag).
type Outcome = (String, Option<String>, Option<String>, Option<String>);

/// Every case, its decoded body checked.
fn outcomes(addr: SocketAddr) -> Vec<Outcome> {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/text", Some("gzip, deflate")),
        ("GET", "/text", Some("deflate")),
        ("GET", "/text", Some("gzip;q=0.5, deflate;q=0.8")),
        ("GET", "/text", Some("br, *")),
        ("GET", "/text", Some("gzip;q=0")),
        ("GET", "/text", Some("br")),
        ("GET", "/text", None),
        ("HEAD", "/text", Some("gzip")),
        ("GET", "/image", Some("gzip")),
        ("GET", "/encoded", Some("gzip")),
        ("GET", "/no-transform", Some("gzip")),
        ("GET", "/partial", Some("gzip")),
        ("GET", "/missing", Some("gzip")),
    ];
    let mut out = Vec::new();
    for (m, p, ae) in cases {
        let r = get(addr, m, p, *ae);
        let full = match *p {
            "/partial" => page()[..100].to_vec(),
            "/encoded" | "/image" | "/no-transform" | "/missing" | "/text" => page(),
            _ => Vec::new(),
        };
        if *m == "GET" {
            assert_eq!(decode(&r), full, "{m} {p} {ae:?}: body");
        }
        out.push((
            format!("{m} {p} {ae:?}"),
            r.header("content-encoding").map(String::from),
            r.header("vary").map(str::to_ascii_lowercase),
            r.header("etag").map(String::from),
        ));
    }
    out
}

#[test]
fn compresses_what_haproxy_compresses() {
    let (_tx, rx) = mpsc::channel();
    let srv = server(rx);
    let lb = Lb::start(&conf("127.0.0.1:0", srv, ""), 1);
    let got = outcomes(lb.addr("frontend", "f"));
    let enc = |i: usize| got[i].1.as_deref();
    assert_eq!(enc(0), Some("gzip"), "{:?}", got[0]);
    assert_eq!(enc(1), Some("deflate"));
    assert_eq!(enc(2), Some("deflate"), "highest q wins");
    assert_eq!(
        enc(3),
        Some("deflate"),
        "* is the last algorithm, as HAProxy"
    );
    for (i, g) in got.iter().enumerate().skip(4) {
        let want = (g.0.contains("/encoded")).then_some("br");
        assert_eq!(enc(i), want, "{g:?}");
    }
    assert_eq!(got[0].2.as_deref(), Some("accept-encoding"));
    assert_eq!(
        got[0].3.as_deref(),
        Some("W/\"v1\""),
        "a strong ETag made weak"
    );
    assert_eq!(
        got[6].3.as_deref(),
        Some("\"v1\""),
        "uncompressed: ETag kept"
    );
    // Without `offload` the server sees the client's Accept-Encoding.
    let r = get(lb.addr("frontend", "f"), "GET", "/text", Some("gzip"));
    assert_eq!(r.header("x-seen-ae"), Some("gzip"));

    let port = haproxy::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&addr.to_string(), srv, ""), addr) else {
        return;
    };
    let theirs = outcomes(addr);
    for (a, b) in got.iter().zip(&theirs) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1, "coding of {}", a.0);
        assert_eq!(a.3, b.3, "ETag of {}", a.0);
        assert_eq!(
            a.2.as_deref().map(|v| v.contains("accept-encoding")),
            b.2.as_deref().map(|v| v.contains("accept-encoding")),
            "Vary of {}",
            a.0
        );
    }
}

#[test]
fn offload_hides_accept_encoding_and_chunked_bodies_stream() {
    let (tx, rx) = mpsc::channel();
    let srv = server(rx);
    let lb = Lb::start(&conf("127.0.0.1:0", srv, "    compression offload\n"), 1);
    let a = lb.addr("frontend", "f");
    let r = get(a, "GET", "/text", Some("gzip"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("x-seen-ae"),
        Some("-"),
        "offload: the server sees none"
    );
    assert_eq!(decode(&r), page());
    // A client that takes no coding: its header passes untouched.
    let r = get(a, "GET", "/text", Some("br"));
    assert_eq!(r.header("x-seen-ae"), Some("br"));
    assert_eq!(r.header("content-encoding"), None);

    // Streaming: part one decodes before the server sends part two.
    let mut c = Client::connect(a);
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    let mut head = Vec::new();
    loop {
        let mut l = String::new();
        c.r.read_line(&mut l).unwrap();
        if l == "\r\n" {
            break;
        }
        head.push(l.to_ascii_lowercase());
    }
    assert!(
        head.iter().any(|h| h.starts_with("content-encoding: gzip")),
        "{head:?}"
    );
    assert!(
        head.iter()
            .any(|h| h.starts_with("transfer-encoding: chunked")),
        "{head:?}"
    );
    let mut dec = flate2::write::GzDecoder::new(Vec::new());
    let mut chunk = || {
        let mut size = String::new();
        c.r.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut b = vec![0u8; n + 2];
        c.r.read_exact(&mut b).unwrap();
        b.truncate(n);
        b
    };
    while !String::from_utf8_lossy(dec.get_ref()).contains("part one;") {
        let b = chunk();
        assert!(!b.is_empty(), "body ended before part one decoded");
        dec.write_all(&b).unwrap();
        dec.flush().unwrap();
    }
    tx.send(()).unwrap();
    loop {
        let b = chunk();
        if b.is_empty() {
            break;
        }
        dec.write_all(&b).unwrap();
    }
    assert_eq!(dec.finish().unwrap(), b"part one;part two.");
    // The connection stays usable after a compressed chunked response.
    let r = c.get("/text");
    assert_eq!(r.status, 200);
}

#[test]
fn check_refuses_unknown_compression() {
    let (code, _out, err, _p, _d) = common::check(
        "defaults\n    mode http\nbackend b\n    compression algo brotli\n    server s 127.0.0.1:1\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains(":4:") && err.contains("brotli"), "{err}");
}

/// GET over h2c with Accept-Encoding `ae`: (coding, Vary, ETag, decoded body).
fn h2_get(addr: SocketAddr, path: &str, ae: Option<&str>) -> Outcome2 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let f = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::get(format!("http://x{path}"));
            if let Some(ae) = ae {
                req = req.header("accept-encoding", ae);
            }
            let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
            let resp = resp.await.unwrap();
            let h = |n: &str| {
                resp.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            };
            let (coding, vary, etag) = (h("content-encoding"), h("vary"), h("etag"));
            let mut body = resp.into_body();
            let mut raw = Vec::new();
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                let _ = body.flow_control().release_capacity(d.len());
                raw.extend_from_slice(&d);
            }
            let mut out = Vec::new();
            match coding.as_deref() {
                Some("gzip") => {
                    flate2::read::GzDecoder::new(&raw[..])
                        .read_to_end(&mut out)
                        .expect("gzip body");
                }
                Some("deflate") => {
                    flate2::read::ZlibDecoder::new(&raw[..])
                        .read_to_end(&mut out)
                        .expect("zlib body");
                }
                _ => out = raw,
            }
            (
                coding,
                vary.map(|v| v.contains("accept-encoding")),
                etag,
                out,
            )
        };
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("h2 exchange in time")
    })
}

type Outcome2 = (Option<String>, Option<bool>, Option<String>, Vec<u8>);

fn h2_outcomes(addr: SocketAddr) -> Vec<Outcome2> {
    [
        ("/text", Some("gzip, deflate")),
        ("/text", Some("deflate")),
        ("/text", None),
        ("/image", Some("gzip")),
        ("/encoded", Some("gzip")),
        ("/stream", Some("gzip")),
    ]
    .into_iter()
    .map(|(p, ae)| h2_get(addr, p, ae))
    .collect()
}

#[test]
fn http2_clients_get_compressed_bodies_as_haproxy() {
    let (tx, rx) = mpsc::channel();
    // `/stream` waits for a go between its parts: given in advance here.
    for _ in 0..4 {
        tx.send(()).unwrap();
    }
    let srv = server(rx);
    let h2conf = |bind: &str| conf(&format!("{bind} proto h2"), srv, "");
    let lb = Lb::start(&h2conf("127.0.0.1:0"), 1);
    let got = h2_outcomes(lb.addr("frontend", "f"));
    let codings: Vec<Option<&str>> = got.iter().map(|g| g.0.as_deref()).collect();
    assert_eq!(
        codings,
        [
            Some("gzip"),
            Some("deflate"),
            None,
            None,
            Some("br"),
            Some("gzip")
        ]
    );
    assert_eq!(got[0].3, page(), "decoded body");
    assert_eq!(got[5].3, b"part one;part two.", "chunked body, compressed");
    assert_eq!(got[0].1, Some(true), "Vary");
    assert_eq!(got[0].2.as_deref(), Some("w/\"v1\""), "weak ETag");

    let port = haproxy::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&h2conf(&addr.to_string()), addr) else {
        return;
    };
    let theirs = h2_outcomes(addr);
    for (i, (a, b)) in got.iter().zip(&theirs).enumerate() {
        assert_eq!(a.0, b.0, "case {i}: coding");
        assert_eq!(a.2, b.2, "case {i}: ETag");
        assert_eq!(a.3, b.3, "case {i}: body");
        if a.0.is_some() && a.0.as_deref() != Some("br") {
            assert_eq!(a.1, b.1, "case {i}: Vary");
        }
    }
}
