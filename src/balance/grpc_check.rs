//! Health checks over HTTP/2 (h2c, or h2 with `check-ssl`).
//! `option grpc-check [SERVICE]`: the gRPC health checking protocol
//! (`grpc.health.v1.Health/Check`). Healthy: HTTP 200, `grpc-status: 0`, and
//! a HealthCheckResponse whose status is SERVING. The two protobuf messages
//! are a few bytes each and encoded here by hand.
//! `option httpchk` to a `proto h2` server goes over HTTP/2 as well (as
//! HAProxy's checks take the server's protocol).

use std::future::poll_fn;

use bytes::{Buf, Bytes, BytesMut};

use super::health::CheckParams;
use super::Server;
use crate::conf::{GrpcCheck, HttpCheck};
use crate::io::Io;

/// Path of the standard health method.
pub const PATH: &str = "/grpc.health.v1.Health/Check";

/// A response larger than this is not a HealthCheckResponse.
const MAX_RESPONSE: usize = 4096;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// The task driving a check's connection ends with the check, timed out or not.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One check; `Err` is the reason shown in the transition log.
pub async fn check(server: &Server, p: &CheckParams, g: &GrpcCheck) -> Result<(), String> {
    match tokio::time::timeout(p.timeout, check_inner(server, p, g)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {}ms", p.timeout.as_millis())),
    }
}

/// `option httpchk` over HTTP/2: the status must be the expected one (any
/// 2xx or 3xx).
pub async fn http_check(server: &Server, p: &CheckParams, h: &HttpCheck) -> Result<(), String> {
    let fut = async {
        let (send, scheme, authority, driver) = connect(server, p).await?;
        let _driver = AbortOnDrop(driver);
        let r = http_status(send, scheme, &authority, h).await;
        super::health::judge_status(h, r?)
    };
    match tokio::time::timeout(p.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {}ms", p.timeout.as_millis())),
    }
}

async fn http_status(
    send: ::h2::client::SendRequest<Bytes>,
    scheme: &str,
    authority: &str,
    h: &HttpCheck,
) -> Result<u16, String> {
    let h2err = |e: ::h2::Error| format!("HTTP/2: {e}");
    let req = http::Request::builder()
        .method(h.method.as_str())
        .uri(format!("{scheme}://{authority}{}", h.uri))
        .header("user-agent", "lb-check")
        .body(())
        .map_err(|e| format!("cannot build the check request: {e}"))?;
    let mut send = send.ready().await.map_err(h2err)?;
    let (resp, _) = send.send_request(req, true).map_err(h2err)?;
    let resp = resp.await.map_err(h2err)?;
    Ok(resp.status().as_u16())
}

async fn check_inner(server: &Server, p: &CheckParams, g: &GrpcCheck) -> Result<(), String> {
    let (send, scheme, authority, driver) = connect(server, p).await?;
    let _driver = AbortOnDrop(driver);
    let r = rpc(send, scheme, &authority, &g.service).await;
    r
}

/// An HTTP/2 connection to the server for one check: the request sender,
/// the scheme and authority to address it, and the task driving it.
async fn connect(
    server: &Server,
    p: &CheckParams,
) -> Result<
    (
        ::h2::client::SendRequest<Bytes>,
        &'static str,
        String,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    // The same connect and TLS steps as traffic (`crate::connect`); gRPC is
    // HTTP/2, so TLS offers h2 whatever the server line's ALPN.
    let connector = match &p.tls {
        None => None,
        Some((t, host)) => {
            let mut t = t.clone();
            t.alpn = vec![b"h2".to_vec()];
            Some(crate::tls::connector(&t, host)?)
        }
    };
    let io = crate::connect::open(server.addr, connector.as_ref(), None, false).await?;
    if let Io::TlsOut(s) = &io {
        if s.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("the server did not negotiate h2 by ALPN".into());
        }
    }
    let authority = match &p.tls {
        Some((_, host)) => host.clone(),
        None => server.addr.to_string(),
    };
    let scheme = if p.tls.is_some() { "https" } else { "http" };
    let (send, conn) = ::h2::client::Builder::new()
        .enable_push(false)
        .max_header_list_size(16 << 10)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
    // The connection is driven while the check runs, and dropped with it.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((send, scheme, authority, driver))
}

