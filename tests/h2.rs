//! HTTP/2 to clients: curl over TLS (ALPN h2) and h2c (prior knowledge),
//! h2spec conformance, the abuse limits (rapid reset, header list size,
//! concurrent streams), idle GOAWAY.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::client::Client;
use common::servers::http_server;
use common::{Lb, WAIT};

/// A frontend with an h2c bind (`proto h2`) and a TLS bind offering h2 and
/// HTTP/1.1, in front of `backend`; `global` lines go first.
fn conf(backend: SocketAddr, global: &str, frontend: &str) -> String {
    format!(
        "global\n    admin 127.0.0.1:0\n{global}defaults\n    mode http\n    timeout client 5s\nfrontend f\n    bind 127.0.0.1:0 proto h2\n    bind 127.0.0.1:0 ssl self-signed localhost alpn h2,http/1.1\n{frontend}    default_backend b\nbackend b\n    server s {backend}\n"
    )
}

/// (h2c address, TLS address).
fn binds(lb: &Lb) -> (SocketAddr, SocketAddr) {
    let v = &lb.listeners[&("frontend".to_string(), "f".to_string())];
    (v[0], v[1])
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command to its end, under `WAIT`: (exit code, stdout).
fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT * 3) {
        Ok(Ok(o)) => (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        _ => {
            // SAFETY: killing the child we spawned.
            unsafe { libc::kill(id as i32, libc::SIGKILL) };
            panic!("{cmd:?} did not finish in time");
        }
    }
}

/// `curl` with `args`, printing `HTTP_VERSION STATUS` then the body.
fn curl(args: &[&str], url: &str) -> String {
    let (code, out) = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .arg(url));
    assert_eq!(code, Some(0), "curl {args:?} {url}: {out}");
    out
}

#[test]
fn curl_gets_http2_200_over_tls_and_h2c() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, tls) = binds(&lb);
    let out = curl(&["--http2-prior-knowledge"], &format!("http://{h2c}/hello"));
    assert!(out.ends_with("\n2 200"), "{out}");
    assert!(out.starts_with("s1 GET /hello"), "{out}");
    let out = curl(
        &["-k", "--http2"],
        &format!("https://localhost:{}/tls", tls.port()),
    );
    assert!(out.ends_with("\n2 200"), "{out}");
    assert!(out.starts_with("s1 GET /tls"), "{out}");
    // The same TLS bind still speaks HTTP/1.1 to clients that ask for it.
    let out = curl(
        &["-k", "--http1.1"],
        &format!("https://localhost:{}/one", tls.port()),
    );
    assert!(out.ends_with("\n1.1 200"), "{out}");
}

