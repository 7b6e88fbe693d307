//! A request to an HTTP/2 server: lb's HTTP/1-shaped request head made into
//! an HTTP/2 one, the request body sent as flow control allows, and the
//! response brought back in the shapes the client side writes (a parsed
//! `ResponseHead`, body bytes, a raw trailer block).

use std::future::poll_fn;
use std::net::IpAddr;
use std::time::Duration;

use ::h2::{RecvStream, SendStream};
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::head::{self, HeadLimits, RequestHead, ResponseHead, TargetForm};

use super::stream::CONNECTION_SPECIFIC;

/// Why a request or response could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be expressed in HTTP/2 (lb answers 400).
    #[error("request not expressible in HTTP/2: {0}")]
    Request(&'static str),
    /// The server's response cannot be carried (502).
    #[error("invalid response: {0}")]
    Response(&'static str),
    #[error("HTTP/2: {0}")]
    H2(#[from] ::h2::Error),
    /// The server's flow-control window stayed closed.
    #[error("the server's flow-control window stayed closed for {0:?}")]
    Stalled(Duration),
    #[error("the server closed the stream")]
    Closed,
}

/// What `request` needs besides the head.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `http` or `https`: the scheme of the server connection.
    pub scheme: &'static str,
    /// Authority when the request has neither Host nor an absolute target
    /// (an HTTP/1.0 request): the address the client reached.
    pub fallback_authority: &'a str,
    /// Append the client to X-Forwarded-For (`option forwardfor`).
    pub forwardfor: bool,
    pub peer: IpAddr,
    /// `http` or `https` as the client spoke it, for X-Forwarded-Proto
    /// (set with forwardfor or behind TLS, as the HTTP/1 path does).
    pub proto: &'static str,
    /// Drop `Expect` (lb answered the 100-continue itself).
    pub strip_expect: bool,
}

/// The HTTP/2 request for `req` (RFC 9113 8.3.1): `:authority` from Host
/// (else the absolute target's, else `fallback_authority`), `:path` in
/// origin form, hop-by-hop and connection-specific fields removed, `te`
/// kept only as `trailers`, X-Forwarded-* as on HTTP/1.
pub fn request(req: &RequestHead, o: &Origin<'_>) -> Result<http::Request<()>, Error> {
    let bad = Error::Request;
    if req.is_connect() || req.upgrade {
        return Err(bad("CONNECT and Upgrade do not go to an HTTP/2 server"));
    }
    let authority: &[u8] = match req.host.map(|h| req.slice(h)) {
        Some(h) if !h.is_empty() => h,
        _ => match req.absolute_authority() {
            b"" => o.fallback_authority.as_bytes(),
            a => a,
        },
    };
    let path: &[u8] = match req.form {
        TargetForm::Origin => req.target(),
        TargetForm::Absolute => absolute_path(req.target()),
        TargetForm::Asterisk => b"*",
        TargetForm::Authority => return Err(bad("authority-form target")),
    };
    let mut uri = Vec::with_capacity(o.scheme.len() + 3 + authority.len() + path.len() + 1);
    uri.extend_from_slice(o.scheme.as_bytes());
    uri.extend_from_slice(b"://");
    uri.extend_from_slice(authority);
    if path != b"*" {
        if !path.starts_with(b"/") {
            uri.push(b'/');
        }
        uri.extend_from_slice(path);
    }
    let uri = http::Uri::try_from(uri).map_err(|_| bad("invalid authority or path"))?;
    let method = http::Method::from_bytes(req.method()).map_err(|_| bad("invalid method"))?;
    let mut r = http::Request::new(());
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    let h = r.headers_mut();
    let set_proto = o.forwardfor || o.proto == "https";
    let mut xff: Option<Vec<u8>> = None;
    let mut trailers = false;
    for f in &req.headers {
        let name = req.slice(f.name);
        let value = req.slice(f.value);
        if name.eq_ignore_ascii_case(b"te") {
            // The one TE an HTTP/2 request may carry (RFC 9113 8.2.2).
            trailers |= head::list_items(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
            continue;
        }
        if f.hop_by_hop
            || name.eq_ignore_ascii_case(b"host")
            || CONNECTION_SPECIFIC
                .iter()
                .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
            || (o.strip_expect && name.eq_ignore_ascii_case(b"expect"))
            || (set_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto"))
        {
            continue;
        }
        if o.forwardfor && name.eq_ignore_ascii_case(b"x-forwarded-for") {
            let v = xff.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(value);
            continue;
        }
        let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else {
            return Err(bad("invalid header field"));
        };
        h.append(n, v);
    }
    if trailers {
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    if o.forwardfor {
        let mut v = xff.unwrap_or_default();
        if !v.is_empty() {
            v.extend_from_slice(b", ");
        }
        v.extend_from_slice(o.peer.to_string().as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&v) {
            h.insert("x-forwarded-for", v);
        }
    }
    if set_proto {
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if o.proto == "https" { "https" } else { "http" }),
        );
    }
    Ok(r)
}

/// `/path?query` of an absolute-form target (`/` when it has none).
fn absolute_path(t: &[u8]) -> &[u8] {
    let after = t
        .windows(3)
        .position(|w| w == b"://")
        .map_or(t, |i| &t[i + 3..]);
    match after.iter().position(|&b| b == b'/' || b == b'?') {
        Some(i) if after[i] == b'/' => &after[i..],
        // `http://host?q`: the path is empty; `/` is prepended by the caller.
        Some(i) => &after[i..],
        None => b"/",
    }
}

/// The server's HTTP/2 response head as lb's parsed HTTP/1.1 head, so the
/// client side writes it as it writes any response: status, fields, and
/// framing (`content-length` as sent, else `transfer-encoding: chunked`
/// unless the stream already ended). `head_request`: the request was HEAD.
pub fn response_head(
    parts: &http::response::Parts,
    end_of_stream: bool,
    head_request: bool,
    limits: &HeadLimits,
) -> Result<ResponseHead, Error> {
    let bad = Error::Response;
    let st = parts.status.as_u16();
    let mut raw = BytesMut::with_capacity(256);
    raw.put_slice(b"HTTP/1.1 ");
    raw.put_slice(parts.status.as_str().as_bytes());
    raw.put_u8(b' ');
    raw.put_slice(crate::http::reply::reason(st).as_bytes());
    raw.put_slice(b"\r\n");
    let mut length = false;
    for (n, v) in &parts.headers {
        if CONNECTION_SPECIFIC.contains(&n.as_str()) {
            // RFC 9113 8.2.2: a response carrying them is malformed.
            return Err(bad("connection-specific header field"));
        }
        length |= n == http::header::CONTENT_LENGTH;
        raw.put_slice(n.as_str().as_bytes());
        raw.put_slice(b": ");
        raw.put_slice(v.as_bytes());
        raw.put_slice(b"\r\n");
    }
    let bodiless = head_request || st < 200 || st == 204 || st == 304;
    if !length && !bodiless {
        if end_of_stream {
            raw.put_slice(b"content-length: 0\r\n");
        } else {
            raw.put_slice(b"transfer-encoding: chunked\r\n");
        }
    }
    raw.put_slice(b"\r\n");
    match head::parse_response(&mut raw, limits, head_request) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(bad("response head incomplete")),
        Err(e) => Err(bad(match e {
            head::HeadError::Invalid(why) => why,
            head::HeadError::TooLarge => "response head too large",
            head::HeadError::TooManyHeaders => "too many response header fields",
        })),
    }
}

/// Trailer fields as the raw block of an HTTP/1 chunked body (`name:
/// value\r\n` each, then the final `\r\n`).
pub fn trailer_block(t: &HeaderMap) -> BytesMut {
    let mut out = BytesMut::with_capacity(64);
    for (n, v) in t {
        out.put_slice(n.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(v.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

/// The fields of an HTTP/1 trailer block, connection-specific ones and
/// invalid lines dropped.
pub fn trailer_map(raw: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(i) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..i]),
            HeaderValue::from_bytes(line[i + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if !CONNECTION_SPECIFIC.contains(&n.as_str()) && n != http::header::TE {
            map.append(n, v);
        }
    }
    map
}

/// Sends `data` on a request stream as the server's flow-control window
/// allows, failing after `idle` without any window. `end` ends the stream.
pub async fn send_data(
    s: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
) -> Result<(), Error> {
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let mut cap = s.capacity();
        while cap == 0 {
            match tokio::time::timeout(idle, poll_fn(|cx| s.poll_capacity(cx))).await {
                Err(_) => return Err(Error::Stalled(idle)),
                Ok(None) => return Err(Error::Closed),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(_))) => cap = s.capacity(),
            }
        }
        let part = data.split_to(cap.min(data.len()));
        s.send_data(part, end && data.is_empty())?;
    }
    Ok(())
}

/// Ends a request stream: with trailers when there are some, else with an
/// empty DATA frame.
pub fn finish(s: &mut SendStream<Bytes>, trailers: Option<HeaderMap>) -> Result<(), Error> {
    match trailers {
        Some(t) if !t.is_empty() => s.send_trailers(t)?,
        _ => s.send_data(Bytes::new(), true)?,
    }
    Ok(())
}

/// The next DATA of a response body (`None` at its end), waiting at most
/// `idle`. The caller releases its flow-control capacity (`release`) once
/// the bytes went on to the client, so a slow client slows the server.
pub async fn next_data(body: &mut RecvStream, idle: Duration) -> Result<Option<Bytes>, Error> {
    match tokio::time::timeout(idle, body.data()).await {
        Err(_) => Err(Error::Response("response body timeout")),
        Ok(None) => Ok(None),
        Ok(Some(Ok(d))) => Ok(Some(d)),
        Ok(Some(Err(e))) => Err(e.into()),
    }
}

/// Returns `n` bytes of window to the server.
pub fn release(body: &mut RecvStream, n: usize) {
    // Fails only on a stream already gone, whose window no longer matters.
    let _ = body.flow_control().release_capacity(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> RequestHead {
        let mut b = BytesMut::from(raw);
        head::parse_request(&mut b, &HeadLimits::default())
            .unwrap()
            .unwrap()
    }

    fn origin() -> Origin<'static> {
        Origin {
            scheme: "http",
            fallback_authority: "127.0.0.1:80",
            forwardfor: false,
            peer: "10.0.0.9".parse().unwrap(),
            proto: "http",
            strip_expect: false,
        }
    }

    #[test]
    fn request_fields() {
        let req = parse(b"POST /a/b?x=1 HTTP/1.1\r\nHost: api.test:8080\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers, gzip\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n");
        let r = request(&req, &origin()).unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.uri().to_string(), "http://api.test:8080/a/b?x=1");
        let h = r.headers();
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        for gone in [
            "host",
            "connection",
            "x-hop",
            "keep-alive",
            "transfer-encoding",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        // TE without trailers is dropped.
        let req = parse(b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n");
        assert!(!request(&req, &origin())
            .unwrap()
            .headers()
            .contains_key("te"));
    }

    #[test]
    fn request_targets_and_forwarding() {
        let req = parse(b"GET http://abs.test/p?q HTTP/1.1\r\nHost: abs.test\r\n\r\n");
        assert_eq!(
            request(&req, &origin()).unwrap().uri().to_string(),
            "http://abs.test/p?q"
        );
        let req = parse(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            request(&req, &origin()).unwrap().uri().to_string(),
            "http://127.0.0.1:80/"
        );
        let req = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: gopher\r\n\r\n");
        let o = Origin {
            forwardfor: true,
            ..origin()
        };
        let r = request(&req, &o).unwrap();
        assert_eq!(r.headers()["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(r.headers()["x-forwarded-proto"], "http");
        let req = parse(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        );
        assert!(request(&req, &origin()).is_err());
    }

    #[test]
    fn response_heads() {
        let limits = HeadLimits::default();
        let (mut parts, ()) = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
            .into_parts();
        let r = response_head(&parts, false, false, &limits).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, head::BodyKind::Chunked);
        assert_eq!(r.header("content-type"), Some(&b"application/grpc"[..]));
        let r = response_head(&parts, true, false, &limits).unwrap();
        assert_eq!(r.body, head::BodyKind::Length(0));
        parts
            .headers
            .insert("content-length", HeaderValue::from_static("12"));
        let r = response_head(&parts, false, false, &limits).unwrap();
        assert_eq!(r.body, head::BodyKind::Length(12));
        let r = response_head(&parts, false, true, &limits).unwrap();
        assert_eq!(r.body, head::BodyKind::None);
        parts
            .headers
            .insert("connection", HeaderValue::from_static("close"));
        assert!(response_head(&parts, false, false, &limits).is_err());
    }

    #[test]
    fn trailers_both_ways() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let raw = trailer_block(&t);
        assert_eq!(&raw[..], b"grpc-status: 0\r\n\r\n");
        let back = trailer_map(b"grpc-status: 0\r\nConnection: x\r\nbad line\r\n\r\n");
        assert_eq!(back.len(), 1);
        assert_eq!(back["grpc-status"], "0");
    }
}
