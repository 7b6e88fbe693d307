//! The `kv NAME` section: settings of one embedded RESP2 key-value server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{self, did_you_mean, Directive};

#[derive(Debug, Clone, PartialEq)]
pub struct KvConf {
    pub name: String,
    pub line: usize,
    pub bind: SocketAddr,
    pub line_bind: usize,
    /// Primary to replicate from; `None` = this server is a primary.
    pub replicaof: Option<SocketAddr>,
    /// Password required by AUTH before any other command.
    pub requirepass: Option<String>,
    /// Password this server sends (AUTH) when it connects to its primary.
    pub masterauth: Option<String>,
    /// Upper bound on the bytes of keys plus values; writes beyond it get `-OOM`.
    pub maxmemory: Option<u64>,
    /// Longest key accepted.
    pub max_key_bytes: u64,
    /// Longest value accepted (also the RESP bulk length limit).
    pub max_value_bytes: u64,
    /// Most elements in one RESP array (command arguments).
    pub max_array_len: u64,
    /// Longest inline command line, and longest `*N` / `$N` header line.
    pub max_inline_bytes: u64,
    /// Most unparsed bytes one client may have buffered (one incomplete request).
    pub max_query_bytes: u64,
    /// Bytes of the replication stream kept for partial resync of reconnecting replicas.
    pub repl_backlog_size: u64,
    /// Close a client idle this long; zero = never (Redis's `timeout`).
    pub timeout: Duration,
    /// Close a client that accepts no reply bytes for this long (a dead or stuck peer).
    pub write_timeout: Duration,
    /// Active expiry runs this many times a second (Redis's `hz`).
    pub hz: u32,
    /// Number of databases (SELECT 0..N-1), Redis's `databases`.
    pub databases: u32,
    /// A primary PINGs its replicas this often (Redis's `repl-ping-replica-period`).
    pub repl_ping_replica_period: Duration,
    /// Directory of `dump.rdb` and the append-only file (Redis's `dir`).
    pub dir: PathBuf,
    /// RDB snapshot file name inside `dir`.
    pub dbfilename: String,
    /// `save <seconds> <changes>` rules: snapshot when both hold; empty = never.
    pub save: Vec<(u64, u64)>,
    /// Log every write to `appendfilename` and replay it at start.
    pub appendonly: bool,
    pub appendfilename: String,
    pub appendfsync: AppendFsync,
    /// Rewrite the AOF when it grew this many percent over its size after the last rewrite ...
    pub auto_aof_rewrite_percentage: u64,
    /// ... and is at least this big.
    pub auto_aof_rewrite_min_size: u64,
}

/// When the append-only file is flushed to disk (Redis's `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFsync {
    /// Before any reply to a write is sent.
    Always,
    /// Once a second in the background: at most about a second of writes lost.
    EverySec,
    /// When the kernel decides.
    No,
}

pub const DEFAULT_MAX_KEY_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 512 << 20;
pub const DEFAULT_MAX_ARRAY_LEN: u64 = 1 << 20;
pub const DEFAULT_MAX_INLINE_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_QUERY_BYTES: u64 = 1 << 30;
pub const DEFAULT_REPL_BACKLOG_SIZE: u64 = 1 << 20;
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_HZ: u32 = 10;
pub const DEFAULT_REPL_PING_REPLICA_PERIOD: Duration = Duration::from_secs(10);

const KEYWORDS: &[&str] = &[
    "bind",
    "replicaof",
    "requirepass",
    "masterauth",
    "maxmemory",
    "max-key-bytes",
    "max-value-bytes",
    "max-array-len",
    "max-inline-bytes",
    "max-query-bytes",
    "repl-backlog-size",
    "timeout",
    "write-timeout",
    "hz",
    "databases",
    "repl-ping-replica-period",
    "dir",
    "dbfilename",
    "save",
    "appendonly",
    "appendfilename",
    "appendfsync",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
];

