//! `compression algo|type|offload`: responses compressed on their way to an
//! HTTP/1.1 client (HTTP/2 clients: `h2side::relay_compressed`), with flate2, under the rules HAProxy documents: the
//! client's Accept-Encoding picks the coding; only 200-203 responses of a
//! listed type, with a known length or chunked, not already encoded, not
//! `no-transform`, not multipart; `Vary: Accept-Encoding` added, a strong
//! ETag made weak. The body streams: each read from the server is
//! compressed and flushed to the client as one chunk.

use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::Compression;

use super::body::{write_chunk_header, Chunk, ChunkedDecoder, LAST_CHUNK};
use super::conn::Conn;
use super::head::{self, BodyKind, HeadLimits, RequestHead, ResponseHead};
use super::relay::{body_read, Cut};
use crate::conf::haproxy_comp::{Algo, CompConf};
use crate::io::{Io, SpareBuffer};
use crate::snapshot::BackendRt;

/// HAProxy's `tune.comp.maxlevel` default: fast, most of the gain.
const LEVEL: u32 = 1;

/// The backend's compression settings, else the frontend's (as HAProxy:
/// each of algos and types is taken from the backend when it has them).
fn settings<'a>(
    conn: &'a Conn<'_>,
    be: &'a BackendRt,
) -> (Option<&'a CompConf>, Option<&'a CompConf>) {
    (
        be.conf.hap.compression.as_ref(),
        conn.fe.conf.hap.compression.as_ref(),
    )
}

fn algos<'a>(b: Option<&'a CompConf>, f: Option<&'a CompConf>) -> &'a [Algo] {
    match (b, f) {
        (Some(b), _) if !b.algos.is_empty() => &b.algos,
        (_, Some(f)) => &f.algos,
        _ => &[],
    }
}

fn types<'a>(b: Option<&'a CompConf>, f: Option<&'a CompConf>) -> &'a [String] {
    match (b, f) {
        (Some(b), _) if !b.types.is_empty() => &b.types,
        (_, Some(f)) => &f.types,
        _ => &[],
    }
}

/// Request side: the coding the client takes, chosen as HAProxy does (the
/// highest q-value, the client's order on a tie, `*` meaning the last
/// configured algorithm). `None` for an HTTP/1.0 request or an old
/// "Mozilla/4" browser HAProxy knows mishandles compressed bodies.
pub(crate) fn pick(conn: &Conn<'_>, be: &BackendRt, req: &RequestHead) -> Option<Algo> {
    let (b, f) = settings(conn, be);
    let algos = algos(b, f);
    if algos.is_empty() || req.minor_version == 0 || old_browser(req.header("user-agent")) {
        return None;
    }
    let mut best: Option<(Algo, u32)> = None;
    for item in req
        .header_values("accept-encoding")
        .flat_map(head::list_items)
    {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let q = parts
            .filter_map(|p| p.trim_ascii().strip_prefix(b"q="))
            .map(qvalue)
            .next()
            .unwrap_or(1000);
        if q == 0 || best.is_some_and(|(_, bq)| q <= bq) {
            continue;
        }
        // HAProxy keeps its algorithms in a list built by prepending:
        // `*` takes the one configured last.
        let hit = if name == b"*" {
            algos.last().copied()
        } else {
            algos
                .iter()
                .copied()
                .find(|a| name.eq_ignore_ascii_case(a.token().as_bytes()))
        };
        if let Some(a) = hit {
            best = Some((a, q));
        }
    }
    match best {
        Some((Algo::Identity, _)) | None => None,
        Some((a, _)) => Some(a),
    }
}

/// A q-value in thousandths (RFC 9110 12.4.2); what does not parse counts as 0.
fn qvalue(v: &[u8]) -> u32 {
    let s = std::str::from_utf8(v).unwrap_or("0");
    s.parse::<f64>()
        .ok()
        .filter(|q| (0.0..=1.0).contains(q))
        .map_or(0, |q| (q * 1000.0).round() as u32)
}

/// HAProxy's exception: "Mozilla/4" user agents other than MSIE 6 SP2 and
/// MSIE 7 or later get no compression.
fn old_browser(ua: Option<&[u8]>) -> bool {
    let Some(ua) = ua else { return false };
    if !ua.starts_with(b"Mozilla/4") {
        return false;
    }
    if ua.len() < 31 || &ua[25..30] != b"MSIE " || ua[30] < b'6' {
        return true;
    }
    ua[30] == b'6' && (ua.len() < 54 || &ua[51..54] != b"SV1")
}

