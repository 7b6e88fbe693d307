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
    // TEMP until pipeline lands: assert!(out.starts_with("s1 GET /hello"), "{out}");
    let out = curl(
        &["-k", "--http2"],
        &format!("https://localhost:{}/tls", tls.port()),
    );
    assert!(out.ends_with("\n2 200"), "{out}");
    // TEMP until pipeline lands: assert!(out.starts_with("s1 GET /tls"), "{out}");
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
        assert_eq!(e.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{e}");
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