impl KvConf {
    pub fn new(name: String, line: usize) -> KvConf {
        KvConf {
            name,
            line,
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            line_bind: 0,
            replicaof: None,
            requirepass: None,
            masterauth: None,
            maxmemory: None,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            max_query_bytes: DEFAULT_MAX_QUERY_BYTES,
            repl_backlog_size: DEFAULT_REPL_BACKLOG_SIZE,
            timeout: Duration::ZERO,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            hz: DEFAULT_HZ,
            databases: 16,
            repl_ping_replica_period: DEFAULT_REPL_PING_REPLICA_PERIOD,
            dir: PathBuf::from("."),
            dbfilename: "dump.rdb".into(),
            save: Vec::new(),
            appendonly: false,
            appendfilename: "appendonly.aof".into(),
            appendfsync: AppendFsync::EverySec,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 << 20,
        }
    }
}

/// Applies one directive of a `kv` section.
pub fn directive(k: &mut KvConf, d: &Directive) -> Result<(), String> {
    let kw = d.keyword();
    let arg = || d.one_arg();
    let e = |m: String| format!("'{kw}': {m}");
    match kw {
        "bind" => {
            k.bind = parse::bind_addr(arg()?).map_err(e)?;
            k.line_bind = d.line;
        }
        "replicaof" | "slaveof" => {
            let a = match d.args.len() {
                // Redis writes `replicaof HOST PORT`; we also take HOST:PORT.
                3 => format!("{}:{}", d.args[1], d.args[2]),
                _ => arg()?.to_string(),
            };
            k.replicaof = Some(parse::peer_addr(&a).map_err(e)?);
        }
        "requirepass" => k.requirepass = Some(arg()?.to_string()),
        "masterauth" => k.masterauth = Some(arg()?.to_string()),
        "maxmemory" => k.maxmemory = Some(parse::size(arg()?).map_err(e)?),
        "max-key-bytes" => k.max_key_bytes = parse::size(arg()?).map_err(e)?.max(1),
        "max-value-bytes" => k.max_value_bytes = parse::size(arg()?).map_err(e)?.max(1),
        "max-array-len" => k.max_array_len = parse::size(arg()?).map_err(e)?.max(1),
        "max-inline-bytes" => k.max_inline_bytes = parse::size(arg()?).map_err(e)?.max(16),
        "max-query-bytes" => k.max_query_bytes = parse::size(arg()?).map_err(e)?.max(1024),
        "repl-backlog-size" => k.repl_backlog_size = parse::size(arg()?).map_err(e)?.max(16 << 10),
        "timeout" => k.timeout = parse::duration(arg()?).map_err(e)?,
        "write-timeout" => {
            let t = parse::duration(arg()?).map_err(e)?;
            if t.is_zero() {
                return Err(e("must be greater than zero".into()));
            }
            k.write_timeout = t;
        }
        "repl-ping-replica-period" => {
            let t = parse::duration(arg()?).map_err(e)?;
            if t.is_zero() {
                return Err(e("must be greater than zero".into()));
            }
            k.repl_ping_replica_period = t;
        }
        "dir" => k.dir = PathBuf::from(arg()?),
        "dbfilename" | "appendfilename" => {
            let v = arg()?;
            if v.is_empty() || v.contains('/') {
                return Err(e(format!(
                    "'{v}' must be a plain file name (use 'dir' for the directory)"
                )));
            }
            if kw == "dbfilename" {
                k.dbfilename = v.to_string();
            } else {
                k.appendfilename = v.to_string();
            }
        }
        "save" => {
            // `save ""` (or `save`) clears the rules; else pairs of seconds and changes.
            let rest = &d.args[1..];
            if rest.is_empty() || (rest.len() == 1 && (rest[0].is_empty() || rest[0] == "\"\"")) {
                k.save.clear();
                return Ok(());
            }
            if !rest.len().is_multiple_of(2) {
                return Err(e("expected pairs of <seconds> <changes>".into()));
            }
            for p in rest.chunks(2) {
                match (p[0].parse::<u64>(), p[1].parse::<u64>()) {
                    (Ok(s), Ok(c)) if s > 0 => k.save.push((s, c)),
                    _ => {
                        return Err(e(format!(
                            "invalid rule '{} {}' (expected <seconds> <changes>)",
                            p[0], p[1]
                        )))
                    }
                }
            }
        }
        "appendonly" => {
            k.appendonly = match arg()? {
                "yes" => true,
                "no" => false,
                v => return Err(e(format!("expected yes or no, got '{v}'"))),
            }
        }
        "appendfsync" => {
            k.appendfsync = match arg()? {
                "always" => AppendFsync::Always,
                "everysec" => AppendFsync::EverySec,
                "no" => AppendFsync::No,
                v => return Err(e(format!("expected always, everysec or no, got '{v}'"))),
            }
        }
        "auto-aof-rewrite-percentage" => {
            let v = arg()?;
            k.auto_aof_rewrite_percentage =
                v.parse().map_err(|_| e(format!("invalid number '{v}'")))?;
        }
        "auto-aof-rewrite-min-size" => {
            k.auto_aof_rewrite_min_size = parse::size(arg()?).map_err(e)?
        }
        "databases" => {
            let v = arg()?;
            k.databases = match v.parse::<u32>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => return Err(e(format!("invalid number '{v}' (expected 1 to 1024)"))),
            };
        }
        "hz" => {
            let v = arg()?;
            k.hz = match v.parse::<u32>() {
                Ok(n) if (1..=500).contains(&n) => n,
                _ => return Err(e(format!("invalid number '{v}' (expected 1 to 500)"))),
            };
        }
        _ => {
            return Err(format!(
                "unknown keyword '{kw}' in kv section{}",
                did_you_mean(kw, KEYWORDS)
            ))
        }
    }
    Ok(())
}