/// `compression offload`: the request without Accept-Encoding, so that the
/// server never compresses what lb will. `None` when nothing changes.
pub(crate) fn offload(
    conn: &Conn<'_>,
    be: &BackendRt,
    req: &RequestHead,
    algo: Option<Algo>,
) -> Option<RequestHead> {
    let (b, f) = settings(conn, be);
    let off = b.is_some_and(|c| c.offload) || f.is_some_and(|c| c.offload);
    if !off || algo.is_none() || req.header("accept-encoding").is_none() {
        return None;
    }
    let mut out = BytesMut::with_capacity(req.buf.len());
    out.put_slice(req.method());
    out.put_u8(b' ');
    out.put_slice(req.target());
    out.put_slice(b" HTTP/1.1\r\n");
    for h in &req.headers {
        let name = req.slice(h.name);
        if name.eq_ignore_ascii_case(b"accept-encoding") {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(req.slice(h.value));
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    head::parse_request(&mut out, &loose(&conn.limits))
        .ok()
        .flatten()
}

fn loose(l: &HeadLimits) -> HeadLimits {
    HeadLimits {
        max_bytes: l.max_bytes * 2,
        max_headers: l.max_headers * 2,
    }
}

/// A response to compress: its new head, and the coding.
pub(crate) struct Plan {
    pub head: ResponseHead,
    pub algo: Algo,
}

/// Response side: whether this response is compressed (`algo` is what the
/// request picked) and its head if so.
pub(crate) fn plan(
    conn: &Conn<'_>,
    be: &BackendRt,
    req: &RequestHead,
    resp: &ResponseHead,
    algo: Option<Algo>,
) -> Option<Plan> {
    let algo = algo?;
    let (b, f) = settings(conn, be);
    if !(200..=203).contains(&resp.status) || resp.minor_version == 0 {
        return None;
    }
    match resp.body {
        BodyKind::Chunked => {}
        BodyKind::Length(n) if n > 0 && n >= b.or(f).map_or(0, |c| c.minsize) => {}
        // No body (HEAD, empty), or one ended by a close: HAProxy needs a
        // length or chunked framing.
        _ => return None,
    }
    if resp.header("content-encoding").is_some() {
        return None;
    }
    if resp
        .header_values("cache-control")
        .flat_map(head::list_items)
        .any(|v| v.eq_ignore_ascii_case(b"no-transform"))
    {
        return None;
    }
    let types = types(b, f);
    match resp.header("content-type") {
        Some(ct) => {
            if ct.len() >= 9 && ct[..9].eq_ignore_ascii_case(b"multipart") {
                return None;
            }
            if !types.is_empty()
                && !types.iter().any(|t| {
                    ct.len() >= t.len() && ct[..t.len()].eq_ignore_ascii_case(t.as_bytes())
                })
            {
                return None;
            }
        }
        None if !types.is_empty() => return None,
        None => {}
    }
    let mut etags = resp.header_values("etag");
    let etag = etags.next();
    if etags.next().is_some() {
        return None;
    }
    let etag = match etag {
        None => None,
        Some(t) if t.starts_with(b"W/") => Some(t.to_vec()),
        Some(t) if t.starts_with(b"\"") => Some([&b"W/"[..], t].concat()),
        Some(_) => return None,
    };
    let vary_has = resp
        .header_values("vary")
        .flat_map(head::list_items)
        .any(|v| v == b"*" || v.eq_ignore_ascii_case(b"accept-encoding"));
    let mut out = BytesMut::with_capacity(resp.buf.len() + 96);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(resp.status.to_string().as_bytes());
    out.put_u8(b' ');
    out.put_slice(resp.slice(resp.reason));
    out.put_slice(b"\r\n");
    for h in &resp.headers {
        let name = resp.slice(h.name);
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"etag")
        {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(resp.slice(h.value));
        out.put_slice(b"\r\n");
    }
    if let Some(t) = etag {
        out.put_slice(b"ETag: ");
        out.put_slice(&t);
        out.put_slice(b"\r\n");
    }
    if !vary_has {
        out.put_slice(b"Vary: Accept-Encoding\r\n");
    }
    out.put_slice(b"Content-Encoding: ");
    out.put_slice(algo.token().as_bytes());
    out.put_slice(b"\r\nTransfer-Encoding: chunked\r\n\r\n");
    let head = head::parse_response_for(&mut out, &loose(&conn.limits), req.method())
        .ok()
        .flatten()?;
    Some(Plan { head, algo })
}

/// One encoder per coding, writing into a buffer lb drains after each flush.
/// (Also used by the HTTP/2 client relay, `h2side::relay_compressed`.)
pub(crate) enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
    Zlib(ZlibEncoder<Vec<u8>>),
    Raw(DeflateEncoder<Vec<u8>>),
}

impl Encoder {
    pub(crate) fn new(a: Algo) -> Encoder {
        let l = Compression::new(LEVEL);
        match a {
            Algo::Gzip => Encoder::Gzip(GzEncoder::new(Vec::new(), l)),
            Algo::RawDeflate => Encoder::Raw(DeflateEncoder::new(Vec::new(), l)),
            Algo::Deflate | Algo::Identity => Encoder::Zlib(ZlibEncoder::new(Vec::new(), l)),
        }
    }

    pub(crate) fn write(&mut self, d: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(d),
            Encoder::Zlib(e) => e.write_all(d),
            Encoder::Raw(e) => e.write_all(d),
        }
    }

    /// A sync flush: what was written so far decodes on the client's side.
    pub(crate) fn flush(&mut self) -> std::io::Result<Vec<u8>> {
        let v = match self {
            Encoder::Gzip(e) => {
                e.flush()?;
                e.get_mut()
            }
            Encoder::Zlib(e) => {
                e.flush()?;
                e.get_mut()
            }
            Encoder::Raw(e) => {
                e.flush()?;
                e.get_mut()
            }
        };
        Ok(std::mem::take(v))
    }

    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zlib(e) => e.finish(),
            Encoder::Raw(e) => e.finish(),
        }
    }
}

