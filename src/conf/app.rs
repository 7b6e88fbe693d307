//! The `app NAME` section: settings of one embedded foobar application server (gunicorn's role).

use std::net::SocketAddr;
use std::time::Duration;

use super::parse::{self, did_you_mean, Directive};

#[derive(Debug, Clone, PartialEq)]
pub struct AppConf {
    pub name: String,
    pub line: usize,
    pub bind: SocketAddr,
    pub line_bind: usize,
    /// Where writes (and reads the replica cannot serve) go.
    pub kv_primary: SocketAddr,
    /// Line of `kv-primary`; 0 = missing (an error when the section ends).
    pub line_kv_primary: usize,
    /// Where reads go first; `None` = the primary serves reads too.
    pub kv_replica: Option<SocketAddr>,
    /// Sentinels to ask for the primary and replicas of `kv_master_name`
    /// (`kv-sentinel ADDR NAME`, repeatable), instead of fixed addresses.
    pub kv_sentinels: Vec<SocketAddr>,
    pub kv_master_name: Option<String>,
    /// Bound on one kv round trip, connect included: past it the request gets 503.
    pub timeout_kv: Duration,
    /// Idle time allowed on a client (a write that makes no progress, too).
    pub timeout_client: Duration,
    /// Time to receive a whole request head and body.
    pub timeout_request: Duration,
    /// Time to wait for the next request on a kept-alive connection.
    pub timeout_keep_alive: Duration,
    /// Largest item value (request body) accepted; 413 beyond.
    pub max_value_bytes: u64,
    /// Longest item key accepted; 400 beyond.
    pub max_key_bytes: usize,
    /// Idle kv connections kept per kv server and worker thread.
    pub kv_pool: usize,
}

pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1 << 20;
pub const DEFAULT_MAX_KEY_BYTES: usize = 512;

const KEYWORDS: &[&str] = &[
    "bind",
    "kv-primary",
    "kv-replica",
    "kv-sentinel",
    "timeout",
    "max-value-bytes",
    "max-key-bytes",
    "kv-pool",
];

impl AppConf {
    pub fn new(name: String, line: usize) -> AppConf {
        AppConf {
            name,
            line,
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            line_bind: 0,
            kv_primary: SocketAddr::from(([127, 0, 0, 1], 0)),
            line_kv_primary: 0,
            kv_replica: None,
            kv_sentinels: Vec::new(),
            kv_master_name: None,
            timeout_kv: Duration::from_secs(1),
            timeout_client: Duration::from_secs(60),
            timeout_request: Duration::from_secs(10),
            timeout_keep_alive: Duration::from_secs(60),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            kv_pool: 16,
        }
    }
}

/// Applies one directive of an `app` section.
pub fn directive(a: &mut AppConf, d: &Directive) -> Result<(), String> {
    let kw = d.keyword();
    let arg = || d.one_arg();
    let e = |m: String| format!("'{kw}': {m}");
    match kw {
        "bind" => {
            a.bind = parse::bind_addr(arg()?).map_err(e)?;
            a.line_bind = d.line;
        }
        "kv-primary" => {
            a.kv_primary = parse::peer_addr(arg()?).map_err(e)?;
            a.line_kv_primary = d.line;
        }
        "kv-replica" => a.kv_replica = Some(parse::peer_addr(arg()?).map_err(e)?),
        "kv-sentinel" => {
            if d.args.len() != 3 {
                return Err(e("expected 'kv-sentinel HOST:PORT MASTERNAME'".into()));
            }
            let name = &d.args[2];
            if a.kv_master_name.as_ref().is_some_and(|n| n != name) {
                return Err(e(format!(
                    "every kv-sentinel line must name the same master (not '{name}')"
                )));
            }
            a.kv_sentinels
                .push(parse::peer_addr(&d.args[1]).map_err(e)?);
            a.kv_master_name = Some(name.clone());
        }
        "max-value-bytes" => a.max_value_bytes = parse::size(arg()?).map_err(e)?.max(1),
        "max-key-bytes" => {
            a.max_key_bytes = parse::number(arg()?, 1, 64 << 10).map_err(e)? as usize
        }
        "kv-pool" => a.kv_pool = parse::number(arg()?, 0, 4096).map_err(e)? as usize,
        "timeout" => {
            if d.args.len() != 3 {
                return Err(e("expected 'timeout NAME DURATION'".into()));
            }
            let t = parse::duration(&d.args[2]).map_err(e)?;
            if t.is_zero() {
                return Err(e("must be greater than zero".into()));
            }
            match d.args[1].as_str() {
                "kv" => a.timeout_kv = t,
                "client" => a.timeout_client = t,
                "http-request" => a.timeout_request = t,
                "http-keep-alive" => a.timeout_keep_alive = t,
                other => {
                    return Err(e(format!(
                        "unknown timeout '{other}' (kv, client, http-request, http-keep-alive)"
                    )))
                }
            }
        }
        _ => {
            return Err(format!(
                "unknown keyword '{kw}' in app section{}",
                did_you_mean(kw, KEYWORDS)
            ))
        }
    }
    Ok(())
}