/// `../shared/tools/h2spec` (or /work/shared/tools/h2spec), when present.
fn h2spec() -> Option<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        repo.join("../shared/tools/h2spec"),
        PathBuf::from("/work/shared/tools/h2spec"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// `N tests, N passed, N skipped, N failed` -> (tests, failed).
fn h2spec_counts(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" tests, "))
        .unwrap_or_else(|| panic!("no h2spec summary:\n{out}"));
    let n = |word: &str| -> u32 {
        line.split(", ")
            .find_map(|p| {
                p.trim()
                    .strip_suffix(word)
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no '{word}' in {line}"))
    };
    (n("tests"), n("failed"))
}

#[test]
fn h2spec_reports_no_failure_over_h2c_and_tls() {
    let Some(tool) = h2spec() else {
        eprintln!("skipped: h2spec not found in ../shared/tools (it is not in CI)");
        return;
    };
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, tls) = binds(&lb);
    for (addr, extra) in [(h2c, &[][..]), (tls, &["-t", "-k"][..])] {
        let (_, out) = run(Command::new(&tool)
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-o", "5"])
            .args(extra));
        let (tests, failed) = h2spec_counts(&out);
        eprintln!("h2spec {extra:?}: {tests} tests, {failed} failed");
        assert!(tests >= 146, "{out}");
        assert_eq!(failed, 0, "h2spec {extra:?}:\n{out}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(())
        .unwrap()
}

/// The frontend's `lb_h2_abuse_total` series, summed over kinds.
fn abuse_count(lb: &Lb) -> u64 {
    let mut c = Client::connect(lb.addr("admin", "admin"));
    c.send(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let text = c.read(false).expect("metrics").text();
    text.lines()
        .filter(|l| l.starts_with("lb_h2_abuse_total{frontend=\"f\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn rapid_reset_cuts_the_connection_and_counts_it() {
    let be = http_server("s1");
    let lb = Lb::start(
        &conf(be.addr, "    tune.h2.fe.glitches-threshold 20\n", ""),
        3,
    );
    let (h2c, _) = binds(&lb);
    assert_eq!(abuse_count(&lb), 0);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let attack = async {
            // CVE-2023-44487: open a stream, cancel it at once, again and again
            // (yielding so the frames go out as they would from an attacker).
            for i in 0..5000 {
                client = client.ready().await?;
                let (_resp, mut body) = client.send_request(get("/"), false)?;
                body.send_reset(h2::Reason::CANCEL);
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<(), h2::Error>(())
        };
        // Ends with an error once lb cut the connection, or having sent them all.
        let _ = tokio::time::timeout(WAIT, attack)
            .await
            .expect("attack bounded");
        let end = tokio::time::timeout(WAIT, conn)
            .await
            .expect("connection ends");
        let e = end.unwrap().expect_err("cut, not a clean close");
        // GOAWAY ENHANCE_YOUR_CALM, or the socket closed under a client
        // still writing (the GOAWAY unread).
        match e.reason() {
            Some(r) => assert_eq!(r, h2::Reason::ENHANCE_YOUR_CALM, "{e}"),
            None => assert!(e.is_io(), "{e}"),
        }
    });
    common::eventually("the abuse counter", || {
        (abuse_count(&lb) >= 1).then_some(())
    });
    // Other clients are served as before.
    let out = curl(&["--http2-prior-knowledge"], &format!("http://{h2c}/after"));
    assert!(out.ends_with("\n2 200"), "{out}");
}

#[test]
fn header_list_over_the_limit_is_refused() {
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "    tune.bufsize 4k\n", ""), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
        let ask = |big: usize| {
            let mut client = client.clone();
            async move {
                let mut req = get("/big");
                req.headers_mut()
                    .insert("x-big", "v".repeat(big).parse().unwrap());
                client = client.ready().await?;
                let (resp, _) = client.send_request(req, true)?;
                let resp = resp.await?;
                Ok::<u16, h2::Error>(resp.status().as_u16())
            }
        };
        let small = tokio::select! {
            r = ask(100) => r,
            _ = &mut conn => panic!("connection ended"),
        };
        assert_eq!(small.unwrap(), 200);
        // Over SETTINGS_MAX_HEADER_LIST_SIZE (4k, from tune.bufsize): 431 or a reset.
        let big = tokio::select! {
            r = ask(8000) => r,
            r = &mut conn => panic!("connection ended: {r:?}"),
        };
        match big {
            Ok(s) => assert_eq!(s, 431),
            Err(e) => assert!(e.is_reset() || e.is_go_away(), "{e}"),
        }
        // Under the h2 limit, but the HTTP/1 head it makes is over tune.bufsize.
        let mut req = get("/many");
        for i in 0..40 {
            req.headers_mut().insert(
                format!("x-h{i}").parse::<http::HeaderName>().unwrap(),
                "v".repeat(80).parse().unwrap(),
            );
        }
        let mut c = client.clone();
        let over = tokio::select! {
            r = async {
                c = c.ready().await?;
                let (resp, _) = c.send_request(req, true)?;
                Ok::<_, h2::Error>(resp.await?.status().as_u16())
            } => r,
            r = &mut conn => panic!("connection ended: {r:?}"),
        };
        match over {
            Ok(s) => assert_eq!(s, 431),
            Err(e) => assert!(e.is_reset(), "{e}"),
        }
    });
}

#[test]
fn max_concurrent_streams_is_advertised() {
    let be = http_server("s1");
    let lb = Lb::start(
        &conf(be.addr, "    tune.h2.max-concurrent-streams 7\n", ""),
        3,
    );
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
        let req = async {
            let mut client = client.ready().await?;
            let (resp, _) = client.send_request(get("/"), true)?;
            resp.await
        };
        let r = tokio::select! {
            r = req => r,
            r = &mut conn => panic!("connection ended: {r:?}"),
        };
        assert_eq!(r.unwrap().status(), 200);
        assert_eq!(conn.max_concurrent_send_streams(), 7);
    });
}

