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
}