/// Checks a finished `app` section.
pub fn finish(a: &AppConf) -> Result<(), String> {
    if a.line_bind == 0 {
        return Err(format!("app '{}' has no 'bind' line", a.name));
    }
    match (a.line_kv_primary != 0, !a.kv_sentinels.is_empty()) {
        (false, false) => {
            return Err(format!(
                "app '{}' has no 'kv-primary' (or 'kv-sentinel') line",
                a.name
            ))
        }
        (true, true) => {
            return Err(format!(
                "app '{}': 'kv-primary' and 'kv-sentinel' exclude each other (the sentinels say where the primary is)",
                a.name
            ))
        }
        _ => {}
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
    fn keywords_parse() {
        let mut a = AppConf::new("a".into(), 1);
        directive(&mut a, &dir("bind 127.0.0.1:0")).unwrap();
        directive(&mut a, &dir("kv-primary 127.0.0.1:6379")).unwrap();
        directive(&mut a, &dir("kv-replica 127.0.0.1:6380")).unwrap();
        directive(&mut a, &dir("timeout kv 250ms")).unwrap();
        directive(&mut a, &dir("max-value-bytes 64k")).unwrap();
        assert_eq!(a.kv_replica, Some("127.0.0.1:6380".parse().unwrap()));
        assert_eq!(a.timeout_kv, Duration::from_millis(250));
        assert_eq!(a.max_value_bytes, 64 << 10);
        assert!(finish(&a).is_ok());
    }

    #[test]
    fn bad_values_are_errors() {
        let mut a = AppConf::new("a".into(), 1);
        directive(&mut a, &dir("bind 127.0.0.1:0")).unwrap();
        assert!(finish(&a).unwrap_err().contains("kv-primary"));
        assert!(directive(&mut a, &dir("kv-primary nowhere")).is_err());
        assert!(directive(&mut a, &dir("timeout kv 0")).is_err());
        let e = directive(&mut a, &dir("kv-primry 127.0.0.1:1")).unwrap_err();
        assert!(e.contains("kv-primary"), "{e}");
    }

    #[test]
    fn kv_sentinel_lines() {
        let mut a = AppConf::new("a".into(), 1);
        directive(&mut a, &dir("bind 127.0.0.1:0")).unwrap();
        directive(&mut a, &dir("kv-sentinel 127.0.0.1:26379 db")).unwrap();
        directive(&mut a, &dir("kv-sentinel 127.0.0.1:26380 db")).unwrap();
        assert!(directive(&mut a, &dir("kv-sentinel 127.0.0.1:26381 other")).is_err());
        assert!(directive(&mut a, &dir("kv-sentinel 127.0.0.1:26381")).is_err());
        assert_eq!(a.kv_sentinels.len(), 2);
        assert!(finish(&a).is_ok());
        directive(&mut a, &dir("kv-primary 127.0.0.1:6379")).unwrap();
        assert!(finish(&a).unwrap_err().contains("exclude"));
    }
}