#[test]
fn idle_connection_gets_goaway() {
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", "    timeout http-keep-alive 300ms\n"), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
        let req = async {
            let mut client = client.ready().await?;
            let (resp, _) = client.send_request(get("/"), true)?;
            let mut body = resp.await?.into_body();
            let mut n = 0;
            while let Some(b) = body.data().await {
                let b: Bytes = b?;
                n += b.len();
                let _ = body.flow_control().release_capacity(b.len());
            }
            Ok::<usize, h2::Error>(n)
        };
        let r = tokio::select! {
            r = req => r,
            r = &mut conn => panic!("connection ended: {r:?}"),
        };
        assert!(r.unwrap() > 0);
        // Idle now: lb says GOAWAY and the connection ends cleanly.
        let end = tokio::time::timeout(WAIT, conn).await.expect("idle close");
        end.expect("a graceful close");
    });
    drop(lb);
}

/// Sends `req` with `body` (None: no body) and returns (status, response body),
/// driving the connection meanwhile.
async fn exchange(
    client: &h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Option<Bytes>,
) -> Result<(u16, Vec<u8>), h2::Error> {
    let mut client = client.clone().ready().await?;
    let (resp, mut send) = client.send_request(req, body.is_none())?;
    if let Some(mut b) = body {
        // Flow control: send as the window opens.
        while !b.is_empty() {
            send.reserve_capacity(b.len());
            let n = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(n) => n?,
                None => break,
            };
            let chunk = b.split_to(n.min(b.len()));
            send.send_data(chunk, b.is_empty())?;
        }
    }
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(b) = body.data().await {
        let b = b?;
        out.extend_from_slice(&b);
        let _ = body.flow_control().release_capacity(b.len());
    }
    Ok((status, out))
}

#[test]
fn bodies_stream_both_ways_with_flow_control() {
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        // Larger than the 64 KiB windows on both sides.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let post = |len: Option<usize>| {
            let mut r = http::Request::builder()
                .method("POST")
                .uri("http://localhost/echo");
            if let Some(n) = len {
                r = r.header("content-length", n);
            }
            r.body(()).unwrap()
        };
        // With a length, and without one (chunked to the server).
        for len in [Some(data.len()), None] {
            let (status, body) = tokio::time::timeout(
                WAIT,
                exchange(&client, post(len), Some(Bytes::from(data.clone()))),
            )
            .await
            .expect("echo in time")
            .unwrap();
            assert_eq!(status, 200);
            assert!(
                body == data,
                "echoed {} bytes of {}",
                body.len(),
                data.len()
            );
        }
        // Many streams at once on one connection.
        let all = (0..20).map(|i| {
            let c = client.clone();
            async move { exchange(&c, get(&format!("/s{i}")), None).await }
        });
        let rs = tokio::time::timeout(WAIT, futures_join_all(all))
            .await
            .expect("in time");
        for (i, r) in rs.into_iter().enumerate() {
            let (status, body) = r.unwrap();
            assert_eq!(status, 200);
            assert!(String::from_utf8_lossy(&body).starts_with(&format!("s1 GET /s{i}")));
        }
    });
}

/// Awaits every future (no `futures` crate: a JoinSet on the current thread).
async fn futures_join_all<F, T>(fs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let local = tokio::task::LocalSet::new();
    let hs: Vec<_> = fs.map(|f| local.spawn_local(f)).collect();
    local
        .run_until(async move {
            let mut out = Vec::new();
            for h in hs {
                out.push(h.await.unwrap());
            }
            out
        })
        .await
}

#[test]
fn sigterm_sends_goaway_and_in_flight_streams_finish() {
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, _) = binds(&lb);
    let mut lb = lb;
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let slow = tokio::spawn({
            let client = client.clone();
            async move { exchange(&client, get("/slow/700"), None).await }
        });
        // The request reached the server: now stop lb.
        let deadline = tokio::time::Instant::now() + WAIT;
        while be.conns.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "request never reached the server"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        lb.signal(libc::SIGTERM);
        let (status, body) = tokio::time::timeout(WAIT, slow)
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"slow");
        // GOAWAY, then a clean close.
        tokio::time::timeout(WAIT, conn)
            .await
            .expect("closed in time")
            .unwrap()
            .expect("graceful");
    });
    assert_eq!(lb.wait_exit(), Some(0));
}

/// One HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads frames until a GOAWAY: its error code (`None`: the connection ended first).
fn goaway_code(s: &mut std::net::TcpStream) -> Option<u32> {
    use std::io::Read;
    s.set_read_timeout(Some(WAIT)).unwrap();
    loop {
        let mut h = [0u8; 9];
        s.read_exact(&mut h).ok()?;
        let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).ok()?;
        if h[3] == 0x7 && len >= 8 {
            return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
    }
}

