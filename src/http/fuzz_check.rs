//! Invariant checks the fuzz targets and `tests/fuzz_seeds.rs` share: each takes arbitrary bytes and panics on a broken invariant.
//!
//! Kept in the library so committed fuzz seeds replay under plain `cargo test`.

use bytes::BytesMut;

use super::body::{write_chunk_header, Chunk, ChunkError, ChunkedDecoder, LAST_CHUNK};
use super::head::{
    parse_request, parse_response_for, BodyKind, HeadLimits, RequestHead, ResponseHead, Span,
};

/// Independent, slow statement of the byte rules every accepted head obeys.
fn oracle_head_bytes(buf: &[u8]) {
    assert!(buf.ends_with(b"\r\n\r\n"), "head must end in CRLF CRLF");
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && buf[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert_eq!(buf.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\t' => {}
            0..=0x1f | 0x7f => panic!("control byte {b:#x} at {i}"),
            _ => {}
        }
    }
}

fn oracle_spans(buf: &[u8], spans: &[Span]) {
    for s in spans {
        assert!(
            s.start <= s.end && s.end as usize <= buf.len(),
            "span {s:?} out of bounds"
        );
    }
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn oracle_headers(buf: &[u8], headers: &[super::head::Header]) {
    for h in headers {
        let name = &buf[h.name.range()];
        let value = &buf[h.value.range()];
        assert!(
            !name.is_empty() && name.iter().all(|&b| tchar(b)),
            "bad name {name:?}"
        );
        assert_eq!(buf[h.name.end as usize], b':', "name must meet the colon");
        assert!(
            value.first().is_none_or(|&b| b != b' ' && b != b'\t')
                && value.last().is_none_or(|&b| b != b' ' && b != b'\t'),
            "value not trimmed"
        );
    }
}

fn count(buf: &[u8], headers: &[super::head::Header], name: &str) -> usize {
    headers
        .iter()
        .filter(|h| buf[h.name.range()].eq_ignore_ascii_case(name.as_bytes()))
        .count()
}

type ReqView = (
    Vec<u8>,
    Vec<u8>,
    u8,
    Vec<(Vec<u8>, Vec<u8>, bool)>,
    BodyKind,
    bool,
    bool,
    bool,
    Option<Vec<u8>>,
);

fn req_view(h: &RequestHead) -> ReqView {
    (
        h.method().to_vec(),
        h.target().to_vec(),
        h.minor_version,
        h.headers
            .iter()
            .map(|x| {
                (
                    h.slice(x.name).to_vec(),
                    h.slice(x.value).to_vec(),
                    x.hop_by_hop,
                )
            })
            .collect(),
        h.body,
        h.keep_alive,
        h.upgrade,
        h.expect_continue,
        h.host.map(|s| h.slice(s).to_vec()),
    )
}

/// Request head: never panics; what it accepts obeys the byte rules, splits off exactly the
/// head, re-serializes to bytes that parse to the same head, and no prefix of it is an error.
pub fn request_head(data: &[u8]) {
    let limits = HeadLimits::default();
    let mut buf = BytesMut::from(data);
    let Ok(Some(h)) = parse_request(&mut buf, &limits) else {
        return;
    };
    let n = h.buf.len();
    let lead = data.len() - n - buf.len();
    assert!(
        data[..lead].chunks(2).all(|c| c == b"\r\n"),
        "only CRLFs are skipped"
    );
    assert_eq!(&data[lead..lead + n], &h.buf[..]);
    assert_eq!(&data[lead + n..], &buf[..]);
    assert!(n <= limits.max_bytes);
    oracle_head_bytes(&h.buf);
    let mut spans = vec![h.method, h.target];
    spans.extend(h.host);
    spans.extend(h.headers.iter().flat_map(|x| [x.name, x.value]));
    oracle_spans(&h.buf, &spans);
    oracle_headers(&h.buf, &h.headers);
    assert!(h.minor_version <= 1);
    assert!(h.target().iter().all(|&b| (0x21..=0x7e).contains(&b)));
    let cl = count(&h.buf, &h.headers, "content-length");
    let te = count(&h.buf, &h.headers, "transfer-encoding");
    let hosts = count(&h.buf, &h.headers, "host");
    match h.body {
        BodyKind::Chunked => assert!(cl == 0 && te == 1 && h.minor_version == 1),
        BodyKind::Length(_) => assert!(cl >= 1 && te == 0),
        BodyKind::None => assert!(cl == 0 && te == 0),
        BodyKind::UntilClose => panic!("a request is never read until close"),
    }
    assert!(hosts <= 1 && (h.minor_version == 0 || hosts == 1));
    for x in &h.headers {
        if h.slice(x.name).eq_ignore_ascii_case(b"transfer-encoding") {
            assert!(!x.hop_by_hop, "Transfer-Encoding is kept");
        }
    }

    // re-serialize and re-parse
    let mut out = Vec::with_capacity(n);
    out.extend_from_slice(h.method());
    out.push(b' ');
    out.extend_from_slice(h.target());
    out.extend_from_slice(if h.minor_version == 1 {
        b" HTTP/1.1\r\n"
    } else {
        b" HTTP/1.0\r\n"
    });
    for x in &h.headers {
        out.extend_from_slice(h.slice(x.name));
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.slice(x.value));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut again = BytesMut::from(&out[..]);
    let loose = HeadLimits {
        max_bytes: out.len().max(limits.max_bytes),
        ..limits
    };
    let h2 = match parse_request(&mut again, &loose) {
        Ok(Some(h2)) => h2,
        other => panic!("re-serialized head did not parse: {other:?}"),
    };
    assert!(again.is_empty());
    assert_eq!(req_view(&h), req_view(&h2));
    assert_eq!(h.path(), h2.path());
    assert_eq!(h.form, h2.form);

    // an accepted head's prefixes are incomplete, never errors
    for k in [1, n / 2, n - 1] {
        if k == 0 || k >= n {
            continue;
        }
        let mut p = BytesMut::from(&data[..lead + k]);
        assert_eq!(
            parse_request(&mut p, &limits).map(|o| o.is_some()),
            Ok(false),
            "prefix {k} of an accepted head"
        );
    }
}

type ResView = (
    u16,
    u8,
    Vec<u8>,
    Vec<(Vec<u8>, Vec<u8>, bool)>,
    BodyKind,
    bool,
);

fn res_view(r: &ResponseHead) -> ResView {
    (
        r.status,
        r.minor_version,
        r.slice(r.reason).to_vec(),
        r.headers
            .iter()
            .map(|x| {
                (
                    r.slice(x.name).to_vec(),
                    r.slice(x.value).to_vec(),
                    x.hop_by_hop,
                )
            })
            .collect(),
        r.body,
        r.keep_alive,
    )
}

/// Response head (first byte picks the request method): never panics; what it accepts obeys
/// the byte and framing rules and re-serializes to bytes that parse to the same head.
pub fn response_head(data: &[u8]) {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let method: &[u8] = match sel % 4 {
        0 => b"HEAD",
        1 => b"CONNECT",
        _ => b"GET",
    };
    let limits = HeadLimits::default();
    let mut buf = BytesMut::from(data);
    let Ok(Some(r)) = parse_response_for(&mut buf, &limits, method) else {
        return;
    };
    let n = r.buf.len();
    let lead = data.len() - n - buf.len();
    assert_eq!(&data[lead..lead + n], &r.buf[..]);
    oracle_head_bytes(&r.buf);
    let mut spans = vec![r.reason];
    spans.extend(r.headers.iter().flat_map(|x| [x.name, x.value]));
    oracle_spans(&r.buf, &spans);
    oracle_headers(&r.buf, &r.headers);
    let cl = count(&r.buf, &r.headers, "content-length");
    let te = count(&r.buf, &r.headers, "transfer-encoding");
    assert!(!(cl > 0 && te > 0), "CL with TE accepted");
    if method == b"HEAD" || r.status < 200 || r.status == 204 || r.status == 304 {
        assert_eq!(r.body, BodyKind::None);
    }
    if r.body == BodyKind::UntilClose {
        assert!(!r.keep_alive);
    }

    let mut out = Vec::with_capacity(n);
    out.extend_from_slice(if r.minor_version == 1 {
        b"HTTP/1.1 "
    } else {
        b"HTTP/1.0 "
    });
    out.extend_from_slice(format!("{:03}", r.status).as_bytes());
    if !r.reason.is_empty() || r.buf[12] == b' ' {
        out.push(b' ');
        out.extend_from_slice(r.slice(r.reason));
    }
    out.extend_from_slice(b"\r\n");
    for x in &r.headers {
        out.extend_from_slice(r.slice(x.name));
        out.extend_from_slice(b": ");
        out.extend_from_slice(r.slice(x.value));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut again = BytesMut::from(&out[..]);
    let loose = HeadLimits {
        max_bytes: out.len().max(limits.max_bytes),
        ..limits
    };
    let r2 = match parse_response_for(&mut again, &loose, method) {
        Ok(Some(r2)) => r2,
        other => panic!("re-serialized response did not parse: {other:?}"),
    };
    assert_eq!(res_view(&r), res_view(&r2));
}

/// What decoding produced: payload, trailers, error, leftover bytes, done.
type Decoded = (Vec<u8>, Option<Vec<u8>>, Option<ChunkError>, Vec<u8>, bool);

fn decode_in_pieces(input: &[u8], pieces: &[usize], max_trailer: usize) -> Decoded {
    let mut d = ChunkedDecoder::new(max_trailer);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut trailers = None;
    let mut pos = 0;
    let mut k = 0;
    loop {
        loop {
            match d.decode(&mut buf) {
                Ok(Some(Chunk::Data(b))) => {
                    assert!(!b.is_empty(), "empty Data chunk");
                    assert!(trailers.is_none(), "Data after Trailers");
                    data.extend_from_slice(&b);
                }
                Ok(Some(Chunk::Trailers(t))) => {
                    assert!(trailers.is_none(), "Trailers twice");
                    assert!(t.ends_with(b"\r\n"));
                    trailers = Some(t.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (data, trailers, Some(e), Vec::new(), false),
            }
        }
        if pos >= input.len() {
            break;
        }
        let n = pieces[k % pieces.len()].clamp(1, input.len() - pos);
        k += 1;
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
    }
    assert_eq!(d.is_done(), trailers.is_some());
    (data, trailers, None, buf.to_vec(), d.is_done())
}

/// Chunked: never panics; decoding any split of the input yields the same payload, trailers,
/// error and leftover as decoding it whole; a decoded body re-framed as one chunk decodes to
/// the same payload and trailers. The first two bytes choose the split sizes.
pub fn chunked(data: &[u8]) {
    let (pieces, input) = match data {
        [a, b, rest @ ..] => (
            [
                (*a as usize % 7) + 1,
                (*b as usize % 13) + 1,
                1,
                (*a as usize >> 4) + 2,
            ],
            rest,
        ),
        _ => return,
    };
    let max_trailer = 256;
    let whole = decode_in_pieces(input, &[usize::MAX], max_trailer);
    assert_eq!(decode_in_pieces(input, &pieces, max_trailer), whole);
    assert_eq!(decode_in_pieces(input, &[1], max_trailer), whole);
    if whole.4 {
        let mut framed = BytesMut::new();
        if !whole.0.is_empty() {
            write_chunk_header(&mut framed, whole.0.len());
            framed.extend_from_slice(&whole.0);
            framed.extend_from_slice(b"\r\n");
        }
        framed.extend_from_slice(LAST_CHUNK);
        framed.extend_from_slice(whole.1.as_deref().unwrap_or(b"\r\n"));
        let again = decode_in_pieces(&framed, &[usize::MAX], max_trailer);
        assert_eq!(again.0, whole.0);
        assert_eq!(again.1, whole.1);
        assert!(again.4 && again.3.is_empty());
    }
}

/// How the scripted backend and the final check split a byte stream into requests:
/// `Ok(Some(n))` a complete request (head and body) of `n` bytes; `Ok(None)` incomplete.
fn complete_request(buf: &[u8]) -> Result<Option<usize>, String> {
    let limits = HeadLimits {
        max_bytes: 1 << 20,
        max_headers: 10_000,
    };
    let mut rest = BytesMut::from(buf);
    let head = match parse_request(&mut rest, &limits) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("invalid request head: {e:?}")),
    };
    let head_len = buf.len() - rest.len();
    match head.body {
        BodyKind::None => Ok(Some(head_len)),
        BodyKind::Length(n) => Ok(((rest.len() as u64) >= n).then_some(head_len + n as usize)),
        BodyKind::Chunked => {
            let mut d = ChunkedDecoder::new(64 << 10);
            let before = rest.len();
            loop {
                match d.decode(&mut rest) {
                    Ok(Some(_)) if d.is_done() => return Ok(Some(head_len + before - rest.len())),
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(format!("invalid chunked body: {e:?}")),
                }
            }
        }
        BodyKind::UntilClose => Err("a request read until close".into()),
    }
}

/// Checks what one backend connection received: complete, valid requests, one after
/// another; only the last may lack the end of its body (the client went away mid-body);
/// none was denied by the frontend's rules.
fn check_backend_stream(all: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < all.len() {
        let rest = &all[at..];
        let mut head_buf = BytesMut::from(rest);
        let loose = HeadLimits {
            max_bytes: 1 << 20,
            max_headers: 10_000,
        };
        match parse_request(&mut head_buf, &loose) {
            Ok(Some(h)) => assert!(
                !h.path().starts_with(b"/deny"),
                "a denied request reached the backend"
            ),
            other => panic!(
                "backend received bytes that are not a complete request head: {other:?} in {:?}",
                String::from_utf8_lossy(rest)
            ),
        }
        match complete_request(rest) {
            Ok(Some(len)) => {
                at += len;
                n += 1;
            }
            Ok(None) => return n + 1, // a body cut short by the client: nothing may follow
            Err(e) => panic!("backend received {e}: {:?}", String::from_utf8_lossy(rest)),
        }
    }
    n
}

/// The scripted backend's side of one connection: records every byte, answers each
/// complete request with `200 ok`, stops at EOF or after an idle second.
async fn backend_conn(mut s: tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
    let mut all = Vec::new();
    let mut answered = 0;
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = match tokio::time::timeout(std::time::Duration::from_secs(1), s.read(&mut chunk))
            .await
        {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        all.extend_from_slice(&chunk[..n]);
        while let Ok(Some(len)) = complete_request(&all[answered..]) {
            let head = all[answered..].starts_with(b"HEAD ");
            answered += len;
            let resp: &[u8] = if head {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            if s.write_all(resp).await.is_err() {
                return all;
            }
        }
    }
    all
}

/// The listeners and runtime one fuzzing thread reuses for every input.
struct ProxyHarness {
    rt: tokio::runtime::Runtime,
    front: tokio::net::TcpListener,
    back: std::sync::Arc<tokio::net::TcpListener>,
}

thread_local! {
    static HARNESS: std::cell::OnceCell<ProxyHarness> = const { std::cell::OnceCell::new() };
}

fn harness() -> ProxyHarness {
    // A worker-like runtime: with an io_uring where the kernel allows one, so
    // that server connections, and client ones when the selector says so, go
    // through the ring as in lb.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::uring::flush)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _ = crate::uring::establish(0, &[crate::uring::Mode::Signal]).await;
    });
    let (front, back) = rt.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        )
    });
    ProxyHarness {
        rt,
        front,
        back: std::sync::Arc::new(back),
    }
}