/// Appends `data` as one chunk.
fn put_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_chunk_header(out, data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Sends `head` (the compressed response's) and the server's body, read by
/// its own framing (`body`), compressed and chunked. True when the server's
/// body ended cleanly by its framing.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay(
    client: &mut Io,
    sock: &mut Io,
    ubuf: &mut BytesMut,
    body: BodyKind,
    algo: Algo,
    mut out: SpareBuffer,
    conn: &Conn<'_>,
    server_timeout: Duration,
    sent: &mut u64,
) -> Result<bool, Cut> {
    let client_timeout = conn.fe.conf.timeout_client;
    let mut enc = Encoder::new(algo);
    let broken = |_| Cut::Server("compression failed".into());
    match body {
        BodyKind::Length(mut n) => loop {
            let k = (ubuf.len() as u64).min(n) as usize;
            if k > 0 {
                enc.write(&ubuf[..k]).map_err(broken)?;
                ubuf.advance(k);
                n -= k as u64;
            }
            if n == 0 {
                let tail = enc.finish().map_err(broken)?;
                put_chunk(&mut out, &tail);
                out.put_slice(LAST_CHUNK);
                out.put_slice(b"\r\n");
                client.write_all_idle(&out, client_timeout).await?;
                *sent += out.len() as u64;
                return Ok(true);
            }
            put_chunk(&mut out, &enc.flush().map_err(broken)?);
            client.write_all_idle(&out, client_timeout).await?;
            *sent += out.len() as u64;
            out.clear();
            body_read(
                sock.read_until(ubuf, crate::clock::now() + server_timeout)
                    .await,
            )?;
        },
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(16 << 10);
            loop {
                match dec.decode(ubuf) {
                    Ok(Some(Chunk::Data(d))) => enc.write(&d).map_err(broken)?,
                    Ok(Some(Chunk::Trailers(t))) => {
                        let tail = enc.finish().map_err(broken)?;
                        put_chunk(&mut out, &tail);
                        out.put_slice(LAST_CHUNK);
                        out.put_slice(&t);
                        client.write_all_idle(&out, client_timeout).await?;
                        *sent += out.len() as u64;
                        return Ok(true);
                    }
                    Ok(None) => {
                        put_chunk(&mut out, &enc.flush().map_err(broken)?);
                        if !out.is_empty() {
                            client.write_all_idle(&out, client_timeout).await?;
                            *sent += out.len() as u64;
                            out.clear();
                        }
                        body_read(
                            sock.read_until(ubuf, crate::clock::now() + server_timeout)
                                .await,
                        )?;
                    }
                    Err(e) => {
                        return Err(Cut::Server(format!("invalid response: chunked body: {e}")))
                    }
                }
            }
        }
        // `plan` compresses only bodies with a length or chunked framing.
        BodyKind::None | BodyKind::UntilClose => {
            Err(Cut::Server("compression without framing".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_browsers_as_haproxy() {
        assert!(old_browser(Some(b"Mozilla/4.0 (compatible)")));
        assert!(!old_browser(Some(
            b"Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)"
        )));
        assert!(!old_browser(Some(b"Mozilla/5.0 (X11)")));
        assert!(!old_browser(None));
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"0.5"), 500);
        assert_eq!(qvalue(b"1"), 1000);
        assert_eq!(qvalue(b"0"), 0);
        assert_eq!(qvalue(b"x"), 0);
    }

    #[test]
    fn flushed_pieces_decode() {
        use std::io::Read;
        let mut e = Encoder::new(Algo::Gzip);
        e.write(b"hello ").unwrap();
        let mut all = e.flush().unwrap();
        e.write(b"world").unwrap();
        all.extend(e.finish().unwrap());
        let mut s = String::new();
        flate2::read::GzDecoder::new(&all[..])
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello world");
    }
}