#[test]
fn continuation_flood_cuts_the_connection_and_counts_it() {
    use std::io::Write;
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, _) = binds(&lb);
    let mut s = common::connect(h2c);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // HEADERS without END_HEADERS (`:method GET`), then CONTINUATION frames
    // (a literal `x: y` each) that never end the block.
    out.extend(frame(0x1, 0x1, 1, &[0x82]));
    for _ in 0..200 {
        out.extend(frame(0x9, 0, 1, &[0x00, 1, b'x', 1, b'y']));
    }
    // lb may cut while this is still being written.
    let _ = s.write_all(&out);
    // ENHANCE_YOUR_CALM.
    assert_eq!(goaway_code(&mut s), Some(0xb));
    common::eventually("the abuse counter", || {
        (abuse_count(&lb) >= 1).then_some(())
    });
}

/// HTTP/2 with prior knowledge is detected on a plain HTTP bind by its
/// preface (as HAProxy does): no `proto h2` needed, and HTTP/1.1 clients of
/// the same bind are served as before.
#[test]
fn h2c_preface_is_detected_on_a_plain_bind() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let be = http_server("s1");
    let conf = format!(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s {}\n",
        be.addr
    );
    let lb = Lb::start(&conf, 1);
    let addr = lb.addr("frontend", "f");
    let out = curl(&["--http2-prior-knowledge"], &format!("http://{addr}/two"));
    assert!(out.starts_with("s1 GET /two"), "{out}");
    assert!(out.ends_with("\n2 200"), "{out}");
    let out = curl(&["--http1.1"], &format!("http://{addr}/one"));
    assert!(out.starts_with("s1 GET /one"), "{out}");
    assert!(out.ends_with("\n1.1 200"), "{out}");
}

/// The foobar chain over HTTP/2 end to end: a client on TLS (ALPN h2) ->
/// the proxy -> `proto h2` to a `web` section (h2c, detected by its preface)
/// -> static files, and an app prefix on to its app server.
#[test]
fn the_web_tier_answers_http2_end_to_end() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let app = http_server("app");
    let dir = common::TempDir::new("h2web");
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(root.join("big.txt"), &big).unwrap();
    let web = Lb::start(
        &format!(
            "web w\n    bind 127.0.0.1:0\n    root {}\n    app /api/ {}\n",
            root.display(),
            app.addr
        ),
        1,
    );
    let web_addr = web.addr("web", "w");
    // The web tier alone, over h2c.
    let out = curl(
        &["--http2-prior-knowledge"],
        &format!("http://{web_addr}/hello.txt"),
    );
    assert_eq!(out, "hello, world\n\n2 200");
    let front = Lb::start(
        &format!(
            "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0 ssl self-signed localhost alpn h2,http/1.1\n    default_backend b\nbackend b\n    server web {web_addr} proto h2\n"
        ),
        1,
    );
    let port = lb_port(&front);
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let out = curl(&["-k", "--http2"], &url("/hello.txt"));
    assert_eq!(out, "hello, world\n\n2 200");
    let out = curl(&["-k", "--http2"], &url("/api/items"));
    assert!(out.starts_with("app GET /api/items"), "{out}");
    assert!(out.ends_with("\n2 200"), "{out}");
    // A file larger than every flow-control window arrives whole.
    let out = curl(&["-k", "--http2"], &url("/big.txt"));
    assert!(out.ends_with("\n2 200"), "{}", &out[out.len() - 20..]);
    assert_eq!(out.len(), big.len() + "\n2 200".len());
    assert_eq!(&out.as_bytes()[..big.len()], &big[..]);
}

fn lb_port(lb: &Lb) -> u16 {
    lb.addr("frontend", "f").port()
}

