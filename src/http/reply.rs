//! Responses lb generates itself (400, 403, 404, 405, 408, 413, 429, 431, 502, 503, 504).

use bytes::{BufMut, Bytes, BytesMut};

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn explanation(status: u16) -> &'static str {
    match status {
        400 => "Your browser sent an invalid request.",
        403 => "Request forbidden by administrative rules.",
        404 => "The requested resource was not found.",
        405 => "Method not allowed.",
        408 => "Your browser didn't send a complete request in time.",
        413 => "The request body is larger than allowed.",
        429 => "You have sent too many requests in a given amount of time.",
        431 => "The request headers are too large.",
        502 => "The server returned an invalid or incomplete response.",
        503 => "No server is available to handle this request.",
        504 => "The server didn't respond in time.",
        _ => "An error occurred.",
    }
}

/// The HTML page of an error response.
pub fn error_body(status: u16) -> String {
    format!(
        "<html><body><h1>{status} {}</h1>\n{}\n</body></html>\n",
        reason(status),
        explanation(status)
    )
}

/// A complete error response that closes the connection.
pub fn error(status: u16) -> Bytes {
    error_with(status, &[])
}

/// An error response with extra header lines (each `Name: value`, no CRLF).
pub fn error_with(status: u16, extra: &[&str]) -> Bytes {
    let body = error_body(status);
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(
        format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: text/html\r\ncontent-length: {}\r\ncache-control: no-cache\r\nconnection: close\r\n",
            reason(status),
            body.len()
        )
        .as_bytes(),
    );
    for h in extra {
        out.put_slice(h.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body.as_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_a_complete_closing_response() {
        let r = error(503);
        let s = std::str::from_utf8(&r).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(s.contains("connection: close\r\n"));
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let r = error_with(429, &["retry-after: 1"]);
        assert!(std::str::from_utf8(&r)
            .unwrap()
            .contains("retry-after: 1\r\n"));
    }
}
