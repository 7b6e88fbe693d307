//! The `sentinel NAME` section: a Redis Sentinel inside lb (primaries watched, peers, timings).

use std::net::SocketAddr;
use std::time::Duration;

use super::parse::{self, did_you_mean, Directive};

/// One `monitor NAME ADDR QUORUM` line.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConf {
    pub name: String,
    pub addr: SocketAddr,
    pub quorum: usize,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SentinelConf {
    pub name: String,
    pub line: usize,
    pub bind: SocketAddr,
    pub line_bind: usize,
    pub monitors: Vec<MonitorConf>,
    /// As `down-after-milliseconds`: no valid PING reply for this long = subjectively down.
    pub down_after: Duration,
    /// As Sentinel's `failover-timeout`: bounds each failover step, and spaces two attempts.
    pub failover_timeout: Duration,
    /// Other sentinels known from the start (more are found through hello messages).
    pub peers: Vec<SocketAddr>,
    /// The monitored servers' `requirepass`.
    pub auth_pass: Option<String>,
    /// Most clients served at once on `bind`; more are refused.
    pub max_clients: usize,
    /// Most sentinels and replicas remembered per primary (hello messages cannot grow it further).
    pub max_instances: usize,
}

pub const DEFAULT_DOWN_AFTER: Duration = Duration::from_secs(30);
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);

const KEYWORDS: &[&str] = &[
    "bind",
    "monitor",
    "down-after",
    "failover-timeout",
    "peer",
    "auth-pass",
    "max-clients",
    "max-instances",
];

impl SentinelConf {
    pub fn new(name: String, line: usize) -> SentinelConf {
        SentinelConf {
            name,
            line,
            bind: SocketAddr::from(([127, 0, 0, 1], 26379)),
            line_bind: 0,
            monitors: Vec::new(),
            down_after: DEFAULT_DOWN_AFTER,
            failover_timeout: DEFAULT_FAILOVER_TIMEOUT,
            peers: Vec::new(),
            auth_pass: None,
            max_clients: 1000,
            max_instances: 64,
        }
    }
}

/// Applies one directive of a `sentinel` section.
pub fn directive(s: &mut SentinelConf, d: &Directive) -> Result<(), String> {
    let kw = d.keyword();
    let arg = || d.one_arg();
    let e = |m: String| format!("'{kw}': {m}");
    let positive = |t: Duration| {
        if t.is_zero() {
            Err(e("must be greater than zero".into()))
        } else {
            Ok(t)
        }
    };
    match kw {
        "bind" => {
            s.bind = parse::bind_addr(arg()?).map_err(e)?;
            s.line_bind = d.line;
        }
        "monitor" => {
            if d.args.len() != 4 {
                return Err(e("expected 'monitor NAME HOST:PORT QUORUM'".into()));
            }
            let name = d.args[1].clone();
            if name.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(e(format!("invalid master name '{name}'")));
            }
            if s.monitors.iter().any(|m| m.name == name) {
                return Err(e(format!("master '{name}' is already monitored")));
            }
            let addr = parse::peer_addr(&d.args[2]).map_err(e)?;
            let quorum = parse::number(&d.args[3], 1, 100).map_err(e)? as usize;
            s.monitors.push(MonitorConf {
                name,
                addr,
                quorum,
                line: d.line,
            });
        }
        "down-after" => s.down_after = positive(parse::duration(arg()?).map_err(e)?)?,
        "failover-timeout" => s.failover_timeout = positive(parse::duration(arg()?).map_err(e)?)?,
        "peer" => s.peers.push(parse::peer_addr(arg()?).map_err(e)?),
        "auth-pass" => s.auth_pass = Some(arg()?.to_string()),
        "max-clients" => s.max_clients = parse::number(arg()?, 1, 1 << 20).map_err(e)? as usize,
        "max-instances" => s.max_instances = parse::number(arg()?, 1, 4096).map_err(e)? as usize,
        _ => {
            return Err(format!(
                "unknown keyword '{kw}' in sentinel section{}",
                did_you_mean(kw, KEYWORDS)
            ))
        }
    }
    Ok(())
}

/// Checks a finished `sentinel` section.
pub fn finish(s: &SentinelConf) -> Result<(), String> {
    if s.line_bind == 0 {
        return Err(format!("sentinel '{}' has no 'bind' line", s.name));
    }
    if s.monitors.is_empty() {
        return Err(format!("sentinel '{}' has no 'monitor' line", s.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(line: &str) -> Directive {
        Directive {
            line: 1,
            args: line.split_whitespace().map(String::from).collect(),
        }
    }

    #[test]
    fn keywords_parse_with_defaults() {
        let mut s = SentinelConf::new("w".into(), 1);
        assert_eq!(s.down_after, Duration::from_secs(30));
        directive(&mut s, &dir("bind 127.0.0.1:0")).unwrap();
        directive(&mut s, &dir("monitor db 127.0.0.1:6379 2")).unwrap();
        directive(&mut s, &dir("down-after 500ms")).unwrap();
        directive(&mut s, &dir("failover-timeout 10s")).unwrap();
        directive(&mut s, &dir("peer 127.0.0.1:26380")).unwrap();
        directive(&mut s, &dir("auth-pass sesame")).unwrap();
        assert_eq!(s.monitors[0].quorum, 2);
        assert_eq!(s.down_after, Duration::from_millis(500));
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.auth_pass.as_deref(), Some("sesame"));
        assert!(finish(&s).is_ok());
    }

    #[test]
    fn bad_lines_are_errors() {
        let mut s = SentinelConf::new("w".into(), 1);
        directive(&mut s, &dir("bind 127.0.0.1:0")).unwrap();
        assert!(finish(&s).unwrap_err().contains("monitor"));
        assert!(directive(&mut s, &dir("monitor db 127.0.0.1:6379")).is_err());
        assert!(directive(&mut s, &dir("monitor db 127.0.0.1:6379 0")).is_err());
        assert!(directive(&mut s, &dir("down-after 0")).is_err());
        directive(&mut s, &dir("monitor db 127.0.0.1:6379 1")).unwrap();
        assert!(directive(&mut s, &dir("monitor db 127.0.0.1:6380 1")).is_err());
        let e = directive(&mut s, &dir("down-afterr 1s")).unwrap_err();
        assert!(e.contains("down-after"), "{e}");
    }
}

#[cfg(test)]
mod section_tests {
    use crate::conf::model::parse_conf;

    #[test]
    fn a_sentinel_section_in_a_file() {
        let c = parse_conf(
            "t.conf",
            "sentinel watch\n    bind 127.0.0.1:0\n    monitor db 127.0.0.1:6379 1\napp a\n    bind 127.0.0.1:0\n    kv-sentinel 127.0.0.1:26379 db\n",
        )
        .unwrap();
        assert_eq!(c.sentinels[0].monitors[0].name, "db");
        assert_eq!(c.apps[0].kv_master_name.as_deref(), Some("db"));
        let e = parse_conf(
            "t.conf",
            "sentinel watch\n    bind 127.0.0.1:0\n    monitor db 127.0.0.1:6379\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.conf:3: 'monitor': expected 'monitor NAME HOST:PORT QUORUM'"
        );
        let e = parse_conf("t.conf", "sentinel watch\n    bind 127.0.0.1:0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.conf:1: sentinel 'watch' has no 'monitor' line");
        let e = parse_conf(
            "t.conf",
            "kv k\n    bind 127.0.0.1:8000\nsentinel s\n    bind 127.0.0.1:8000\n    monitor db 127.0.0.1:6379 1\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.conf:4: address 127.0.0.1:8000 is already bound by another listener"
        );
    }
}
