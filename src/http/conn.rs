//! What every phase of an exchange knows about its client connection, and how
//! an exchange can end. Shared by the protocol drivers and the pipeline.

use std::io;
use std::net::SocketAddr;

use super::head::HeadLimits;
use crate::snapshot::FrontendRt;

/// Why an exchange stopped; decides what the client gets.
#[derive(Debug)]
pub enum Fail {
    /// Nothing was sent to the client yet: answer with this status and close.
    Status(u16),
    /// The client is gone, or it got a whole answer: just close.
    Close,
    /// The response began but the server cut it: close, without the TLS
    /// close_notify that would mark a body ending at close as complete.
    Cut,
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Fail {
        Fail::Close
    }
}

/// What happens to the client connection after an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
    /// Close, though the client may still be sending the request's body:
    /// linger (`Io::linger`).
    CloseUnread,
}

/// The protocol a client speaks on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

impl Version {
    /// As metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            Version::Http1 => "http/1.1",
            Version::Http2 => "h2",
        }
    }
}

/// Per-connection settings, fixed for the connection's life.
pub struct Conn<'a> {
    pub fe: &'a FrontendRt,
    pub peer: SocketAddr,
    pub limits: HeadLimits,
    /// "http" or "https", for X-Forwarded-Proto.
    pub proto: &'static str,
    pub version: Version,
    /// The client's certificate (`verify` on the bind), for `ssl_c_*`.
    pub client_cert: Option<std::sync::Arc<crate::conf::sample::ClientCert>>,
}

impl Conn<'_> {
    /// SIGTERM arrived: finish what is in progress, take nothing new.
    pub fn draining(&self) -> bool {
        crate::shutdown::draining()
    }
}