/// What HTTP/1 has applies to HTTP/2 streams: ACL routing, deny and redirect
/// rules, X-Forwarded-For, the access log (with the protocol) and the request
/// counter by protocol.
#[test]
fn http1_rules_logs_and_metrics_apply_to_http2() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let (web, api) = (http_server("web"), http_server("api"));
    let dir = common::TempDir::new("h2rules");
    let log = dir.path().join("access.log");
    let conf = format!(
        "global\n    admin 127.0.0.1:0\n    access-log {}\ndefaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    option forwardfor\n    acl api path_beg /api/\n    acl old path_beg /old/\n    acl blocked path_beg /blocked\n    http-request deny if blocked\n    http-request redirect scheme https code 301 if old\n    use_backend api if api\n    default_backend b\nbackend b\n    server web {}\nbackend api\n    server api {}\n",
        log.display(),
        web.addr,
        api.addr
    );
    let lb = Lb::start(&conf, 2);
    let addr = lb.addr("frontend", "f");
    let h2 = |path: &str| {
        curl(
            &["--http2-prior-knowledge"],
            &format!("http://{addr}{path}"),
        )
    };
    let out = h2("/api/items");
    assert!(out.starts_with("api GET /api/items"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-forwarded-for: 127.0.0.1"),
        "{out}"
    );
    assert!(out.ends_with("\n2 200"), "{out}");
    assert!(h2("/index").starts_with("web GET /index"));
    assert!(h2("/blocked").ends_with("\n2 403"));
    let out = curl(
        &[
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-H",
            "Host: www.example.com",
        ],
        &format!("http://{addr}/old/page"),
    );
    assert!(
        out.contains("location: https://www.example.com/old/page"),
        "{out}"
    );
    assert!(out.ends_with("\n2 301"), "{out}");
    let lines = common::eventually("4 access log lines", || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        let l: Vec<String> = t.lines().map(str::to_string).collect();
        (l.len() >= 4).then_some(l)
    });
    assert!(
        lines[0].ends_with("\"GET /api/items HTTP/2.0\"") && lines[0].contains(" f api/api "),
        "{lines:?}"
    );
    let mut c = Client::connect(lb.addr("admin", "admin"));
    c.send(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    let text = c.read(false).expect("metrics").text();
    assert!(
        text.contains("lb_frontend_http_requests_total{frontend=\"f\",version=\"2\"} 4"),
        "{text}"
    );
}

/// A hot reload reaches an open HTTP/2 connection: its next streams use the
/// new conf (here, another server), as a kept-alive HTTP/1 connection's
/// next requests do.
#[test]
fn a_reload_reaches_streams_of_an_open_connection() {
    let (s1, s2) = (http_server("s1"), http_server("s2"));
    let lb = Lb::start(&conf(s1.addr, "", ""), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let body = |path: &'static str| {
            let client = client.clone();
            async move {
                let mut client = client.ready().await.unwrap();
                let (resp, _) = client.send_request(get(path), true).unwrap();
                let mut body = resp.await.unwrap().into_body();
                let mut out = Vec::new();
                while let Some(d) = body.data().await {
                    let d = d.unwrap();
                    let _ = body.flow_control().release_capacity(d.len());
                    out.extend_from_slice(&d);
                }
                String::from_utf8_lossy(&out).into_owned()
            }
        };
        assert!(body("/before").await.starts_with("s1 GET /before"));
        lb.reload(&conf(s2.addr, "", ""));
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let got = body("/after").await;
            if got.starts_with("s2 GET /after") {
                break;
            }
            assert!(got.starts_with("s1 "), "{got}");
            assert!(
                std::time::Instant::now() < deadline,
                "the reload never reached the connection"
            );
            tokio::task::yield_now().await;
        }
    });
}

