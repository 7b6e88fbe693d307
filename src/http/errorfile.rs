//! `errorfile CODE FILE`: an error lb answers itself (503 when no server is
//! up, 504, 400, a `deny`...) goes out as the file's raw HTTP response, as
//! HAProxy sends it, on HTTP/1 connections.

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
