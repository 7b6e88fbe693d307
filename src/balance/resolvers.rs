//! Run-time DNS discovery (`resolvers` sections): each DNS-named server set
//! is asked again every `hold valid` (A or AAAA records, or SRV then those); answers go
//! to server slots, an address keeping its slot while it stays in the
//! answers. A change calls back the runtime, which rebuilds the snapshot
//! with `patch` (servers that kept their name and address keep their health).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use crate::conf::haproxy_dns::{DnsServers, ResolversConf};
use crate::conf::Conf;

/// Why one resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no answer from any nameserver")]
    Timeout,
    #[error("the name does not exist")]
    NxDomain,
    #[error("nameserver answered {0}")]
    Refused(String),
    #[error("{0}")]
    Proto(#[from] hickory_proto::ProtoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The slots of each server set (by `DnsServers::key`): the address each
/// server has, `None` for a slot no answer fills.
type Slots = HashMap<String, Vec<Option<SocketAddr>>>;

fn slots() -> &'static Mutex<Slots> {
    static S: OnceLock<Mutex<Slots>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Puts the servers DNS has given into `conf` (replacing any earlier ones):
/// at start, on reload, and after each change.
pub fn patch(conf: &mut Conf) {
    let slots = slots().lock().unwrap_or_else(|p| p.into_inner());
    for b in &mut conf.backends {
        let name = b.name.clone();
        for dns in &b.hap.dns {
            b.servers.retain(|s| !dns.names.contains(&s.name));
            let Some(got) = slots.get(&dns.key(&name)) else {
                continue;
            };
            for (n, addr) in dns.names.iter().zip(got) {
                if let Some(addr) = addr {
                    let mut s = dns.proto.clone();
                    s.name = n.clone();
                    s.addr = *addr;
                    s.host = dns.fqdn.clone();
                    b.servers.push(s);
                }
            }
        }
    }
}

/// What the loop keeps per server set between resolutions.
struct Track {
    next: Instant,
    /// The last valid answer's time; servers stay `hold nx|timeout` past it.
    last_ok: Instant,
}

/// The DNS server sets of a conf, with their backend's name.
pub fn sets(conf: &Conf) -> Vec<(String, DnsServers)> {
    conf.backends
        .iter()
        .flat_map(|b| b.hap.dns.iter().map(|d| (b.name.clone(), d.clone())))
        .collect()
}

/// Resolves every DNS server set of the current conf (`sets()` gives them)
/// on its schedule, forever; `changed` is called when servers must change.
pub async fn run(sets: impl Fn() -> Vec<(String, DnsServers)>, changed: impl Fn()) {
    let mut tracks: HashMap<String, Track> = HashMap::new();
    loop {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        let mut dirty = false;
        let mut live = Vec::new();
        for (backend, dns) in sets() {
            {
                let dns = &dns;
                let Some(r) = &dns.conf else { continue };
                let key = dns.key(&backend);
                live.push(key.clone());
                let t = tracks.entry(key.clone()).or_insert(Track {
                    next: now,
                    last_ok: now,
                });
                if t.next <= now {
                    let res = resolve(r, dns).await;
                    let now = Instant::now();
                    let addrs = match res {
                        Ok(a) => {
                            t.last_ok = now;
                            t.next = now + r.hold_valid;
                            Some(a)
                        }
                        Err(e) => {
                            t.next = now + r.timeout_resolve;
                            let hold = match e {
                                DnsError::NxDomain => r.hold_nx,
                                _ => r.hold_timeout,
                            };
                            tracing::warn!("resolvers {}: {} ({}): {e}", r.name, dns.fqdn, key);
                            // Past `hold`, the servers go; until then they stay.
                            (now.duration_since(t.last_ok) >= hold).then(Vec::new)
                        }
                    };
                    if let Some(addrs) = addrs {
                        dirty |= assign(&key, dns.names.len(), &addrs);
                    }
                }
                next = next.min(t.next);
            }
        }
        tracks.retain(|k, _| live.contains(k));
        if dirty {
            changed();
        }
        // Re-read the conf at least each second: a reload may add servers.
        tokio::time::sleep_until(next).await;
    }
}

/// Gives the answers to the set's slots: an address already in a slot stays
/// there, new ones take free slots in order, the surplus is left out.
/// True when a slot changed.
fn assign(key: &str, n: usize, addrs: &[SocketAddr]) -> bool {
    let mut all = slots().lock().unwrap_or_else(|p| p.into_inner());
    let cur = all.entry(key.to_string()).or_insert_with(|| vec![None; n]);
    cur.resize(n, None);
    let before = cur.clone();
    for s in cur.iter_mut() {
        if s.is_some_and(|a| !addrs.contains(&a)) {
            *s = None;
        }
    }
    for a in addrs {
        if cur.contains(&Some(*a)) {
            continue;
        }
        if let Some(free) = cur.iter_mut().find(|s| s.is_none()) {
            *free = Some(*a);
        }
    }
    *cur != before
}

/// One resolution: the server addresses the name gives now.
async fn resolve(r: &ResolversConf, dns: &DnsServers) -> Result<Vec<SocketAddr>, DnsError> {
    let name = Name::from_ascii(&dns.fqdn)?;
    match dns.port {
        Some(port) => Ok(ask_ip(r, &name, dns.prefer_v6)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()),
        None => {
            let m = ask(r, &name, RecordType::SRV).await?;
            let mut out = Vec::new();
            for rec in m.answers() {
                let RData::SRV(srv) = rec.data() else {
                    continue;
                };
                // The A records of the target, in the additional section or asked.
                let mut ips: Vec<IpAddr> = m
                    .additionals()
                    .iter()
                    .filter(|a| a.name() == srv.target())
                    .filter_map(|a| match a.data() {
                        RData::A(x) => Some(IpAddr::V4(x.0)),
                        _ => None,
                    })
                    .collect();
                if ips.is_empty() {
                    ips = ask_ip(r, srv.target(), dns.prefer_v6)
                        .await
                        .unwrap_or_default();
                }
                out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, srv.port())));
            }
            Ok(out)
        }
    }
}