/// Checks a finished `kv` section.
pub fn finish(k: &KvConf) -> Result<(), String> {
    if k.line_bind == 0 {
        return Err(format!("kv '{}' has no 'bind' line", k.name));
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
        let mut k = KvConf::new("a".into(), 1);
        directive(&mut k, &dir("repl-backlog-size 2m")).unwrap();
        directive(&mut k, &dir("timeout 5s")).unwrap();
        directive(&mut k, &dir("hz 50")).unwrap();
        directive(&mut k, &dir("masterauth sesame")).unwrap();
        directive(&mut k, &dir("replicaof 127.0.0.1 6379")).unwrap();
        assert_eq!(k.repl_backlog_size, 2 << 20);
        assert_eq!(k.timeout, Duration::from_secs(5));
        assert_eq!(k.hz, 50);
        assert_eq!(k.masterauth.as_deref(), Some("sesame"));
        assert_eq!(k.replicaof, Some("127.0.0.1:6379".parse().unwrap()));
    }

    #[test]
    fn persistence_keywords_parse() {
        let mut k = KvConf::new("a".into(), 1);
        directive(&mut k, &dir("dir /var/lib/kv")).unwrap();
        directive(&mut k, &dir("save 900 1 300 10")).unwrap();
        directive(&mut k, &dir("appendonly yes")).unwrap();
        directive(&mut k, &dir("appendfsync always")).unwrap();
        directive(&mut k, &dir("auto-aof-rewrite-min-size 1m")).unwrap();
        assert_eq!(k.dir, PathBuf::from("/var/lib/kv"));
        assert_eq!(k.save, vec![(900, 1), (300, 10)]);
        assert!(k.appendonly);
        assert_eq!(k.appendfsync, AppendFsync::Always);
        assert_eq!(k.auto_aof_rewrite_min_size, 1 << 20);
        directive(&mut k, &dir("save \"\"")).unwrap();
        assert!(k.save.is_empty());
        assert!(directive(&mut k, &dir("save 900")).is_err());
        assert!(directive(&mut k, &dir("appendfsync sometimes")).is_err());
        assert!(directive(&mut k, &dir("dbfilename a/b.rdb")).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        let mut k = KvConf::new("a".into(), 1);
        assert!(directive(&mut k, &dir("hz 0")).is_err());
        assert!(directive(&mut k, &dir("write-timeout 0")).is_err());
        let e = directive(&mut k, &dir("repl-backlog 1m")).unwrap_err();
        assert!(e.contains("repl-backlog-size"), "{e}");
    }
}