/// A server that answers an HTTP/2 client's upload early (before the body
/// ended) leaves its connection with an unfinished request body: it must not
/// go back to the keep-alive pool. Here the server discards the rest of the
/// body it was promised, as an HTTP/1.1 server must, so a request pooled onto
/// that connection would be read as body bytes.
#[test]
fn early_answer_to_h2_upload_does_not_pool_the_server_connection() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, s) in listener.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let mut first = true;
                loop {
                    // Read one head.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&tmp[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    buf.drain(..end);
                    let line = head.lines().next().unwrap_or("").to_string();
                    if !(line.starts_with("get ") || line.starts_with("post ")) {
                        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad");
                        return;
                    }
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if first && len > 0 {
                        // Early answer, keep-alive; the body is discarded after.
                        let _ =
                            s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
                        while buf.len() < len {
                            match s.read(&mut tmp) {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&tmp[..k]),
                            }
                        }
                        buf.drain(..len);
                    } else {
                        let body = format!("conn {n}");
                        let _ = s.write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        );
                    }
                    first = false;
                }
            });
        }
    });
    let lb = Lb::start(&conf(addr, "    nbthread 1\n", ""), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let post = http::Request::builder()
            .method("POST")
            .uri("http://localhost/upload")
            .header("content-length", "10")
            .body(())
            .unwrap();
        let mut c = client.clone().ready().await.unwrap();
        let (resp, mut send) = c.send_request(post, false).unwrap();
        send.send_data(Bytes::from_static(b"abcde"), false).unwrap();
        let resp = tokio::time::timeout(WAIT, resp)
            .await
            .expect("early answer in time")
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        // lb has finished the exchange (pooled the connection, or not) once
        // it counted the 401.
        common::eventually("the 401 counted", || {
            let mut c = Client::connect(lb.addr("admin", "admin"));
            c.send(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
            let text = c.read(false)?.text();
            text.contains("lb_frontend_http_responses_total{code=\"4xx\",frontend=\"f\"} 1")
                .then_some(())
        });
        let (status, body) = tokio::time::timeout(WAIT, exchange(&client, get("/next"), None))
            .await
            .expect("answer in time")
            .unwrap();
        assert_eq!(
            (status, String::from_utf8_lossy(&body).to_string()),
            (200, "conn 1".to_string()),
            "the GET went on the connection whose request body was cut"
        );
    });
}

/// The h2c preface split by the network right after "HTTP/2" (a client that
/// writes it in pieces) is still taken for HTTP/2, not refused as an HTTP/1
/// version error.
#[test]
fn h2c_preface_split_in_two_writes_is_detected() {
    use std::io::{Read, Write};
    let be = http_server("s1");
    let conf = format!(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s {}\n",
        be.addr
    );
    let lb = Lb::start(&conf, 1);
    let addr = lb.addr("frontend", "f");
    let mut s = common::connect(addr);
    s.set_nodelay(true).unwrap();
    s.write_all(b"PRI * HTTP/2").unwrap();
    // lb waits for the rest rather than answering the partial line as HTTP/1.
    s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut probe = [0u8; 1];
    assert!(
        s.read(&mut probe).is_err(),
        "lb answered a partial h2c preface"
    );
    let mut rest = b".0\r\n\r\nSM\r\n\r\n".to_vec();
    rest.extend(frame(0x4, 0, 0, &[]));
    let _ = s.write_all(&rest);
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut h = [0u8; 9];
    let mut got = Vec::new();
    let n = s.read(&mut h).unwrap_or(0);
    got.extend_from_slice(&h[..n]);
    // An HTTP/2 server's first frame is SETTINGS (type 4).
    assert!(
        n >= 4 && got[3] == 0x4 && !got.starts_with(b"HTTP/"),
        "lb answered {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// One stream whose server does not take its upload must not stop the
/// uploads of the other streams of the same client connection: lb holds back
/// the stuck stream's credit, so the connection window must be larger than
/// one stream's. (The 2 s pause lets the stuck upload fill what it can; were
/// it shorter the test could only pass, never flake.)
#[test]
fn a_stuck_upload_does_not_stall_other_streams() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&tmp[..k]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                if head.starts_with("post /stuck") {
                    // Never reads the body.
                    std::thread::sleep(std::time::Duration::from_secs(30));
                    return;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + len {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&tmp[..k]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    let lb = Lb::start(&conf(addr, "    nbthread 1\n", ""), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        // A large upload to the server that takes none of it (more than the
        // socket buffers between lb and it hold).
        let big = 64usize << 20;
        let stuck = http::Request::builder()
            .method("POST")
            .uri("http://localhost/stuck")
            .header("content-length", big)
            .body(())
            .unwrap();
        let c = client.clone();
        tokio::spawn(async move {
            let _ = exchange(&c, stuck, Some(Bytes::from(vec![b'x'; big]))).await;
        });
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let quick = http::Request::builder()
            .method("POST")
            .uri("http://localhost/quick")
            .header("content-length", 10)
            .body(())
            .unwrap();
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            exchange(&client, quick, Some(Bytes::from_static(b"0123456789"))),
        )
        .await;
        assert!(
            matches!(r, Ok(Ok((200, _)))),
            "a small POST on another stream: {r:?}"
        );
    });
}

/// Full duplex through lb to an HTTP/2 server (a gRPC bidirectional stream):
/// an echo server that sends each piece back before it takes the next (flow
/// control both ways, as a streaming handler with a bounded queue does). lb
/// must keep relaying the answers while it waits for room toward the server,
/// or neither side moves.
#[test]
fn full_duplex_echo_through_an_h2_server_does_not_deadlock() {
    use std::future::poll_fn;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let Ok(mut c) = h2::server::handshake(s).await else {
                        return;
                    };
                    while let Some(Ok((req, mut respond))) = c.accept().await {
                        tokio::spawn(async move {
                            let mut body = req.into_body();
                            let Ok(mut send) =
                                respond.send_response(http::Response::new(()), false)
                            else {
                                return;
                            };
                            while let Some(Ok(mut d)) = body.data().await {
                                let n = d.len();
                                while !d.is_empty() {
                                    send.reserve_capacity(d.len());
                                    let Some(Ok(cap)) = poll_fn(|cx| send.poll_capacity(cx)).await
                                    else {
                                        return;
                                    };
                                    let part = d.split_to(cap.min(d.len()));
                                    if send.send_data(part, false).is_err() {
                                        return;
                                    }
                                }
                                let _ = body.flow_control().release_capacity(n);
                            }
                            let _ = send.send_data(Bytes::new(), true);
                        });
                    }
                });
            }
        });
    });
    let conf = format!(
        "global\n    nbthread 1\ndefaults\n    mode http\n    timeout client 30s\n    timeout server 30s\nfrontend f\n    bind 127.0.0.1:0 proto h2\n    default_backend b\nbackend b\n    server s {addr} proto h2\n"
    );
    let lb = Lb::start(&conf, 1);
    let h2c = lb.addr("frontend", "f");
    let target = h2c;
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let total = 4usize << 20;
        let req = http::Request::builder()
            .method("POST")
            .uri("http://localhost/echo.Echo/Stream")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut c = client.ready().await.unwrap();
        let (resp, mut send) = c.send_request(req, false).unwrap();
        let up = tokio::spawn(async move {
            let mut left = total;
            while left > 0 {
                let n = left.min(16 << 10);
                send.reserve_capacity(n);
                let Some(Ok(cap)) = poll_fn(|cx| send.poll_capacity(cx)).await else {
                    return;
                };
                let k = cap.min(n);
                left -= k;
                if send
                    .send_data(Bytes::from(vec![b'x'; k]), left == 0)
                    .is_err()
                {
                    return;
                }
            }
        });
        let down = async {
            let mut body = resp.await.unwrap().into_body();
            let mut got = 0usize;
            while let Some(Ok(d)) = body.data().await {
                got += d.len();
                let _ = body.flow_control().release_capacity(d.len());
            }
            got
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), down).await;
        up.abort();
        assert_eq!(got.ok(), Some(total), "echoed bytes in 10 s");
    });
}

