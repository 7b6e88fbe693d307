//! The `web` section: static-file conformance (methods, MIME, ranges, conditionals per RFC 9110), traversal refusal, app prefixes.

mod common;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::client::{Client, Resp};
use common::{Lb, TempDir};

const SENTINEL: &str = "SENTINEL-outside-the-root-7f3a";

/// A site: `www/` is the root; `secret.txt` (the sentinel) sits next to it, outside.
struct Site {
    _dir: TempDir,
    lb: Lb,
    big: Vec<u8>,
}

fn site_with(extra_conf: &str) -> Site {
    let dir = TempDir::new("web");
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    std::fs::write(dir.path().join("secret.txt"), SENTINEL).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret.txt"), SENTINEL).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
    std::fs::write(root.join("index.html"), "<h1>root</h1>\n").unwrap();
    std::fs::write(root.join("dir/index.html"), "<h1>dir</h1>\n").unwrap();
    std::fs::write(root.join("digits.txt"), "0123456789").unwrap();
    std::fs::write(root.join("empty.txt"), "").unwrap();
    std::fs::write(root.join("space name.txt"), "spaced").unwrap();
    for f in [
        "a.css",
        "a.js",
        "a.json",
        "a.png",
        "a.svg",
        "a.woff2",
        "a.pdf",
        "a.wasm",
        "a.mp4",
        "a.JPG",
        "a.unknownext",
        "noext",
    ] {
        std::fs::write(root.join(f), "x").unwrap();
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    // Symlinks: two that leave the root, one that stays inside.
    symlink(dir.path().join("secret.txt"), root.join("escape.txt")).unwrap();
    symlink("../outside", root.join("escdir")).unwrap();
    symlink("hello.txt", root.join("inner.txt")).unwrap();
    // A FIFO: opening it must neither block nor be served.
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let conf = format!(
        "web site\n    bind 127.0.0.1:0\n    root {}\n{extra_conf}",
        root.display()
    );
    let lb = Lb::start(&conf, 1);
    Site { _dir: dir, lb, big }
}

fn site() -> Site {
    site_with("")
}

impl Site {
    fn client(&self) -> Client {
        Client::connect(self.lb.addr("web", "site"))
    }
    /// Sends a raw request on a fresh connection and reads one response.
    fn raw(&self, req: &str) -> Resp {
        let mut c = self.client();
        c.send(req.as_bytes());
        c.read(req.starts_with("HEAD ")).expect("a response")
    }
    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw(&req)
    }
}

#[test]
fn get_head_and_headers() {
    let s = site();
    let mut c = s.client();
    let r = c.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("etag").unwrap().starts_with('"'));
    assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
    assert!(r.header("date").is_some());
    // HEAD: the same headers, no body; the connection stays usable.
    c.send(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.read(true).unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("13"));
    assert_eq!(h.header("etag"), r.header("etag"));
    let again = c.get("/space%20name.txt");
    assert_eq!((again.status, again.text().as_str()), (200, "spaced"));
    // A symlink that stays inside the root is followed.
    assert_eq!(c.get("/inner.txt").body, b"hello, world\n");
    // Empty file.
    let e = c.get("/empty.txt");
    assert_eq!((e.status, e.header("content-length")), (200, Some("0")));
    // Query strings are ignored for files.
    assert_eq!(c.get("/hello.txt?v=3").status, 200);
    assert_eq!(c.get("/healthz").text(), "ok\n");
}

#[test]
fn mime_types_by_extension() {
    let s = site();
    let mut c = s.client();
    for (file, want) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/a.css", "text/css; charset=utf-8"),
        ("/a.js", "text/javascript; charset=utf-8"),
        ("/a.json", "application/json"),
        ("/a.png", "image/png"),
        ("/a.svg", "image/svg+xml"),
        ("/a.woff2", "font/woff2"),
        ("/a.pdf", "application/pdf"),
        ("/a.wasm", "application/wasm"),
        ("/a.mp4", "video/mp4"),
        ("/a.JPG", "image/jpeg"),
        ("/a.unknownext", "application/octet-stream"),
        ("/noext", "application/octet-stream"),
    ] {
        let r = c.get(file);
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.header("content-type"), Some(want), "{file}");
    }
}

