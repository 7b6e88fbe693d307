//! The heads lb writes: the request head for a server (origin form, hop-by-hop
//! removed, X-Forwarded-*), the response head for an HTTP/1 client, redirects.

use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};

use super::conn::Conn;
use super::head::{RequestHead, ResponseHead, TargetForm};
use super::reply;
use crate::io::SpareBuffer;
use crate::snapshot::FrontendRt;

/// Writes the target in origin form: `scheme://authority/path?query` becomes
/// `/path?query`; other forms are written as they are.
pub(crate) fn put_origin_form(out: &mut BytesMut, req: &RequestHead) {
    let t = req.target();
    if req.form != TargetForm::Absolute {
        out.put_slice(t);
        return;
    }
    let after = t
        .windows(3)
        .position(|w| w == b"://")
        .map_or(t, |i| &t[i + 3..]);
    match after.iter().position(|&b| b == b'/' || b == b'?') {
        Some(i) if after[i] == b'/' => out.put_slice(&after[i..]),
        Some(i) => {
            out.put_u8(b'/');
            out.put_slice(&after[i..]);
        }
        None => out.put_u8(b'/'),
    }
}

/// `http-request redirect scheme`: the same host and target under another
/// scheme. The port of the Host header is dropped; when redirecting to https
/// and the frontend has a TLS bind on another port than 443, that port is used.
pub(crate) fn redirect_location(fe: &FrontendRt, req: &RequestHead, scheme: &str) -> Vec<u8> {
    let host = req.header("host").unwrap_or(b"");
    let bare = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host.ends_with(b"]") => &host[..i],
        _ => host,
    };
    let port = (scheme == "https")
        .then(|| {
            let i = fe.conf.binds.iter().position(|b| b.tls.is_some())?;
            fe.bound.get(i).map(SocketAddr::port)
        })
        .flatten()
        .filter(|p| *p != 443);
    let mut out = BytesMut::with_capacity(128);
    out.put_slice(scheme.as_bytes());
    out.put_slice(b"://");
    out.put_slice(bare);
    if let Some(p) = port {
        out.put_slice(format!(":{p}").as_bytes());
    }
    match req.form {
        TargetForm::Origin | TargetForm::Absolute => put_origin_form(&mut out, req),
        _ => out.put_u8(b'/'),
    }
    out.to_vec()
}

/// A redirect response to an HTTP/1 client.
pub(crate) fn redirect_head(code: u16, location: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(128 + location.len());
    out.put_slice(format!("HTTP/1.1 {code} {}\r\nlocation: ", reply::reason(code)).as_bytes());
    out.put_slice(location);
    out.put_slice(b"\r\ncontent-length: 0\r\ncache-control: no-cache\r\n\r\n");
    out
}

/// Builds the head sent to the server: origin-form target, HTTP/1.1,
/// hop-by-hop headers removed, X-Forwarded-* when asked.
pub(crate) fn request_head(
    req: &RequestHead,
    conn: &Conn<'_>,
    forwardfor: bool,
    close: bool,
    strip_expect: bool,
) -> SpareBuffer {
    // A worker's spare buffer: no allocation per request.
    let mut out = SpareBuffer::take();
    out.put_slice(req.method());
    out.put_u8(b' ');
    put_origin_form(&mut out, req);
    out.put_slice(b" HTTP/1.1\r\n");
    // An HTTP/1.0 request may lack Host; what we send is HTTP/1.1, which requires one:
    // the target's authority, else the address the client reached (servers reject an
    // empty Host although RFC 9112 allows it).
    if req.host.is_none() {
        out.put_slice(b"Host: ");
        match req.absolute_authority() {
            b"" => match conn.fe.bound.first() {
                Some(a) => out.put_slice(a.to_string().as_bytes()),
                None => out.put_slice(b"localhost"),
            },
            auth => out.put_slice(auth),
        }
        out.put_slice(b"\r\n");
    }
    let mut xff: Option<Vec<u8>> = None;
    // `option forwardfor header NAME`.
    let xff_name = conn
        .fe
        .conf
        .hap
        .forwardfor_header
        .as_deref()
        .unwrap_or("X-Forwarded-For");
    let set_proto = forwardfor || conn.proto == "https";
    for h in &req.headers {
        if h.hop_by_hop {
            continue;
        }
        let name = req.slice(h.name);
        let value = req.slice(h.value);
        if strip_expect && name.eq_ignore_ascii_case(b"expect") {
            continue;
        }
        if forwardfor && name.eq_ignore_ascii_case(xff_name.as_bytes()) {
            {
                let v = xff.get_or_insert_with(Vec::new);
                if !v.is_empty() {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(value);
                continue;
            }
        }
        // Behind TLS, or with forwardfor, lb states the scheme itself.
        if set_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    if forwardfor {
        out.put_slice(xff_name.as_bytes());
        out.put_slice(b": ");
        if let Some(v) = xff {
            out.put_slice(&v);
            out.put_slice(b", ");
        }
        out.put_slice(conn.peer.ip().to_string().as_bytes());
        out.put_slice(b"\r\n");
    }
    if set_proto {
        out.put_slice(b"X-Forwarded-Proto: ");
        out.put_slice(conn.proto.as_bytes());
        out.put_slice(b"\r\n");
    }
    if req.upgrade {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if close {
        out.put_slice(b"Connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

/// Builds the head sent to the client.
pub(crate) fn response_head(
    resp: &ResponseHead,
    keep_alive: bool,
    client_is_11: bool,
) -> SpareBuffer {
    // A worker's spare buffer, with room for the start of the body too.
    let mut out = SpareBuffer::take();
    out.put_slice(b"HTTP/1.1 ");
    // Three digits without formatting machinery (status is 100..=999).
    let st = resp.status;
    out.put_slice(&[
        b'0' + (st / 100 % 10) as u8,
        b'0' + (st / 10 % 10) as u8,
        b'0' + (st % 10) as u8,
    ]);
    out.put_u8(b' ');
    out.put_slice(resp.slice(resp.reason));
    out.put_slice(b"\r\n");
    let upgrading = resp.status == 101;
    for h in &resp.headers {
        let name = resp.slice(h.name);
        if upgrading && name.eq_ignore_ascii_case(b"upgrade") {
            // Keep the protocol the server switched to.
        } else if h.hop_by_hop {
            continue;
        }
        // Never to an HTTP/1.0 client (RFC 9112 6.1): only `chunked` gets
        // here (carries_codings), undone when there is a body.
        if !client_is_11 && name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        // A 1xx or 204 never has a body, nor may it say it has (RFC 9110 8.6, RFC 9112 6.1).
        if (st < 200 || st == 204)
            && (name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(resp.slice(h.value));
        out.put_slice(b"\r\n");
    }
    if upgrading {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    } else if !client_is_11 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    out
}