/// An HTTP/2 client that sends `Expect: 100-continue` gets `100` from lb
/// before it sends its body (it would otherwise wait out its own timeout).
#[test]
fn expect_100_continue_gets_an_interim_100() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, _) = binds(&lb);
    let out = curl(
        &[
            "-v",
            "--http2-prior-knowledge",
            "--expect100-timeout",
            "30",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "0123456789",
        ],
        &format!("http://{h2c}/echo"),
    );
    // stdout (body, then the -w line) comes before curl's -v trace on stderr.
    assert!(out.contains("< HTTP/2 100"), "{out}");
    assert!(out.contains("\n2 200"), "{out}");
    assert!(out.contains("0123456789"), "{out}");
}

/// Sequential requests on one HTTP/2 connection do not wait: writes batched
/// per turn of the worker still leave in the turn that made them. (A stall of
/// a timer tick per request would take seconds here.)
#[test]
fn sequential_streams_do_not_wait() {
    let be = http_server("s1");
    let lb = Lb::start(&conf(be.addr, "", ""), 3);
    let (h2c, _) = binds(&lb);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let t = std::time::Instant::now();
        for i in 0..200 {
            let mut c = client.clone().ready().await.unwrap();
            let (resp, _) = c.send_request(get("/seq"), true).unwrap();
            let resp = tokio::time::timeout(WAIT, resp)
                .await
                .expect("in time")
                .unwrap();
            assert_eq!(resp.status(), 200, "request {i}");
            let mut body = resp.into_body();
            while let Some(d) = body.data().await {
                let _ = body.flow_control().release_capacity(d.unwrap().len());
            }
        }
        let took = t.elapsed();
        assert!(
            took < std::time::Duration::from_secs(3),
            "200 sequential streams took {took:?}"
        );
    });
}
