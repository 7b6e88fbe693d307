//! `errorfile CODE FILE`: an error lb answers itself (503 when no server is
//! up, 504, 400, a `deny`...) goes out as the file's raw HTTP response, as
//! HAProxy sends it (to an HTTP/2 client: its status, headers and body).

use crate::snapshot::FrontendRt;

/// The file's bytes for `status` on this frontend, if it has one.
pub(crate) fn find(fe: &FrontendRt, status: u16) -> Option<&[u8]> {
    fe.conf
        .hap
        .errorfiles
        .iter()
        .find(|(c, _)| *c == status)
        .map(|(_, b)| b.as_slice())
}

/// The file as an answer for an HTTP/2 client: its status, headers (those
/// about the HTTP/1 connection left out) and body. `None` when there is no
/// file for `status`, or it does not parse.
pub(crate) fn as_answer(fe: &FrontendRt, status: u16) -> Option<super::downstream::Answer> {
    let raw = find(fe, status)?;
    let mut b = bytes::BytesMut::from(raw);
    let limits = super::head::HeadLimits::default();
    let head = super::head::parse_response(&mut b, &limits, false).ok()??;
    let headers = head
        .headers
        .iter()
        .filter(|h| !h.hop_by_hop)
        .map(|h| (head.slice(h.name), head.slice(h.value)))
        .filter(|(n, _)| !n.eq_ignore_ascii_case(b"content-length"))
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
        .collect();
    Some(super::downstream::Answer::Full {
        status: head.status,
        headers,
        body: b.to_vec(),
    })
}