#[test]
fn methods_other_than_get_and_head_get_405() {
    let s = site();
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = s.raw(&format!(
            "{m} /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
        ));
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{m}");
    }
    // The connection survives a 405 whose body was fully received.
    let mut c = s.client();
    c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 405);
    assert_eq!(c.read(false).unwrap().status, 200);
}

/// A 405 sent while the client is still writing a large body: the server
/// reads and drops the rest before closing (a lingering close), so the client
/// writes it all and sees a clean end, not a reset.
#[test]
fn a_405_reaches_a_client_still_sending_its_body() {
    use std::io::Read;
    let s = site();
    let mut c = s.client();
    let len = 2usize << 20;
    c.send(
        format!("POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    );
    let mut w = c.r.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&vec![b'u'; len]).is_ok());
    assert_eq!(c.read(false).unwrap().status, 405);
    let mut rest = Vec::new();
    let end = c.r.read_to_end(&mut rest);
    assert!(matches!(end, Ok(0)), "after the answer: {end:?}");
    assert!(writer.join().unwrap(), "the upload was cut");
}

#[test]
fn directories_serve_their_index_or_404() {
    let s = site();
    let mut c = s.client();
    assert_eq!(c.get("/").text(), "<h1>root</h1>\n");
    assert_eq!(c.get("/dir/").text(), "<h1>dir</h1>\n");
    let r = c.get("/dir?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/?x=1"));
    assert_eq!(c.get("/emptydir/").status, 404);
    assert_eq!(c.get("/missing.txt").status, 404);
    assert_eq!(c.get("/missing/dir/").status, 404);
    assert_eq!(c.get("/hello.txt/").status, 404);
    // Not a regular file: refused without blocking on the FIFO.
    assert_eq!(c.get("/fifo").status, 403);
}

#[test]
fn range_requests() {
    let s = site();
    let mut c = s.client();
    // (Range, status, body, Content-Range)
    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        ("bytes=0-0", 206, "0", Some("bytes 0-0/10")),
        ("bytes=2-5", 206, "2345", Some("bytes 2-5/10")),
        ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
        ("bytes=-3", 206, "789", Some("bytes 7-9/10")),
        ("bytes=-30", 206, "0123456789", Some("bytes 0-9/10")),
        ("bytes=5-100", 206, "56789", Some("bytes 5-9/10")),
        ("bytes=9-9", 206, "9", Some("bytes 9-9/10")),
        ("bytes=10-", 416, "", Some("bytes */10")),
        ("bytes=10-20", 416, "", Some("bytes */10")),
        ("bytes=-0", 416, "", Some("bytes */10")),
        // Invalid or unsupported: ignored, the whole file with 200.
        ("bytes=5-2", 200, "0123456789", None),
        ("bytes=abc", 200, "0123456789", None),
        ("lines=1-2", 200, "0123456789", None),
        ("bytes=0-1,4-5", 200, "0123456789", None),
    ];
    for (range, status, body, cr) in cases {
        c.send(format!("GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\r\n").as_bytes());
        let r = c.read(false).unwrap();
        assert_eq!(r.status, *status, "{range}");
        assert_eq!(r.header("content-range"), *cr, "{range}");
        if *status != 416 {
            assert_eq!(r.text(), *body, "{range}");
            assert_eq!(
                r.header("content-length"),
                Some(body.len().to_string().as_str())
            );
        }
    }
    // An empty file has no satisfiable range.
    assert_eq!(
        s.get_with("/empty.txt", &[("Range", "bytes=0-")]).status,
        416
    );
    // HEAD ignores Range (defined for GET only).
    let h = s.raw("HEAD /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\n\r\n");
    assert_eq!((h.status, h.header("content-length")), (200, Some("10")));
    // A range of a large (sendfile) file.
    let r = s.get_with("/big.bin", &[("Range", "bytes=100000-199999")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &s.big[100_000..200_000]);
}