async fn rpc(
    send: ::h2::client::SendRequest<Bytes>,
    scheme: &str,
    authority: &str,
    service: &str,
) -> Result<(), String> {
    let h2err = |e: ::h2::Error| format!("HTTP/2: {e}");
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("{scheme}://{authority}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "lb-check")
        .body(())
        .map_err(|e| format!("cannot build the check request: {e}"))?;
    let mut send = send.ready().await.map_err(h2err)?;
    let (resp, mut body) = send.send_request(req, false).map_err(h2err)?;
    body.send_data(request_message(service), true)
        .map_err(h2err)?;
    let resp = resp.await.map_err(h2err)?;
    let status = resp.status().as_u16();
    // A trailers-only answer (an error, or UNIMPLEMENTED) carries grpc-status
    // in the head.
    if let Some(s) = resp.headers().get("grpc-status") {
        grpc_status(s.as_bytes(), resp.headers().get("grpc-message"))?;
    }
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    let mut recv = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(d) = poll_fn(|cx| recv.poll_data(cx)).await {
        let d = d.map_err(h2err)?;
        let _ = recv.flow_control().release_capacity(d.len());
        buf.extend_from_slice(&d);
        if buf.len() > MAX_RESPONSE {
            return Err("response too large for a HealthCheckResponse".into());
        }
    }
    let trailers = recv.trailers().await.map_err(h2err)?.unwrap_or_default();
    match trailers.get("grpc-status") {
        Some(s) => grpc_status(s.as_bytes(), trailers.get("grpc-message"))?,
        None => return Err("no grpc-status in the response".into()),
    }
    match serving_status(&buf)? {
        SERVING => Ok(()),
        s => Err(format!("gRPC health status {}", status_name(s))),
    }
}

/// `grpc-status: 0` is success; another code is a failure with its message.
fn grpc_status(v: &[u8], msg: Option<&http::HeaderValue>) -> Result<(), String> {
    if v == b"0" {
        return Ok(());
    }
    let code = String::from_utf8_lossy(v);
    Err(match msg {
        Some(m) => format!(
            "grpc-status {code} ({})",
            String::from_utf8_lossy(m.as_bytes())
        ),
        None => format!("grpc-status {code}"),
    })
}

/// A gRPC message (uncompressed) holding HealthCheckRequest{service}: the
/// field is left out when empty, as protobuf encodes a default string.
pub fn request_message(service: &str) -> Bytes {
    let mut pb = Vec::with_capacity(2 + service.len());
    if !service.is_empty() {
        // Field 1, wire type 2 (length-delimited); the conf caps the name at
        // 127 bytes, so its length is one varint byte.
        pb.push(0x0a);
        pb.push(service.len().min(127) as u8);
        pb.extend_from_slice(&service.as_bytes()[..service.len().min(127)]);
    }
    let mut out = Vec::with_capacity(5 + pb.len());
    out.push(0); // not compressed
    out.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    out.extend_from_slice(&pb);
    Bytes::from(out)
}

/// The `status` of the HealthCheckResponse in one gRPC message (0, UNKNOWN,
/// when the field is absent).
pub fn serving_status(mut msg: &[u8]) -> Result<u64, String> {
    if msg.len() < 5 {
        return Err("no gRPC message in the response".into());
    }
    if msg[0] != 0 {
        return Err("compressed gRPC message (lb asks for none)".into());
    }
    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
    msg.advance(5);
    let Some(mut pb) = msg.get(..len) else {
        return Err("truncated gRPC message".into());
    };
    let bad = || "invalid HealthCheckResponse".to_string();
    let mut status = 0;
    while !pb.is_empty() {
        let tag = varint(&mut pb).ok_or_else(bad)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => status = varint(&mut pb).ok_or_else(bad)?,
            // Fields a later version may add: skipped by wire type.
            (_, 0) => {
                varint(&mut pb).ok_or_else(bad)?;
            }
            (_, 1) => skip(&mut pb, 8).ok_or_else(bad)?,
            (_, 2) => {
                let n = varint(&mut pb).ok_or_else(bad)?;
                skip(&mut pb, usize::try_from(n).map_err(|_| bad())?).ok_or_else(bad)?;
            }
            (_, 5) => skip(&mut pb, 4).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok(status)
}

fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.first()?;
        b.advance(1);
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn skip(b: &mut &[u8], n: usize) -> Option<()> {
    if b.len() < n {
        return None;
    }
    b.advance(n);
    Some(())
}

fn status_name(s: u64) -> String {
    match s {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        assert_eq!(&request_message("")[..], [0, 0, 0, 0, 0]);
        assert_eq!(
            &request_message("a.B")[..],
            [0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
    }

    #[test]
    fn response_decoding() {
        let msg = |pb: &[u8]| {
            let mut m = vec![0];
            m.extend_from_slice(&(pb.len() as u32).to_be_bytes());
            m.extend_from_slice(pb);
            m
        };
        assert_eq!(serving_status(&msg(&[0x08, 1])), Ok(1));
        assert_eq!(serving_status(&msg(&[0x08, 2])), Ok(2));
        // Absent field: UNKNOWN; unknown fields skipped.
        assert_eq!(serving_status(&msg(&[])), Ok(0));
        assert_eq!(
            serving_status(&msg(&[0x12, 2, b'h', b'i', 0x08, 1, 0x18, 0x96, 0x01])),
            Ok(1)
        );
        assert!(serving_status(&msg(&[0x08])).is_err());
        assert!(serving_status(&msg(&[0x12, 9, 1])).is_err());
        assert!(serving_status(&[0, 0, 0]).is_err());
        assert!(serving_status(&[1, 0, 0, 0, 0]).is_err());
        assert!(serving_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
    }

    #[test]
    fn status_codes() {
        assert!(grpc_status(b"0", None).is_ok());
        let v = http::HeaderValue::from_static("unknown service");
        assert_eq!(
            grpc_status(b"5", Some(&v)).unwrap_err(),
            "grpc-status 5 (unknown service)"
        );
    }
}
