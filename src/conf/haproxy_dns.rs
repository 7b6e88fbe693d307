//! `resolvers` sections and the servers that follow DNS at run time
//! (`server NAME FQDN:PORT resolvers R`, `server-template PREFIX N FQDN[:PORT]
//! resolvers R`); `balance::resolvers` queries and fills the servers in.

use std::net::SocketAddr;
use std::time::Duration;

use super::model::ServerConf;
use super::parse::{self, Directive};

/// One `resolvers NAME` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolversConf {
    pub name: String,
    pub line: usize,
    pub nameservers: Vec<SocketAddr>,
    /// `hold valid`: a valid answer is asked again after this (HAProxy: 10s).
    pub hold_valid: Duration,
    /// `hold nx`: how long servers stay after the name stops existing (30s).
    pub hold_nx: Duration,
    /// `hold timeout`: how long servers stay while no answer comes (30s).
    pub hold_timeout: Duration,
    /// `resolve_retries`: queries sent before a resolution fails (3).
    pub retries: u32,
    /// `timeout retry`: the wait for an answer to one query (1s).
    pub timeout_retry: Duration,
    /// `timeout resolve`: the next try after a failed resolution (1s).
    pub timeout_resolve: Duration,
}

/// Servers of a backend that follow one DNS name.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsServers {
    pub line: usize,
    /// Server names: `PREFIX1..PREFIXN` for a template, the name for a server.
    pub names: Vec<String>,
    pub fqdn: String,
    /// `None`: an SRV name (`_service._proto.name`), whose records give ports.
    pub port: Option<u16>,
    pub resolvers: String,
    /// `resolve-prefer ipv6`: AAAA records asked first (then A when none).
    pub prefer_v6: bool,
    /// The section, once the whole file is read.
    pub conf: Option<ResolversConf>,
    /// The server line's options, for each server made from an answer.
    pub proto: ServerConf,
}

impl DnsServers {
    /// What the answers are kept under across reloads.
    pub fn key(&self, backend: &str) -> String {
        format!("{backend}/{}/{}", self.names[0], self.fqdn)
    }
}

/// Reads a `resolvers NAME` section.
pub fn section(name: &str, line: usize, ds: &[Directive]) -> (ResolversConf, Vec<(usize, String)>) {
    let mut r = ResolversConf {
        name: name.to_string(),
        line,
        nameservers: Vec::new(),
        hold_valid: Duration::from_secs(10),
        hold_nx: Duration::from_secs(30),
        hold_timeout: Duration::from_secs(30),
        retries: 3,
        timeout_retry: Duration::from_secs(1),
        timeout_resolve: Duration::from_secs(1),
    };
    let mut errs = Vec::new();
    for d in ds {
        let a = &d.args;
        let kw = d.keyword();
        let res: Result<(), String> = (|| {
            match kw {
                "nameserver" => {
                    let [_, _, addr] = &a[..] else {
                        return Err("expected 'nameserver NAME IP:PORT'".into());
                    };
                    let addr = addr
                        .strip_prefix("udp@")
                        .unwrap_or(addr)
                        .parse::<SocketAddr>()
                        .map_err(|_| format!("'{addr}' is not IP:PORT (lb asks nameservers over UDP)"))?;
                    r.nameservers.push(addr);
                }
                "hold" => {
                    let (Some(what), Some(v)) = (a.get(1), a.get(2)) else {
                        return Err("expected 'hold STATUS TIME'".into());
                    };
                    let t = parse::duration(v)?;
                    match what.as_str() {
                        "valid" => r.hold_valid = t.max(Duration::from_millis(10)),
                        "nx" => r.hold_nx = t,
                        "timeout" => r.hold_timeout = t,
                        // Answers lb treats as a timeout (kept until `hold timeout`).
                        "refused" | "other" | "obsolete" => {}
                        x => return Err(format!("unknown status '{x}' (valid, nx, timeout, refused, other, obsolete)")),
                    }
                }
                "resolve_retries" => {
                    r.retries = parse::number(a.get(1).ok_or("needs a number")?, 1, 100)? as u32;
                }
                "timeout" => {
                    let (Some(what), Some(v)) = (a.get(1), a.get(2)) else {
                        return Err("expected 'timeout resolve|retry TIME'".into());
                    };
                    let t = parse::duration(v)?;
                    match what.as_str() {
                        "resolve" => r.timeout_resolve = t,
                        "retry" => r.timeout_retry = t,
                        x => return Err(format!("unknown timeout '{x}' (resolve, retry)")),
                    }
                }
                // Sizes of UDP answers: lb reads up to 64 KiB whatever it says.
                "accepted_payload_size" => {}
                "parse-resolv-conf" => {
                    return Err("'parse-resolv-conf' is not implemented: name the servers with 'nameserver NAME IP:PORT'".into())
                }
                x => return Err(format!("unknown keyword '{x}' in a resolvers section (nameserver, hold, resolve_retries, timeout, accepted_payload_size)")),
            }
            Ok(())
        })();
        if let Err(m) = res {
            errs.push((d.line, m));
        }
    }
    if r.nameservers.is_empty() {
        errs.push((line, format!("resolvers '{name}' has no 'nameserver'")));
    }
    (r, errs)
}

/// `server-template PREFIX NUM|LOW-HIGH FQDN[:PORT]`: the server names and
/// the name asked; `None` port for an SRV name.
pub fn template(a: &[String]) -> Result<(Vec<String>, String, Option<u16>), String> {
    let [prefix, range, target, ..] = a else {
        return Err("expected 'server-template PREFIX NUM FQDN[:PORT] [options]'".into());
    };
    let (lo, hi) = match range.split_once('-') {
        Some((l, h)) => (parse::number(l, 0, 100_000)?, parse::number(h, 0, 100_000)?),
        None => (1, parse::number(range, 1, 100_000)?),
    };
    if hi < lo || hi - lo >= 1024 {
        return Err(format!("invalid range '{range}' (at most 1024 servers)"));
    }
    let names = (lo..=hi).map(|n| format!("{prefix}{n}")).collect();
    let (fqdn, port) = target_of(target)?;
    Ok((names, fqdn, port))
}

/// `FQDN:PORT`, or an SRV name without a port.
pub fn target_of(t: &str) -> Result<(String, Option<u16>), String> {
    match t.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(parse::number(p, 1, 65535)? as u16))),
        None if t.starts_with('_') => Ok((t.to_string(), None)),
        None => Err(format!(
            "'{t}' needs a port (or is an SRV name: _service._proto.name)"
        )),
    }
}

/// The server options with the DNS ones taken out (`resolvers R`,
/// `resolve-opts`, `resolve-prefer`, `init-addr`): the resolvers' name,
/// whether IPv6 is preferred, and the rest.
pub fn split_opts(opts: &[String]) -> Result<(Option<String>, bool, Vec<String>), String> {
    let mut out = Vec::new();
    let mut res = None;
    let mut v6 = false;
    let mut i = 0;
    while i < opts.len() {
        match opts[i].as_str() {
            "resolvers" => {
                res = Some(opts.get(i + 1).ok_or("'resolvers' needs a name")?.clone());
                i += 2;
            }
            "resolve-prefer" => {
                v6 = match opts.get(i + 1).map(String::as_str) {
                    Some("ipv6") => true,
                    Some("ipv4") => false,
                    _ => return Err("'resolve-prefer' needs ipv4 or ipv6".into()),
                };
                i += 2;
            }
            "resolve-opts" | "init-addr" | "resolve-net" => i += 2,
            _ => {
                out.push(opts[i].clone());
                i += 1;
            }
        }
    }
    Ok((res, v6, out))
}