#[test]
fn conditional_requests() {
    let s = site();
    let base = s.get_with("/digits.txt", &[]);
    let etag = base.header("etag").unwrap().to_string();
    let lm = base.header("last-modified").unwrap().to_string();
    let weak = format!("W/{etag}");
    let other = "\"nope\"";
    let list = format!("\"a\", {etag}");
    let old = "Sun, 06 Nov 1994 08:49:37 GMT";
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    // (headers, status, body)
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("If-None-Match", &etag)], 304, ""),
        (vec![("If-None-Match", &list)], 304, ""),
        (vec![("If-None-Match", &weak)], 304, ""),
        (vec![("If-None-Match", "*")], 304, ""),
        (vec![("If-None-Match", other)], 200, "0123456789"),
        (vec![("If-Modified-Since", &lm)], 304, ""),
        (vec![("If-Modified-Since", future)], 304, ""),
        (vec![("If-Modified-Since", old)], 200, "0123456789"),
        (vec![("If-Modified-Since", "yesterday")], 200, "0123456789"),
        // If-None-Match wins over If-Modified-Since.
        (
            vec![("If-None-Match", other), ("If-Modified-Since", future)],
            200,
            "0123456789",
        ),
        (vec![("If-Match", &etag)], 200, "0123456789"),
        (vec![("If-Match", "*")], 200, "0123456789"),
        (vec![("If-Match", other)], 412, ""),
        // If-Match uses the strong comparison: a weak tag never matches.
        (vec![("If-Match", &weak)], 412, ""),
        (vec![("If-Unmodified-Since", old)], 412, ""),
        (vec![("If-Unmodified-Since", future)], 200, "0123456789"),
        // If-Range: the range only if the validator is current.
        (vec![("Range", "bytes=0-1"), ("If-Range", &etag)], 206, "01"),
        (vec![("Range", "bytes=0-1"), ("If-Range", &lm)], 206, "01"),
        (
            vec![("Range", "bytes=0-1"), ("If-Range", other)],
            200,
            "0123456789",
        ),
        (
            vec![("Range", "bytes=0-1"), ("If-Range", old)],
            200,
            "0123456789",
        ),
    ];
    for (headers, status, body) in &cases {
        let r = s.get_with("/digits.txt", headers);
        assert_eq!(r.status, *status, "{headers:?}");
        if *status == 304 {
            assert_eq!(r.header("etag"), Some(etag.as_str()), "{headers:?}");
            assert!(r.header("content-length").is_none());
        } else if *status != 412 {
            assert_eq!(r.text(), *body, "{headers:?}");
        }
    }
}

#[test]
fn traversal_never_reaches_the_sentinel() {
    let s = site();
    let targets = [
        "/../secret.txt",
        "/..",
        "/dir/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/dir/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/dir%2f..%2f..%2fsecret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/%25252e%25252e/secret.txt",
        "/..%5csecret.txt",
        "/%2e%2e%5csecret.txt",
        "/dir\\..\\..\\secret.txt",
        "/..\\secret.txt",
        "/secret.txt%00.html",
        "/hello.txt%00/../../secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/%e0%80%ae%e0%80%ae/secret.txt",
        "/escape.txt",
        "/escdir/secret.txt",
        "/escdir/",
        "/./secret.txt",
        "//../secret.txt",
        "/dir/./../../secret.txt",
        "http://t/../secret.txt",
        "http://t/%2e%2e/secret.txt",
        "../secret.txt",
        "secret.txt",
    ];
    for t in targets {
        let raw = format!("GET {t} HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut conn = common::connect(s.lb.addr("web", "site"));
        conn.write_all(raw.as_bytes()).unwrap();
        let _ = conn.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains(SENTINEL), "{t} leaked the sentinel");
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{t}: no status in {text:?}"));
        assert!(
            [400, 403, 404].contains(&status),
            "{t}: status {status}, want 400/403/404"
        );
    }
    // The sentinel exists, so the refusals above were real.
    assert!(Path::new(&s._dir.path().join("secret.txt")).exists());
}

