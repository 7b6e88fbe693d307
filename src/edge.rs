//! Edge filtering of client connections: `tcp-request connection reject` and per-address connection limits at accept.

use std::net::{IpAddr, SocketAddr};

use crate::conf::acl;
use crate::limit::{ConnGuard, Refused};
use crate::snapshot::FrontendRt;

/// Why an accepted connection is closed before any byte is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("tcp-request connection reject (line {0})")]
    Rule(usize),
    #[error("{0}")]
    Limit(#[from] Refused),
}

/// What a connection-time condition can see: the client's address only.
struct ConnView(IpAddr);

impl acl::Request for ConnView {
    fn path(&self) -> &[u8] {
        b""
    }
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
    fn src(&self) -> Option<IpAddr> {
        Some(self.0)
    }
}

/// Decides an accepted connection from `peer`: `Ok` carries its slot in the frontend's
/// per-address table (if limits are set), given back when dropped. A refusal is
/// counted in the frontend's metrics by reason.
pub fn admit(fe: &FrontendRt, peer: SocketAddr) -> Result<Option<ConnGuard>, Rejected> {
    let r = decide(fe, peer);
    if let Err(why) = &r {
        let d = &fe.stats.denied;
        match why {
            Rejected::Rule(_) => d.conn_rule.inc(),
            Rejected::Limit(Refused::Conn(_)) => d.conn_limit.inc(),
            Rejected::Limit(Refused::Rate(_)) => d.conn_rate.inc(),
        }
    }
    r
}

fn decide(fe: &FrontendRt, peer: SocketAddr) -> Result<Option<ConnGuard>, Rejected> {
    let view = ConnView(peer.ip());
    for r in &fe.conf.tcp_rules {
        if r.cond
            .as_ref()
            .is_none_or(|c| c.eval(&fe.conf.http.acls, &view))
        {
            return Err(Rejected::Rule(r.line));
        }
    }
    match &fe.clients {
        None => Ok(None),
        Some(t) => Ok(Some(t.open(peer.ip(), &fe.conf.client_limits)?)),
    }
}

/// A new request from `peer`: false when it is over `limit http-req-rate` (answer 429;
/// counted in the frontend's metrics).
pub fn request_allowed(fe: &FrontendRt, peer: SocketAddr) -> bool {
    let ok = match &fe.clients {
        None => true,
        Some(t) => t.request(peer.ip(), &fe.conf.client_limits),
    };
    if !ok {
        fe.stats.denied.req_rate.inc();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse_conf;
    use crate::snapshot::Snapshot;
    use std::sync::Arc;

    fn frontend(text: &str) -> Arc<FrontendRt> {
        let conf = parse_conf("t.conf", text).unwrap();
        Snapshot::build(conf).frontends["f"].clone()
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 40000)
    }

    #[test]
    fn reject_rules_and_limits() {
        let fe = frontend(
            "frontend f\n    bind 127.0.0.1:0\n    acl v6 src ::1\n    tcp-request connection reject if { src 127.0.0.2 127.0.0.4/31 } || v6\n    limit conn 1\n",
        );
        assert_eq!(admit(&fe, peer("127.0.0.2")).err(), Some(Rejected::Rule(4)));
        assert_eq!(admit(&fe, peer("127.0.0.5")).err(), Some(Rejected::Rule(4)));
        assert_eq!(admit(&fe, peer("::1")).err(), Some(Rejected::Rule(4)));
        let slot = admit(&fe, peer("127.0.0.3")).unwrap();
        assert!(slot.is_some());
        assert_eq!(
            admit(&fe, peer("127.0.0.3")).err(),
            Some(Rejected::Limit(Refused::Conn(1)))
        );
        drop(slot);
        assert!(admit(&fe, peer("127.0.0.3")).is_ok());
        assert!(request_allowed(&fe, peer("127.0.0.3")));
    }

    #[test]
    fn no_rules_no_table() {
        let fe = frontend("frontend f\n    bind 127.0.0.1:0\n    tcp-request connection reject unless { src 10.0.0.0/8 }\n");
        assert!(fe.clients.is_none());
        assert!(admit(&fe, peer("10.1.1.1")).unwrap().is_none());
        assert_eq!(admit(&fe, peer("11.1.1.1")).err(), Some(Rejected::Rule(3)));
    }
}
