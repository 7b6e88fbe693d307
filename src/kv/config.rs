//! CONFIG GET / SET / REWRITE / RESETSTAT: the settings kv has, some of them
//! changeable at run time (held here as atomics, read by the code that uses them).
//! lb.conf stays the source of truth: a change lasts until the next start, and
//! CONFIG REWRITE writes nothing (it says so in the log and answers OK, so tools
//! such as Redis Sentinel that call it after a failover carry on).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::command::wrong_arity;
use super::db::glob;
use super::frame::{parse_i64, reply, Argv};
use super::Kv;
use crate::conf::kv::KvConf;

/// Settings CONFIG SET may change.
#[derive(Debug)]
pub struct Settings {
    /// 0 = no limit.
    pub maxmemory: AtomicU64,
    /// Idle client timeout in seconds, 0 = none.
    pub timeout: AtomicU64,
    pub hash_max_listpack_entries: AtomicU64,
    pub hash_max_listpack_value: AtomicU64,
    pub set_max_intset_entries: AtomicU64,
    pub zset_max_listpack_entries: AtomicU64,
    pub zset_max_listpack_value: AtomicU64,
    /// Stored and reported only: kv's lists have one encoding.
    pub list_max_listpack_size: AtomicU64,
    pub list_compress_depth: AtomicU64,
    /// Seconds between the primary's PINGs to its replicas.
    pub repl_ping_replica_period: AtomicU64,
    /// DEBUG SET-ACTIVE-EXPIRE: the background expiry cycle runs.
    pub active_expire: std::sync::atomic::AtomicBool,
}

impl Settings {
    pub fn new(conf: &KvConf) -> Settings {
        Settings {
            maxmemory: AtomicU64::new(conf.maxmemory.unwrap_or(0)),
            timeout: AtomicU64::new(conf.timeout.as_secs()),
            hash_max_listpack_entries: AtomicU64::new(512),
            hash_max_listpack_value: AtomicU64::new(64),
            set_max_intset_entries: AtomicU64::new(512),
            zset_max_listpack_entries: AtomicU64::new(128),
            zset_max_listpack_value: AtomicU64::new(64),
            list_max_listpack_size: AtomicU64::new((-2i64) as u64),
            list_compress_depth: AtomicU64::new(0),
            active_expire: std::sync::atomic::AtomicBool::new(true),
            repl_ping_replica_period: AtomicU64::new(
                conf.repl_ping_replica_period.as_secs().max(1),
            ),
        }
    }

    pub fn maxmemory(&self) -> Option<u64> {
        Some(self.maxmemory.load(Ordering::Relaxed)).filter(|m| *m > 0)
    }

    pub fn repl_ping_replica_period(&self) -> Duration {
        Duration::from_secs(self.repl_ping_replica_period.load(Ordering::Relaxed).max(1))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.load(Ordering::Relaxed))
    }

    fn get(&self, a: &AtomicU64) -> u64 {
        let _ = self;
        a.load(Ordering::Relaxed)
    }
}

/// How a parameter is read and set.
enum Kind {
    /// A number held in `Settings`; `mem` accepts 1gb-style units.
    Num(fn(&Settings) -> &AtomicU64, bool),
    /// A signed number (list-max-listpack-size).
    Signed(fn(&Settings) -> &AtomicU64),
    /// Fixed in lb.conf; CONFIG SET refuses it as Redis refuses immutable ones.
    Fixed,
    /// Accepted when set to this value only (kv has no other behaviour).
    Only(&'static str),
}

struct Param {
    name: &'static str,
    alias: Option<&'static str>,
    kind: Kind,
}

const fn p(name: &'static str, alias: Option<&'static str>, kind: Kind) -> Param {
    Param { name, alias, kind }
}

static PARAMS: &[Param] = &[
    p("maxmemory", None, Kind::Num(|s| &s.maxmemory, true)),
    p("timeout", None, Kind::Num(|s| &s.timeout, false)),
    p(
        "repl-ping-replica-period",
        Some("repl-ping-slave-period"),
        Kind::Num(|s| &s.repl_ping_replica_period, false),
    ),
    p(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        Kind::Num(|s| &s.hash_max_listpack_entries, false),
    ),
    p(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        Kind::Num(|s| &s.hash_max_listpack_value, true),
    ),
    p(
        "set-max-intset-entries",
        None,
        Kind::Num(|s| &s.set_max_intset_entries, false),
    ),
    p(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        Kind::Num(|s| &s.zset_max_listpack_entries, false),
    ),
    p(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        Kind::Num(|s| &s.zset_max_listpack_value, true),
    ),
    p(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        Kind::Signed(|s| &s.list_max_listpack_size),
    ),
    p(
        "list-compress-depth",
        None,
        Kind::Num(|s| &s.list_compress_depth, false),
    ),
    p("maxmemory-policy", None, Kind::Only("noeviction")),
    p("notify-keyspace-events", None, Kind::Only("")),
    p("save", None, Kind::Fixed),
    p("appendonly", None, Kind::Fixed),
    p("appendfsync", None, Kind::Fixed),
    p("dir", None, Kind::Fixed),
    p("dbfilename", None, Kind::Fixed),
    p("databases", None, Kind::Fixed),
    p("port", None, Kind::Fixed),
    p("bind", None, Kind::Fixed),
    p("hz", None, Kind::Fixed),
    p("repl-backlog-size", None, Kind::Fixed),
    p("proto-max-bulk-len", None, Kind::Fixed),
    p("requirepass", None, Kind::Fixed),
];

/// The current value of a parameter, as CONFIG GET prints it.
fn value(kv: &Kv, prm: &Param) -> String {
    let c = &kv.conf;
    let s = &kv.settings;
    match &prm.kind {
        Kind::Num(f, _) => s.get(f(s)).to_string(),
        Kind::Signed(f) => (s.get(f(s)) as i64).to_string(),
        Kind::Only(v) => v.to_string(),
        Kind::Fixed => match prm.name {
            "save" => c
                .save
                .iter()
                .map(|(secs, n)| format!("{secs} {n}"))
                .collect::<Vec<_>>()
                .join(" "),
            "appendonly" => if c.appendonly { "yes" } else { "no" }.into(),
            "appendfsync" => format!("{:?}", c.appendfsync).to_ascii_lowercase(),
            "dir" => c.dir.display().to_string(),
            "dbfilename" => c.dbfilename.clone(),
            "databases" => "1".into(),
            "port" => kv.port.load(Ordering::Relaxed).to_string(),
            "bind" => c.bind.ip().to_string(),
            "hz" => c.hz.to_string(),
            "repl-backlog-size" => c.repl_backlog_size.to_string(),
            "proto-max-bulk-len" => c.max_value_bytes.to_string(),
            "requirepass" => c.requirepass.clone().unwrap_or_default(),
            _ => String::new(),
        },
    }
}

/// Redis's memory units: 1k = 1000, 1kb = 1024, and so on.
fn parse_mem(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.to_ascii_lowercase();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(mul)
}

fn find(name: &[u8]) -> Option<&'static Param> {
    PARAMS.iter().find(|p| {
        name.eq_ignore_ascii_case(p.name.as_bytes())
            || p.alias
                .is_some_and(|a| name.eq_ignore_ascii_case(a.as_bytes()))
    })
}