#[test]
fn large_files_and_pipelining() {
    let s = site();
    let mut c = s.client();
    let r = c.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), s.big.len());
    assert!(r.body == s.big, "big file bytes differ");
    // Three requests in one write: three responses, in order, then keep going.
    c.send(
        b"GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nHEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read(false).unwrap().text(), "0123456789");
    assert_eq!(c.read(false).unwrap().body.len(), s.big.len());
    let h = c.read(true).unwrap();
    assert_eq!(h.header("content-length"), Some("13"));
    assert_eq!(c.get("/hello.txt").status, 200);
    // Connection: close is honoured.
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
    // A malformed request gets 400 and a close.
    let mut c = s.client();
    c.send(b"GET /x HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
    assert_eq!(c.read(false).unwrap().status, 400);
    assert!(c.is_closed());
}

#[test]
fn http_10_and_cache_control() {
    let s = site_with("    expires 1h\n");
    let r = s.raw("GET /hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    let mut c = s.client();
    c.send(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(c.get("/digits.txt").text(), "0123456789");
}

#[test]
fn app_prefix_is_proxied() {
    let app = common::servers::http_server("upstream-app");
    let s = site_with(&format!(
        "    app /api/ {}\n    app /echo {}\n",
        app.addr, app.addr
    ));
    let mut c = s.client();
    let r = c.get("/api/things?x=1");
    assert_eq!(r.status, 200);
    assert!(
        r.text().starts_with("upstream-app GET /api/things?x=1"),
        "{}",
        r.text()
    );
    // Bodies pass through, and static files still work on the same connection.
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read(false).unwrap().text(), "hello");
    assert_eq!(c.get("/hello.txt").text(), "hello, world\n");
    assert_eq!(c.get("/api/again").status, 200);
    // A path outside the prefix is static, even if it looks similar.
    assert_eq!(c.get("/apiary").status, 404);
}

#[test]
fn sigterm_closes_idle_connections_at_once() {
    let app = common::servers::http_server("upstream-app");
    // Keep-alive and drain limits far beyond the test's waits.
    let mut s = site_with(&format!(
        "    app /api/ {}\nglobal\n    timeout drain 60s\n",
        app.addr
    ));
    let mut idle = s.client();
    assert_eq!(idle.get("/api/x").status, 200);
    assert_eq!(idle.get("/hello.txt").status, 200);
    s.lb.signal(libc::SIGTERM);
    s.lb.wait_log("draining");
    // The client's idle keep-alive connection ends (EOF, not a timeout)...
    idle.expect_closed("an idle connection, by the drain");
    // ...and so does the pooled connection to the app.
    common::eventually("the app connection closed", || {
        (app.closed.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    });
    assert_eq!(s.lb.wait_exit(), Some(0));
    s.lb.wait_log("all connections finished");
}

#[test]
fn app_down_gives_503() {
    let dead = common::servers::dead_addr();
    let s = site_with(&format!("    app /api/ {dead}\n"));
    let r = s.get_with("/api/x", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(s.get_with("/hello.txt", &[]).status, 200);
}

#[test]
fn missing_root_fails_the_start() {
    let (code, _, err, _, _d) =
        common::check("web w\n    bind 127.0.0.1:0\n    root /nonexistent\n    bogus 1\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown keyword 'bogus' in web section"),
        "{err}"
    );
    let (dir, path) =
        common::write_conf("web w\n    bind 127.0.0.1:0\n    root /nonexistent/www\n");
    let out = std::process::Command::new(common::lb_bin())
        .arg("--conf")
        .arg(&path)
        .output()
        .unwrap();
    drop(dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/www"));
}

#[test]
fn reload_swaps_the_web_section_and_keeps_open_connections() {
    let dir = TempDir::new("webreload");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(one.join("f.txt"), "first root").unwrap();
    std::fs::write(two.join("f.txt"), "second root").unwrap();
    let conf = |root: &Path, extra: &str| {
        format!(
            "web site\n    bind 127.0.0.1:0\n    root {}\n{extra}",
            root.display()
        )
    };
    let lb = Lb::start(&conf(&one, ""), 1);
    let addr = lb.addr("web", "site");
    let mut old = Client::connect(addr);
    assert_eq!(old.get("/f.txt").text(), "first root");
    // A new root and a cache policy: new connections see both.
    lb.reload(&conf(&two, "    expires 1h\n"));
    assert!(lb.wait_log("reloaded:").contains("1 changes"));
    let r = Client::connect(addr).get("/f.txt");
    assert_eq!(r.text(), "second root");
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    // A connection from before the reload finishes with the conf it started with.
    assert_eq!(old.get("/f.txt").text(), "first root");
    // A root that does not exist fails the reload with its line; the last good
    // conf keeps serving.
    lb.reload(&conf(&dir.path().join("missing"), ""));
    let line = lb.wait_log("reload failed:");
    assert!(line.contains(":3:") && line.contains("missing"), "{line}");
    assert_eq!(Client::connect(addr).get("/f.txt").text(), "second root");
    // Lines moved but nothing changed: no change counted.
    lb.reload(&format!("\n\n{}", conf(&two, "    expires 1h\n")));
    assert!(lb.wait_log("reloaded:").contains("0 changes"));
    // A new address needs a restart, and says so.
    lb.reload(&conf(&two, "    expires 1h\n").replace("127.0.0.1:0", "127.0.0.2:0"));
    lb.wait_log("web site: a new bind address takes effect at the next start");
    assert_eq!(Client::connect(addr).get("/f.txt").text(), "second root");
}

/// Pipelined requests, some static and some for an app, sent in one write:
/// the answers queued for static files leave before the proxied one, in order.
#[test]
fn pipelined_static_and_app_answers_keep_their_order() {
    let app = common::servers::http_server("upstream-app");
    let s = site_with(&format!("    app /api/ {}\n", app.addr));
    let mut c = s.client();
    c.send(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /api/one HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /api/two HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.read(false).unwrap().text(), "hello, world\n");
    assert!(c
        .read(false)
        .unwrap()
        .text()
        .starts_with("upstream-app GET /api/one"));
    assert_eq!(c.read(false).unwrap().text(), "0123456789");
    assert!(c
        .read(false)
        .unwrap()
        .text()
        .starts_with("upstream-app GET /api/two"));
    assert_eq!(c.get("/hello.txt").status, 200);
}

/// A file far larger than the socket buffers: sendfile(2) fills the socket
/// and waits for room (through the ring where the worker has one), and the
/// body arrives whole and in order; the connection then serves the next request.
#[test]
fn a_large_file_waits_for_room_and_arrives_whole() {
    use std::io::Read;
    let s = site();
    let big: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(s._dir.path().join("www/huge.bin"), &big).unwrap();
    let mut c = s.client();
    c.send(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        c.r.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("content-length: {}\r\n", big.len())),
        "{head}"
    );
    // Small reads: the server's sends keep meeting a full socket.
    let mut body = vec![0u8; big.len()];
    for chunk in body.chunks_mut(16 << 10) {
        c.r.read_exact(chunk).unwrap();
    }
    assert!(body == big, "huge file bytes differ");
    assert_eq!(c.get("/hello.txt").text(), "hello, world\n");
}