/// The addresses of `name`: A records (AAAA with `resolve-prefer ipv6`),
/// the other family when the preferred one has none, as HAProxy.
async fn ask_ip(r: &ResolversConf, name: &Name, v6: bool) -> Result<Vec<IpAddr>, DnsError> {
    let order = if v6 {
        [RecordType::AAAA, RecordType::A]
    } else {
        [RecordType::A, RecordType::AAAA]
    };
    let mut first_err = None;
    for t in order {
        match ask(r, name, t).await {
            Ok(m) => {
                let ips: Vec<IpAddr> = m
                    .answers()
                    .iter()
                    .filter_map(|a| match a.data() {
                        RData::A(x) => Some(IpAddr::V4(x.0)),
                        RData::AAAA(x) => Some(IpAddr::V6(x.0)),
                        _ => None,
                    })
                    .collect();
                if !ips.is_empty() {
                    return Ok(ips);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(Vec::new()),
    }
}

/// One question to the nameservers, each tried in turn up to
/// `resolve_retries` queries, each waiting `timeout retry`.
async fn ask(r: &ResolversConf, name: &Name, t: RecordType) -> Result<Message, DnsError> {
    let id = (crate::balance::random() & 0xffff) as u16;
    let mut q = Message::new();
    q.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), t));
    let bytes = q.to_vec()?;
    for k in 0..r.retries as usize {
        let ns = r.nameservers[k % r.nameservers.len()];
        let bind: SocketAddr = if ns.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(ns)
        } else {
            "[::]:0".parse().unwrap_or(ns)
        };
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        sock.connect(ns).await?;
        sock.send(&bytes).await?;
        let deadline = Instant::now() + r.timeout_retry;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                // Refused (nothing listens) or no answer in time: the next try.
                Ok(Err(_)) | Err(_) => break,
            };
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if m.id() != id || m.message_type() != MessageType::Response {
                continue;
            }
            return match m.response_code() {
                ResponseCode::NoError => Ok(m),
                ResponseCode::NXDomain => Err(DnsError::NxDomain),
                c => Err(DnsError::Refused(c.to_string())),
            };
        }
    }
    Err(DnsError::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_their_slots() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
        assert!(assign("t/x", 2, &[a, b]));
        assert!(!assign("t/x", 2, &[b, a]), "same set: no change");
        assert!(assign("t/x", 2, &[b, c]));
        let s = slots().lock().unwrap()["t/x"].clone();
        assert_eq!(s, vec![Some(c), Some(b)], "b stays in slot 2");
    }
}