pub fn config(kv: &Kv, a: Argv, out: &mut Vec<u8>) {
    let sub = a.get(1);
    let is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    if is(b"GET") {
        if a.len() < 3 {
            return wrong_arity(out, "config|get");
        }
        let mut hits: Vec<(&str, String)> = Vec::new();
        for prm in PARAMS {
            let names = std::iter::once(prm.name).chain(prm.alias);
            for n in names {
                if a.iter()
                    .skip(2)
                    .any(|pat| glob(&pat.to_ascii_lowercase(), n.as_bytes()))
                    && !hits.iter().any(|(h, _)| *h == n)
                {
                    hits.push((n, value(kv, prm)));
                }
            }
        }
        reply::map(out, hits.len());
        for (n, v) in hits {
            reply::bulk(out, n.as_bytes());
            reply::bulk(out, v.as_bytes());
        }
    } else if is(b"SET") {
        set(kv, a, out);
    } else if is(b"RESETSTAT") && a.len() == 2 {
        reply::ok(out);
    } else if is(b"REWRITE") && a.len() == 2 {
        tracing::warn!(
            kv = %kv.name,
            "CONFIG REWRITE: nothing rewritten, kv's settings live in lb.conf (CONFIG SET changes last until restart)"
        );
        reply::ok(out);
    } else {
        reply::err(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(&sub[..sub.len().min(128)])
            ),
        );
    }
}

/// CONFIG SET name value [name value ...]: all checked, then all applied.
fn set(kv: &Kv, a: Argv, out: &mut Vec<u8>) {
    if a.len() < 4 || !a.len().is_multiple_of(2) {
        return wrong_arity(out, "config|set");
    }
    let mut todo: Vec<(&AtomicU64, u64)> = Vec::new();
    let s = &kv.settings;
    let mut i = 2;
    while i < a.len() {
        let (name, v) = (a.get(i), a.get(i + 1));
        let shown = String::from_utf8_lossy(&name[..name.len().min(128)]).into_owned();
        let Some(prm) = find(name) else {
            return reply::err(
                out,
                &format!("ERR Unknown option or number of arguments for CONFIG SET - '{shown}'"),
            );
        };
        let fail = |why: &str| {
            format!("ERR CONFIG SET failed (possibly related to argument '{shown}') - {why}")
        };
        match &prm.kind {
            Kind::Num(f, mem) => {
                let n = if *mem {
                    parse_mem(v)
                } else {
                    parse_i64(v).and_then(|n| u64::try_from(n).ok())
                };
                match n {
                    Some(n) => todo.push((f(s), n)),
                    None if *mem => {
                        return reply::err(out, &fail("argument must be a memory value"))
                    }
                    None => {
                        return reply::err(
                            out,
                            &fail("argument couldn't be parsed into an integer"),
                        )
                    }
                }
            }
            Kind::Signed(f) => match parse_i64(v) {
                Some(n) => todo.push((f(s), n as u64)),
                None => {
                    return reply::err(out, &fail("argument couldn't be parsed into an integer"))
                }
            },
            Kind::Only(want) => {
                if !v.eq_ignore_ascii_case(want.as_bytes()) {
                    return reply::err(out, &fail(&format!("kv supports only '{want}'")));
                }
            }
            Kind::Fixed => {
                if v != value(kv, prm).as_bytes() {
                    return reply::err(
                        out,
                        &fail("can't set immutable config (kv: set it in lb.conf)"),
                    );
                }
            }
        }
        i += 2;
    }
    for (at, n) in todo {
        at.store(n, Ordering::Relaxed);
    }
    reply::ok(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_like_redis() {
        assert_eq!(parse_mem(b"100"), Some(100));
        assert_eq!(parse_mem(b"1kb"), Some(1024));
        assert_eq!(parse_mem(b"1K"), Some(1000));
        assert_eq!(parse_mem(b"2gb"), Some(2 << 30));
        assert_eq!(parse_mem(b"x"), None);
        assert_eq!(parse_mem(b"1xb"), None);
        assert!(find(b"HASH-MAX-ZIPLIST-ENTRIES").is_some());
    }
}