/// HTTP proxy state machine (first byte picks options: small heads, forwardfor, a body
/// limit, a deny rule for the client's own source, a request rate limit, the client socket
/// on the io_uring (where the kernel allows it; server sockets always are); the rest is what
/// the client sends): never panics; drives the real per-request proxy code
/// (`proxy::serve_fixed`: the HTTP/1 driver and the pipeline) over loopback against a scripted backend that records every byte, and
/// checks the backend received only complete, valid requests (the last one's body may be
/// cut short when the client's was), never one the frontend denies, nothing at all when the
/// client's source is denied, no more than the rate limit, and no more requests than the
/// client's bytes hold heads.
pub fn proxy(data: &[u8]) {
    if let Some((&sel, input)) = data.split_first() {
        proxy_run(sel, input);
    }
}

/// One proxy run; returns how many requests reached the backend.
fn proxy_run(sel: u8, input: &[u8]) -> usize {
    HARNESS.with(|cell| {
        let h = cell.get_or_init(harness);
        let back_addr = h.back.local_addr().expect("addr");
        let text = format!(
            "global\n    tune.bufsize {}\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             frontend f\n    bind 127.0.0.1:0\n    http-request deny if {{ path_beg /deny }}\n{}{}{}{}    default_backend b\n\
             backend b\n    http-reuse never\n    server s {back_addr}\n",
            if sel & 1 == 0 { "16k" } else { "1k" },
            if sel & 2 == 0 { "" } else { "    option forwardfor\n" },
            if sel & 4 == 0 { "" } else { "    max-body-size 16\n" },
            if sel & 8 == 0 { "" } else { "    http-request deny deny_status 451 if { src 127.0.0.0/8 ::1 }\n" },
            if sel & 16 == 0 { "" } else { "    limit http-req-rate 2/s\n" },
        );
        let conf = crate::conf::parse_conf("fuzz", &text).expect("fuzz conf");
        let snap = crate::snapshot::Snapshot::build(conf);
        let Some(fe) = snap.frontends.get("f").cloned() else {
            panic!("no frontend");
        };
        let front_addr = h.front.local_addr().expect("addr");
        let received = h.rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let back = h.back.clone();
            let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let acceptor = {
                let conns = conns.clone();
                tokio::spawn(async move {
                    while let Ok((s, _)) = back.accept().await {
                        let task = tokio::spawn(backend_conn(s));
                        if let Ok(mut c) = conns.lock() {
                            c.push(task);
                        }
                    }
                })
            };
            let client = tokio::net::TcpStream::connect(front_addr).await.expect("connect");
            let _ = socket2::SockRef::from(&client).set_linger(Some(std::time::Duration::ZERO));
            let (accepted, peer) = h.front.accept().await.expect("accept");
            let _ = socket2::SockRef::from(&accepted).set_linger(Some(std::time::Duration::ZERO));
            let input = input.to_vec();
            let client_task = tokio::spawn(async move {
                let (mut r, mut w) = client.into_split();
                let writer = async move {
                    let _ = w.write_all(&input).await;
                    let _ = w.shutdown().await;
                };
                let reader = async move {
                    let mut sink = Vec::new();
                    let _ = r.read_to_end(&mut sink).await;
                };
                tokio::join!(writer, reader);
            });
            let io = match sel & 32 != 0 {
                true => crate::io::Io::plain(accepted).expect("socket off the reactor"),
                false => crate::io::Io::Plain(accepted),
            };
            super::proxy::serve_fixed(io, peer, fe.clone()).await;
            let limit = std::time::Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, client_task).await;
            // Backend connections end when lb closes them (no reuse): collect what they got.
            let tasks: Vec<_> = conns.lock().map(|mut c| c.drain(..).collect()).unwrap_or_default();
            let mut received = Vec::new();
            for t in tasks {
                if let Ok(Ok(all)) = tokio::time::timeout(limit * 2, t).await {
                    received.push(all);
                }
            }
            acceptor.abort();
            received
        });
        drop(fe);
        drop(snap);
        let forwarded: usize = received.iter().map(|all| check_backend_stream(all)).sum();
        // Every forwarded request started with a head the client sent.
        let heads = input.windows(4).filter(|w| w == b"\r\n\r\n").count();
        assert!(forwarded <= heads, "{forwarded} requests forwarded from {heads} heads");
        if sel & 8 != 0 {
            assert_eq!(forwarded, 0, "a denied source got a request forwarded");
        }
        if sel & 16 != 0 {
            // 2/s; a run that straddles a window boundary may see the next window's share
            assert!(forwarded <= 4, "{forwarded} requests forwarded under limit http-req-rate 2/s");
        }
        forwarded
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pass_on_good_inputs() {
        request_head(
            b"\r\nGET /a?b HTTP/1.1\r\nHost: h\r\nConnection: x, close\r\nX: 1\r\n\r\nrest",
        );
        request_head(
            b"POST http://h:80/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        response_head(b"\x02HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
        response_head(b"\x00HTTP/1.0 404\r\n\r\n");
        chunked(b"\x03\x05a;x=1\r\n0123456789\r\n0\r\nT: 1\r\n\r\nmore");
        chunked(b"");
    }

    #[test]
    fn proxy_forwards_only_complete_requests() {
        let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /deny HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(proxy_run(0, two), 2);
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(proxy_run(2, chunked), 1);
        // max-body-size 16: a larger declared body never reaches the backend
        let big = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n01234567890123456";
        assert_eq!(proxy_run(4, big), 0);
        // a body cut short by the client
        let cut = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\nabc";
        assert_eq!(proxy_run(0, cut), 1);
        assert_eq!(proxy_run(1, b"GET / HTTP/1.1\r\nHost: a\r\n"), 0);
        // a denied source: nothing reaches the backend
        assert_eq!(proxy_run(8, two), 0);
        // limit http-req-rate 2/s: the third request gets 429 and the connection closes
        let three = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!((2..=3).contains(&proxy_run(16, three)));
        // the same through a client socket on the io_uring (selector bit 32)
        assert_eq!(proxy_run(32, two), 2);
        assert_eq!(proxy_run(32 | 2, chunked), 1);
        assert_eq!(proxy_run(32, cut), 1);
        assert_eq!(proxy_run(32 | 8, two), 0);
        proxy(b"\x00");
        proxy(b"");
    }

    #[test]
    #[should_panic(expected = "not a complete request head")]
    fn backend_check_catches_a_partial_head() {
        check_backend_stream(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT");
    }

    #[test]
    #[should_panic(expected = "denied request")]
    fn backend_check_catches_a_denied_request() {
        check_backend_stream(b"GET /deny/x HTTP/1.1\r\nHost: a\r\n\r\n");
    }
}
